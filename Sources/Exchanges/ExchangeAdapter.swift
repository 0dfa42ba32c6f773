public import CollectorCore
public import MarketData

/// What one exchange frame means.
public enum ExchangeMessage: Hashable, Sendable {
    /// Market data.
    case event(MarketEvent)
    /// The exchange confirmed a subscription.
    case subscribed(StreamID)
    /// The exchange confirmed a whole request without naming its streams (Binance
    /// `{"result":null,"id":N}`, Bybit `{"success":true,"req_id":…}`): every stream of the request is live.
    case subscribedRequest(requestID: String)
    /// The exchange confirmed an unsubscription.
    case unsubscribed(StreamID)
    /// The exchange refused a subscription; `stream` is nil when the reply does not say which one
    /// (then `requestID` names the request; when neither is known, every stream still waiting for an
    /// answer on the connection is refused: Coinbase's bare "failure to subscribe").
    case subscriptionRejected(stream: StreamID?, requestID: String?, code: String, message: String)
    /// An error not tied to a subscription.
    case error(code: String, message: String)
    /// A notice; `reconnectSoon` means the server will drop the connection shortly (e.g. OKX 64008).
    case notice(code: String, message: String, reconnectSoon: Bool)
    /// The answer to our application-level ping.
    case pong
    /// A well-formed message we do not use (counted, not stored), e.g. connection-count events.
    case unhandled(kind: String)
}

/// A frame that could not be understood; it goes to the dead-letter file with its raw text.
public struct ExchangeParseError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Per-exchange limits (DESIGN.md §4). Rates are per IP unless noted.
public struct ExchangeLimits: Sendable, Equatable {
    /// Streams packed onto one connection at most.
    public var maxStreamsPerConnection: Int
    /// Stream arguments in one subscribe message at most.
    public var maxStreamsPerSubscribeMessage: Int
    /// Subscribe/unsubscribe messages: burst and refill (per connection for OKX).
    public var subscribeMessages: TokenBucket
    /// New connections: burst and refill.
    public var connections: TokenBucket
    /// The largest WebSocket frame or message accepted from this exchange, sized from its largest
    /// real message (OKX ~100 KiB book snapshots; Coinbase level2 snapshots exceed 1 MiB). A larger
    /// one closes the connection with 1009 and is reported.
    public var maxMessageBytes: Int

    public init(
        maxStreamsPerConnection: Int, maxStreamsPerSubscribeMessage: Int, subscribeMessages: TokenBucket,
        connections: TokenBucket, maxMessageBytes: Int
    ) {
        self.maxStreamsPerConnection = maxStreamsPerConnection
        self.maxStreamsPerSubscribeMessage = maxStreamsPerSubscribeMessage
        self.subscribeMessages = subscribeMessages
        self.connections = connections
        self.maxMessageBytes = maxMessageBytes
    }
}

/// How a connection is kept alive beyond answering the server's WebSocket pings (always done).
public enum KeepalivePolicy: Sendable, Equatable {
    /// Send this text after `idle` silence and expect `reply` (OKX: `ping` → `pong`).
    case textPing(String, reply: String, idle: Duration)
    /// Send a WebSocket ping frame after `idle` silence.
    case webSocketPing(idle: Duration)
    /// The server keeps the connection alive (it pings and we answer, or a heartbeat channel
    /// streams); we only watch for staleness.
    case serverDriven
}

/// An HTTP GET against an exchange's REST API.
public struct RESTRequest: Hashable, Sendable {
    /// Path and query, e.g. `/api/v5/market/candles?instId=BTC-USDT&bar=1m&limit=300`.
    public var target: String
    /// Which budget it draws from (e.g. `candles`, `history-candles`).
    public var budget: String
    /// Rows a full page holds: a shorter page is the last one.
    public var pageLimit: Int
    public init(target: String, budget: String, pageLimit: Int = 100) {
        self.target = target
        self.budget = budget
        self.pageLimit = pageLimit
    }
}

