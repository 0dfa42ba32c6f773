public import CollectorCore

/// A token bucket for per-IP exchange budgets (connections, subscribe messages, REST calls).
///
/// Pure: the caller passes the current instant. `capacity` tokens at most; `refillPerSecond` added
/// continuously.
public struct TokenBucket: Sendable, Equatable {
    public let capacity: Double
    public let refillPerSecond: Double
    private var tokens: Double
    private var updatedAt: Instant?

    /// A full bucket.
    public init(capacity: Double, refillPerSecond: Double) {
        precondition(capacity >= 1 && refillPerSecond > 0, "a token bucket needs capacity >= 1 and a refill rate")
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
        self.tokens = capacity
    }

    /// `count` requests per `seconds`, e.g. OKX's 40 requests / 2 s.
    public init(requests count: Int, per seconds: Double) {
        self.init(capacity: Double(count), refillPerSecond: Double(count) / seconds)
    }

    private mutating func refill(now: Instant) {
        if let updatedAt {
            let elapsed = max(0, now.duration(since: updatedAt).secondsDouble)
            tokens = min(capacity, tokens + elapsed * refillPerSecond)
        }
        updatedAt = now
    }

    /// Takes one token if available; otherwise returns how long to wait before one is.
    public mutating func take(now: Instant) -> Duration? {
        refill(now: now)
        if tokens >= 1 {
            tokens -= 1
            return nil
        }
        let seconds = (1 - tokens) / refillPerSecond
        return .nanoseconds(Int64((seconds * 1e9).rounded(.up)))
    }
}
