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
        // Programmer error: callers with a fractional burst use `init(ratePerSecond:burst:)`, which rounds up.
        precondition(capacity >= 1 && refillPerSecond > 0, "a token bucket needs capacity >= 1 and a refill rate")
        self.capacity = capacity
        self.refillPerSecond = refillPerSecond
        self.tokens = capacity
    }

    /// `ratePerSecond` requests per second with bursts of `burst`, raised to at least one token: a
    /// bucket below one token could never admit a request, so a fractional rate such as 0.2/s (burst
    /// 0.4) admits one request and then one every 5 s. `ratePerSecond` must be positive.
    public init(ratePerSecond: Double, burst: Double) {
        self.init(capacity: max(1, burst), refillPerSecond: ratePerSecond)
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

    /// Takes one token if available; otherwise returns how long to wait before one is. A wait too long
    /// for `Int64` nanoseconds (~292 years, from a tiny refill rate) is returned as that maximum.
    public mutating func take(now: Instant) -> Duration? { take(1, now: now) }

    /// Takes `count` tokens at once if available (a request sent as several messages, each counted);
    /// otherwise takes none and returns how long until `count` are. A count above the capacity waits
    /// for a full bucket and takes it all, so a large request still goes, at the slowest allowed pace.
    public mutating func take(_ count: Int, now: Instant) -> Duration? {
        refill(now: now)
        let needed = min(Double(max(1, count)), capacity)
        if tokens >= needed {
            tokens -= needed
            return nil
        }
        let nanoseconds = ((needed - tokens) / refillPerSecond * 1e9).rounded(.up)
        // `Double(Int64.max)` is 2^63, one past the range: only a strictly smaller value converts.
        guard nanoseconds < Double(Int64.max) else { return .nanoseconds(Int64.max) }
        return .nanoseconds(Int64(nanoseconds))
    }
}
