public import MarketData
import WireCore

/// Upbit (PROTOCOLS.md §4): one quotation host; a request is a JSON array of a ticket, type objects
/// and a format; there is no acknowledgement and no unsubscribe, and data arrives in binary frames.
///
/// A skeleton that proves the `ExchangeAdapter` protocol fits Upbit: names, limits, URLs, subscribe
/// messages and REST requests are real; frame and REST parsing are not implemented yet.
public struct UpbitAdapter: ExchangeAdapter {
    /// Endpoints, overridable for the simulator (and the regional `sg`/`id`/`th` hosts, §4.1).
    public struct Endpoints: Sendable, Equatable {
        /// The quotation WebSocket for every type.
        public var webSocketURL: String
        /// The REST base for candles (§4.9).
        public var restURL: String

        /// The public quotation endpoint (§4.1).
        public static let production = Endpoints(
            webSocketURL: "wss://api.upbit.com/websocket/v1", restURL: "https://api.upbit.com")

        public init(webSocketURL: String, restURL: String) {
            self.webSocketURL = webSocketURL
            self.restURL = restURL
        }
    }

    public let name = ExchangeName.upbit
    public let endpoints: Endpoints

    /// Upbit limits (PROTOCOLS.md §4.4):
    ///
    /// | limit | documented | ours |
    /// |---|---|---|
    /// | streams per connection | UNCONFIRMED | 100 (conservative) |
    /// | codes per request | UNCONFIRMED | 100, so one request covers a connection (whether a later request replaces the earlier set is UNCONFIRMED, §4.2) |
    /// | data requests per connection | 5/s and 100/min [DOC] | burst 3, 1.5/s: at most 4.5 in any second and 93 in any minute |
    /// | connections per IP | 5/s [DOC] | burst 2, 2/s: at most 4 in any second |
    /// | message size | — | 1 MiB: the largest real message, a 30-level `orderbook`, is a few KiB |
    ///
    /// Connections must not send an `Origin` header, or both limits drop to 1 per 10 s (§4.4).
    public let limits = ExchangeLimits(
        maxStreamsPerConnection: 100, maxStreamsPerSubscribeMessage: 100,
        subscribeMessages: TokenBucket(capacity: 3, refillPerSecond: 1.5),
        connections: TokenBucket(capacity: 2, refillPerSecond: 2), maxMessageBytes: 1 << 20)

    /// Text `PING` after 20 s of silence; Upbit answers `{"status":"UP"}` (§4.3). Upbit itself idles out
    /// after ~120 s, but quiet candle streams (pushed only on trades) must not reach the session's
    /// 30 s `staleAfter` either.
    public let keepalive = KeepalivePolicy.textPing("PING", reply: "{\"status\":\"UP\"}", idle: .seconds(20))

    /// No acknowledgement (§4.2): a stream is live at its first message. A snapshot comes first on
    /// subscribe (for candles, the previous bucket when the current one has no trades, §4.6).
    public let acknowledgement = AcknowledgementPolicy.firstMessage(within: .seconds(10))

    /// A request carries the connection's whole set (a later one replaces it; the replacement itself is
    /// UNCONFIRMED in §4.2, and re-sending the whole set is right either way).
    public let subscriptionModel = SubscriptionModel.replaceAll

    public var restBudgets: [String: TokenBucket] { Self.restBudgets }

    /// REST budgets: the candle group allows 10 requests/s per IP (§4.4, §4.9); burst 4, 5/s stays below.
    public static let restBudgets: [String: TokenBucket] = ["candles": TokenBucket(capacity: 4, refillPerSecond: 5)]

    /// Rows a full candles page holds (§4.9: `count` max 200).
    public static let candlePageLimit = 200

    /// Seconds candles are served for the last three months only (§4.9).
    public static let secondsCandleRetention: Int64 = 90 * 86_400_000_000

    public init(endpoints: Endpoints = .production) { self.endpoints = endpoints }

    /// Upbit candle units (§4.6) by timeframe key; `10m` has no timeframe key.
    public static let candleUnits: [String: String] = [
        "1s": "1s", "1m": "1m", "3m": "3m", "5m": "5m", "15m": "15m", "30m": "30m", "1H": "60m", "4H": "240m",
    ]

