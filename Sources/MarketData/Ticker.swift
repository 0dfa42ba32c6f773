/// A ticker update: best bid/ask with sizes, last price, and the exchange's 24 h fields where it
/// sends them (nil otherwise). Keyed by (exchange, symbol, timestamp_exchange).
public struct Ticker: Hashable, Sendable {
    public var exchange: ExchangeName
    public var symbol: String
    public var bidPrice: DecimalText?
    public var bidSize: DecimalText?
    public var askPrice: DecimalText?
    public var askSize: DecimalText?
    public var lastPrice: DecimalText?
    public var lastSize: DecimalText?
    public var open24h: DecimalText?
    public var high24h: DecimalText?
    public var low24h: DecimalText?
    /// 24 h volume in the base asset.
    public var volume24h: DecimalText?
    /// 24 h volume in the quote asset.
    public var quoteVolume24h: DecimalText?
    public var timestampExchange: Int64
    public var timestampCollector: Int64

    public init(
        exchange: ExchangeName, symbol: String, bidPrice: DecimalText? = nil, bidSize: DecimalText? = nil,
        askPrice: DecimalText? = nil, askSize: DecimalText? = nil, lastPrice: DecimalText? = nil,
        lastSize: DecimalText? = nil, open24h: DecimalText? = nil, high24h: DecimalText? = nil,
        low24h: DecimalText? = nil, volume24h: DecimalText? = nil, quoteVolume24h: DecimalText? = nil,
        timestampExchange: Int64, timestampCollector: Int64
    ) {
        self.exchange = exchange
        self.symbol = symbol
        self.bidPrice = bidPrice
        self.bidSize = bidSize
        self.askPrice = askPrice
        self.askSize = askSize
        self.lastPrice = lastPrice
        self.lastSize = lastSize
        self.open24h = open24h
        self.high24h = high24h
        self.low24h = low24h
        self.volume24h = volume24h
        self.quoteVolume24h = quoteVolume24h
        self.timestampExchange = timestampExchange
        self.timestampCollector = timestampCollector
    }

    public var stream: StreamID { StreamID(exchange: exchange, feed: .ticker, symbol: symbol) }
}
