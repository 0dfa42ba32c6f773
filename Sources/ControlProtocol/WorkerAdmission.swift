public import CollectorCore

/// Which connection speaks for each worker id (pure; issue 10, DESIGN.md §3). A new incarnation
/// with an id already in use replaces the old session only if that session's socket is closed or it
/// has missed a heartbeat; otherwise it is rejected with `duplicate-id`, so two processes sharing an
/// id cannot keep displacing each other.
public struct WorkerAdmission: Sendable {
    public typealias ConnectionID = UInt64

    struct Session: Sendable {
        var connection: ConnectionID
        var incarnation: UInt64
        var lastHeard: Instant
        var isOpen: Bool
    }

    public enum Decision: Hashable, Sendable {
        case admitted
        /// The old session (closed or silent) is replaced: close `connection` if still open.
        case replaced(connection: ConnectionID, incarnation: UInt64)
        case rejected(RejectReason, String)
    }

    /// A session silent for longer than this has missed a heartbeat (1.5 intervals: one beat late,
    /// with room for scheduling jitter).
    public let missedAfter: Duration
    /// Bound on the workers known at once.
    public let maxWorkers: Int
    private var sessions: [String: Session] = [:]

    public init(heartbeatInterval: Duration, maxWorkers: Int = 10_000) {
        missedAfter = heartbeatInterval + heartbeatInterval / 2
        self.maxWorkers = maxWorkers
    }

    public var count: Int { sessions.count }

    /// An authenticated `Hello` on `connection`.
    public mutating func admit(
        workerID: String, incarnation: UInt64, connection: ConnectionID, now: Instant
    ) -> Decision {
        guard let old = sessions[workerID] else {
            guard sessions.count < maxWorkers else {
                return .rejected(.unexpected, "more than \(maxWorkers) workers: \(workerID) refused")
            }
            sessions[workerID] = Session(connection: connection, incarnation: incarnation, lastHeard: now, isOpen: true)
            return .admitted
        }
        let silent = now.nanoseconds - old.lastHeard.nanoseconds > missedAfter.nanosecondsClamped
        guard !old.isOpen || silent else {
            return .rejected(
                .duplicateID,
                "worker id \(workerID) is in use by incarnation \(old.incarnation), which is alive; "
                    + "incarnation \(incarnation) refused")
        }
        sessions[workerID] = Session(connection: connection, incarnation: incarnation, lastHeard: now, isOpen: true)
        return .replaced(connection: old.connection, incarnation: old.incarnation)
    }

    /// Traffic (a heartbeat) from `connection` for `workerID`; ignored from a replaced connection.
    public mutating func heard(workerID: String, connection: ConnectionID, now: Instant) {
        guard sessions[workerID]?.connection == connection else { return }
        sessions[workerID]?.lastHeard = now
    }

    /// `connection` closed. The id stays known (its shards wait for their lease) until `forget`.
    public mutating func closed(workerID: String, connection: ConnectionID) {
        guard sessions[workerID]?.connection == connection else { return }
        sessions[workerID]?.isOpen = false
    }

    /// The worker left for good (drained, or its lease expired and its shards moved).
    public mutating func forget(workerID: String) { sessions[workerID] = nil }

    /// The connection speaking for `workerID` now.
    public func connection(of workerID: String) -> ConnectionID? { sessions[workerID]?.connection }
}
