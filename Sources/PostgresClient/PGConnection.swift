internal import CLibPQ

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

/// One libpq connection. Not thread-safe: owned by one thread (a `PGExecutor`'s queue).
public final class PGConnection {
    private let connection: OpaquePointer

    /// Connects with a libpq conninfo (`postgresql://…` URI or `key=value` pairs); throws a `.connection`
    /// error carrying libpq's message (which never includes the password).
    public init(conninfo: String, connectTimeoutSeconds: Int = 10) throws(PGError) {
        var info = conninfo
        if !info.contains("connect_timeout") {
            info += conninfo.hasPrefix("postgres") ? (conninfo.contains("?") ? "&" : "?") : " "
            info += "connect_timeout=\(connectTimeoutSeconds)"
        }
        guard let connection = PQconnectdb(info) else {
            throw PGError(kind: .connection, message: "libpq could not allocate a connection")
        }
        guard PQstatus(connection) == CONNECTION_OK else {
            let message = Self.trimmed(PQerrorMessage(connection))
            PQfinish(connection)
            throw PGError(kind: .connection, message: message)
        }
        self.connection = connection
        // Times travel as UTC text; numbers in the C locale.
        _ = try? execute("SET TimeZone = 'UTC'")  // a failure here surfaces on the first real query
        // NOTICEs (e.g. "already exists, skipping") would go to stderr through libpq's default processor.
        _ = try? execute("SET client_min_messages = warning")
        // Our statements are short and repeated per batch: JIT compilation would cost more than it saves.
        _ = try? execute("SET jit = off")
    }

    deinit { PQfinish(connection) }

    /// Whether the connection is still usable.
    public var isHealthy: Bool { PQstatus(connection) == CONNECTION_OK }

    static func trimmed(_ message: UnsafePointer<CChar>?) -> String {
        guard let message else { return "unknown error" }
        var text = String(cString: message)
        while text.last == "\n" || text.last == " " { text.removeLast() }
        return text
    }

    /// Runs `sql` with text parameters `$1…$n` (never interpolated into the SQL).
    @discardableResult
    public func execute(_ sql: String, _ parameters: [String?] = []) throws(PGError) -> PGResult {
        let result: OpaquePointer?
        if parameters.isEmpty {
            result = PQexec(connection, sql)
        } else {
            result = Self.withCStrings(parameters) { values in
                PQexecParams(connection, sql, Int32(parameters.count), nil, values, nil, nil, 0)
            }
        }
        return try consume(result, kind: .query)
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
        guard let start = PQexec(connection, copySQL) else { throw connectionError() }
        let status = PQresultStatus(start)
        guard status == PGRES_COPY_IN else {
            _ = try consume(start, kind: .copy)
            throw PGError(kind: .copy, message: "COPY did not start")
        }
        PQclear(start)
        var buffer: [UInt8] = []
        while true {
            buffer.removeAll(keepingCapacity: true)
            guard next(&buffer) else { break }
            guard !buffer.isEmpty else { continue }
            let rc = buffer.withUnsafeBytes { raw in
                PQputCopyData(connection, raw.baseAddress!.assumingMemoryBound(to: CChar.self), Int32(raw.count))
            }
            guard rc == 1 else { throw connectionError() }
        }
        guard PQputCopyEnd(connection, nil) == 1 else { throw connectionError() }
        return try drainResults(kind: .copy).affectedRows
    }

    private func connectionError() -> PGError {
        PGError(kind: .connection, message: Self.trimmed(PQerrorMessage(connection)))
    }

    /// Reads every pending result (libpq requires draining until nil) and returns the last one.
    private func drainResults(kind: PGError.Kind) throws(PGError) -> PGResult {
        var last = PGResult(columns: [], rows: [], affectedRows: 0)
        var firstError: PGError?
        while let result = PQgetResult(connection) {
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
