public import MarketData
public import PostgresClient
import Synchronization

/// One page of stored events of one stream, oldest first (DESIGN.md §6 data queries).
public struct DataQuery: Sendable, Hashable {
    public var stream: StreamID
    /// Inclusive bounds on the partition time (candles: open time; the rest: exchange time), µs.
    public var start: Int64
    public var end: Int64
    public var limit: Int

    public init(stream: StreamID, start: Int64, end: Int64, limit: Int) {
        self.stream = stream
        self.start = start
        self.end = end
        self.limit = limit
    }

    /// Times a query may name: 1970-01-01 to 9999-12-31 (what every store represents).
    public static let validTimes: ClosedRange<Int64> = 0...253_402_300_799_999_999
}

/// Why a query failed: the caller's mistake (answered 4xx) or the store's (answered 503, with the
/// detail logged, never sent to the client).
public struct DataQueryError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: Sendable, Equatable {
        /// The request itself is wrong (a value the store cannot represent).
        case invalid
        /// The store is unavailable or failed; retry later.
        case unavailable
    }
    public var kind: Kind
    /// For `invalid`: safe to show to the client. For `unavailable`: for the log only.
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { message }
}

/// Reads stored events back: PostgreSQL today, local Parquet files later.
public protocol MarketDataReader: Sendable {
    /// Events of `query.stream` in its window, oldest first, at most `query.limit`.
    func events(_ query: DataQuery) async throws(DataQueryError) -> [MarketEvent]
    /// A counter that changes whenever `stream` is written, for caching pages.
    func version(of stream: StreamID) -> UInt64
    /// What is stored: one summary per stream (all of them, or only `only`), ordered by stream.
    func stored(only: StreamID?) async throws(DataQueryError) -> [StoredStream]
}

/// One stream's stored events: how many, and the first and last partition time (µs).
public struct StoredStream: Sendable, Hashable {
    public var stream: StreamID
    public var rows: Int64
    public var first: Int64
    public var last: Int64

    public init(stream: StreamID, rows: Int64, first: Int64, last: Int64) {
        self.stream = stream
        self.rows = rows
        self.first = first
        self.last = last
    }
}

/// Data queries against the PostgreSQL tables, round-robin over a small pool of connections.
public final class PostgresReader: MarketDataReader {
    private let executors: [PGExecutor]
    private let next = Atomic<Int>(0)
    private let versions: StreamVersions

    public init(executors: [PGExecutor], versions: StreamVersions) {
        precondition(!executors.isEmpty, "a reader needs at least one connection")
        self.executors = executors
        self.versions = versions
    }

    public func version(of stream: StreamID) -> UInt64 { versions.version(of: stream) }

    public func events(_ query: DataQuery) async throws(DataQueryError) -> [MarketEvent] {
        guard DataQuery.validTimes.contains(query.start), DataQuery.validTimes.contains(query.end) else {
            throw DataQueryError(.invalid, "times must be between 1970-01-01 and 9999-12-31")
        }
        let executor = executors[next.add(1, ordering: .relaxed).oldValue % executors.count]
        let stream = query.stream
        let (sql, parameters) = Self.statement(query)
        let rows: [[String?]]
        do {
            rows = try await executor.run { c throws(PGError) in try c.execute(sql, parameters).rows }
        } catch {
            // A value the server refuses (class 22) is the request's fault; anything else is ours.
            if error.sqlState?.hasPrefix("22") == true {
                throw DataQueryError(.invalid, "a query value is out of range")
            }
            throw DataQueryError(.unavailable, error.description)
        }
        var out: [MarketEvent] = []
        out.reserveCapacity(rows.count)
        for row in rows {
            guard let event = Self.event(row, stream: stream) else {
                throw DataQueryError(.unavailable, "a stored row of \(stream) could not be read back")
            }
            out.append(event)
        }
        return out
    }