    public func validate(_ stream: StreamID) -> String? {
        guard stream.exchange == .upbit else { return "not an Upbit stream" }
        if case .candles(let tf) = stream.feed, Self.candleUnits[tf.key] == nil {
            return "Upbit has no candle unit for \(tf.key)"
        }
        guard Self.isValidMarket(stream.symbol) else {
            return "'\(stream.symbol)' is not an Upbit market code (quote first, upper case, e.g. KRW-BTC)"
        }
        return nil
    }

    /// Market codes: upper case (§4.2), `QUOTE-BASE` (§4.10), e.g. `KRW-BTC`.
    static func isValidMarket(_ symbol: String) -> Bool {
        !symbol.isEmpty && symbol.utf8.count <= 30 && symbol.utf8.contains(UInt8(ascii: "-"))
            && symbol.utf8.allSatisfy { ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == UInt8(ascii: "-") }
    }

    public func webSocketURL(for stream: StreamID) -> String { endpoints.webSocketURL }

    /// Upbit's request type for a feed (§4.5–4.8): `trade`, `candle.1m`, `orderbook` (30 levels by
    /// default) or `ticker`.
    public static func type(for feed: Feed) -> String {
        switch feed {
        case .candles(let tf): "candle." + (candleUnits[tf.key] ?? tf.key)  // validate() refused unknown units
        case .trades: "trade"
        case .book: "orderbook"
        case .ticker: "ticker"
        }
    }

    /// `[{"ticket":"…"},{"type":"trade","codes":[…]},…,{"format":"DEFAULT"}]` (§4.2): one type object per
    /// feed, types in order of first appearance; `requestID` is the ticket.
    public func subscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        var groups: [(String, [String])] = []
        for stream in streams {
            let type = Self.type(for: stream.feed)
            if let index = groups.firstIndex(where: { $0.0 == type }) {
                groups[index].1.append(stream.symbol)
            } else {
                groups.append((type, [stream.symbol]))
            }
        }
        var parts = ["{\"ticket\":\(JSONText.quoted(requestID))}"]
        for (type, codes) in groups {
            parts.append(
                "{\"type\":\(JSONText.quoted(type)),\"codes\":[\(codes.map(JSONText.quoted).joined(separator: ","))]}")
        }
        parts.append("{\"format\":\"DEFAULT\"}")
        return [.text("[" + parts.joined(separator: ",") + "]")]
    }

    /// Never sent: Upbit has no unsubscribe (§4.2), so the adapter declares `.replaceAll` and the
    /// session re-sends the whole wanted set in a new request whenever it changes.
    public func unsubscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        []
    }

    /// Not implemented yet: data frames arrive binary (`isText` false) with UTF-8 JSON inside (§4.3);
    /// the `{"status":"UP"}` answer to `PING` is the pong.
    public func parse(
        _ frame: UnsafeRawBufferPointer, isText: Bool, receivedAt: Int64, state: inout NoConnectionState,
        into out: inout [ExchangeMessage]
    ) throws(ExchangeParseError) {
        throw ExchangeParseError("Upbit market-data parsing is not implemented yet")
    }

    /// `GET /v1/candles/seconds` or `/v1/candles/minutes/{unit}` (§4.9): up to 200 bars before the
    /// exclusive `to`, newest first, so pages walk backwards from `olderThan` as the backfiller does.
    /// Nil for streams other than candles, and for seconds bars past their three-month retention.
    public func backfillPage(for stream: StreamID, newerThan: Int64, olderThan: Int64, now: Int64) -> RESTRequest? {
        guard case .candles(let tf) = stream.feed, let unit = Self.candleUnits[tf.key] else { return nil }
        let path: String
        if unit == "1s" {
            guard now - olderThan < Self.secondsCandleRetention else { return nil }
            path = "/v1/candles/seconds"
        } else {
            path = "/v1/candles/minutes/" + unit.dropLast()  // "60m" → 60
        }
        let target =
            "\(path)?market=\(stream.symbol)&to=\(Self.isoSeconds(olderThan))&count=\(Self.candlePageLimit)"
        return RESTRequest(target: target, budget: "candles", pageLimit: Self.candlePageLimit)
    }

    /// `2025-06-24T04:56:53Z` for a µs timestamp, truncated to the second (bar opens are whole seconds).
    static func isoSeconds(_ microseconds: Int64) -> String {
        let text = UTCCalendar.iso8601(microseconds: microseconds)  // …T04:56:53.000Z
        return String(text.prefix(19)) + "Z"
    }

    public func parseBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BackfillPage {
        throw RESTError(code: nil, message: "Upbit REST parsing is not implemented yet", isRetryable: false)
    }
}
