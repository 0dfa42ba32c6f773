import Dispatch

/// Where to connect, from the environment (DESIGN.md §7).
public enum PostgresConfiguration {
    /// The conninfo from `DATABASE_URL`, else from `DB_HOST`/`DB_PORT`/`DB_NAME`/`DB_USER`/`DB_PASSWORD`;
    /// nil when neither is set (no database unless set explicitly).
    public static func conninfo(from environment: [String: String]) -> String? {
        if let url = environment["DATABASE_URL"], !url.isEmpty { return url }
        let keys: [(String, String)] = [
            ("DB_HOST", "host"), ("DB_PORT", "port"), ("DB_NAME", "dbname"), ("DB_USER", "user"),
            ("DB_PASSWORD", "password"),
        ]
        let pairs = keys.compactMap { env, key -> String? in
            guard let value = environment[env], !value.isEmpty else { return nil }
            return "\(key)=\(quote(value))"
        }
        guard environment["DB_HOST"] != nil || environment["DB_NAME"] != nil else { return nil }
        return pairs.joined(separator: " ")
    }

    /// libpq keyword/value quoting: single quotes, with `\` and `'` escaped.
    static func quote(_ value: String) -> String {
        "'" + value.replacingOccurrences("\\", with: "\\\\").replacingOccurrences("'", with: "\\'") + "'"
    }
}

extension String {
    fileprivate func replacingOccurrences(_ target: String, with replacement: String) -> String {
        split(separator: target, omittingEmptySubsequences: false).joined(separator: replacement)
    }
}

/// A PostgreSQL connection owned by a dedicated serial queue (STYLE.md §5: blocking libpq calls
/// never run on the cooperative pool). Connects lazily; after a connection error the next call
/// reconnects. Calls run one at a time, in order.
public final class PGExecutor: Sendable {
    private let queue: DispatchQueue
    private let conninfo: String
    private let box: ConnectionBox
    /// Connect and per-call deadlines for every connection this executor opens.
    public let timeouts: PGTimeouts

    /// Connection state, touched only on `queue`.
    private final class ConnectionBox: @unchecked Sendable {
        // @unchecked Sendable: `connection` is read and written only on the executor's serial queue.
        var connection: PGConnection?
    }

    /// Creates an executor; nothing connects until the first call.
    public init(conninfo: String, label: String = "collector.postgres", timeouts: PGTimeouts = .standard) {
        self.conninfo = conninfo
        self.timeouts = timeouts
        self.queue = DispatchQueue(label: label)
        self.box = ConnectionBox()
    }

    /// Runs `body` with the connection on the executor's queue.
    public func run<T: Sendable>(
        _ body: @escaping @Sendable (PGConnection) throws(PGError) -> T
    ) async throws(PGError)
        -> T
    {
        let result: Result<T, PGError> = await withCheckedContinuation { continuation in
            queue.async { [box, conninfo, timeouts] in
                continuation.resume(returning: Self.perform(box: box, conninfo: conninfo, timeouts: timeouts, body))
            }
        }
        return try result.get()
    }

    private static func perform<T>(
        box: ConnectionBox, conninfo: String, timeouts: PGTimeouts, _ body: (PGConnection) throws(PGError) -> T
    ) -> Result<T, PGError> {
        do {
            if box.connection == nil || box.connection?.isHealthy == false {
                box.connection = nil
                box.connection = try PGConnection(conninfo: conninfo, timeouts: timeouts)
            }
            // Force-unwrap: assigned just above or healthy from before.
            return .success(try body(box.connection!))
        } catch {
            if error.kind == .connection || box.connection?.isHealthy == false { box.connection = nil }
            return .failure(error)
        }
    }

    /// Closes the connection (the next call reconnects).
    /// Queued behind the work already submitted, and not waited for: the caller (often a task on
    /// the cooperative pool) must not block while a long query finishes.
    public func disconnect() {
        queue.async { [box] in box.connection = nil }
    }
}
