/// Capped exponential backoff with full jitter, shared by every reconnect and retry loop.
///
/// | attempt | base delay (initial 0.5 s, ×2, cap 30 s) | actual delay        |
/// |---------|-------------------------------------------|---------------------|
/// | 1       | 0.5 s                                     | uniform in [½, 1] × base |
/// | 2       | 1 s                                       | uniform in [½, 1] × base |
/// | 3       | 2 s                                       | …                   |
/// | n ≥ 7   | 30 s (cap)                                | uniform in [15, 30] s |
///
/// "Equal jitter" (half fixed, half random) keeps a floor under the delay, so a flapping peer is
/// never hammered, while spreading reconnects of many clients. The RNG is injected (STYLE.md §4).
public struct Backoff: Sendable, Equatable {
    /// The first delay before jitter.
    public var initial: Duration
    /// The largest delay before jitter.
    public var maximum: Duration
    /// The growth factor per attempt.
    public var multiplier: Double
    /// How many attempts failed in a row (0 after a success).
    public private(set) var attempts: Int = 0

    /// Creates a policy; `initial` must be positive and no larger than `maximum`.
    public init(initial: Duration = .milliseconds(500), maximum: Duration = .seconds(30), multiplier: Double = 2) {
        precondition(initial > .zero && initial <= maximum, "Backoff needs 0 < initial <= maximum")
        precondition(multiplier >= 1, "Backoff multiplier must be at least 1")
        self.initial = initial
        self.maximum = maximum
        self.multiplier = multiplier
    }

    /// Records a failure and returns how long to wait before the next attempt.
    public mutating func nextDelay(using rng: inout some RandomNumberGenerator) -> Duration {
        attempts += 1
        let base = baseDelay(forAttempt: attempts)
        let baseNanos = Double(base.nanosecondsClamped)
        let jittered = baseNanos / 2 + Double.random(in: 0...(baseNanos / 2), using: &rng)
        return .nanoseconds(Int64(jittered))
    }

    /// The delay before jitter for the `attempt`-th failure (1-based).
    public func baseDelay(forAttempt attempt: Int) -> Duration {
        let initialNanos = Double(initial.nanosecondsClamped)
        let maxNanos = Double(maximum.nanosecondsClamped)
        var value = initialNanos
        var step = 1
        while step < attempt && value < maxNanos {
            value *= multiplier
            step += 1
        }
        return .nanoseconds(Int64(min(value, maxNanos)))
    }

    /// Forgets past failures (call after a success).
    public mutating func reset() { attempts = 0 }
}
