public import MarketData
import WireCore

/// Binance Spot (PROTOCOLS.md §2): every feed on one stream host, streams named `<symbol>@<channel>`
/// in lower case and subscribed with `SUBSCRIBE` after connecting.
///
/// A skeleton that proves the `ExchangeAdapter` protocol fits Binance: names, limits, URLs, subscribe
/// messages and REST requests are real; frame and REST parsing are not implemented yet.
public struct BinanceAdapter: ExchangeAdapter {
    /// Endpoints, overridable for the simulator.
    public struct Endpoints: Sendable, Equatable {
        /// The combined-stream path: every payload arrives wrapped as `{"stream":…,"data":…}` (§2.1), which
        /// names the stream even for partial-depth messages that carry no symbol (§2.6). Connecting to it
        /// bare and sending `SUBSCRIBE` afterwards is how clients use it (§2.1 documents this for `/ws`).
        public var streamURL: String
        /// The REST base for klines (§2.8).
        public var restURL: String

        /// Port 443 rather than 9443 (§2.1 allows both; 443 passes more firewalls).
        public static let production = Endpoints(
            streamURL: "wss://stream.binance.com:443/stream", restURL: "https://api.binance.com")

        public init(streamURL: String, restURL: String) {
            self.streamURL = streamURL
            self.restURL = restURL
        }
    }

    public let name = ExchangeName.binance
    public let endpoints: Endpoints

    /// Binance limits (PROTOCOLS.md §2.3):
    ///
    /// | limit | documented | ours |
    /// |---|---|---|
    /// | streams per connection | 1024 [DOC] | 1024 |
    /// | streams per `SUBSCRIBE` | UNCONFIRMED | 100 (≈ 2.5 KB of names; conservative) |
    /// | incoming messages per connection | 5/s, pongs and JSON control messages included [DOC] | burst 2, 2/s: at most 4 in any second, leaving room for pongs and unsubscribes (which take no token) |
    /// | connection attempts per IP | 300 per 5 min [DOC] | burst 10, 0.9/s: at most 280 in any 5 minutes |
    /// | message size | — | 1 MiB: the largest real messages (a `LIST_SUBSCRIPTIONS` reply naming 1024 streams, a busy `depth@100ms` update) are tens of KiB |
    public let limits = ExchangeLimits(
        maxStreamsPerConnection: 1024, maxStreamsPerSubscribeMessage: 100,
        subscribeMessages: TokenBucket(capacity: 2, refillPerSecond: 2),
        connections: TokenBucket(capacity: 10, refillPerSecond: 0.9), maxMessageBytes: 1 << 20)

    /// The server sends a WebSocket ping every 20 s and drops us without a pong within a minute
    /// (§2.3); the runtime answers pings, so nothing is sent on our side.
    public let keepalive = KeepalivePolicy.serverDriven

    /// Binance answers every request: `{"result":null,"id":N}` or `{"error":{…},"id":N}` (§2.2).
    public let acknowledgement = AcknowledgementPolicy.explicit

    public var restBudgets: [String: TokenBucket] { Self.restBudgets }

    /// REST budgets (§2.8): the IP may spend 6,000 weight per minute and a klines call weighs 2, so at
    /// most 3,000 calls a minute. Burst 20, 20/s admits at most 1,220 calls (2,440 weight) a minute,
    /// leaving the rest of the IP's weight to depth snapshots and other processes on the host.
    public static let restBudgets: [String: TokenBucket] = ["klines": TokenBucket(capacity: 20, refillPerSecond: 20)]

    /// Rows a full `/api/v3/klines` page holds (§2.8: `limit` max 1000).
    public static let klinePageLimit = 1000

    public init(endpoints: Endpoints = .production) { self.endpoints = endpoints }

    /// A Binance kline interval (§2.5) and whether bars are aligned to UTC+8 (`@+08:00` on the stream,
    /// `timeZone=8` on REST) rather than UTC.
    public struct KlineInterval: Sendable, Equatable {
        /// The interval as Binance spells it (`1m`, `1d`, `1M`).
        public var name: String
        /// Whether bars open on UTC+8 boundaries.
        public var isUTCPlus8: Bool
    }

    /// Intervals whose bars start at the same instants in UTC and in UTC+8 (whole hours dividing 8).
    private static let zoneFreeIntervals: [String: String] = [
        "1s": "1s", "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1H": "1h", "2H": "2h",
        "4H": "4h",
    ]

    /// Zoned intervals by the key of the UTC+8 timeframe (`1D`); the `utc`-suffixed key is the UTC one.
    /// `8h` has no timeframe key; `2D` and `5D` have no Binance interval.
    private static let zonedIntervals: [String: String] = [
        "6H": "6h", "12H": "12h", "1D": "1d", "3D": "3d", "1W": "1w", "1M": "1M",
    ]

