/// One price level: price and size as the exchange wrote them. Further fields an exchange adds
/// (OKX's `[price, size, "0", orders]`) are not kept: the book is rebuilt from price and size.
public struct BookLevel: Hashable, Sendable {
    public var price: DecimalText
    public var size: DecimalText

    public init(price: DecimalText, size: DecimalText) {
        self.price = price
        self.size = size
    }
}

/// One order-book message (DESIGN.md §5): one row per exchange message, so any window can be
/// rebuilt from stored rows alone. A `snapshot` row is the whole book (written at every
/// (re)synchronisation, when a new owner starts the stream and periodically); an `update` row holds
/// the changed levels (size 0 removes a level).
public struct BookMessage: Hashable, Sendable {
    public enum Action: String, Hashable, Sendable {
        case snapshot, update
    }

    public var exchange: ExchangeName
    public var symbol: String
    /// The stream's book depth (`Feed.book(depth:)`): nil for the full-depth book.
    public var depth: Int?
    /// The exchange's sequence number; for an exchange without one, its event time (µs), so the
    /// natural key is still built from the exchange's own fields.
    public var sequence: Int64
    /// The sequence this message follows, where the exchange sends one.
    public var previousSequence: Int64?
    public var action: Action
    public var bids: [BookLevel]
    public var asks: [BookLevel]
    /// The exchange's checksum of the book after this message, where it sends one.
    public var checksum: Int64?
    public var timestampExchange: Int64
    public var timestampCollector: Int64

    public init(
        exchange: ExchangeName, symbol: String, sequence: Int64, previousSequence: Int64?, action: Action,
        bids: [BookLevel], asks: [BookLevel], checksum: Int64? = nil, timestampExchange: Int64,
        timestampCollector: Int64, depth: Int? = nil
    ) {
        self.exchange = exchange
        self.symbol = symbol
        self.depth = depth
        self.sequence = sequence
        self.previousSequence = previousSequence
        self.action = action
        self.bids = bids
        self.asks = asks
        self.checksum = checksum
        self.timestampExchange = timestampExchange
        self.timestampCollector = timestampCollector
    }

    public var stream: StreamID { StreamID(exchange: exchange, feed: .book(depth: depth), symbol: symbol) }
}
