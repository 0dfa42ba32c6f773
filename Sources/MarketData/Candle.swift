/// One OHLCV bar. Times are microseconds since the Unix epoch (DESIGN.md §4).
public struct Candle: Hashable, Sendable {
    public var exchange: ExchangeName
    public var symbol: String
    public var timeframe: Timeframe
    /// Bar open time.
    public var openTime: Int64
    public var open: DecimalText
    public var high: DecimalText
    public var low: DecimalText
    public var close: DecimalText
    /// Base-asset volume.
    public var volume: DecimalText
    /// Quote-asset volume.
    public var quoteVolume: DecimalText
    /// True once the exchange marks the bar complete.
    public var isConfirmed: Bool
    /// The exchange's event time (for OKX candles: the bar's open time; pushes carry no other time).
    public var timestampExchange: Int64
    /// When this process received it.
    public var timestampCollector: Int64

    public init(
        exchange: ExchangeName, symbol: String, timeframe: Timeframe, openTime: Int64, open: DecimalText,
        high: DecimalText, low: DecimalText, close: DecimalText, volume: DecimalText, quoteVolume: DecimalText,
        isConfirmed: Bool, timestampExchange: Int64, timestampCollector: Int64
    ) {
        self.exchange = exchange
        self.symbol = symbol
        self.timeframe = timeframe
        self.openTime = openTime
        self.open = open
        self.high = high
        self.low = low
        self.close = close
        self.volume = volume
        self.quoteVolume = quoteVolume
        self.isConfirmed = isConfirmed
        self.timestampExchange = timestampExchange
        self.timestampCollector = timestampCollector
    }

    /// The stream this candle belongs to.
    public var stream: StreamID { StreamID(exchange: exchange, feed: .candles(timeframe), symbol: symbol) }

    /// Data-quality rules: high ≥ max(open, close), low ≤ min(open, close), high ≥ low, volumes ≥ 0.
    /// Returns the first rule broken, or nil.
    public func qualityProblem() -> String? {
        switch DecimalText.checkCandle(open: open, high: high, low: low, close: close) {
        case .highBelowOpenOrClose: return "high \(high) below max(open \(open), close \(close))"
        case .lowAboveOpenOrClose: return "low \(low) above min(open \(open), close \(close))"
        case .highBelowLow: return "high \(high) below low \(low)"
        case nil: break
        }
        if volume.isNegative { return "negative volume \(volume)" }
        if quoteVolume.isNegative { return "negative quote volume \(quoteVolume)" }
        return nil
    }
}