    /// The kline interval serving `timeframe`, or nil when Binance has none.
    public static func klineInterval(for timeframe: Timeframe) -> KlineInterval? {
        let key = timeframe.key
        if let name = zoneFreeIntervals[key] { return KlineInterval(name: name, isUTCPlus8: false) }
        if let name = zonedIntervals[key] { return KlineInterval(name: name, isUTCPlus8: true) }
        if key.hasSuffix("utc"), let name = zonedIntervals[String(key.dropLast(3))] {
            return KlineInterval(name: name, isUTCPlus8: false)
        }
        return nil
    }

    public func validate(_ stream: StreamID) -> String? {
        guard stream.exchange == .binance else { return "not a Binance stream" }
        if case .candles(let tf) = stream.feed, Self.klineInterval(for: tf) == nil {
            return "Binance has no kline interval for \(tf.key)"
        }
        guard Self.isValidSymbol(stream.symbol) else {
            return "'\(stream.symbol)' is not a Binance symbol in stream spelling (lower case, e.g. btcusdt)"
        }
        return nil
    }

    /// Stream names are lower case (§2.1: an upper-case name reportedly subscribes and delivers nothing).
    static func isValidSymbol(_ symbol: String) -> Bool {
        !symbol.isEmpty && symbol.utf8.count <= 20
            && symbol.utf8.allSatisfy { ($0 >= 97 && $0 <= 122) || ($0 >= 48 && $0 <= 57) }
    }

    public func webSocketURL(for stream: StreamID) -> String { endpoints.streamURL }

    /// The stream name for `stream` (§2.4–2.7): `btcusdt@trade`, `btcusdt@kline_1m`,
    /// `btcusdt@kline_1d@+08:00`, `btcusdt@depth@100ms` (the diff stream) or `btcusdt@bookTicker`.
    public static func streamName(for stream: StreamID) -> String {
        switch stream.feed {
        case .candles(let tf):
            // validate() refused timeframes without an interval; the fallback keeps a bad stream visible.
            guard let interval = klineInterval(for: tf) else { return "\(stream.symbol)@kline_\(tf.key)" }
            return "\(stream.symbol)@kline_\(interval.name)" + (interval.isUTCPlus8 ? "@+08:00" : "")
        case .trades: return "\(stream.symbol)@trade"
        case .book: return "\(stream.symbol)@depth@100ms"
        case .ticker: return "\(stream.symbol)@bookTicker"
        }
    }

    public func subscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        methodMessages("SUBSCRIBE", streams, requestID: requestID)
    }

    public func unsubscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        methodMessages("UNSUBSCRIBE", streams, requestID: requestID)
    }

    /// `{"method":"SUBSCRIBE","params":["btcusdt@trade",…],"id":"c7"}` (§2.2: an id may be an
    /// alphanumeric string of up to 36 characters; the session's ids are), one per request (the
    /// session keeps it within the per-message limit); its answer (`{"result":null,"id":"c7"}`, which
    /// names no stream: `.subscribedRequest`) maps back to the request.
    private func methodMessages(_ method: String, _ streams: [StreamID], requestID: String) -> [OutgoingFrame] {
        let params = streams.map { JSONText.quoted(Self.streamName(for: $0)) }
        return [
            .text(
                "{\"method\":\"\(method)\",\"params\":[\(params.joined(separator: ","))],\"id\":\(JSONText.quoted(requestID))}"
            )
        ]
    }

    /// Not implemented yet: frames are JSON text, wrapped as `{"stream":…,"data":…}` on `/stream`.
    public func parse(
        _ frame: UnsafeRawBufferPointer, isText: Bool, receivedAt: Int64, state: inout NoConnectionState,
        into out: inout [ExchangeMessage]
    ) throws(ExchangeParseError) {
        throw ExchangeParseError("Binance market-data parsing is not implemented yet")
    }

    /// `GET /api/v3/klines` (§2.8), the newest bars up to `olderThan`: only `endTime` is sent, because with
    /// `startTime` Binance returns the *oldest* bars of the range first, while the backfiller pages backwards
    /// from `olderThan` (and drops bars not newer than `newerThan`). Nil for streams other than candles.
    public func backfillPage(for stream: StreamID, newerThan: Int64, olderThan: Int64, now: Int64) -> RESTRequest? {
        guard case .candles(let tf) = stream.feed, let interval = Self.klineInterval(for: tf) else { return nil }
        // endTime is inclusive (ms): one ms before `olderThan` keeps the bar opening at `olderThan` out.
        var target =
            "/api/v3/klines?symbol=\(stream.symbol.uppercased())&interval=\(interval.name)"
            + "&endTime=\(olderThan / 1000 - 1)&limit=\(Self.klinePageLimit)"
        if interval.isUTCPlus8 { target += "&timeZone=8" }
        return RESTRequest(target: target, budget: "klines", pageLimit: Self.klinePageLimit)
    }

    public func parseBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BackfillPage {
        throw RESTError(code: nil, message: "Binance REST parsing is not implemented yet", isRetryable: false)
    }
}
