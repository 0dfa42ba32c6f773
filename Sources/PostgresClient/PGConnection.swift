internal import CLibPQ
import Foundation

/// A libpq failure. `description` is safe to log: no conninfo, no row values.
public struct PGError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// Could not connect, or the connection broke.
        case connection
        /// The server rejected a statement.
        case query
        /// A COPY failed.
        case copy
    }
    public var kind: Kind
    /// The five-character SQLSTATE, when the server sent one (e.g. `23514` check violation).
    public var sqlState: String?
    /// ERROR, FATAL, PANIC…
    public var severity: String?
    /// The server's primary message, or libpq's.
    public var message: String

    public init(kind: Kind, sqlState: String? = nil, severity: String? = nil, message: String) {
        self.kind = kind
        self.sqlState = sqlState
        self.severity = severity
        self.message = message
    }

    public var description: String {
        var parts = ["PostgreSQL \(kind) error"]
        if let sqlState { parts.append("[\(sqlState)]") }
        return parts.joined(separator: " ") + ": " + message
    }

    /// Whether retrying on a new connection may help (connection loss, admin shutdown, serialization).
    public var isTransient: Bool {
        if kind == .connection { return true }
        guard let state = sqlState else { return false }
        // Class 08 connection exception, 57P01..03 admin/crash shutdown, 40001/40P01 serialization/deadlock.
        return state.hasPrefix("08") || state.hasPrefix("57P") || state == "40001" || state == "40P01"
    }

    /// Whether the server refused the data itself (class 22 data exception, class 23 integrity
    /// violation): sending the same rows again cannot succeed.
    public var isDataError: Bool {
        guard kind != .connection, let state = sqlState else { return false }
        return state.hasPrefix("22") || state.hasPrefix("23")
    }
}

/// The rows of a query result, copied out of libpq (text format).
public struct PGResult: Sendable, Equatable {
    /// Column names.
    public var columns: [String]
    /// Rows of text values (`nil` is SQL NULL).
    public var rows: [[String?]]
    /// Rows affected, for INSERT/UPDATE/DELETE/COPY (`PQcmdTuples`).
    public var affectedRows: Int

    /// The first column of the first row.
    public var scalar: String? { rows.first?.first ?? nil }
}

/// How long a connection waits (DESIGN.md §4: every database call has a timeout, so a server that
/// stops answering — packets dropped, not refused — is detected instead of blocking a writer forever).
///
/// | what | bound | where it is enforced |
/// |---|---|---|
/// | connecting (TCP + TLS + auth) | `connectSeconds` | libpq `connect_timeout` |
/// | one call (a query, a COPY, with its results) | `operation` | our poll loop: the connection is closed at the deadline |
/// | a statement on the server | `operation` | `statement_timeout` (the server cancels it) |
/// | unacknowledged data on the socket | `operation` | `tcp_user_timeout` and TCP keepalives |
public struct PGTimeouts: Sendable, Equatable {
    public var connectSeconds: Int
    public var operation: Duration

    public init(connectSeconds: Int = 10, operation: Duration = .seconds(30)) {
        self.connectSeconds = max(2, connectSeconds)  // libpq treats values below 2 as 2
        self.operation = operation
    }

    public static let standard = PGTimeouts()

    var operationMillis: Int {
        let (seconds, attoseconds) = operation.components
        return max(1, Int(seconds) * 1000 + Int(attoseconds / 1_000_000_000_000_000))
    }
}

/// One libpq connection. Not thread-safe: owned by one thread (a `PGExecutor`'s queue).
///
/// Every call is non-blocking underneath (`PQsetnonblocking`, `PQsend*`, `poll` on the socket) with
/// a deadline of `timeouts.operation`; a call that passes it throws a `.connection` error and leaves
/// the connection closed, so the owner reconnects.
public final class PGConnection {
    private let connection: OpaquePointer
    public let timeouts: PGTimeouts
    private var isBroken = false

