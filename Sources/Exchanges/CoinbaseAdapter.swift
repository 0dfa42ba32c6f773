public import MarketData
import WireCore

/// Makes the token an authenticated subscribe message carries (Coinbase, PROTOCOLS.md §3.3: a JWT,
/// ES256 or EdDSA over `{"sub":…,"iss":"cdp","nbf":now,"exp":now+120}`, with a random nonce in the
/// header). Signing draws randomness (`RAND_bytes`) and reads a key, so it belongs to the runtime
/// driver, which fills `OutgoingFrame.textWithToken` as it sends; adapters and the session never call it.
public protocol SubscribeSigner: Sendable {
    /// A token valid from `now` (µs since the epoch) for two minutes.
    func token(now: Int64) throws -> String
}

/// Coinbase Advanced Trade (PROTOCOLS.md §3): one market-data host, one channel per subscribe message,
/// and a `sequence_num` shared by every channel of a connection.
///
/// A skeleton that proves the `ExchangeAdapter` protocol fits Coinbase: names, limits, URLs, subscribe
/// messages and REST requests are real; frame and REST parsing are not implemented yet.
public struct CoinbaseAdapter: ExchangeAdapter {
    /// Endpoints, overridable for the simulator.
    public struct Endpoints: Sendable, Equatable {
        /// The market-data WebSocket for every channel.
        public var webSocketURL: String
        /// The REST base for candles (§3.11).
        public var restURL: String

        /// The market-data host (§3.1; not the Coinbase Exchange feed, whose protocol differs).
        public static let production = Endpoints(
            webSocketURL: "wss://advanced-trade-ws.coinbase.com", restURL: "https://api.coinbase.com")

        public init(webSocketURL: String, restURL: String) {
            self.webSocketURL = webSocketURL
            self.restURL = restURL
        }
    }

    /// What the parser keeps for one connection.
    public struct ConnectionState: Sendable, Equatable {
        /// The last `sequence_num` seen: it counts across every channel of the connection (§3.4), so a
        /// jump means lost messages (for `level2`, resubscribe or reconnect for a fresh snapshot).
        public var lastSequence: Int64?

        public init(lastSequence: Int64? = nil) { self.lastSequence = lastSequence }
    }

    public let name = ExchangeName.coinbase
    public let endpoints: Endpoints
    /// Signs subscribe messages when present. Public channels need no JWT (§3.1), but Coinbase advises
    /// authenticating for the most reliable connection.
    /// Authenticated channels: every subscribe message carries a fresh JWT, filled in by the driver's
    /// signer as it sends (public market data needs none).
    public let authenticated: Bool

    /// Coinbase limits (PROTOCOLS.md §3.10):
    ///
    /// | limit | documented | ours |
    /// |---|---|---|
    /// | streams per connection | UNCONFIRMED | 50 (conservative: a `level2` stream carries the whole book) |
    /// | streams per subscribe request | UNCONFIRMED | 50, so one request covers a connection |
    /// | messages per IP | 8/s unauthenticated [DOC] | burst 4, 4/s per connection (the session takes one token per message; a request sends one message per channel): two connections stay under 8/s — the budget is per connection, not per IP, a known limit of the session today |
    /// | connections per IP | 8/s or 750/s (the docs conflict) | burst 1, 1/s: each new connection spends messages from the same 8/s |
    /// | message size | — | 16 MiB: a `level2` snapshot is the entire book and exceeds 1 MiB (§3.8) |
    public let limits = ExchangeLimits(
        maxStreamsPerConnection: 50, maxStreamsPerSubscribeMessage: 50,
        subscribeMessages: TokenBucket(capacity: 4, refillPerSecond: 4),
        connections: TokenBucket(capacity: 1, refillPerSecond: 1), maxMessageBytes: 16 << 20)

    /// The `heartbeats` channel (one message a second, §3.5), subscribed as each connection opens, keeps quiet
    /// channels from closing after 60–90 s; we only watch for staleness.
    public let keepalive = KeepalivePolicy.serverDriven

    /// Coinbase answers with a `subscriptions` message listing every subscription of the connection (§3.2).
    public let acknowledgement = AcknowledgementPolicy.explicit

    public var restBudgets: [String: TokenBucket] { Self.restBudgets }

    /// REST budgets: public endpoints allow 10 requests/s per IP (§3.10, [3P]); burst 4, 5/s stays
    /// below 10 in any second.
    public static let restBudgets: [String: TokenBucket] = ["public": TokenBucket(capacity: 4, refillPerSecond: 5)]

    /// Rows a full candles page holds (§3.11: `limit` default and max 350).
    public static let candlePageLimit = 350

    /// The only candle timeframe: the `candles` channel sends 5-minute buckets (§3.7).
    public static let candleTimeframe = "5m"

    public init(endpoints: Endpoints = .production, authenticated: Bool = false) {
        self.endpoints = endpoints
        self.authenticated = authenticated
    }

    public func makeConnectionState() -> ConnectionState { ConnectionState() }

