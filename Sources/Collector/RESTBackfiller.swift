import CollectorCore
import Exchanges
import Foundation
import HTTP1Protocol
import Locking
import MarketData
public import Runtime
import Synchronization
public import TLS

/// A base URL for REST calls: `https://host[:port]` or `http://host[:port]`.
public struct RESTBaseURL: Sendable {
    public var endpoint: Endpoint
    public var hostHeader: String

    /// Parses the URL; TLS uses `tls` (or the system trust store).
    public init?(_ text: String, tls: TLSContext?) {
        let secure: Bool
        var rest: Substring
        if text.hasPrefix("https://") {
            secure = true
            rest = text.dropFirst(8)
        } else if text.hasPrefix("http://") {
            secure = false
            rest = text.dropFirst(7)
        } else {
            return nil
        }
        if let slash = rest.firstIndex(of: "/") { rest = rest[..<slash] }
        var host = String(rest)
        var port = secure ? 443 : 80
        if let colon = rest.lastIndex(of: ":"), !rest.hasPrefix("[") {
            guard let p = Int(rest[rest.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            host = String(rest[..<colon])
            port = p
        }
        guard !host.isEmpty else { return nil }
        var context = tls
        if secure && context == nil {
            // try?: a missing system CA store surfaces as a verification error on first use.
            context = try? TLSContext(configuration: .client())
        }
        endpoint = Endpoint(host: host, port: port, tls: secure ? context : nil)
        hostHeader = String(rest)
    }
}

/// REST budgets per endpoint class, shared by every backfill (per IP, DESIGN.md §4).
final class RESTBudgets: Sendable {
    private let buckets: Locked<[String: TokenBucket]>
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant

    init(_ buckets: [String: TokenBucket]) {
        self.buckets = Locked(buckets)
        self.origin = clock.now
    }

    /// Waits until `budget` has a token.
    func acquire(_ budget: String) async {
        while true {
            let now = Instant(nanoseconds: (clock.now - origin).nanosecondsClamped)
            let wait = buckets.withLock { b -> Duration? in
                guard var bucket = b[budget] else { return nil }
                let wait = bucket.take(now: now)
                b[budget] = bucket
                return wait
            }
            guard let wait else { return }
            try? await Task.sleep(for: wait)  // rate limit: waiting is the point
        }
    }
}

/// Fetches missing candles from an exchange's REST API through its adapter's requests and parser,
/// paginating within its budgets.
struct RESTBackfiller: Sendable {
    let adapter: any ExchangeAdapter
    let base: RESTBaseURL
    let budgets: RESTBudgets
    let loop: EventLoop

    struct Outcome: Sendable {
        var candles: [Candle]
        var error: String?
    }

    struct TradeOutcome: Sendable {
        var trades: [Trade]
        var error: String?
    }

    /// Fills fetched for one hole at most; the rest is recorded as a gap (memory stays bounded,
    /// ~20 MB, and at OKX's 20 pages / 2 s this is 100 s of requests).
    static let maxTradesPerHole = 100_000

    /// Times a first page that stops short of the hole's top is asked again (250 ms apart).
    static let staleRetries = 4

    /// One page: within its budget, retried with capped backoff (a retryable REST error up to 8
    /// times, anything else 3); the error text when it gives up.
    private func page<Row: Sendable>(
        _ request: RESTRequest, stream: StreamID,
        parse: (UnsafeRawBufferPointer, RESTRequest, StreamID, Int64) throws(RESTError) -> [Row]
    ) async -> Result<[Row], PageFailure> {
        var backoff = Backoff(initial: .milliseconds(250), maximum: .seconds(5))
        var rng = SeededRNG(seed: UInt64(truncatingIfNeeded: WallClock.microseconds()))
        var failures = 0
        let http = HTTPRequest(
            head: HTTPRequestHead(method: "GET", target: request.target, headers: ["Host": base.hostHeader]))
        while true {
            await budgets.acquire(request.budget)
            do {
                let response = try await HTTPClient.send(http, to: base.endpoint, loop: loop, timeout: .seconds(15))
                return .success(
                    try response.body.withUnsafeBytes { raw throws(RESTError) in
                        try parse(raw, request, stream, WallClock.microseconds())
                    })
            } catch {
                failures += 1
                let limit = (error as? RESTError)?.isRetryable == true ? 8 : 3
                if failures > limit { return .failure(PageFailure(message: "\(error)")) }
                try? await Task.sleep(for: backoff.nextDelay(using: &rng))  // retry schedule; cancellation: shutdown
            }
        }
    }

    struct PageFailure: Error {
        var message: String
    }

    /// Fills with trade ids strictly between `after` and `before`, paging back from `before`.
    func fetchTrades(_ stream: StreamID, after: Int64, before: Int64) async -> TradeOutcome {
        var upper = before
        var staleRetries = 0
        var collected: [Trade] = []
        while upper > after + 1 {
            guard collected.count < Self.maxTradesPerHole else {
                return TradeOutcome(trades: collected, error: "more than \(Self.maxTradesPerHole) fills missing")
            }
            guard let request = adapter.tradeBackfillPage(for: stream, newerThanID: after, olderThanID: upper) else {
                return TradeOutcome(trades: collected, error: "no REST source for \(stream.feed) at \(stream.exchange)")
            }
            let page: [Trade]
            switch await self.page(request, stream: stream, parse: adapter.parseTradeBackfill) {
            case .success(let rows): page = rows
            case .failure(let failure): return TradeOutcome(trades: collected, error: failure.message)
            }
            let ids = page.compactMap { Int64($0.tradeID) }
            // REST may lag the stream (OKX serves cached data, PROTOCOLS.md §1.9): a first page that
            // stops short of the hole's top is asked again shortly before anything is taken as lost.
            if upper == before, page.count < request.pageLimit, (ids.max() ?? after) < before - 1,
                staleRetries < Self.staleRetries
            {
                staleRetries += 1
                try? await Task.sleep(for: .milliseconds(250))  // REST catching up; cancellation: shutdown
                continue
            }
            collected += page.filter { Int64($0.tradeID).map { $0 > after && $0 < before } ?? false }
            guard page.count >= request.pageLimit, let oldest = ids.min(), oldest < upper else { break }
            upper = oldest
        }
        return TradeOutcome(trades: collected, error: nil)
    }

    /// A whole book from REST (to seed or resynchronise a book stream); nil with the error text when
    /// it cannot be had, nil without one when the reply carries no sequence to seed from.
    func fetchBookSnapshot(_ stream: StreamID) async -> (BookMessage?, String?) {
        guard let request = adapter.bookSnapshotRequest(for: stream) else {
            return (nil, "no REST book snapshot for \(stream.feed) at \(stream.exchange)")
        }
        let parse = {
            (raw: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, at: Int64) throws(RESTError) in
            try adapter.parseBookSnapshot(raw, request: request, stream: stream, receivedAt: at).map { [$0] } ?? []
        }
        switch await page(request, stream: stream, parse: parse) {
        case .success(let rows): return (rows.first, rows.isEmpty ? "the REST book has no seqId to seed from" : nil)
        case .failure(let failure): return (nil, failure.message)
        }
    }

    /// Candles with open time strictly between `after` and `before` (µs).
    func fetch(_ stream: StreamID, after: Int64, before: Int64) async -> Outcome {
        var upper = before
        var collected: [Candle] = []
        while upper > after {
            guard
                let request = adapter.backfillPage(
                    for: stream, newerThan: after, olderThan: upper, now: WallClock.microseconds())
            else { return Outcome(candles: collected, error: "no REST source for \(stream.feed)") }
            let page: [Candle]
            let parse = {
                (raw: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, at: Int64) throws(RESTError) in
                try adapter.parseBackfill(raw, request: request, stream: stream, receivedAt: at).candles
            }
            switch await self.page(request, stream: stream, parse: parse) {
            case .success(let rows): page = rows
            case .failure(let failure): return Outcome(candles: collected, error: failure.message)
            }
            collected += page.filter { $0.openTime > after && $0.openTime < before }
            guard page.count >= request.pageLimit, let oldest = page.map(\.openTime).min(), oldest < upper else {
                break
            }
            upper = oldest
        }
        return Outcome(candles: collected, error: nil)
    }
}
