public import MarketData
public import PostgresClient

/// Writes candle batches to PostgreSQL: COPY into a session-local staging table, then one upsert on
/// the natural key. A confirmed candle is never overwritten by an unconfirmed one; a month without a
/// partition gets one first, so no batch fails for lack of a partition (DESIGN.md §5).
public final class CandleStore: Sendable {
    public let executor: PGExecutor
    private let knownMonths = KnownMonths()

    /// Months whose partition exists, and keys last written unconfirmed (touched only on the
    /// executor's queue).
    private final class KnownMonths: @unchecked Sendable {
        // @unchecked Sendable: only read and written inside `executor.run` bodies, which the
        // executor's serial queue runs one at a time.
        var months: Set<Int> = []
        /// Keys stored unconfirmed: their next version must update, not insert.
        var unconfirmed: Set<Key> = []
    }

    /// A natural key.
    struct Key: Hashable {
        var exchange: ExchangeName
        var symbol: String
        var timeframe: String
        var openTime: Int64
        init(_ c: Candle) {
            exchange = c.exchange
            symbol = c.symbol
            timeframe = c.timeframe.key
            openTime = c.openTime
        }
    }

    /// Bumped after each committed write, for read caches.
    public let versions: StreamVersions

    public init(executor: PGExecutor, versions: StreamVersions = StreamVersions()) {
        self.executor = executor
        self.versions = versions
    }

    public static let columns =
        "exchange, symbol, timeframe, open_time, open, high, low, close, volume, quote_volume, confirmed, timestamp_exchange, timestamp_collector"