    public func stored(only: StreamID?) async throws(DataQueryError) -> [StoredStream] {
        let executor = executors[next.add(1, ordering: .relaxed).oldValue % executors.count]
        let (sql, parameters) = Self.storedStatement(only)
        let rows: [[String?]]
        do {
            rows = try await executor.run { c throws(PGError) in try c.execute(sql, parameters).rows }
        } catch {
            throw DataQueryError(.unavailable, error.description)
        }
        var out: [StoredStream] = []
        for row in rows {
            guard row.count == 6, let exchangeText = row[0], let exchange = ExchangeName(rawValue: exchangeText),
                let feedText = row[1], let feed = Feed(feedText), let symbol = row[2],
                let count = row[3].flatMap({ Int64($0) }), let first = row[4].flatMap({ Int64($0) }),
                let last = row[5].flatMap({ Int64($0) })
            else {
                throw DataQueryError(.unavailable, "a stored-stream summary could not be read back: \(row)")
            }
            out.append(
                StoredStream(
                    stream: StreamID(exchange: exchange, feed: feed, symbol: symbol), rows: count, first: first,
                    last: last))
        }
        return out.sorted { $0.stream < $1.stream }
    }

    /// Per stream of every table (or of `only`'s): exchange, feed text, symbol, rows, first, last.
    /// A full count: an operator's question, not a hot path.
    static func storedStatement(_ only: StreamID?) -> (String, [String?]) {
        let tables: [(feed: String, table: String, time: String, key: String?)] = [
            ("'candles:' || timeframe", "candles", "open_time", "timeframe"),
            ("'trades'", "trades", "timestamp_exchange", nil),
            ("CASE depth WHEN 0 THEN 'book' ELSE 'book:' || depth END", "book_messages", "timestamp_exchange", "depth"),
            ("'ticker'", "tickers", "timestamp_exchange", nil),
        ]
        var parameters: [String?] = []
        var selected = tables
        var filter = ""
        if let only {
            parameters = [only.exchange.rawValue, only.symbol]
            filter = " WHERE exchange = $1 AND symbol = $2"
            switch only.feed {
            case .candles(let tf):
                selected = [tables[0]]
                parameters.append(tf.key)
                filter += " AND timeframe = $3"
            case .trades: selected = [tables[1]]
            case .book(let depth):
                selected = [tables[2]]
                parameters.append(String(depth ?? 0))
                filter += " AND depth = $3::integer"
            case .ticker: selected = [tables[3]]
            }
        }
        let parts = selected.map { t in
            "SELECT exchange, \(t.feed) AS feed, symbol, count(*)::text, \(micros("min(\(t.time))")), "
                + "\(micros("max(\(t.time))")) FROM \(t.table)\(filter) GROUP BY exchange, symbol"
                + (t.key.map { ", \($0)" } ?? "")
        }
        return (parts.joined(separator: "\nUNION ALL\n"), parameters)
    }

    private static func micros(_ column: String) -> String {
        "(extract(epoch FROM \(column)) * 1000000)::bigint::text"
    }

    static func statement(_ q: DataQuery) -> (String, [String?]) {
        let s = q.stream
        var parameters: [String?] = [
            s.exchange.rawValue, s.symbol, UTCCalendar.iso8601(microseconds: q.start),
            UTCCalendar.iso8601(microseconds: q.end), String(q.limit),
        ]
        let tsE = micros("timestamp_exchange")
        let tsC = micros("timestamp_collector")
        switch s.feed {
        case .candles(let tf):
            parameters.append(tf.key)
            return (
                """
                SELECT \(micros("open_time")), open::text, high::text, low::text, close::text, volume::text,
                       quote_volume::text, confirmed::text, \(tsE), \(tsC)
                FROM candles WHERE exchange = $1 AND symbol = $2 AND timeframe = $6
                  AND open_time >= $3 AND open_time <= $4
                ORDER BY open_time LIMIT $5
                """, parameters
            )
        case .trades:
            return (
                """
                SELECT trade_id, price::text, size::text, side, \(tsE), \(tsC)
                FROM trades WHERE exchange = $1 AND symbol = $2
                  AND timestamp_exchange >= $3 AND timestamp_exchange <= $4
                ORDER BY timestamp_exchange, length(trade_id), trade_id LIMIT $5
                """, parameters
            )
        case .book(let depth):
            parameters.append(String(depth ?? 0))
            return (
                """
                SELECT seq::text, prev_seq::text, action, bids::text, asks::text, checksum::text, \(tsE), \(tsC)
                FROM book_messages WHERE exchange = $1 AND symbol = $2 AND depth = $6::integer
                  AND timestamp_exchange >= $3 AND timestamp_exchange <= $4
                ORDER BY timestamp_exchange, seq, action DESC LIMIT $5
                """, parameters
            )
        case .ticker:
            return (
                """
                SELECT bid_price::text, bid_size::text, ask_price::text, ask_size::text, last_price::text,
                       last_size::text, open_24h::text, high_24h::text, low_24h::text, volume_24h::text,
                       quote_volume_24h::text, \(tsE), \(tsC)
                FROM tickers WHERE exchange = $1 AND symbol = $2
                  AND timestamp_exchange >= $3 AND timestamp_exchange <= $4
                ORDER BY timestamp_exchange LIMIT $5
                """, parameters
            )
        }
    }

