/// How fast new shards of one exchange may go to the workers behind one egress address: a token
/// bucket holding at most `burst` assignments, refilled at `perSecond` (issue 10). Each new owner
/// subscribes and, after a failover, backfills, so the pace follows the exchange's per-IP budgets.
public struct AssignmentPace: Hashable, Sendable, CustomStringConvertible {
    public var burst: Int
    public var perSecond: Double

    /// At least one assignment at once and a positive rate (a zero rate would never place anything).
    public init(burst: Int, perSecond: Double) {
        self.burst = max(1, burst)
        self.perSecond = max(0.01, perSecond)
    }

    public var description: String { "\(burst) at once, \(perSecond)/s" }
}
