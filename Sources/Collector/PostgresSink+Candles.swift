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
        guard candles.count > 1 else { return candles }
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

    /// Inside the batch's transaction: keys we stored unconfirmed need an upsert; the rest are most
    /// likely new, so they go by COPY straight into `candles` inside a savepoint (a unique violation
    /// means some already existed: roll back to the savepoint and upsert them too). The upsert goes
    /// through a staging table and one `INSERT … ON CONFLICT DO UPDATE` that never lets an
    /// unconfirmed candle overwrite a confirmed one.
    static func writeCandles(_ candles: [Candle], cache: WriteCache, on connection: PGConnection) throws(PGError) {
        guard !candles.isEmpty else { return }
        var fresh: [Candle] = []
        var toUpsert: [Candle] = []
        for candle in candles {
            if cache.unconfirmed.contains(CandleKey(candle)) { toUpsert.append(candle) } else { fresh.append(candle) }
        }
        if !fresh.isEmpty {
            try connection.execute("SAVEPOINT fresh_candles")
            do throws(PGError) {
                try copySlices(
                    fresh, into: "COPY candles (\(candleColumns)) FROM STDIN", on: connection, encode: candleCopyText)
                try connection.execute("RELEASE SAVEPOINT fresh_candles")
            } catch {
                guard error.sqlState == "23505" else { throw error }
                try connection.execute("ROLLBACK TO SAVEPOINT fresh_candles")
                toUpsert += fresh
            }
        }
        guard !toUpsert.isEmpty else { return }
        try connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS candles_staging (LIKE candles INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        try copySlices(
            toUpsert, into: "COPY candles_staging (\(candleColumns)) FROM STDIN", on: connection, encode: candleCopyText
        )
        try connection.execute(
            """
            INSERT INTO candles (\(candleColumns)) SELECT \(candleColumns) FROM candles_staging
            ON CONFLICT (exchange, symbol, timeframe, open_time) DO UPDATE SET
                open = EXCLUDED.open, high = EXCLUDED.high, low = EXCLUDED.low, close = EXCLUDED.close,
                volume = EXCLUDED.volume, quote_volume = EXCLUDED.quote_volume, confirmed = EXCLUDED.confirmed,
                timestamp_exchange = EXCLUDED.timestamp_exchange, timestamp_collector = EXCLUDED.timestamp_collector
            WHERE NOT candles.confirmed OR EXCLUDED.confirmed
            """)
        try connection.execute("TRUNCATE candles_staging")
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
        var out = COPYText(capacity: candles.count * 160)
        for c in candles {
            out.field(c.exchange.rawValue)
            out.field(c.symbol)
            out.field(c.timeframe.key)
            out.timestamp(c.openTime)
            for d in [c.open, c.high, c.low, c.close, c.volume, c.quoteVolume] { out.field(d.text) }
            out.field(c.isConfirmed ? "t" : "f")
            out.timestamp(c.timestampExchange)
            out.timestamp(c.timestampCollector)
            out.endRow()
        }
        return out.bytes
    }

    public static func candleCopyText(_ candles: [Candle]) -> [UInt8] { candleCopyText(candles[...]) }
}
