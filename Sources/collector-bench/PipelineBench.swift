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
        let target = options.int("messages", default: 1_000_000)
        guard let urlText = options.string("url"), let url = WebSocketURL(urlText) else {
            fail("--url ws[s]://… required")
        }
        var configuration = WebSocketConfiguration()
        if let ca = options.string("ca") {
            do {
                configuration.tls = try TLSContext(configuration: .client(trustRootsFile: ca))
            } catch {
                fail("\(error)")
            }
        }
        let loop: EventLoop
        do {
            loop = try EventLoop.start(name: "ws-parse")
        } catch {
            fail("\(error)")
        }
        let done = DispatchSemaphore(value: 0)
        let result = ResultBox()
        let config = configuration
        loop.execute {
            let handler = ParsingHandler(target: target) { seconds, count, error in
                result.set(seconds: seconds, count: count, error: error)
                done.signal()
            }
            WebSocketChannel.connect(to: url, configuration: config, loop: loop, handler: handler)
        }
        done.wait()
        loop.shutdown()
        let (seconds, count, error) = result.get()
        if let error, count < target { fail("receive failed after \(count) candles: \(error)") }
        print(
            "RESULT mode=ws-parse tls=\(url.isSecure) candles=\(count) seconds=\(String(format: "%.4f", seconds)) candles_per_sec=\(Int(Double(count) / seconds))"
        )
        exit(0)
    }
}

final class ParsingHandler: WebSocketHandler {
    let target: Int
    let adapter = OKXAdapter()
    var messages: [ExchangeMessage] = []
    var candles = 0
    var start: UInt64 = 0
    var seconds: Double?
    let report: (Double, Int, String?) -> Void

    init(target: Int, report: @escaping (Double, Int, String?) -> Void) {
        self.target = target
        self.report = report
        messages.reserveCapacity(4)
    }

    func webSocketDidConnect(_ channel: WebSocketChannel) {
        channel.send(text: #"{"id":"b1","op":"subscribe","args":[{"channel":"candle1m","instId":"BTC-USDT"}]}"#)
    }

    func webSocket(_ channel: WebSocketChannel, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {
        messages.removeAll(keepingCapacity: true)
        do {
            try adapter.parse(payload, receivedAt: 0, into: &messages)
        } catch {
            return
        }
        for case .event(.candle) in messages {
            if candles == 0 { start = DispatchTime.now().uptimeNanoseconds }
            candles += 1
        }
        if candles >= target && seconds == nil {
            seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            channel.close()
        }
    }

    func webSocketDidClose(_ channel: WebSocketChannel, info: WSCloseInfo, error: (any Error)?) {
        if seconds == nil { seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        report(seconds ?? 0, candles, candles < target ? (error.map { "\($0)" } ?? "closed early: \(info)") : nil)
    }
}

/// PostgreSQL candle upserts through `CandleStore` (COPY into staging + one upsert per batch).
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
            guard FileManager.default.createFile(atPath: copyFile, contents: Data(CandleStore.copyText(candles))) else {
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
                let store = CandleStore(executor: executor)
                let start = DispatchTime.now().uptimeNanoseconds
                var index = 0
                while index < candles.count {
                    let end = min(index + batch, candles.count)
                    try await store.write(Array(candles[index..<end]))
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
