public import MarketData
import WireCore

/// A Bybit market category: each has its own public WebSocket path and REST `category` (PROTOCOLS.md §5.1).
public enum BybitCategory: String, Sendable, Hashable, CaseIterable {
    case spot, linear, inverse
}

/// Bybit v5 (PROTOCOLS.md §5): one public WebSocket URL per category; topics such as
/// `publicTrade.BTCUSDT` subscribed with `{"op":"subscribe","args":[…]}`.
///
/// A skeleton that proves the `ExchangeAdapter` protocol fits Bybit: names, limits, URLs, subscribe
/// messages and REST requests are real; frame and REST parsing are not implemented yet.
///
/// **Categories (provisional).** `StreamID` has no category yet, so the symbol carries it: `linear:BTCUSDT`
/// and `inverse:BTCUSD` name those categories, an unprefixed `BTCUSDT` is spot. This holds until
/// `StreamID` carries a category.
public struct BybitAdapter: ExchangeAdapter {
    /// Endpoints, overridable for the simulator, testnet and regional hosts (§5.1).
    public struct Endpoints: Sendable, Equatable {
        /// The public spot stream.
        public var spotURL: String
        /// The public linear (USDT/USDC perpetual and futures) stream.
        public var linearURL: String
        /// The public inverse stream.
        public var inverseURL: String
        /// The REST base for klines (§5.8).
        public var restURL: String

        /// Mainnet public streams and REST (§5.1, §5.8).
        public static let production = Endpoints(
            spotURL: "wss://stream.bybit.com/v5/public/spot", linearURL: "wss://stream.bybit.com/v5/public/linear",
            inverseURL: "wss://stream.bybit.com/v5/public/inverse", restURL: "https://api.bybit.com")

        public init(spotURL: String, linearURL: String, inverseURL: String, restURL: String) {
            self.spotURL = spotURL
            self.linearURL = linearURL
            self.inverseURL = inverseURL
            self.restURL = restURL
        }

        /// The public WebSocket URL of `category`.
        public func webSocketURL(for category: BybitCategory) -> String {
            switch category {
            case .spot: spotURL
            case .linear: linearURL
            case .inverse: inverseURL
            }
        }
    }

    public let name = ExchangeName.bybit
    public let endpoints: Endpoints

    /// Bybit limits (PROTOCOLS.md §5.3):
    ///
    /// | limit | documented | ours |
    /// |---|---|---|
    /// | streams per connection | `args` ≤ 21,000 characters per public connection [DOC] | 200: ~36 characters a topic (with quotes and comma) would allow ~580 |
    /// | args per subscribe request | spot 10, futures unlimited [DOC] | 10 for every category (one value per adapter) |
    /// | subscribe requests | UNCONFIRMED | burst 2, 2/s (conservative) |
    /// | connections per WS domain | 500 per 5 min [DOC] | burst 10, 1.5/s: at most 460 in any 5 minutes |
    /// | message size | — | 1 MiB: the largest real messages (a `publicTrade` push of up to 1024 trades, §5.4) are ~200 KiB |
    public let limits = ExchangeLimits(
        maxStreamsPerConnection: 200, maxStreamsPerSubscribeMessage: 10,
        subscribeMessages: TokenBucket(capacity: 2, refillPerSecond: 2),
        connections: TokenBucket(capacity: 10, refillPerSecond: 1.5), maxMessageBytes: 1 << 20)

    /// Text `{"op":"ping"}` after 20 s of silence (§5.3 recommends every 20 s; data alone also keeps
    /// the connection). The real pong is a JSON object (`"ret_msg":"pong"` on spot/linear/inverse) that
    /// the parser reports as `.pong`; `reply` only names it.
    public let keepalive = KeepalivePolicy.textPing("{\"op\":\"ping\"}", reply: "pong", idle: .seconds(20))

    /// Bybit answers each request: `{"success":true|false,"op":"subscribe","req_id":…}` (§5.2).
    public let acknowledgement = AcknowledgementPolicy.explicit

    public var restBudgets: [String: TokenBucket] { Self.restBudgets }

    /// REST budgets: 600 requests per 5 s per IP, and exceeding it stops the IP for 10 minutes (§5.8);
    /// burst 50, 50/s admits at most 300 in any 5 s.
    public static let restBudgets: [String: TokenBucket] = ["kline": TokenBucket(capacity: 50, refillPerSecond: 50)]

    /// Rows a full kline page holds (§5.8: `limit` 1..1000).
    public static let klinePageLimit = 1000

    public init(endpoints: Endpoints = .production) { self.endpoints = endpoints }

    /// The category of `stream` from its symbol prefix (`linear:`, `inverse:`; none is spot).
    /// Provisional until `StreamID` carries a category.
    public static func category(of stream: StreamID) -> BybitCategory {
        guard let colon = stream.symbol.firstIndex(of: ":") else { return .spot }
        return BybitCategory(rawValue: String(stream.symbol[..<colon])) ?? .spot
    }