    static func event(_ r: [String?], stream s: StreamID) -> MarketEvent? {
        func decimal(_ i: Int) -> DecimalText? { r[i].flatMap { DecimalText($0) } }
        func int(_ i: Int) -> Int64? { r[i].flatMap { Int64($0) } }
        switch s.feed {
        case .candles(let tf):
            guard r.count == 10, let open = int(0), let o = decimal(1), let h = decimal(2), let l = decimal(3),
                let c = decimal(4), let v = decimal(5), let q = decimal(6), let tsE = int(8), let tsC = int(9)
            else { return nil }
            return .candle(
                Candle(
                    exchange: s.exchange, symbol: s.symbol, timeframe: tf, openTime: open, open: o, high: h, low: l,
                    close: c, volume: v, quoteVolume: q, isConfirmed: r[7] == "true", timestampExchange: tsE,
                    timestampCollector: tsC))
        case .trades:
            guard r.count == 6, let id = r[0], let price = decimal(1), let size = decimal(2),
                let side = r[3].flatMap(TradeSide.init), let tsE = int(4), let tsC = int(5)
            else { return nil }
            return .trade(
                Trade(
                    exchange: s.exchange, symbol: s.symbol, tradeID: id, price: price, size: size, side: side,
                    timestampExchange: tsE, timestampCollector: tsC))
        case .book(let depth):
            guard r.count == 8, let seq = int(0), let action = r[2].flatMap(BookMessage.Action.init),
                let bids = r[3].flatMap(levels), let asks = r[4].flatMap(levels), let tsE = int(6), let tsC = int(7)
            else { return nil }
            return .book(
                BookMessage(
                    exchange: s.exchange, symbol: s.symbol, sequence: seq, previousSequence: int(1), action: action,
                    bids: bids, asks: asks, checksum: int(5), timestampExchange: tsE, timestampCollector: tsC,
                    depth: depth))
        case .ticker:
            guard r.count == 13, let tsE = int(11), let tsC = int(12) else { return nil }
            return .ticker(
                Ticker(
                    exchange: s.exchange, symbol: s.symbol, bidPrice: decimal(0), bidSize: decimal(1),
                    askPrice: decimal(2), askSize: decimal(3), lastPrice: decimal(4), lastSize: decimal(5),
                    open24h: decimal(6), high24h: decimal(7), low24h: decimal(8), volume24h: decimal(9),
                    quoteVolume24h: decimal(10), timestampExchange: tsE, timestampCollector: tsC))
        }
    }

    /// Parses PostgreSQL's text form of a two-dimensional numeric array: `{{1.5,2},{3,4}}` or `{}`.
    static func levels(_ text: String) -> [BookLevel]? {
        guard text != "{}" else { return [] }
        guard text.hasPrefix("{{"), text.hasSuffix("}}") else { return nil }
        var out: [BookLevel] = []
        for pair in text.dropFirst(2).dropLast(2).split(separator: "},{", omittingEmptySubsequences: false) {
            let parts = pair.split(separator: ",", omittingEmptySubsequences: false)
            guard parts.count == 2, let price = DecimalText(String(parts[0])), let size = DecimalText(String(parts[1]))
            else { return nil }
            out.append(BookLevel(price: price, size: size))
        }
        return out
    }
}
