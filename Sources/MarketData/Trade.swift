/// The aggressor's side of a fill.
public enum TradeSide: String, Hashable, Sendable {
    case buy, sell
}

/// One fill (DESIGN.md §5): one row per fill, keyed by the exchange's own trade id.
///
/// Adapters use each exchange's per-fill channel (OKX `trades-all`, Binance `@trade`) or expand an
/// aggregated message into its fills; aggregated records never share an id space with single fills.
public struct Trade: Hashable, Sendable {
    public var exchange: ExchangeName
    public var symbol: String
    /// The exchange's trade id, as it sent it (digits for every exchange we know, kept as text).
    public var tradeID: String
    public var price: DecimalText
    public var size: DecimalText
    public var side: TradeSide
    /// The exchange's fill time (µs).
    public var timestampExchange: Int64
    /// When this process received it (µs).
    public var timestampCollector: Int64

    public init(
        exchange: ExchangeName, symbol: String, tradeID: String, price: DecimalText, size: DecimalText,
        side: TradeSide, timestampExchange: Int64, timestampCollector: Int64
    ) {
        self.exchange = exchange
        self.symbol = symbol
        self.tradeID = tradeID
        self.price = price
        self.size = size
        self.side = side
        self.timestampExchange = timestampExchange
        self.timestampCollector = timestampCollector
    }

    public var stream: StreamID { StreamID(exchange: exchange, feed: .trades, symbol: symbol) }
}

extension Trade {
    /// Data-quality rules: a price and a size above zero. Returns the rule broken, or nil.
    public func qualityProblem() -> String? {
        if DecimalText.compare(price, "0") <= 0 { return "trade price \(price) is not above zero" }
        if DecimalText.compare(size, "0") <= 0 { return "trade size \(size) is not above zero" }
        return nil
    }
}