/// How the exchange confirms a subscription.
public enum AcknowledgementPolicy: Sendable, Equatable {
    /// It answers each subscribe request (OKX, Binance, Coinbase, Bybit).
    case explicit
    /// It sends no acknowledgement (Upbit): a stream is live at its first message, and refused when
    /// none arrives within `within`.
    case firstMessage(within: Duration)
}

/// How subscriptions add up on one connection.
public enum SubscriptionModel: Sendable, Equatable {
    /// Each subscribe adds streams, each unsubscribe removes them (OKX, Binance, Coinbase, Bybit).
    case incremental
    /// Each subscribe message replaces the connection's whole set, and there is no unsubscribe
    /// (Upbit): the session sends the full wanted set whenever it changes.
    case replaceAll
}

/// What a subscribe message may depend on besides the streams (Coinbase signs a JWT, fresh per
/// message, for authenticated channels).
public struct SubscribeContext: Sendable, Equatable {
    /// Wall-clock time, µs since the epoch.
    public var now: Int64
    public init(now: Int64) { self.now = now }
}

/// An adapter with no per-connection parser state.
public struct NoConnectionState: Sendable, Equatable {
    public init() {}
}

/// One page of a REST backfill.
public struct BackfillPage: Sendable, Equatable {
    public var candles: [Candle]
    public init(candles: [Candle]) { self.candles = candles }
}

/// The collector's view of one exchange (DESIGN.md §4, PROTOCOLS.md §0). Pure: the runtime does
/// the I/O and the session machine the rules; the adapter names URLs, builds messages and parses.
public protocol ExchangeAdapter: Sendable {
    /// What the parser keeps for one connection (book sequencing, Coinbase's connection-wide
    /// `sequence_num`); made fresh for every connection.
    associatedtype ConnectionState: Sendable = NoConnectionState

    var name: ExchangeName { get }
    var limits: ExchangeLimits { get }
    var keepalive: KeepalivePolicy { get }
    var acknowledgement: AcknowledgementPolicy { get }
    /// Why a stream cannot be collected here (unknown timeframe, unsupported feed), or nil.
    func validate(_ stream: StreamID) -> String?
    /// The WebSocket URL serving `stream`; streams with equal URLs may share a connection (Bybit has
    /// one per category, OKX one for candles and one for the rest).
    func webSocketURL(for stream: StreamID) -> String
    /// Fresh parser state for a new connection.
    func makeConnectionState() -> ConnectionState
    /// How subscribe messages combine (default `.incremental`).
    var subscriptionModel: SubscriptionModel { get }
    /// Sent once on every new connection before any subscription (Coinbase's `heartbeats` channel, which
    /// must be subscribed within 5 s of connecting); default none. Not drawn from the subscribe budget.
    func connectionOpenedMessages(context: SubscribeContext) -> [OutgoingFrame]
    /// Subscribe messages for `streams` (at most `maxStreamsPerSubscribeMessage`); `requestID` tags them.
    func subscribeMessages(for streams: [StreamID], requestID: String, context: SubscribeContext) -> [OutgoingFrame]
    /// Unsubscribe messages for `streams`.
    func unsubscribeMessages(for streams: [StreamID], requestID: String, context: SubscribeContext) -> [OutgoingFrame]
    /// Parses one frame (text, or binary: Upbit) received at `receivedAt` (µs) into `out`.
    func parse(
        _ frame: UnsafeRawBufferPointer, isText: Bool, receivedAt: Int64, state: inout ConnectionState,
        into out: inout [ExchangeMessage]
    ) throws(ExchangeParseError)

