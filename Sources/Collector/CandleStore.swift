public import MarketData
public import PostgresClient

/// Writes candle batches to PostgreSQL: COPY into a session-local staging table, then one upsert on
/// the natural key. A confirmed candle is never overwritten by an unconfirmed one; a month without a
/// partition gets one first, so no batch fails for lack of a partition (DESIGN.md §5).
public final class CandleStore: Sendable {
    public let executor: PGExecutor
    private let knownMonths = KnownMonths()

    /// Months whose partition exists (touched only on the executor's queue).
    private final class KnownMonths: @unchecked Sendable {
        // @unchecked Sendable: only read and written inside `executor.run` bodies, which the
        // executor's serial queue runs one at a time.
        var months: Set<Int> = []
    }

    public init(executor: PGExecutor) { self.executor = executor }

    static let columns =
        "exchange, symbol, timeframe, open_time, open, high, low, close, volume, quote_volume, confirmed, timestamp_exchange, timestamp_collector"

    /// Upserts `candles` in one transaction; returns the number of rows inserted or updated.
    @discardableResult
    public func write(_ candles: [Candle]) async throws(PGError) -> Int {
        guard !candles.isEmpty else { return 0 }
        let data = Self.copyText(candles)
        let months = Set(candles.map { Self.monthKey($0.openTime) })
        let firstOfMonth = Dictionary(
            candles.map { (Self.monthKey($0.openTime), $0.openTime) }, uniquingKeysWith: { a, _ in a })
        let known = knownMonths
        return try await executor.run { connection throws(PGError) in
            var attempt = 0
            while true {
                attempt += 1
                for month in months where !known.months.contains(month) {
                    try connection.execute(
                        "SELECT ensure_candle_partition($1::timestamptz)",
                        [UTCCalendar.iso8601(microseconds: firstOfMonth[month]!)])  // key taken from `months`
                    known.months.insert(month)
                }
                do throws(PGError) {
                    return try Self.upsert(data, on: connection)
                } catch {
                    _ = try? connection.execute("ROLLBACK")  // the transaction is already aborted
                    // 23514 "no partition of relation found for row": a partition vanished; recreate once.
                    if error.sqlState == "23514" && attempt == 1 {
                        known.months.removeAll()
                        continue
                    }
                    if error.kind == .connection { known.months.removeAll() }
                    throw error
                }
            }
        }
    }

    private static func upsert(_ data: [UInt8], on connection: PGConnection) throws(PGError) -> Int {
        try connection.execute("BEGIN")
        try connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS candles_staging (LIKE candles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        _ = try connection.copyIn("COPY candles_staging (\(columns)) FROM STDIN", data: data)
        let result = try connection.execute(
            """
            INSERT INTO candles (\(columns))
            SELECT DISTINCT ON (exchange, symbol, timeframe, open_time) \(columns)
            FROM candles_staging
            ORDER BY exchange, symbol, timeframe, open_time, confirmed DESC, timestamp_collector DESC
            ON CONFLICT (exchange, symbol, timeframe, open_time) DO UPDATE SET
                open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume, confirmed = EXCLUDED.confirmed,
                timestamp_exchange = EXCLUDED.timestamp_exchange, timestamp_collector = EXCLUDED.timestamp_collector
            WHERE NOT candles.confirmed OR EXCLUDED.confirmed
            """)
        try connection.execute("COMMIT")
        return result.affectedRows
    }

    /// The newest confirmed open time stored for `stream` (µs), if any.
    public func lastConfirmedOpenTime(_ stream: StreamID) async throws(PGError) -> Int64? {
        guard case .candles(let tf) = stream.feed else { return nil }
        let result = try await executor.run { connection throws(PGError) in
            try connection.execute(
                """
                SELECT (extract(epoch FROM max(open_time)) * 1000000)::bigint FROM candles
                WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 AND confirmed
                """, [stream.exchange.rawValue, stream.symbol, tf.key])
        }
        return result.scalar.flatMap { Int64($0) }
    }

    /// `year * 12 + month - 1` of a µs time (UTC).
    static func monthKey(_ t: Int64) -> Int {
        let d = UTCCalendar.date(ofMicroseconds: t)
        return d.year * 12 + d.month - 1
    }

    /// COPY text format: tab-separated, `\\`, tab, newline and carriage return escaped.
    static func copyText(_ candles: [Candle]) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(candles.count * 200)
        func field(_ text: String) {
            for b in text.utf8 {
                switch b {
                case UInt8(ascii: "\\"): out.append(contentsOf: [92, 92])
                case 9: out.append(contentsOf: [92, UInt8(ascii: "t")])
                case 10: out.append(contentsOf: [92, UInt8(ascii: "n")])
                case 13: out.append(contentsOf: [92, UInt8(ascii: "r")])
                default: out.append(b)
                }
            }
        }
        for c in candles {
            field(c.exchange.rawValue)
            out.append(9)
            field(c.symbol)
            out.append(9)
            field(c.timeframe.key)
            out.append(9)
            field(UTCCalendar.iso8601(microseconds: c.openTime))
            for d in [c.open, c.high, c.low, c.close, c.volume, c.quoteVolume] {
                out.append(9)
                field(d.text)
            }
            out.append(9)
            out.append(c.isConfirmed ? UInt8(ascii: "t") : UInt8(ascii: "f"))
            out.append(9)
            field(UTCCalendar.iso8601(microseconds: c.timestampExchange))
            out.append(9)
            field(UTCCalendar.iso8601(microseconds: c.timestampCollector))
            out.append(10)
        }
        return out
    }
}
