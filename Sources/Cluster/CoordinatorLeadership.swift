import Foundation
import Locking
public import PostgresClient
public import Runtime
import Synchronization

/// Which coordinator is active (DESIGN.md §7, issue 11): the one holding a PostgreSQL advisory lock
/// when a database is configured (a second process waits as a hot standby), else an exclusive lock
/// on a file in `DATA_DIR`. The active one re-checks its hold every `lease / 2` and stops serving
/// the moment it is gone.
public enum CoordinatorLeadership: Sendable {
    case database(PostgresLeadership)
    case file(FileLock)
}

/// The advisory lock on a dedicated session whose TCP keepalives and `tcp_user_timeout` are at most
/// a lease on both ends (libpq's parameters on ours; the session-settable GUCs on the server's), so a
/// coordinator cut off from the database loses the lock — and notices — within a lease.
public final class PostgresLeadership: Sendable {
    /// The advisory lock key: the cluster's, one per database.
    public static let defaultKey: Int64 = 0x636F_6F72_6469_6E61  // "coordina"
    private let executor: PGExecutor
    private let key: Int64
    private let leaseMilliseconds: Int
    private let holder = HeldSession()
    /// Keepalive parameters the given conninfo already sets (they win: the one-lease bound then
    /// rests on them, so the coordinator warns).
    public let userKeepalives: [String]

    final class HeldSession: Sendable {
        let pid = Locked<Int?>(nil)
    }

    public init(conninfo: String, lease: Duration, key: Int64 = PostgresLeadership.defaultKey) {
        let ms = max(
            1000, Int(lease.components.seconds) * 1000 + Int(lease.components.attoseconds / 1_000_000_000_000_000))
        leaseMilliseconds = ms
        self.key = key
        // Every call (and the connect) must end within half a lease: the check runs that often.
        let keepalive = [
            ("keepalives", "1"), ("keepalives_idle", "1"), ("keepalives_interval", "1"),
            ("keepalives_count", String(max(1, ms / 2000))), ("tcp_user_timeout", String(ms / 2)),
            ("application_name", "collector-coordinator"),
        ]
        userKeepalives = keepalive.map(\.0).filter { $0 != "application_name" && conninfo.contains($0 + "=") }
        let info = PGConnection.adding(keepalive, to: conninfo)
        executor = PGExecutor(
            conninfo: info, label: "collector.leadership",
            timeouts: PGTimeouts(connectSeconds: max(2, ms / 2000), operation: .milliseconds(Int64(ms / 2))))
    }

    /// Takes the lock if it is free: true when this process now holds it.
    public func tryAcquire() async throws(PGError) -> Bool {
        let key = self.key
        let ms = leaseMilliseconds
        let acquired: (Bool, Int?) = try await executor.run { c throws(PGError) in
            // The server's side of the same bound: it drops a dead coordinator's session (and lock).
            try c.execute(
                "SET tcp_keepalives_idle = 1; SET tcp_keepalives_interval = 1; "
                    + "SET tcp_keepalives_count = \(max(1, ms / 2000)); SET tcp_user_timeout = \(ms / 2)")
            let rows = try c.execute("SELECT pg_try_advisory_lock($1::bigint), pg_backend_pid()", [String(key)]).rows
            let got = rows.first?[0] == "t"
            return (got, rows.first?[1].flatMap { Int($0) })
        }
        if acquired.0 { holder.pid.withLock { $0 = acquired.1 } }
        return acquired.0
    }

    /// Whether the lock is still held by the session that took it (a reconnected session holds
    /// nothing, whatever it could take again); false on any error or timeout.
    public func stillHeld() async -> Bool {
        guard let pid = holder.pid.withLock({ $0 }) else { return false }
        let key = self.key
        do {
            return try await executor.run { c throws(PGError) in
                let rows = try c.execute(
                    "SELECT pg_backend_pid(), count(*) FROM pg_locks WHERE locktype = 'advisory' AND granted "
                        + "AND pid = pg_backend_pid() AND objsubid = 1 AND ((classid::bigint << 32) | objid::bigint) = $1::bigint",
                    [String(key)]
                ).rows
                return rows.first?[0].flatMap { Int($0) } == pid && (rows.first?[1].flatMap { Int($0) } ?? 0) > 0
            }
        } catch {
            return false
        }
    }

    /// Ends the session (the server releases the lock).
    public func release() { executor.disconnect() }
}
