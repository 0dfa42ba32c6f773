public import MarketData

/// What one exchange frame means.
public enum ExchangeMessage: Hashable, Sendable {
    /// Market data.
    case event(MarketEvent)
    /// The exchange confirmed a subscription.
    case subscribed(StreamID)
    /// The exchange confirmed an unsubscription.
    case unsubscribed(StreamID)
    /// The exchange refused a subscription; `stream` is nil when the reply does not say which one
    /// (then `requestID` names the request).
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
    public init(target: String, budget: String) {
        self.target = target
        self.budget = budget
    }
}

/// The collector's view of one exchange. Pure: the runtime does the I/O.
public protocol ExchangeAdapter: Sendable {
    var name: ExchangeName { get }
    var limits: ExchangeLimits { get }
    var keepalive: KeepalivePolicy { get }
    /// Why a stream cannot be collected here (unknown timeframe, unsupported feed), or nil.
    func validate(_ stream: StreamID) -> String?
    /// The WebSocket URL serving `feed`; streams with equal URLs may share a connection.
    func webSocketURL(for feed: Feed) -> String
    /// Subscribe messages for `streams` (already split to the per-message limits); `requestID` tags them.
    func subscribeMessages(for streams: [StreamID], requestID: String) -> [String]
    /// Unsubscribe messages for `streams`.
    func unsubscribeMessages(for streams: [StreamID], requestID: String) -> [String]
    /// Parses one text frame received at `receivedAt` (µs) into `out`.
    func parse(
        _ frame: UnsafeRawBufferPointer, receivedAt: Int64, into out: inout [ExchangeMessage])
        throws(ExchangeParseError)
}
