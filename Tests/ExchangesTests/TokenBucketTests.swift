import CollectorCore
import MarketData
import Testing

@Suite struct TokenBucketTests {
    let t0 = Instant(nanoseconds: 1_000_000_000)

    @Test func fractionalRateAdmitsOneRequestThenOneEveryInterval() {
        // API_RATE_LIMIT=0.2 with a burst of twice the rate: 0.4 tokens, raised to the one a request needs.
        var bucket = TokenBucket(ratePerSecond: 0.2, burst: 0.4)
        #expect(bucket.capacity == 1)
        #expect(bucket.take(now: t0) == nil)
        #expect(bucket.take(now: t0) == .seconds(5))
        #expect(bucket.take(now: t0.advanced(by: .seconds(4))) == .seconds(1))
        #expect(bucket.take(now: t0.advanced(by: .seconds(5))) == nil)
        #expect(bucket.take(now: t0.advanced(by: .seconds(5))) == .seconds(5))
    }

    @Test func verySlowRateStillAdmitsTheFirstRequest() {
        var bucket = TokenBucket(ratePerSecond: 0.001, burst: 0.002)
        #expect(bucket.take(now: t0) == nil)
        #expect(bucket.take(now: t0) == .seconds(1000))
    }

    @Test func waitBeyondTheRepresentableRangeIsClampedInsteadOfTrapping() {
        // 1e-12 tokens/s: the next token is 10^12 s away, 10^21 ns, more than Int64 holds.
        var bucket = TokenBucket(ratePerSecond: 1e-12, burst: 0)
        #expect(bucket.take(now: t0) == nil)
        #expect(bucket.take(now: t0) == .nanoseconds(Int64.max))
        var denormal = TokenBucket(capacity: 1, refillPerSecond: .leastNonzeroMagnitude)
        #expect(denormal.take(now: t0) == nil)
        #expect(denormal.take(now: t0) == .nanoseconds(Int64.max))
    }

    @Test func wholeBurstIsKept() {
        var bucket = TokenBucket(ratePerSecond: 50, burst: 100)
        #expect(bucket.capacity == 100)
        for _ in 0..<100 { #expect(bucket.take(now: t0) == nil) }
        #expect(bucket.take(now: t0) == .milliseconds(20))
    }
}