    /// Connects with a libpq conninfo (`postgresql://…` URI or `key=value` pairs); throws a `.connection`
    /// error carrying libpq's message (which never includes the password).
    public convenience init(conninfo: String, connectTimeoutSeconds: Int = 10) throws(PGError) {
        try self.init(conninfo: conninfo, timeouts: PGTimeouts(connectSeconds: connectTimeoutSeconds))
    }

    public init(conninfo: String, timeouts: PGTimeouts) throws(PGError) {
        self.timeouts = timeouts
        let info = Self.withDefaults(conninfo, timeouts: timeouts)
        guard let connection = PQconnectdb(info) else {
            throw PGError(kind: .connection, message: "libpq could not allocate a connection")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.trimmed(PQerrorMessage(connection))
            PQfinish(connection)
            throw PGError(kind: .connection, message: message)
        }
        guard PQsetnonblocking(connection, 1) == 0 else {
            PQfinish(connection)
            throw PGError(kind: .connection, message: "cannot make the connection non-blocking")
        }
        self.connection = connection
        // Times travel as UTC text; numbers in the C locale. NOTICEs (e.g. "already exists, skipping")
        // would go to stderr through libpq's default processor. JIT compilation costs more than it saves
        // for our short, repeated statements. The server cancels any statement past the call deadline.
        try execute(
            "SET TimeZone = 'UTC'; SET client_min_messages = warning; SET jit = off; SET statement_timeout = \(timeouts.operationMillis)"
        )
    }

    deinit { PQfinish(connection) }

    /// Adds what the caller did not set: `connect_timeout`, TCP keepalives, `tcp_user_timeout`, and
    /// `gssencmode=disable` unless the caller (or `PGGSSENCMODE`) asks for GSSAPI: libpq's default
    /// `prefer` probes the Kerberos credential cache on every connect, and a process exiting while
    /// another thread connects trips krb5's library mutex assertion (seen as an abort at exit).
    static func withDefaults(
        _ conninfo: String, timeouts: PGTimeouts,
        environment: [String: String] = ProcessInfo.processInfo.environment
    ) -> String {
        var defaults = [
            ("connect_timeout", String(timeouts.connectSeconds)), ("keepalives", "1"), ("keepalives_idle", "5"),
            ("keepalives_interval", "2"), ("keepalives_count", "3"),
            ("tcp_user_timeout", String(timeouts.operationMillis)),
        ]
        if environment["PGGSSENCMODE"] == nil { defaults.append(("gssencmode", "disable")) }
        return adding(defaults, to: conninfo)
    }

    /// `conninfo` with each of `parameters` the caller did not set, in its own form (URI query or
    /// `key=value` pairs).
    public static func adding(_ parameters: [(String, String)], to conninfo: String) -> String {
        let isURI = conninfo.hasPrefix("postgres://") || conninfo.hasPrefix("postgresql://")
        var info = conninfo
        for (key, value) in parameters where !conninfo.contains(key + "=") {
            if isURI {
                info += (info.contains("?") ? "&" : "?") + key + "=" + value
            } else {
                info += " " + key + "=" + value
            }
        }
        return info
    }

    /// Whether the connection is still usable.
    public var isHealthy: Bool { !isBroken && PQstatus(connection) == CONNECTION_OK }

