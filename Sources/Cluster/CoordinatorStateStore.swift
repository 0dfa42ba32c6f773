public import Collector
import Foundation
import WireCore

/// The coordinator's durable state (issues 10 and 11): its term, the reserved epoch mark and
/// whether the operator paused rebalancing, as the document `coordinator.json` in
/// ``StateDocuments`` — a `DATA_DIR` file without a database (replaced whole: a crash leaves the
/// old or the new contents), a `coordinator_state` row with one, where a standby on another host
/// reads it when it takes over. The shard map itself is not stored: workers re-report what they
/// run when they re-register (DESIGN.md §3).
///
/// `load` and `store` block: they run on the caller's dedicated queue.
public struct CoordinatorStateStore: Sendable {
    public static let documentName = "coordinator.json"

    public struct Contents: Sendable, Equatable {
        public var term: UInt64
        /// No epoch at or below it is issued again: a restart continues above it.
        public var epochsReserved: UInt64
        /// The operator's `coordinator rebalance pause`, kept across restarts and take-overs.
        public var rebalancePaused: Bool
        public init(term: UInt64, epochsReserved: UInt64, rebalancePaused: Bool = false) {
            self.term = term
            self.epochsReserved = epochsReserved
            self.rebalancePaused = rebalancePaused
        }
    }

    /// What a starting coordinator continues from.
    public struct Beginning: Sendable, Equatable {
        /// This process's term: one above the stored one, already written.
        public var term: UInt64
        public var epochsReserved: UInt64
        public var rebalancePaused: Bool
        /// A previous coordinator ran: workers may hold shards, so the first lease is a recovery hold.
        public var recovering: Bool
    }

    public struct Corrupt: Error, CustomStringConvertible {
        public var location: String
        public var reason: String
        public var description: String {
            "coordinator state \(location) is unreadable (\(reason)); restore it or move it away to start a new cluster"
        }
    }

    public let documents: any StateDocuments

    public init(_ documents: any StateDocuments) { self.documents = documents }

    /// A store of files in `directory`.
    public init(directory: String) { self.init(FileStateDocuments(directory: directory)) }

    public var location: String { documents.location + "/" + Self.documentName }

    /// The stored contents, or nil when there is none yet (a new cluster).
    public func load() throws -> Contents? {
        let bytes: [UInt8]
        do {
            guard let stored = try documents.read(Self.documentName) else { return nil }
            bytes = stored
        } catch {
            throw Corrupt(location: location, reason: "cannot read: \(error)")
        }
        return try Self.decode(bytes, location: location)
    }

    /// Reads the document strictly (the JSON scanner; `cluster/fuzz.sh coordinator-state`): `term` a
    /// positive and `epochs_reserved` a non-negative whole number within UInt64 (not 1.5, not -1, not
    /// `true`), `rebalance_paused` absent or a boolean; unknown fields are ignored, a repeated one is
    /// refused.
    public static func decode(_ bytes: [UInt8], location: String) throws(Corrupt) -> Contents {
        var term: UInt64?
        var epochs: UInt64?
        var paused: Bool?
        var problem: String?
        let read = bytes.withUnsafeBytes { raw in
            Result { () throws(JSONError) in
                var scanner = JSONScanner(raw)
                guard scanner.peek() == UInt8(ascii: "{") else {
                    problem = "not a JSON object"
                    return
                }
                func unsigned(_ s: inout JSONScanner, _ name: String, _ seen: UInt64?) throws(JSONError) -> UInt64? {
                    if seen != nil { problem = problem ?? "\(name) appears twice" }
                    guard s.peekIsNumber() else {
                        problem = problem ?? "\(name) must be a whole number from 0 to \(UInt64.max)"
                        try s.skipValue()
                        return nil
                    }
                    let range = try s.readNumberText()
                    let text = String(decoding: UnsafeRawBufferPointer(rebasing: raw[range]), as: UTF8.self)
                    guard let value = UInt64(text) else {
                        problem =
                            problem ?? "\(name) must be a whole number from 0 to \(UInt64.max), not \(text.prefix(40))"
                        return nil
                    }
                    return value
                }
                try scanner.readObject { key, s throws(JSONError) in
                    if s.equals(key, "term") {
                        term = try unsigned(&s, "term", term)
                    } else if s.equals(key, "epochs_reserved") {
                        epochs = try unsigned(&s, "epochs_reserved", epochs)
                    } else if s.equals(key, "rebalance_paused") {
                        if paused != nil { problem = problem ?? "rebalance_paused appears twice" }
                        guard s.peek() == UInt8(ascii: "t") || s.peek() == UInt8(ascii: "f") else {
                            problem = problem ?? "rebalance_paused must be true or false"
                            return try s.skipValue()
                        }
                        paused = try s.readBool()
                    } else {
                        try s.skipValue()
                    }
                }
                try scanner.expectEnd()
            }
        }
        if case .failure(let error) = read { throw Corrupt(location: location, reason: "not a JSON object: \(error)") }
        if let problem { throw Corrupt(location: location, reason: problem) }
        guard let term, term > 0, let epochs else {
            throw Corrupt(location: location, reason: "needs a positive term and epochs_reserved")
        }
        return Contents(term: term, epochsReserved: epochs, rebalancePaused: paused ?? false)
    }

    /// The document's text for `contents`.
    public static func encode(_ contents: Contents) -> [UInt8] {
        let text =
            "{\"term\":\(contents.term),\"epochs_reserved\":\(contents.epochsReserved),"
            + "\"rebalance_paused\":\(contents.rebalancePaused)}\n"
        return Array(text.utf8)
    }

    /// Replaces the document; refused (``StateDocumentFenced``) where a newer term wrote it.
    public func store(_ contents: Contents) throws {
        try documents.write(Self.documentName, Self.encode(contents), term: contents.term)
    }

    /// Reads the stored state and writes the next term durably (on a queue of its own): the
    /// state a starting coordinator continues from.
    public func begin() async throws -> Beginning {
        let store = self
        return try await StateDocumentQueue(documents, label: "coordinator.state-begin").run { _ in
            let previous = try store.load()
            let next = Contents(
                term: (previous?.term ?? 0) + 1, epochsReserved: previous?.epochsReserved ?? 0,
                rebalancePaused: previous?.rebalancePaused ?? false)
            try store.store(next)
            return Beginning(
                term: next.term, epochsReserved: next.epochsReserved, rebalancePaused: next.rebalancePaused,
                recovering: previous != nil)
        }
    }
}