    /// The Bybit symbol of `stream` without its category prefix (`linear:BTCUSDT` → `BTCUSDT`).
    public static func instrument(of stream: StreamID) -> String {
        guard let colon = stream.symbol.firstIndex(of: ":") else { return stream.symbol }
        return String(stream.symbol[stream.symbol.index(after: colon)...])
    }

    /// Bybit kline intervals (§5.5) by timeframe key; Bybit bars are aligned to UTC, and it has no `1s`.
    public static let klineIntervals: [String: String] = [
        "1m": "1", "3m": "3", "5m": "5", "15m": "15", "30m": "30", "1H": "60", "2H": "120", "4H": "240",
        "6Hutc": "360", "12Hutc": "720", "1Dutc": "D", "1Wutc": "W", "1Mutc": "M",
    ]

    public func validate(_ stream: StreamID) -> String? {
        guard stream.exchange == .bybit else { return "not a Bybit stream" }
        if case .candles(let tf) = stream.feed, Self.klineIntervals[tf.key] == nil {
            return "Bybit has no kline interval for \(tf.key)"
        }
        if let colon = stream.symbol.firstIndex(of: ":") {
            let prefix = String(stream.symbol[..<colon])
            guard prefix == BybitCategory.linear.rawValue || prefix == BybitCategory.inverse.rawValue else {
                return "'\(prefix)' is not a Bybit category prefix (linear: or inverse:; none for spot)"
            }
        }
        guard Self.isValidSymbol(Self.instrument(of: stream)) else {
            return "'\(stream.symbol)' is not a Bybit symbol (upper case, e.g. BTCUSDT or linear:BTCUSDT)"
        }
        return nil
    }

    /// Symbols are upper case without a separator (§5.9), e.g. `BTCUSDT`.
    static func isValidSymbol(_ symbol: String) -> Bool {
        !symbol.isEmpty && symbol.utf8.count <= 30
            && symbol.utf8.allSatisfy { ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) }
    }

    /// The category's URL: spot, linear and inverse streams never share a connection.
    public func webSocketURL(for stream: StreamID) -> String {
        endpoints.webSocketURL(for: Self.category(of: stream))
    }

    /// The topic for `stream` (§5.4–5.7): `publicTrade.BTCUSDT`, `kline.1.BTCUSDT`, `orderbook.50.BTCUSDT`
    /// (snapshot then deltas) or `tickers.BTCUSDT`.
    public static func topic(for stream: StreamID) -> String {
        let symbol = instrument(of: stream)
        switch stream.feed {
        case .candles(let tf):
            // validate() refused timeframes without an interval; the fallback keeps a bad stream visible.
            return "kline.\(klineIntervals[tf.key] ?? tf.key).\(symbol)"
        case .trades: return "publicTrade.\(symbol)"
        case .book: return "orderbook.50.\(symbol)"
        case .ticker: return "tickers.\(symbol)"
        }
    }

    public func subscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        operationMessages("subscribe", streams, requestID: requestID)
    }

    public func unsubscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        operationMessages("unsubscribe", streams, requestID: requestID)
    }

    /// `{"op":"subscribe","args":["publicTrade.BTCUSDT",…],"req_id":"…"}` (§5.2), split to the per-message
    /// request (the session keeps it within the per-message limit); its ack carries the `req_id`.
    private func operationMessages(_ op: String, _ streams: [StreamID], requestID: String) -> [OutgoingFrame] {
        let args = streams.map { JSONText.quoted(Self.topic(for: $0)) }
        return [
            .text(
                "{\"op\":\"\(op)\",\"args\":[\(args.joined(separator: ","))],\"req_id\":\(JSONText.quoted(requestID))}")
        ]
    }

    /// Not implemented yet: frames are JSON text; pongs, acks and pushes differ slightly per category.
    public func parse(
        _ frame: UnsafeRawBufferPointer, isText: Bool, receivedAt: Int64, state: inout NoConnectionState,
        into out: inout [ExchangeMessage]
    ) throws(ExchangeParseError) {
        throw ExchangeParseError("Bybit market-data parsing is not implemented yet")
    }

    /// `GET /v5/market/kline` (§5.8), always with `category` (it defaults to linear), newest first. Only
    /// `end` is sent: the backfiller pages backwards from `olderThan`, and which end of a longer
    /// `start`…`end` range Bybit serves is not documented. Nil for streams other than candles.
    public func backfillPage(for stream: StreamID, newerThan: Int64, olderThan: Int64, now: Int64) -> RESTRequest? {
        guard case .candles(let tf) = stream.feed, let interval = Self.klineIntervals[tf.key] else { return nil }
        // `end` is inclusive (ms): one ms before `olderThan` keeps the bar opening at `olderThan` out.
        let target =
            "/v5/market/kline?category=\(Self.category(of: stream).rawValue)&symbol=\(Self.instrument(of: stream))"
            + "&interval=\(interval)&end=\(olderThan / 1000 - 1)&limit=\(Self.klinePageLimit)"
        return RESTRequest(target: target, budget: "kline", pageLimit: Self.klinePageLimit)
    }

    public func parseBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BackfillPage {
        throw RESTError(code: nil, message: "Bybit REST parsing is not implemented yet", isRetryable: false)
    }
}