    public func validate(_ stream: StreamID) -> String? {
        guard stream.exchange == .coinbase else { return "not a Coinbase stream" }
        if case .candles(let tf) = stream.feed, tf.key != Self.candleTimeframe {
            return "Coinbase candles are 5-minute only (no channel for \(tf.key))"
        }
        guard Self.isValidProduct(stream.symbol) else {
            return "'\(stream.symbol)' is not a Coinbase product id (e.g. BTC-USD)"
        }
        return nil
    }

    /// Product ids: upper-case letters, digits and one or more dashes, e.g. `BTC-USD`, `BTC-PERP-INTX`.
    static func isValidProduct(_ symbol: String) -> Bool {
        !symbol.isEmpty && symbol.utf8.count <= 40 && symbol.utf8.contains(UInt8(ascii: "-"))
            && symbol.utf8.allSatisfy { ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == UInt8(ascii: "-") }
    }

    public func webSocketURL(for stream: StreamID) -> String { endpoints.webSocketURL }

    /// Coinbase's channel for a feed (§3.6–3.9); `level2` data arrives on channel `l2_data`.
    public static func channel(for feed: Feed) -> String {
        switch feed {
        case .candles: "candles"
        case .trades: "market_trades"
        case .book: "level2"
        case .ticker: "ticker"
        }
    }

    /// `heartbeats` on every new connection (§3.5: within 5 s of connecting, or quiet channels close).
    public func connectionOpenedMessages(context: SubscribeContext) -> [OutgoingFrame] {
        [message("subscribe", channel: "heartbeats", products: nil, context: context)]
    }

    /// One `subscribe` message per channel (§3.2); each with a JWT slot when `authenticated`.
    public func subscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        Self.groupedByChannel(streams).map { channel, products in
            message("subscribe", channel: channel, products: products, context: context)
        }
    }

    /// One `unsubscribe` message per channel (§3.2); `heartbeats` stays until the connection closes.
    public func unsubscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        Self.groupedByChannel(streams).map { channel, products in
            message("unsubscribe", channel: channel, products: products, context: nil)
        }
    }

    /// Product ids by channel, channels in order of first appearance.
    private static func groupedByChannel(_ streams: [StreamID]) -> [(String, [String])] {
        var groups: [(String, [String])] = []
        for stream in streams {
            let channel = channel(for: stream.feed)
            if let index = groups.firstIndex(where: { $0.0 == channel }) {
                groups[index].1.append(stream.symbol)
            } else {
                groups.append((channel, [stream.symbol]))
            }
        }
        return groups
    }

    /// `{"type":"subscribe","channel":"level2","product_ids":[…],"jwt":"…"}`; when `authenticated` and
    /// `context` is given, a slot for a fresh JWT per message (it lives two minutes, §3.3), which the
    /// driver fills as it sends.
    private func message(
        _ type: String, channel: String, products: [String]?, context: SubscribeContext?
    ) -> OutgoingFrame {
        var text = "{\"type\":\"\(type)\",\"channel\":\(JSONText.quoted(channel))"
        if let products {
            text += ",\"product_ids\":[\(products.map(JSONText.quoted).joined(separator: ","))]"
        }
        if authenticated && context != nil {
            return .textWithToken(prefix: text + ",\"jwt\":\"", suffix: "\"}")
        }
        return .text(text + "}")
    }

    /// Not implemented yet: frames are JSON text; the parser will check `sequence_num` against `state`.
    public func parse(
        _ frame: UnsafeRawBufferPointer, isText: Bool, receivedAt: Int64, state: inout ConnectionState,
        into out: inout [ExchangeMessage]
    ) throws(ExchangeParseError) {
        throw ExchangeParseError("Coinbase market-data parsing is not implemented yet")
    }

    /// `GET /api/v3/brokerage/market/products/{id}/candles` (§3.11, public): 5-minute bars, newest first.
    /// `start`/`end` are unix seconds; the window is clamped to one page (350 bars) below `olderThan`,
    /// since the backfiller pages backwards. Nil for streams other than 5-minute candles.
    public func backfillPage(for stream: StreamID, newerThan: Int64, olderThan: Int64, now: Int64) -> RESTRequest? {
        guard case .candles(let tf) = stream.feed, tf.key == Self.candleTimeframe else { return nil }
        let barSeconds: Int64 = 300
        // Both bounds inclusive: one second inside the open interval (newerThan, olderThan).
        let end = olderThan / 1_000_000 - 1
        let start = max(newerThan / 1_000_000 + 1, olderThan / 1_000_000 - Int64(Self.candlePageLimit) * barSeconds)
        let target =
            "/api/v3/brokerage/market/products/\(stream.symbol)/candles?start=\(start)&end=\(end)"
            + "&granularity=FIVE_MINUTE&limit=\(Self.candlePageLimit)"
        return RESTRequest(target: target, budget: "public", pageLimit: Self.candlePageLimit)
    }

    public func parseBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BackfillPage {
        throw RESTError(code: nil, message: "Coinbase REST parsing is not implemented yet", isRetryable: false)
    }
}
