public import MarketData
import PostgresClient

extension PostgresSink {
    /// A candle's natural key.
    struct CandleKey: Hashable {
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

    public static let candleColumns =
        "exchange, symbol, timeframe, open_time, open, high, low, close, volume, quote_volume, confirmed, timestamp_exchange, timestamp_collector"

    /// One candle per natural key: the confirmed one wins, then the most recently received.
    static func deduplicated(_ candles: [Candle]) -> [Candle] {
        guard candles.count > 1, hasDuplicateKeys(candles) else { return candles }
        var index: [CandleKey: Int] = [:]
        index.reserveCapacity(candles.count)
        var out: [Candle] = []
        out.reserveCapacity(candles.count)
        for candle in candles {
            let key = CandleKey(candle)
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

    /// Whether two candles share a natural key: an open-addressing table of indices under a cheap
    /// FNV-1a hash of the key, equal hashes compared field by field. Batches rarely hold a key twice,
    /// so this spares them the `CandleKey` dictionary (three string hashes and copies per candle).
    static func hasDuplicateKeys(_ candles: [Candle]) -> Bool {
        candles.withUnsafeBufferPointer { c in
            var slots = IndexTable(count: c.count)
            for i in c.indices {
                var slot = slots.slot(for: mix(streamHash(c[i]) ^ UInt64(bitPattern: c[i].openTime)))
                while true {
                    let j = slots[slot]
                    if j < 0 {
                        slots[slot] = Int32(i)
                        break
                    }
                    if c[Int(j)].openTime == c[i].openTime && isSameStream(c[Int(j)], c[i]) { return true }
                    slot = slots.next(slot)
                }
            }
            return false
        }
    }

    /// `candles` with each stream's rows together (streams in order of first appearance, rows in
    /// arrival order within each): consecutive rows then land on the same primary-key leaf page,
    /// which makes PostgreSQL's index insertions markedly cheaper than rows interleaved across
    /// streams. Row order carries no meaning in the table (keys are unique after `deduplicated`), so
    /// streams are told apart by a 64-bit hash alone: a collision would only leave two streams
    /// interleaved. O(n): one hash per candle and a counting sort; returns the input when already
    /// grouped.
    static func groupedByStream(_ candles: [Candle]) -> [Candle] {
        guard candles.count > 2 else { return candles }
        let (groups, groupCount, isGrouped) = candles.withUnsafeBufferPointer { c in
            var size = 16
            while size < 2 * c.count { size <<= 1 }
            let mask = size - 1
            var hashes = [UInt64](repeating: 0, count: size)
            var slotGroups = [Int32](repeating: -1, count: size)
            var groups = [Int32](repeating: 0, count: c.count)
            var groupCount: Int32 = 0
            var isGrouped = true
            for i in c.indices {
                let h = mix(streamHash(c[i]))
                var slot = Int(truncatingIfNeeded: h) & mask
                while slotGroups[slot] >= 0 && hashes[slot] != h { slot = (slot + 1) & mask }
                var group = slotGroups[slot]
                if group < 0 {
                    group = groupCount
                    groupCount += 1
                    hashes[slot] = h
                    slotGroups[slot] = group
                } else if group != groups[i - 1] {
                    isGrouped = false  // a stream seen before, but not on the previous row
                }
                groups[i] = group
            }
            return (groups, Int(groupCount), isGrouped)
        }
        guard !isGrouped else { return candles }
        var starts = [Int](repeating: 0, count: groupCount + 1)
        for g in groups { starts[Int(g) + 1] += 1 }
        for g in 0..<groupCount { starts[g + 1] += starts[g] }
        var order = [Int](repeating: 0, count: candles.count)
        for (i, g) in groups.enumerated() {
            order[starts[Int(g)]] = i
            starts[Int(g)] += 1
        }
        return order.map { candles[$0] }
    }

    /// Open addressing over candle indices (-1: empty), at most half full.
    private struct IndexTable {
        private var slots: [Int32]
        private let mask: Int

        init(count: Int) {
            var size = 16
            while size < 2 * count { size <<= 1 }
            slots = [Int32](repeating: -1, count: size)
            mask = size - 1
        }

        func slot(for hash: UInt64) -> Int { Int(truncatingIfNeeded: hash) & mask }
        func next(_ slot: Int) -> Int { (slot + 1) & mask }
        subscript(slot: Int) -> Int32 {
            get { slots[slot] }
            set { slots[slot] = newValue }
        }
    }

    /// FNV-1a over the symbol and the timeframe key (the exchange is compared, not hashed: streams
    /// of two exchanges sharing a symbol only share a probe chain).
    private static func streamHash(_ candle: Candle) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325
        for b in candle.symbol.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        h = (h ^ 0xff) &* 0x100_0000_01b3
        for b in candle.timeframe.key.utf8 { h = (h ^ UInt64(b)) &* 0x100_0000_01b3 }
        return h
    }

    /// Spreads a hash's entropy into its low bits (the table slot).
    private static func mix(_ h: UInt64) -> UInt64 {
        let m = h &* 0x9e37_79b9_7f4a_7c15
        return m ^ (m >> 29)
    }

    private static func isSameStream(_ a: Candle, _ b: Candle) -> Bool {
        a.symbol == b.symbol && a.timeframe.key == b.timeframe.key && a.exchange == b.exchange
    }

    /// Fresh candles from this many on are first probed (is the first one's key stored?), so a
    /// batch that is all rewrites (a re-run backfill, a replay) goes straight to the upsert instead
    /// of a COPY that fails on its first buffered rows. One round trip; below this the failed COPY
    /// is cheaper than the probe.
    static let probeMinimumCandles = 64
    /// Rows in the first COPY slice: small, so PostgreSQL starts parsing almost at once.
    static let firstCandleSliceRows = 100
    /// Rows in each later slice (the server parses one while the next is encoded).
    static let candleSliceRows = 500

    private static let createCandleStaging =
        "CREATE TEMP TABLE IF NOT EXISTS candles_staging (LIKE candles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS"

    /// Inside the batch's transaction: keys we stored unconfirmed need an upsert; the rest are most
    /// likely new, so they go by COPY straight into `candles` inside a savepoint (a unique violation
    /// means some already existed: roll back to the savepoint and upsert them too). A large batch
    /// whose first key is already stored skips that COPY (see `probeMinimumCandles`). The upsert goes
    /// through a staging table and one `INSERT … ON CONFLICT DO UPDATE` that never lets an
    /// unconfirmed candle overwrite a confirmed one, and leaves alone a row that would not change.
    ///
    /// Rows go grouped by stream (`groupedByStream`) and in the binary COPY format where it stores
    /// the same values (`copyCandles`). Round trips: SAVEPOINT and the COPY for new keys (the
    /// savepoint is left to the COMMIT, which releases it); the probe, at most one
    /// CREATE … IF NOT EXISTS, the staging COPY and the INSERT for rewrites. The staging table is
    /// `ON COMMIT DELETE ROWS`: the commit empties it, and the rows of a rolled-back batch never
    /// become visible, so no TRUNCATE (which would also give the table a new file every batch).
    static func writeCandles(_ candles: [Candle], cache: WriteCache, on connection: PGConnection) throws(PGError) {
        guard !candles.isEmpty else { return }
        let candles = groupedByStream(candles)
        var fresh = candles
        var toUpsert: [Candle] = []
        if !cache.unconfirmed.isEmpty {
            fresh = []
            for candle in candles {
                if cache.unconfirmed.contains(CandleKey(candle)) {
                    toUpsert.append(candle)
                } else {
                    fresh.append(candle)
                }
            }
        }
        var stagingExists = false
        if !fresh.isEmpty {
            var isStored = false
            if fresh.count >= probeMinimumCandles, let probe = try probe(fresh[0], on: connection) {
                (isStored, stagingExists) = probe
            }
            if isStored {
                toUpsert += fresh
            } else {
                try connection.execute("SAVEPOINT fresh_candles")
                do throws(PGError) {
                    try copyCandles(fresh, into: "candles", on: connection)
                } catch {
                    guard error.sqlState == "23505" else { throw error }
                    try connection.execute("ROLLBACK TO SAVEPOINT fresh_candles; " + createCandleStaging)
                    stagingExists = true
                    toUpsert += fresh
                }
            }
        }
        guard !toUpsert.isEmpty else { return }
        if !stagingExists { try connection.execute(createCandleStaging) }
        try copyCandles(toUpsert, into: "candles_staging", on: connection)
        try connection.execute(
            """
            INSERT INTO candles (\(candleColumns)) SELECT \(candleColumns) FROM candles_staging
            ON CONFLICT (exchange, symbol, timeframe, open_time) DO UPDATE SET
                open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume, confirmed = EXCLUDED.confirmed,
                timestamp_exchange = EXCLUDED.timestamp_exchange, timestamp_collector = EXCLUDED.timestamp_collector
            WHERE (NOT candles.confirmed OR EXCLUDED.confirmed)
              AND NOT ((candles.open, candles.high, candles.low, candles.close, candles.volume, candles.quote_volume,
                        candles.confirmed, candles.timestamp_exchange, candles.timestamp_collector)::record
                   *= (EXCLUDED.open, EXCLUDED.high, EXCLUDED.low, EXCLUDED.close, EXCLUDED.volume,
                       EXCLUDED.quote_volume, EXCLUDED.confirmed, EXCLUDED.timestamp_exchange,
                       EXCLUDED.timestamp_collector)::record)
            """)
        // `*=` compares the stored images, so `1.5` → `1.50` (same number, other digits) still
        // updates: the row keeps the exchange's text exactly as the plain upsert would leave it.
    }

    /// Whether `candle`'s key is stored, and whether this session's staging table exists (one round
    /// trip for both); nil for a time the probe's text form cannot carry (outside years 1970–9999:
    /// the COPY alone decides then).
    private static func probe(_ candle: Candle, on connection: PGConnection) throws(PGError) -> (Bool, Bool)? {
        guard candle.openTime >= 0, candle.openTime < 253_402_300_800_000_000 else { return nil }
        let row = try connection.execute(
            """
            SELECT EXISTS (SELECT 1 FROM candles
                           WHERE exchange = $1 AND symbol = $2 AND timeframe = $3 AND open_time = $4::timestamptz),
                   to_regclass('pg_temp.candles_staging') IS NOT NULL
            """,
            [
                candle.exchange.rawValue, candle.symbol, candle.timeframe.key,
                UTCCalendar.iso8601(microseconds: candle.openTime, alwaysMicroseconds: true),
            ]
        ).rows.first
        return (row?[0] == "t", row?[1] == "t")
    }

    /// COPYs `candles` into `table` in slices (a small first one, then `candleSliceRows` each), in
    /// the binary format when every candle allows it (see `COPYBinary`), else in text.
    private static func copyCandles(
        _ candles: [Candle], into table: String, on connection: PGConnection
    )
        throws(PGError)
    {
        let isBinary = candles.allSatisfy(isBinaryEncodable)
        let copySQL = "COPY \(table) (\(candleColumns)) FROM STDIN" + (isBinary ? " (FORMAT binary)" : "")
        var index = 0
        _ = try connection.copyIn(copySQL) { buffer in
            guard index < candles.count else { return false }
            let end = min(index + (index == 0 ? firstCandleSliceRows : candleSliceRows), candles.count)
            buffer =
                isBinary
                ? candleCopyBinary(candles[index..<end], isFirst: index == 0, isLast: end == candles.count)
                : candleCopyText(candles[index..<end])
            index = end
            return true
        }
    }

    /// Whether the binary form stores exactly what `candleCopyText` would (see `COPYBinary`).
    static func isBinaryEncodable(_ c: Candle) -> Bool {
        COPYBinary.timeRange.contains(c.openTime) && COPYBinary.timeRange.contains(c.timestampExchange)
            && COPYBinary.timeRange.contains(c.timestampCollector)
    }

    /// Binary COPY data for candles (`candleColumns` order), with the format's header on the first
    /// slice and its trailer on the last. Every candle must be `isBinaryEncodable`.
    static func candleCopyBinary(_ candles: ArraySlice<Candle>, isFirst: Bool, isLast: Bool) -> [UInt8] {
        COPYBinary.encode(candles, isFirst: isFirst, isLast: isLast) { c in
            COPYBinary.textBound(c.exchange.rawValue) + COPYBinary.textBound(c.symbol)
                + COPYBinary.textBound(c.timeframe.key) + 3 * COPYBinary.timestampBound + COPYBinary.boolBound
                + COPYBinary.numericBound(c.open) + COPYBinary.numericBound(c.high) + COPYBinary.numericBound(c.low)
                + COPYBinary.numericBound(c.close) + COPYBinary.numericBound(c.volume)
                + COPYBinary.numericBound(c.quoteVolume)
        } write: { out, c in
            out.row(fields: 13)
            out.text(c.exchange.rawValue)
            out.text(c.symbol)
            out.text(c.timeframe.key)
            out.timestamp(c.openTime)
            out.numeric(c.open)
            out.numeric(c.high)
            out.numeric(c.low)
            out.numeric(c.close)
            out.numeric(c.volume)
            out.numeric(c.quoteVolume)
            out.bool(c.isConfirmed)
            out.timestamp(c.timestampExchange)
            out.timestamp(c.timestampCollector)
        }
    }

    /// After the commit: remember which keys are stored unconfirmed (bounded, see `Limits`).
    static func rememberUnconfirmed(_ candles: [Candle], cache: WriteCache) {
        for candle in candles {
            if candle.isConfirmed {
                cache.unconfirmed.remove(CandleKey(candle))
            } else {
                cache.unconfirmed.insert(CandleKey(candle))
            }
        }
        if cache.unconfirmed.count > Limits.maxUnconfirmedKeys { cache.unconfirmed.removeAll() }
    }

    /// COPY text for candles.
    public static func candleCopyText(_ candles: ArraySlice<Candle>) -> [UInt8] {
        COPYText.encode(candles) { c in
            COPYText.fieldBound(c.exchange.rawValue) + COPYText.fieldBound(c.symbol)
                + COPYText.fieldBound(c.timeframe.key)
                + COPYText.decimalBound(c.open) + COPYText.decimalBound(c.high) + COPYText.decimalBound(c.low)
                + COPYText.decimalBound(c.close) + COPYText.decimalBound(c.volume)
                + COPYText.decimalBound(c.quoteVolume)
                + COPYText.fieldBound("t") + 3 * COPYText.timestampBound + COPYText.rowEndBound
        } write: { out, c in
            out.field(c.exchange.rawValue)
            out.field(c.symbol)
            out.field(c.timeframe.key)
            out.timestamp(c.openTime)
            out.decimal(c.open)
            out.decimal(c.high)
            out.decimal(c.low)
            out.decimal(c.close)
            out.decimal(c.volume)
            out.decimal(c.quoteVolume)
            out.field(c.isConfirmed ? "t" : "f")
            out.timestamp(c.timestampExchange)
            out.timestamp(c.timestampCollector)
            out.endRow()
        }
    }

    public static func candleCopyText(_ candles: [Candle]) -> [UInt8] { candleCopyText(candles[...]) }
}
