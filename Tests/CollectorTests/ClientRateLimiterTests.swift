import Testing

@testable import Gateway

/// The per-client limiter of the HTTP API (no database: pure bookkeeping over a monotonic clock).
@Suite struct ClientRateLimiterTests {
    @Test func fractionalRateAdmitsOneRequestPerClientThenAsksToWait() throws {
        // API_RATE_LIMIT=0.2 used to kill the process on the first request (a bucket of 0.4 tokens).
        let limiter = ClientRateLimiter(perSecond: 0.2, burst: 0.4)
        #expect(limiter.take("192.0.2.1") == nil)
        let wait = try #require(limiter.take("192.0.2.1"))
        #expect(wait > .seconds(4) && wait <= .seconds(5))
        #expect(limiter.take("192.0.2.2") == nil)
    }

    @Test func tinyRateAsksForALongButRepresentableWait() throws {
        let limiter = ClientRateLimiter(perSecond: 0.001, burst: 0.002)
        #expect(limiter.take("192.0.2.1") == nil)
        let wait = try #require(limiter.take("192.0.2.1"))
        #expect(wait > .seconds(999) && wait <= .seconds(1000))
    }
}
