/// The kinds of stored data (the four feeds, and the gap ledger); also the storage layout's name
/// (table, Parquet directory).
public enum DataType: String, CaseIterable, Hashable, Sendable {
    case candles, trades, book, ticker, gaps

    /// Whether the table is partitioned by month (the gap ledger is small and is not).
    public var isPartitioned: Bool { self != .gaps }

    /// The PostgreSQL table (and, later, Parquet directory) holding this type.
    public var tableName: String {
        switch self {
        case .candles: "candles"
        case .trades: "trades"
        case .book: "book_messages"
        case .ticker: "tickers"
        case .gaps: "gaps"
        }
    }
}

/// Something the collector stores: every feed's records carry `timestampExchange` and
/// `timestampCollector` in µs, and decimals exactly as the exchange sent them.
public enum MarketEvent: Hashable, Sendable {
    case candle(Candle)
    case trade(Trade)
    case book(BookMessage)
    case ticker(Ticker)
    /// An entry of a stream's gap ledger.
    case gap(GapRecord)

    /// The stream the event belongs to.
    public var stream: StreamID {
        switch self {
        case .candle(let c): c.stream
        case .trade(let t): t.stream
        case .book(let b): b.stream
        case .ticker(let t): t.stream
        case .gap(let g): g.stream
        }
    }

    public var dataType: DataType {
        switch self {
        case .candle: .candles
        case .trade: .trades
        case .book: .book
        case .ticker: .ticker
        case .gap: .gaps
        }
    }

    /// The exchange's event time (µs): a candle's open time, a fill's time, a message's time.
    public var timestampExchange: Int64 {
        switch self {
        case .candle(let c): c.timestampExchange
        case .trade(let t): t.timestampExchange
        case .book(let b): b.timestampExchange
        case .ticker(let t): t.timestampExchange
        case .gap(let g): g.gap.from
        }
    }

    /// When this process received it (µs).
    public var timestampCollector: Int64 {
        switch self {
        case .candle(let c): c.timestampCollector
        case .trade(let t): t.timestampCollector
        case .book(let b): b.timestampCollector
        case .ticker(let t): t.timestampCollector
        case .gap(let g): g.recordedAt
        }
    }

    /// The time that says which owner of a moved stream stores the event (an event-time window,
    /// DESIGN.md §3 `cutover_at`): a candle belongs to the owner at its bar's close (so the owner
    /// that stores a bar's last update, its confirmation, is the one that stored its first after
    /// the cutover); the rest, to the owner at their exchange time.
    public var windowTime: Int64 {
        if case .candle(let c) = self { return c.timeframe.nextOpenTime(after: c.openTime) }
        return timestampExchange
    }

    /// The time the stored row is partitioned by (candles: open time; the rest: exchange time).
    public var partitionTime: Int64 {
        if case .candle(let c) = self { return c.openTime }
        return timestampExchange
    }
}

/// Where a stream's stored data ends (DESIGN.md §3 `resume_from`): the newest stored event's
/// exchange time, and the exchange's trade id or sequence where the feed has one. For candles the
/// time is the newest *confirmed* bar's open time (unconfirmed bars are still changing).
public struct Watermark: Hashable, Sendable, CustomStringConvertible {
    /// µs since the epoch.
    public var time: Int64
    /// The trade id (trades) or sequence number (books), as text.
    public var id: String?

    public init(time: Int64, id: String? = nil) {
        self.time = time
        self.id = id
    }

    /// The watermark an event moves its stream to, or nil when it does not count (unconfirmed bar).
    public static func of(_ event: MarketEvent) -> Watermark? {
        switch event {
        case .candle(let c): c.isConfirmed ? Watermark(time: c.openTime) : nil
        case .trade(let t): Watermark(time: t.timestampExchange, id: t.tradeID)
        case .book(let b): Watermark(time: b.timestampExchange, id: String(b.sequence))
        case .ticker(let t): Watermark(time: t.timestampExchange)
        case .gap: nil  // the ledger says where data is missing, not where it ends
        }
    }

    /// The later of two watermarks: by time, then by numeric id (ids are digits at every exchange we
    /// know; longer digit strings are larger).
    public func isAfter(_ other: Watermark) -> Bool {
        if time != other.time { return time > other.time }
        guard let id else { return false }
        guard let otherID = other.id else { return true }
        if id.utf8.count != otherID.utf8.count { return id.utf8.count > otherID.utf8.count }
        return id > otherID
    }

    public var description: String { id.map { "\(time)#\($0)" } ?? "\(time)" }
}
