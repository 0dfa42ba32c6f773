import Collector
import Dispatch
import Exchanges
import Foundation
import MarketData
import PostgresClient
import Runtime
import TLS
import WebSocketProtocol

/// WebSocket → parsed candle events: subscribes to a flooding exchange-sim and parses every frame
/// with the OKX adapter on the receiving loop, as the collector does.
enum ParsedReceiveBench {
    static func run(_ options: BenchOptions) {
        runReceiveBench(options, mode: "ws-parse", unit: "candles", countOption: "messages") { target, report in
            ParsingHandler(target: target, report: report)
        }
    }
}

/// Counts parsed candle events rather than frames, and subscribes on connect.
final class ParsingHandler: CountingHandler {
    let adapter = OKXAdapter()
    var messages: [ExchangeMessage] = []

    override func webSocketDidConnect(_ channel: WebSocketChannel) {
        channel.send(text: #"{"id":"b1","op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"}]}"#)
    }

    override func units(in payload: UnsafeRawBufferPointer) -> Int {
        messages.removeAll(keepingCapacity: true)
        do {
            try adapter.parse(payload, receivedAt: 0, into: &messages)
        } catch {
            return 0
        }
        var candles = 0
        for case .event(.candle) in messages { candles += 1 }
        return candles
    }
}

/// PostgreSQL candle upserts through `PostgresSink` (COPY into staging + one upsert per batch).
enum UpsertBench {
    static func run(_ options: BenchOptions) {
        guard let conninfo = options.string("conninfo") else { fail("--conninfo required") }
        let rows = options.int("rows", default: 1_000_000)
        let batch = options.int("batch", default: 10_000)
        let copyFile = options.string("write-copy-file")
        // --existing: keep the table, so every key already exists (the update path).
        let existing = options.string("existing") != nil
        let candles = makeCandles(rows)
        if let copyFile {
            // The same rows in COPY text format, for the `psql \copy` baseline.
            guard FileManager.default.createFile(atPath: copyFile, contents: Data(PostgresSink.candleCopyText(candles)))
            else {
                fail("cannot write \(copyFile)")
            }
            print("RESULT mode=copy-file rows=\(rows) path=\(copyFile)")
            exit(0)
        }
        let done = DispatchSemaphore(value: 0)
        let box = ResultBox()
        Task.detached {
            let executor = PGExecutor(conninfo: conninfo)
            do {
                guard
                    let directory = SchemaMigrator.locateSQLDirectory(environment: ProcessInfo.processInfo.environment)
                else { fail("sql/init not found") }
                try await SchemaMigrator.migrate(try SchemaMigrator.migrations(in: directory), executor: executor)
                if !existing { try await executor.run { c throws(PGError) in _ = try c.execute("TRUNCATE candles") } }
                let store = PostgresSink(executor: executor)
                let start = DispatchTime.now().uptimeNanoseconds
                var index = 0
                while index < candles.count {
                    let end = min(index + batch, candles.count)
                    try await store.write(candles[index..<end].map(MarketEvent.candle))
                    index = end
                }
                let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
                let count = try await executor.run { c throws(PGError) in
                    try c.execute("SELECT count(*) FROM candles").scalar
                }
                box.set(seconds: seconds, count: Int(count ?? "0") ?? 0, error: nil)
            } catch {
                box.set(seconds: 0, count: 0, error: "\(error)")
            }
            done.signal()
        }
        done.wait()
        let (seconds, count, error) = box.get()
        if let error { fail(error) }
        print(
            "RESULT mode=pg-upsert\(existing ? "-existing" : "") rows=\(count) batch=\(batch) seconds=\(String(format: "%.3f", seconds)) rows_per_sec=\(Int(Double(count) / seconds))"
        )
        exit(0)
    }

    /// `rows` distinct keys: 100 symbols × consecutive minutes, realistic decimal text.
    static func makeCandles(_ rows: Int) -> [Candle] {
        let base = UTCCalendar.microseconds(year: 2025, month: 3, day: 1)
        let tf = Timeframe("1m")!
        return (0..<rows).map { i in
            let symbol = "S\(i % 100)-USDT"
            let minute = Int64(i / 100)
            let price = 10_000 + (i % 9_973)
            return Candle(
                exchange: .okx, symbol: symbol, timeframe: tf, openTime: base + minute * 60_000_000,
                open: DecimalText("\(price).12")!, high: DecimalText("\(price + 5).5")!,
                low: DecimalText("\(price - 3).25")!,
                close: DecimalText("\(price + 1).01")!, volume: DecimalText("\(i % 1000).123456")!,
                quoteVolume: DecimalText("\(i % 1000 * price).5")!, isConfirmed: true,
                timestampExchange: base + minute * 60_000_000, timestampCollector: base + minute * 60_000_000 + 1_000)
        }
    }
}
