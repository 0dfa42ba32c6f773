import Dispatch
import Foundation
public import PostgresClient
import Runtime

/// Where the coordinator keeps its small durable documents (the term and epoch reservation, the
/// subscriptions): files in `DATA_DIR` without a database, the `coordinator_state` table with one
/// (issue 11), so a standby on another host takes over with the same state.
///
/// Calls block (a file write and fsync, or a database round trip): callers run them on a
/// dedicated queue, never on the event loop or the cooperative pool (STYLE.md §5).
public protocol StateDocuments: Sendable {
    /// A description for logs: the directory or "postgresql".
    var location: String { get }
    /// The stored bytes of `name`, or nil when there is none yet.
    func read(_ name: String) throws -> [UInt8]?
    /// Replaces `name` whole. `term` fences a deposed coordinator: a store refuses (``Fenced``)
    /// a write whose term is below the one already stored for that document.
    func write(_ name: String, _ bytes: [UInt8], term: UInt64) throws
}

/// A write refused because a coordinator with a newer term has written since: this process is no
/// longer the active one and must stop serving.
public struct StateDocumentFenced: Error, CustomStringConvertible {
    public var name: String
    public var term: UInt64
    public var description: String {
        "coordinator state \(name): a newer term than \(term) wrote it; this coordinator is deposed"
    }
}

/// Documents as files in one directory, each replaced atomically (temporary file, fsync, rename).
/// Without a database only the process holding the directory's lock file writes here, so the
/// term needs no check.
public struct FileStateDocuments: StateDocuments {
    public let directory: String
    public init(directory: String) { self.directory = directory }
    public var location: String { directory }

    public func read(_ name: String) throws -> [UInt8]? {
        let path = directory + "/" + name
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        return Array(try Data(contentsOf: URL(fileURLWithPath: path)))
    }

    public func write(_ name: String, _ bytes: [UInt8], term: UInt64) throws {
        try DurableFile.write(bytes, to: directory + "/" + name)
    }
}

/// Documents as rows of `coordinator_state` (sql/init/05_coordinator_state.sql). A write is an
/// upsert that only replaces a row whose term is not above the writer's: a deposed coordinator
/// that still runs (its lock lost a moment ago) cannot overwrite its successor's state.
///
/// A document the table does not have yet is read from `importing` (the `DATA_DIR` of a
/// coordinator that ran without a database, or an older version): the first write moves it over.
public final class PostgresStateDocuments: StateDocuments {
    private let connection: SerialConnection
    private let importing: FileStateDocuments?
    public var location: String { "postgresql" }

    public init(conninfo: String, timeouts: PGTimeouts, importing: FileStateDocuments? = nil) {
        connection = SerialConnection(conninfo: conninfo, timeouts: timeouts)
        self.importing = importing
    }

    public func read(_ name: String) throws -> [UInt8]? {
        let rows = try connection.run { c throws(PGError) in
            try c.execute("SELECT body FROM coordinator_state WHERE name = $1", [name]).rows
        }
        if let body = rows.first?[0] { return Array(body.utf8) }
        return try importing?.read(name)
    }

    public func write(_ name: String, _ bytes: [UInt8], term: UInt64) throws {
        let body = String(decoding: bytes, as: UTF8.self)
        let affected = try connection.run { c throws(PGError) in
            try c.execute(
                """
                INSERT INTO coordinator_state (name, term, body, updated_at) VALUES ($1, $2, $3, now())
                ON CONFLICT (name) DO UPDATE SET term = EXCLUDED.term, body = EXCLUDED.body, updated_at = now()
                WHERE coordinator_state.term <= EXCLUDED.term
                RETURNING term
                """, [name, String(term), body]
            ).rows.count
        }
        guard affected == 1 else { throw StateDocumentFenced(name: name, term: term) }
    }

    /// Closes the connection (the next call reconnects).
    public func disconnect() { connection.reset() }

    /// One connection used by whichever queue calls, one call at a time.
    final class SerialConnection: @unchecked Sendable {
        // @unchecked Sendable: `current` is touched only while `lock` is held.
        private let lock = NSLock()
        private var current: PGConnection?
        private let conninfo: String
        private let timeouts: PGTimeouts

        init(conninfo: String, timeouts: PGTimeouts) {
            self.conninfo = conninfo
            self.timeouts = timeouts
        }

        func run<T>(_ body: (PGConnection) throws(PGError) -> T) throws(PGError) -> T {
            lock.lock()
            defer { lock.unlock() }
            do {
                if current == nil || current?.isHealthy == false {
                    current = nil
                    current = try PGConnection(conninfo: conninfo, timeouts: timeouts)
                }
                // Force-unwrap: assigned just above or healthy from before.
                return try body(current!)
            } catch {
                if error.kind == .connection || current?.isHealthy == false { current = nil }
                throw error
            }
        }

        func reset() {
            lock.lock()
            current = nil
            lock.unlock()
        }
    }
}

/// Runs blocking state-document calls on one serial queue and awaits them.
public struct StateDocumentQueue: Sendable {
    public let documents: any StateDocuments
    private let queue: DispatchQueue

    public init(_ documents: any StateDocuments, label: String) {
        self.documents = documents
        queue = DispatchQueue(label: label)
    }

    public func run<T: Sendable>(_ body: @escaping @Sendable (any StateDocuments) throws -> T) async throws -> T {
        let documents = self.documents
        return try await withCheckedThrowingContinuation { continuation in
            queue.async {
                do {
                    continuation.resume(returning: try body(documents))
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }
}
