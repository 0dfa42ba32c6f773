import Collector
import Foundation
import MarketData
import PostgresClient

/// PostgreSQL trade inserts through `PostgresSink` alone (no WebSocket): `--rows` new trades in
/// `--batch`-event writes into the truncated `trades` table, as the dispatcher sends them. With
/// `--write-copy-file PATH`, writes the same rows as `PostgresSink.tradeCopyText` encodes them (the
/// `psql \copy` baseline) and creates their partitions instead.
enum TradesBench {
    static func run(_ options: BenchOptions) {
        guard let conninfo = options.string("conninfo") else { fail("--conninfo required") }
        let rows = options.int("rows", default: 1_000_000)
        let batch = options.int("batch", default: 10_000)
        // --backlog: the batches wait in a spool and the dispatcher drains it (--per-write events per write).
        let backlog = options.string("backlog") != nil
        let perWrite = options.int("per-write", default: 10_000)
        guard rows > 0, batch > 0 else { fail("--rows and --batch must be positive") }
        let trades = makeTrades(rows)
        let first = trades.map(\.timestampExchange).min() ?? 0
        let last = trades.map(\.timestampExchange).max() ?? 0
        let executor = PGExecutor(conninfo: conninfo)
        if let copyFile = options.string("write-copy-file") {
            PGBench.writeFile(PostgresSink.tradeCopyText(trades[...]), to: copyFile)
            PGBench.blocking { try await PGBench.prepare(executor, table: "trades", first: first, last: last) }
            print("RESULT mode=copy-file rows=\(rows) path=\(copyFile)")
            exit(0)
        }
        let events = trades.map(MarketEvent.trade)
        let (seconds, count) = PGBench.blocking {
            try await PGBench.prepare(executor, table: "trades", first: first, last: last)
            try await PGBench.truncate(executor, table: "trades")
            let seconds =
                backlog
                ? try await PGBench.timedBacklogDrain(
                    events, batch: batch, maxEventsPerWrite: perWrite, executor: executor)
                : try await PGBench.timedWrites(events, batch: batch, executor: executor)
            return (seconds, try await PGBench.count(executor, table: "trades"))
        }
        guard count == rows else { fail("stored \(count) trades, expected \(rows)") }
        print(
            "RESULT mode=pg-trades\(backlog ? "-backlog" : "") rows=\(count) batch=\(batch)\(backlog ? " per_write=\(perWrite)" : "") seconds=\(String(format: "%.3f", seconds)) rows_per_sec=\(Int(Double(count) / seconds))"
        )
        exit(0)
    }

    /// `rows` distinct trades: 100 symbols, one fill per millisecond, OKX-shaped ids and decimals
    /// (a one-decimal price, an eight-decimal size).
    static func makeTrades(_ rows: Int) -> [Trade] {
        let base = UTCCalendar.microseconds(year: 2025, month: 3, day: 1)
        return (0..<rows).map { i in
            let time = base + Int64(i) * 1_000
            let price = 42_000 + i % 997
            let size = 10_000_000 + (i &* 7_919) % 90_000_000
            return Trade(
                exchange: .okx, symbol: "S\(i % 100)-USDT", tradeID: String(130_639_474 + i),
                price: DecimalText("\(price).\(i % 10)")!, size: DecimalText("0.\(size)")!,
                side: i % 3 == 0 ? .sell : .buy, timestampExchange: time, timestampCollector: time + 1_500)
        }
    }
}
