public import CollectorCore

/// The worker's view of its lease and of coordinator terms (pure; DESIGN.md §3). The lease is a
/// duration the coordinator grants per heartbeat; the worker counts it from its own monotonic clock
/// at the moment it *sent* that beat, minus a safety margin, so a slow network only shortens it.
/// A message with a lower term than the highest seen is from a deposed coordinator and is ignored.
public struct WorkerLease: Sendable {
    /// Subtracted from every granted lease (clock drift and scheduling slack).
    public let safetyMargin: Duration
    /// When each unacknowledged beat was sent, by sequence (bounded: the newest `maxPendingBeats`).
    private var sentAt: [(sequence: UInt64, at: Instant)] = []
    public static let maxPendingBeats = 64
    public private(set) var highestTerm: UInt64 = 0
    public private(set) var expiresAt: Instant?

    /// `highestTerm`: carried over from a previous connection (terms are never forgotten).
    public init(safetyMargin: Duration = .milliseconds(500), highestTerm: UInt64 = 0) {
        self.safetyMargin = safetyMargin
        self.highestTerm = highestTerm
    }

    /// A heartbeat with `sequence` was sent at `now`.
    public mutating func sent(sequence: UInt64, now: Instant) {
        if sentAt.count >= Self.maxPendingBeats { sentAt.removeFirst() }
        sentAt.append((sequence, now))
    }

    /// Whether a coordinator message with `term` is to be obeyed (and raises the highest term seen).
    public mutating func admits(term: UInt64) -> Bool {
        guard term >= highestTerm else { return false }
        highestTerm = term
        return true
    }

    /// The ack of a beat: the lease runs `lease` from that beat's send time, minus the margin. An ack
    /// from a lower term, or of a beat not sent (or forgotten), changes nothing; a lease never shrinks
    /// because an older beat's ack came late.
    @discardableResult
    public mutating func acknowledged(term: UInt64, sequence: UInt64, lease: Duration) -> Bool {
        guard admits(term: term), let index = sentAt.firstIndex(where: { $0.sequence == sequence }) else {
            return false
        }
        let expiry = sentAt[index].at.advanced(by: lease - safetyMargin)
        sentAt.removeFirst(index + 1)
        if expiresAt.map({ expiry > $0 }) ?? true { expiresAt = expiry }
        return true
    }

    /// Whether the lease holds at `now` (false before the first ack, and once it ran out: orphaned).
    public func holds(at now: Instant) -> Bool {
        guard let expiresAt else { return false }
        return now < expiresAt
    }
}