    /// REST budgets by name (per IP), shared by every backfill of the exchange.
    var restBudgets: [String: TokenBucket] { get }
    /// One page of bars with open time strictly between `newerThan` and `olderThan` (µs), or nil
    /// when the exchange offers no REST source for them (the bars are then recorded as gaps).
    func backfillPage(for stream: StreamID, newerThan: Int64, olderThan: Int64, now: Int64) -> RESTRequest?
    /// Parses the reply to a `backfillPage` request.
    func parseBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BackfillPage
    /// One page of fills with trade ids strictly between the two (newest first), for exchanges whose
    /// REST pages by trade id in the same id space as the stream (default: none, holes are gaps).
    func tradeBackfillPage(for stream: StreamID, newerThanID: Int64, olderThanID: Int64) -> RESTRequest?
    /// Parses the reply to a `tradeBackfillPage` request.
    func parseTradeBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> [Trade]

    /// How a book stream's messages are sequenced and checked (default: chained by previous
    /// sequence for the full book, whole top-N books otherwise; no checksum).
    func bookRules(for stream: StreamID) -> BookRules
    /// The REST request for a whole book with its sequence number, to seed or resynchronise a book
    /// stream (default: none).
    func bookSnapshotRequest(for stream: StreamID) -> RESTRequest?
    /// Parses the reply to a `bookSnapshotRequest`: nil when it carries no sequence to seed from.
    func parseBookSnapshot(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BookMessage?
}

extension ExchangeAdapter {
    public func tradeBackfillPage(for stream: StreamID, newerThanID: Int64, olderThanID: Int64) -> RESTRequest? {
        nil
    }
    public func parseTradeBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> [Trade] {
        throw RESTError(code: nil, message: "\(name) has no trade backfill", isRetryable: false)
    }
    public func bookRules(for stream: StreamID) -> BookRules {
        guard case .book(let depth) = stream.feed, let depth else {
            return BookRules(maxDepth: 1000, sequencing: .previousSequence, checksum: .none)
        }
        return BookRules(maxDepth: depth, sequencing: .wholeBooks, checksum: .none)
    }
    public func bookSnapshotRequest(for stream: StreamID) -> RESTRequest? { nil }
    public func parseBookSnapshot(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BookMessage? {
        throw RESTError(code: nil, message: "\(name) has no REST book snapshot", isRetryable: false)
    }
    public var subscriptionModel: SubscriptionModel { .incremental }
    public func connectionOpenedMessages(context: SubscribeContext) -> [OutgoingFrame] { [] }
}

extension ExchangeAdapter where ConnectionState == NoConnectionState {
    public func makeConnectionState() -> NoConnectionState { NoConnectionState() }
}

/// How fast the cluster may hand one egress group (one IP) new shards of an exchange (issue 10).
/// Each new owner subscribes and, after a failover, backfills from its resume point, so the pace is
/// the exchange's tightest per-IP REST budget (one request per shard at least: its smallest burst and
/// slowest refill), and never more than its new-connection budget fills with streams. Subscribe
/// messages are budgeted per connection by each worker's session (Coinbase's 8/s per IP is above
/// every pace here).
public enum AssignmentPacing {
    public static func pace(_ adapter: some ExchangeAdapter) -> AssignmentPace {
        let rest = adapter.restBudgets.values
        let streams = Double(adapter.limits.maxStreamsPerConnection)
        let connections = adapter.limits.connections
        let burst = min(rest.map(\.capacity).min() ?? .infinity, connections.capacity * streams)
        let rate = min(rest.map(\.refillPerSecond).min() ?? .infinity, connections.refillPerSecond * streams)
        return AssignmentPace(
            burst: burst.isFinite ? Int(burst.rounded(.down)) : 20, perSecond: rate.isFinite ? rate : 20)
    }

    /// Every exchange's pace, keyed as shard names start (`okx`, `binance`, …).
    public static var all: [String: AssignmentPace] {
        [
            ExchangeName.okx.rawValue: pace(OKXAdapter()),
            ExchangeName.binance.rawValue: pace(BinanceAdapter()),
            ExchangeName.coinbase.rawValue: pace(CoinbaseAdapter()),
            ExchangeName.upbit.rawValue: pace(UpbitAdapter()),
            ExchangeName.bybit.rawValue: pace(BybitAdapter()),
        ]
    }
}
