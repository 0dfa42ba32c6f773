import Collector
import MarketData
import PostgresClient
import TestSupport
import Testing

/// Runs `body` with a migrated fresh database.
func withMigratedDatabase<R>(_ body: (PGExecutor, TestDatabase) async throws -> R) async throws -> R {
    let database = try await TestDatabase.create()
    defer { database.drop() }
    let executor = PGExecutor(conninfo: database.conninfo)
    let directory = try #require(SchemaMigrator.locateSQLDirectory(environment: [:]))
    try await SchemaMigrator.migrate(try SchemaMigrator.migrations(in: directory), executor: executor)
    defer { executor.disconnect() }
    return try await body(executor, database)
}

func makeCandle(
    _ symbol: String = "BTC-USDT", tf: String = "1m", open openTime: Int64, close: String = "101.5",
    confirmed: Bool = true, collector: Int64 = 1
) -> Candle {
    Candle(
        exchange: .okx, symbol: symbol, timeframe: Timeframe(tf)!, openTime: openTime, open: "100.00000001",
        high: "102.25", low: "99.125", close: DecimalText(close)!, volume: "12.5", quoteVolume: "1270.75",
        isConfirmed: confirmed, timestampExchange: openTime, timestampCollector: collector)
}

@Suite struct PostgresSinkTests {
    @Test func migrationsApplyOnceEvenWhenTwoProcessesRace() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let directory = try #require(SchemaMigrator.locateSQLDirectory(environment: [:]))
        let migrations = try SchemaMigrator.migrations(in: directory)
        #expect(
            migrations.map(\.name) == [
                "01_extensions", "02_schema", "03_feeds", "04_books_and_gaps", "05_coordinator_state",
            ])
        let a = PGExecutor(conninfo: database.conninfo)
        let b = PGExecutor(conninfo: database.conninfo)
        async let first = SchemaMigrator.migrate(migrations, executor: a)
        async let second = SchemaMigrator.migrate(migrations, executor: b)
        let applied = try await [first, second]
        #expect(
            applied.flatMap { $0 }.sorted() == [
                "01_extensions", "02_schema", "03_feeds", "04_books_and_gaps", "05_coordinator_state",
            ])
        let versions = try await a.run { c throws(PGError) in
            try c.execute("SELECT count(*) FROM schema_version").scalar
        }
        #expect(versions == "5")
        #expect(try await SchemaMigrator.migrate(migrations, executor: a).isEmpty)
        // Partitions exist for last month through two months ahead.
        let partitions = try await a.run { c throws(PGError) in
            try c.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'candles'::regclass").scalar
        }
        #expect(partitions == "4")
        let tradePartitions = try await a.run { c throws(PGError) in
            try c.execute("SELECT count(*) FROM pg_inherits WHERE inhparent = 'trades'::regclass").scalar
        }
        #expect(tradePartitions == "4")
        a.disconnect()
        b.disconnect()
    }

    /// Trades go in by binary COPY: every decimal must store what PostgreSQL's own `numeric_in` makes
    /// of the exchange's text (exponents, trailing zeros, signs), and times to the microsecond.
    @Test func tradesByBinaryCopyStoreWhatTheTextFormWouldStore() async throws {
        try await withMigratedDatabase { executor, _ in
            let t = UTCCalendar.microseconds(year: 2025, month: 3, day: 1) + 123_456
            let decimals: [DecimalText] = [
                "42219.9", "0.00000001", "1e-8", "1.50", "-0", "123456789012345678.000000000001", "7E+3", "0.0001",
                "10000", "99999.9999",
            ]
            let trades = decimals.enumerated().map { i, d in
                Trade(
                    exchange: .okx, symbol: "BTC-USDT", tradeID: "t\(i)", price: d,
                    size: decimals[(i + 3) % decimals.count],
                    side: i % 2 == 0 ? .buy : .sell, timestampExchange: t + Int64(i),
                    timestampCollector: t + Int64(i) + 7)
            }
            let sink = PostgresSink(executor: executor)
            try await sink.write(trades.map(MarketEvent.trade))
            let rows = try await executor.run { c throws(PGError) in
                try c.execute(
                    """
                    SELECT trade_id, price::text, size::text, side,
                           (extract(epoch FROM timestamp_exchange) * 1000000)::bigint::text
                    FROM trades ORDER BY trade_id
                    """
                ).rows
            }
            for trade in trades {
                let expected = try await executor.run { c throws(PGError) in
                    try c.execute("SELECT $1::numeric::text, $2::numeric::text", [trade.price.text, trade.size.text])
                        .rows
                }
                let row = rows.first { $0[0] == trade.tradeID }
                #expect(
                    row?[1] == expected.first?[0] && row?[2] == expected.first?[1],
                    "\(trade.tradeID): \(String(describing: row))")
                #expect(row?[3] == trade.side.rawValue)
                #expect(row?[4] == String(trade.timestampExchange))
            }
            #expect(rows.count == trades.count)
        }
    }

    /// Rows a batch brings again are ignored and counted (the duplicate-rows metric).
    @Test func rowsStoredTwiceAreIgnoredAndCounted() async throws {
        try await withMigratedDatabase { executor, _ in
            let t = UTCCalendar.microseconds(year: 2025, month: 3, day: 1)
            let trades = (0..<5).map { i in
                MarketEvent.trade(
                    Trade(
                        exchange: .okx, symbol: "BTC-USDT", tradeID: "d\(i)", price: "1.5", size: "2",
                        side: .buy, timestampExchange: t + Int64(i), timestampCollector: t + Int64(i)))
            }
            let sink = PostgresSink(executor: executor)
            try await sink.write(Array(trades.prefix(3)))
            #expect(sink.duplicateRows == 0)
            try await sink.write(trades)  // three again, two new
            #expect(sink.duplicateRows == 3)
            let count = try await executor.run { c throws(PGError) in
                try c.execute("SELECT count(*) FROM trades").scalar
            }
            #expect(count == "5")
        }
    }

    @Test func rowsLandInTheirMonthlyPartitionsWithExactValues() async throws {
        try await withMigratedDatabase { executor, _ in
            let store = PostgresSink(executor: executor)
            let times: [Int64] = [
                UTCCalendar.microseconds(year: 2019, month: 3, day: 31) + 86_340_000_000,  // 23:59 UTC
                UTCCalendar.microseconds(year: 2019, month: 4, day: 1),
                UTCCalendar.microseconds(year: 2031, month: 12, day: 15),
            ]
            try await store.write(times.map { .candle(makeCandle(open: $0)) })
            let rows = try await executor.run { c throws(PGError) in
                try c.execute(
                    """
                    SELECT tableoid::regclass::text, to_char(open_time AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI'),
                           open::text, high::text, low::text, close::text, volume::text, quote_volume::text, confirmed::text
                    FROM candles ORDER BY open_time
                    """
                ).rows
            }
            #expect(
                rows.map { $0.map { $0 ?? "NULL" } } == [
                    [
                        "candles_2019_03", "2019-03-31 23:59", "100.00000001", "102.25", "99.125", "101.5", "12.5",
                        "1270.75", "true",
                    ],
                    [
                        "candles_2019_04", "2019-04-01 00:00", "100.00000001", "102.25", "99.125", "101.5", "12.5",
                        "1270.75", "true",
                    ],
                    [
                        "candles_2031_12", "2031-12-15 00:00", "100.00000001", "102.25", "99.125", "101.5", "12.5",
                        "1270.75", "true",
                    ],
                ])
        }
    }

    @Test func theGapLedgerIsUpsertedByCauseAndStartAndReadBack() async throws {
        try await withMigratedDatabase { executor, _ in
            let store = PostgresSink(executor: executor)
            let trades = StreamID("okx/trades/BTC-USDT")!
            let book = StreamID("okx/book/BTC-USDT")!
            let t0 = UTCCalendar.microseconds(year: 2026, month: 11, day: 30)
            func record(_ stream: StreamID, _ gap: Gap, at: Int64) -> MarketEvent {
                .gap(GapRecord(stream: stream, gap: gap, recordedAt: at))
            }
            let open = Gap(from: t0, to: t0 + 9_000, missing: 0, cause: .reconnect, reason: "REST backfill running")
            let closed = Gap(
                from: t0, to: t0 + 9_000, missing: 0, cause: .reconnect, recovered: true, reason: "8 fills backfilled")
            let checksum = Gap(from: t0 + 1, to: t0 + 500, missing: 0, cause: .checksum, reason: "checksum 1 vs 2")
            // Open, then closed in one batch (the last record wins), beside a book's checksum gap.
            try await store.write([
                record(trades, open, at: 1), record(trades, closed, at: 2), record(book, checksum, at: 3),
            ])
            // A stale record (older `recordedAt`) does not undo the closed one.
            try await store.write([record(trades, open, at: 1)])
            let ledger = try await store.gapLedger(of: [trades, book, StreamID("okx/ticker/BTC-USDT")!], perStream: 10)
            #expect(ledger == [trades: [closed], book: [checksum]])
            // Bounded per stream: the newest entries.
            try await store.write(
                (1...5).map {
                    record(
                        book,
                        Gap(
                            from: t0 + Int64($0) * 1000, to: t0 + Int64($0) * 1000 + 1, missing: 0,
                            cause: .sequenceBreak, reason: "\($0)"), at: 4)
                })
            let newest = try await store.gapLedger(of: [book], perStream: 2)
            #expect(newest[book]?.map(\.reason) == ["4", "5"])
            // The data tables are untouched by ledger records.
            let count = try await executor.run { c throws(PGError) in
                try c.execute("SELECT count(*)::text FROM gaps").rows
            }
            #expect(count == [["7"]])
        }
    }

    @Test func booksOfTwoDepthsOfOneSymbolAreKeptApart() async throws {
        try await withMigratedDatabase { executor, _ in
            let store = PostgresSink(executor: executor)
            let t = UTCCalendar.microseconds(year: 2026, month: 12, day: 1)
            func message(_ depth: Int?) -> MarketEvent {
                .book(
                    BookMessage(
                        exchange: .okx, symbol: "BTC-USDT", sequence: 7, previousSequence: nil, action: .snapshot,
                        bids: [BookLevel(price: "1.5", size: "2")], asks: [], checksum: -3, timestampExchange: t,
                        timestampCollector: t, depth: depth))
            }
            try await store.write([message(nil), message(5), message(1)])
            try await store.write([message(5)])  // a duplicate is ignored
            let rows = try await executor.run { c throws(PGError) in
                try c.execute("SELECT depth::text, bids::text, checksum::text FROM book_messages ORDER BY depth").rows
            }
            #expect(rows == [["0", "{{1.5,2}}", "-3"], ["1", "{{1.5,2}}", "-3"], ["5", "{{1.5,2}}", "-3"]])
        }
    }

    @Test func confirmedCandleIsNeverOverwrittenByAnUnconfirmedOne() async throws {
        try await withMigratedDatabase { executor, _ in
            let store = PostgresSink(executor: executor)
            let t = UTCCalendar.microseconds(year: 2025, month: 6, day: 1)
            try await store.write([.candle(makeCandle(open: t, close: "1", confirmed: false, collector: 1))])
            try await store.write([.candle(makeCandle(open: t, close: "2", confirmed: true, collector: 2))])
            try await store.write([.candle(makeCandle(open: t, close: "3", confirmed: false, collector: 3))])
            // Same key twice in one batch: the confirmed one wins.
            try await store.write([
                .candle(makeCandle(open: t + 60_000_000, close: "5", confirmed: true, collector: 4)),
                .candle(makeCandle(open: t + 60_000_000, close: "6", confirmed: false, collector: 5)),
            ])
            let rows = try await executor.run { c throws(PGError) in
                try c.execute("SELECT close::text, confirmed::text FROM candles ORDER BY open_time").rows
            }
            #expect(rows == [["2", "true"], ["5", "true"]])
            // The watermark is the newest confirmed bar, written with the rows.
            let marks = try await store.watermarks()
            #expect(marks[StreamID("okx/candles:1m/BTC-USDT")!] == Watermark(time: t + 60_000_000))
            #expect(marks[StreamID("okx/candles:1m/ETH-USDT")!] == nil)
        }
    }

    @Test func aDroppedPartitionIsRecreatedInsteadOfFailingTheBatch() async throws {
        try await withMigratedDatabase { executor, _ in
            let store = PostgresSink(executor: executor)
            let t = UTCCalendar.microseconds(year: 2020, month: 2, day: 10)
            try await store.write([.candle(makeCandle(open: t))])
            try await executor.run { c throws(PGError) in _ = try c.execute("DROP TABLE candles_2020_02") }
            try await store.write([.candle(makeCandle(open: t + 60_000_000))])
            let count = try await executor.run { c throws(PGError) in
                try c.execute("SELECT count(*) FROM candles_2020_02").scalar
            }
            #expect(count == "1")
        }
    }

    @Test func badConninfoFailsWithAConnectionErrorWithoutThePassword() async {
        let executor = PGExecutor(conninfo: "postgresql://nobody:s3cret@127.0.0.1:1/none")
        do throws(PGError) {
            _ = try await executor.run { c throws(PGError) in try c.execute("SELECT 1") }
            Issue.record("connected to port 1")
        } catch {
            #expect(error.kind == .connection)
            #expect(!error.description.contains("s3cret"))
        }
    }

    @Test func conninfoFromDiscreteVariablesIsQuoted() {
        let info = PostgresConfiguration.conninfo(from: [
            "DB_HOST": "db", "DB_PORT": "5433", "DB_NAME": "md", "DB_USER": "u", "DB_PASSWORD": "it's\\x",
        ])
        #expect(info == #"host='db' port='5433' dbname='md' user='u' password='it\'s\\x'"#)
        #expect(PostgresConfiguration.conninfo(from: [:]) == nil)
        #expect(PostgresConfiguration.conninfo(from: ["DATABASE_URL": "postgresql://x/y"]) == "postgresql://x/y")
    }
}