    static func trimmed(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "unknown error" }
        var text = String(cString: message)
        while text.last == "\n" || text.last == " " { text.removeLast() }
        return text
    }

    /// Runs `sql` with text parameters `$1…$n` (never interpolated into the SQL). Several statements
    /// separated by `;` are allowed without parameters; the last result is returned.
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?] = []) throws(PGError) -> PGResult {
        let deadline = ContinuousClock.now.advanced(by: timeouts.operation)
        let sent: Int32
        if parameters.isEmpty {
            sent = PQsendQuery(connection, sql)
        } else {
            sent = Self.withCStrings(parameters) { values in
                PQsendQueryParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
            }
        }
        guard sent == 1 else { throw connectionError() }
        try flushOutput(until: deadline)
        return try collectResults(kind: .query, until: deadline)
    }

    /// Streams `data` (COPY text format) into `copySQL` (`COPY … FROM STDIN`); returns rows copied.
    public func copyIn(_ copySQL: String, data: [UInt8]) throws(PGError) -> Int {
        var sent = false
        return try copyIn(copySQL) { buffer in
            guard !sent else { return false }
            sent = true
            buffer.append(contentsOf: data)
            return true
        }
    }

    /// Streams COPY data produced piece by piece: `next` appends the next piece to the (emptied) buffer
    /// and returns false when there is no more. The server parses each piece while the next one is
    /// being produced. Returns rows copied.
    public func copyIn(_ copySQL: String, next: (inout [UInt8]) -> Bool) throws(PGError) -> Int {
        let deadline = ContinuousClock.now.advanced(by: timeouts.operation)
        guard PQsendQuery(connection, copySQL) == 1 else { throw connectionError() }
        try flushOutput(until: deadline)
        let start = try nextResult(until: deadline)
        guard let start else { throw PGError(kind: .copy, message: "COPY did not start") }
        guard PQresultStatus(start) == PGRES_COPY_IN else {
            _ = try consume(start, kind: .copy)
            _ = try collectResults(kind: .copy, until: deadline)
            throw PGError(kind: .copy, message: "COPY did not start")
        }
        PQclear(start)
        var buffer: [UInt8] = []
        while true {
            buffer.removeAll(keepingCapacity: true)
            guard next(&buffer) else { break }
            guard !buffer.isEmpty else { continue }
            while true {
                let rc = buffer.withUnsafeBytes { raw in
                    // Force-unwrap: the buffer is non-empty, so it has a base address.
                    PQputCopyData(connection, raw.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(raw.count))
                }
                if rc == 1 { break }
                guard rc == 0 else { throw connectionError() }
                try wait(forWrite: true, until: deadline)  // the send buffer is full: wait for room
                guard PQflush(connection) >= 0 else { throw connectionError() }
            }
        }
        while true {
            let rc = PQputCopyEnd(connection, nil)
            if rc == 1 { break }
            guard rc == 0 else { throw connectionError() }
            try wait(forWrite: true, until: deadline)
        }
        try flushOutput(until: deadline)
        return try collectResults(kind: .copy, until: deadline).affectedRows
    }

    private func connectionError() -> PGError {
        PGError(kind: .connection, message: Self.trimmed(PQerrorMessage(connection)))
    }

    /// Sends everything libpq has buffered, waiting for the socket within the deadline.
    private func flushOutput(until deadline: ContinuousClock.Instant) throws(PGError) {
        while true {
            let rc = PQflush(connection)
            if rc == 0 { return }
            guard rc == 1 else { throw connectionError() }
            try wait(forWrite: true, until: deadline)
            // libpq: read input while waiting to write, or the server may block on its own output.
            guard PQconsumeInput(connection) == 1 else { throw connectionError() }
        }
    }

    /// Waits for the socket; past the deadline the connection is closed and a `.connection` error thrown.
    private func wait(forWrite: Bool, until deadline: ContinuousClock.Instant) throws(PGError) {
        let socket = PQsocket(connection)
        guard socket >= 0 else { throw connectionError() }
        while true {
            let left = deadline - ContinuousClock.now
            guard left > .zero else {
                isBroken = true
                throw PGError(
                    kind: .connection,
                    message: "no answer from the database within \(timeouts.operation) (connection closed)")
            }
            let (seconds, attoseconds) = left.components
            let millis = Int32(clamping: seconds * 1000 + attoseconds / 1_000_000_000_000_000 + 1)
            let rc = cpq_wait_socket(socket, forWrite ? 1 : 0, millis)
            if rc > 0 { return }
            guard rc == 0 else { throw PGError(kind: .connection, message: "poll on the database socket failed") }
        }
    }

    /// The next result, waiting for input within the deadline; nil when the command is complete.
    private func nextResult(until deadline: ContinuousClock.Instant) throws(PGError) -> OpaquePointer? {
        while PQisBusy(connection) == 1 {
            try wait(forWrite: false, until: deadline)
            guard PQconsumeInput(connection) == 1 else { throw connectionError() }
        }
        return PQgetResult(connection)
    }

    /// Reads every pending result (libpq requires draining until nil) and returns the last one.
    private func collectResults(
        kind: PGError.Kind, until deadline: ContinuousClock.Instant
    ) throws(PGError)
        -> PGResult
    {
        var last = PGResult(columns: [], rows: [], affectedRows: 0)
        var firstError: PGError?
        while let result = try nextResult(until: deadline) {
            if PQresultStatus(result) == PGRES_COPY_IN {
                // A COPY we did not ask for (a statement list with COPY … FROM STDIN): refuse it.
                PQclear(result)
                _ = PQputCopyEnd(connection, "COPY is only accepted through copyIn")
                try flushOutput(until: deadline)
                continue
            }
            do {
                last = try consume(result, kind: kind)
            } catch {
                if firstError == nil { firstError = error }
            }
        }
        if let firstError { throw firstError }
        return last
    }

    /// Copies a result out and clears it (C strings are copied before `PQclear`).
    private func consume(_ result: OpaquePointer?, kind: PGError.Kind) throws(PGError) -> PGResult {
        guard let result else { throw connectionError() }
        defer { PQclear(result) }
        let status = PQresultStatus(result)
        switch status {
        case PGRES_COMMAND_OK, PGRES_TUPLES_OK, PGRES_EMPTY_QUERY, PGRES_COPY_IN:
            let columnCount = Int(PQnfields(result))
            let rowCount = Int(PQntuples(result))
            var columns: [String] = []
            for c in 0..<columnCount { columns.append(String(cString: PQfname(result, Int32(c)))) }
            var rows: [[String?]] = []
            rows.reserveCapacity(rowCount)
            for r in 0..<rowCount {
                var row: [String?] = []
                row.reserveCapacity(columnCount)
                for c in 0..<columnCount {
                    if PQgetisnull(result, Int32(r), Int32(c)) == 1 {
                        row.append(nil)
                    } else {
                        row.append(String(cString: PQgetvalue(result, Int32(r), Int32(c))))
                    }
                }
                rows.append(row)
            }
            let affected = Int(String(cString: PQcmdTuples(result))) ?? 0
            return PGResult(columns: columns, rows: rows, affectedRows: affected)
        default:
            // 'C' SQLSTATE, 'S' severity, 'M' primary message (postgres_ext.h PG_DIAG_* codes).
            let state = PQresultErrorField(result, 67).map { String(cString: $0) }
            let severity = PQresultErrorField(result, 83).map { String(cString: $0) }
            let primary = PQresultErrorField(result, 77).map { String(cString: $0) }
            let message = primary ?? Self.trimmed(PQresultErrorMessage(result))
            let isConnectionLost = !isHealthy || state?.hasPrefix("08") == true
            throw PGError(
                kind: isConnectionLost ? .connection : kind, sqlState: state, severity: severity, message: message)
        }
    }

    private static func withCStrings<R>(_ values: [String?], _ body: ([UnsafePointer<CChar>?]) -> R) -> R {
        // All values NUL-terminated in one buffer; NULL parameters get a nil pointer.
        var storage: [CChar] = []
        var offsets: [Int?] = []
        for value in values {
            if let value {
                offsets.append(storage.count)
                storage.append(contentsOf: value.utf8CString)
            } else {
                offsets.append(nil)
            }
        }
        return storage.withUnsafeBufferPointer { buffer in
            body(offsets.map { offset in offset.map { buffer.baseAddress! + $0 } })
        }
    }
}

@available(*, unavailable)
extension PGConnection: Sendable {}