    /// Upserts `candles` in one transaction; returns the number of rows inserted or updated.
    @discardableResult
    public func write(_ candles: [Candle]) async throws(PGError) -> Int {
        guard !candles.isEmpty else { return 0 }
        let unique = Self.deduplicated(candles)
        let months = Set(unique.map { Self.monthKey($0.openTime) })
        let firstOfMonth = Dictionary(
            unique.map { (Self.monthKey($0.openTime), $0.openTime) }, uniquingKeysWith: { a, _ in a })
        let known = knownMonths
        let touched = Set(unique.map(\.stream))
        defer { versions.bump(touched) }  // after the commit (or a failure): readers re-query either way
        return try await executor.run { connection throws(PGError) in
            // Keys we stored unconfirmed need an upsert; the rest are most likely new: COPY them straight
            // in (falling back to the upsert if any already exists).
            var fresh: [Candle] = []
            var updates: [Candle] = []
            for candle in unique {
                if known.unconfirmed.contains(Key(candle)) { updates.append(candle) } else { fresh.append(candle) }
            }
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
                    let affected = try Self.write(fresh: fresh, updates: updates, on: connection)
                    for candle in unique {
                        if candle.isConfirmed {
                            known.unconfirmed.remove(Key(candle))
                        } else {
                            known.unconfirmed.insert(Key(candle))
                        }
                    }
                    return affected
                } catch {
                    _ = try? connection.execute("ROLLBACK")  // the transaction is already aborted
                    if attempt == 1 && error.sqlState == "23514" {
                        // "no partition of relation found for row": a partition vanished; recreate it.
                        known.months.removeAll()
                        continue
                    }
                    if error.kind == .connection { known.months.removeAll() }
                    throw error
                }
            }
        }
    }

    /// One candle per natural key: the confirmed one wins, then the most recently received.
    static func deduplicated(_ candles: [Candle]) -> [Candle] {
        var index: [Key: Int] = [:]
        index.reserveCapacity(candles.count)
        var out: [Candle] = []
        out.reserveCapacity(candles.count)
        for candle in candles {
            let key = Key(candle)
            if let i = index[key] {
                let old = out[i]
                if (candle.isConfirmed && !old.isConfirmed)
                    || (candle.isConfirmed == old.isConfirmed && candle.timestampCollector >= old.timestampCollector)
                {
                    out[i] = candle
                }
            } else {
                index[key] = out.count
                out.append(candle)
            }
        }
        return out
    }

    /// One transaction: fresh rows by COPY straight into `candles` inside a savepoint (a unique
    /// violation means some already existed: roll back to the savepoint and upsert them too), then the
    /// rest through a staging table and one `INSERT … ON CONFLICT DO UPDATE` that never lets an
    /// unconfirmed candle overwrite a confirmed one.
    private static func write(fresh: [Candle], updates: [Candle], on connection: PGConnection) throws(PGError) -> Int {
        try connection.execute("BEGIN")
        var affected = 0
        var toUpsert = updates
        if !fresh.isEmpty {
            try connection.execute("SAVEPOINT fresh_rows")
            do throws(PGError) {
                // Encoded in slices, so PostgreSQL parses one slice while the next is being encoded.
                var index = 0
                affected += try connection.copyIn("COPY candles (\(columns)) FROM STDIN") { buffer in
                    guard index < fresh.count else { return false }
                    let end = min(index + Self.copySliceRows, fresh.count)
                    buffer = copyText(fresh[index..<end])
                    index = end
                    return true
                }
                try connection.execute("RELEASE SAVEPOINT fresh_rows")
            } catch {
                guard error.sqlState == "23505" else { throw error }
                try connection.execute("ROLLBACK TO SAVEPOINT fresh_rows")
                toUpsert += fresh
            }
        }
        if !toUpsert.isEmpty {
            try connection.execute(
                "CREATE TEMP TABLE IF NOT EXISTS candles_staging (LIKE candles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"
            )
            _ = try connection.copyIn("COPY candles_staging (\(columns)) FROM STDIN", data: copyText(toUpsert))
            affected += try connection.execute(
                """
                INSERT INTO candles (\(columns)) SELECT \(columns) FROM candles_staging
                ON CONFLICT (exchange, symbol, timeframe, open_time) DO UPDATE SET
                    open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                    volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume, confirmed = EXCLUDED.confirmed,
                    timestamp_exchange = EXCLUDED.timestamp_exchange, timestamp_collector = EXCLUDED.timestamp_collector
                WHERE NOT candles.confirmed OR EXCLUDED.confirmed
                """
            ).affectedRows
        }
        try connection.execute("COMMIT")
        return affected
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
    /// Timestamps are written as `YYYY-MM-DD HH:MM:SS.ffffff+00` straight into the buffer.
    /// Rows per COPY slice: large enough to amortise the call, small enough to overlap with the server.
    static let copySliceRows = 500

    public static func copyText(_ candles: [Candle]) -> [UInt8] { copyText(candles[...]) }

    /// COPY text for a slice of candles.
    public static func copyText(_ candles: ArraySlice<Candle>) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(candles.count * 160)
        var dayCache = DayCache()
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
            dayCache.appendTimestamp(c.openTime, to: &out)
            for d in [c.open, c.high, c.low, c.close, c.volume, c.quoteVolume] {
                out.append(9)
                field(d.text)
            }
            out.append(9)
            out.append(c.isConfirmed ? UInt8(ascii: "t") : UInt8(ascii: "f"))
            out.append(9)
            dayCache.appendTimestamp(c.timestampExchange, to: &out)
            out.append(9)
            dayCache.appendTimestamp(c.timestampCollector, to: &out)
            out.append(10)
        }
        return out
    }

    /// Formats µs timestamps, remembering the last day's `YYYY-MM-DD ` prefix (batches share days).
    struct DayCache {
        private var day: Int64 = .min
        private var prefix: [UInt8] = []

        mutating func appendTimestamp(_ t: Int64, to out: inout [UInt8]) {
            let microsPerDay: Int64 = 86_400_000_000
            let d = t >= 0 ? t / microsPerDay : -((-t + microsPerDay - 1) / microsPerDay)
            if d != day {
                day = d
                let (y, m, dd) = UTCCalendar.date(ofMicroseconds: t)
                prefix = Array(String(format4(y) + "-" + format2(m) + "-" + format2(dd) + " ").utf8)
            }
            out.append(contentsOf: prefix)
            var rem = t - d * microsPerDay
            let micros = rem % 1_000_000
            rem /= 1_000_000
            appendDigits(Int(rem / 3600), 2, &out)
            out.append(UInt8(ascii: ":"))
            appendDigits(Int(rem / 60 % 60), 2, &out)
            out.append(UInt8(ascii: ":"))
            appendDigits(Int(rem % 60), 2, &out)
            out.append(UInt8(ascii: "."))
            appendDigits(Int(micros), 6, &out)
            out.append(contentsOf: [UInt8(ascii: "+"), UInt8(ascii: "0"), UInt8(ascii: "0")])
        }

        private func appendDigits(_ value: Int, _ width: Int, _ out: inout [UInt8]) {
            var divisor = 1
            for _ in 1..<width { divisor *= 10 }
            var v = value
            while divisor > 0 {
                out.append(UInt8(48 + (v / divisor) % 10))
                v %= divisor
                divisor /= 10
            }
        }

        private func format2(_ v: Int) -> String { v < 10 ? "0\(v)" : "\(v)" }
        private func format4(_ v: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, 4 - s.count)) + s
        }
    }
}
