import Collector
import CollectorCore
import Dispatch
import Exchanges
import Foundation
import MarketData
import PostgresClient
import Runtime
import TLS
import WebSocketProtocol

/// WebSocket → parsed candle events: subscribes to a flooding exchange-sim and parses every frame
/// with the OKX adapter on the receiving loop. `--session`: every frame goes through the
/// connection's `ExchangeSession` (parse, stream routing, window, quality and continuity checks,
/// the emitted actions), as the collector does; without it, the adapter alone.
enum ParsedReceiveBench {
    static func run(_ options: BenchOptions) {
        let session = options.string("session") != nil
        // --feed trades: subscribe to trades-all and count parsed fills; --raw: count frames only (the
        // same subscription, no parsing: the raw-frame rate the parsed rate is judged against).
        let trades = options.string("feed") == "trades"
        let raw = options.string("raw") != nil
        let unit = trades ? "trades" : "candles"
        let mode = raw ? "ws-raw-\(unit)" : session ? "ws-parse-session" : trades ? "ws-parse-trades" : "ws-parse"
        runReceiveBench(options, mode: mode, unit: unit, countOption: "messages") { target, report in
            if raw { return RawFeedHandler(target: target, report: report, trades: trades) }
            if trades { return TradeParsingHandler(target: target, report: report) }
            return session
                ? SessionParsingHandler(target: target, report: report)
                : ParsingHandler(target: target, report: report)
        }
    }
}

/// Counts frames of a flooding subscription without parsing them.
final class RawFeedHandler: CountingHandler {
    let trades: Bool
    init(target: Int, report: @escaping (Double, Int, String?) -> Void, trades: Bool) {
        self.trades = trades
        super.init(target: target, report: report)
    }

    override func webSocketDidConnect(_ channel: WebSocketChannel) {
        let channelName = trades ? "trades-all" : "candle1m"
        channel.send(text: #"{"id":"b1","op":"subscribe","args":[{"channel":"\#(channelName)","instId":"BTC-USDT"}]}"#)
    }

    /// Every data push counts (the subscribe acknowledgement, `{"event":…`, does not).
    override func units(in payload: UnsafeRawBufferPointer) -> Int {
        payload.count > 8 && payload[2] == UInt8(ascii: "a") ? 1 : 0
    }
}

/// Counts the fills the OKX adapter parses from a flooding `trades-all` subscription.
final class TradeParsingHandler: CountingHandler {
    let adapter = OKXAdapter()
    var messages: [ExchangeMessage] = []

    override func webSocketDidConnect(_ channel: WebSocketChannel) {
        channel.send(text: #"{"id":"b1","op":"subscribe","args":[{"channel":"trades-all","instId":"BTC-USDT"}]}"#)
    }

    override func units(in payload: UnsafeRawBufferPointer) -> Int {
        messages.removeAll(keepingCapacity: true)
        do {
            try adapter.parse(payload, receivedAt: 0, into: &messages)
        } catch {
            return 0
        }
        var fills = 0
        for case .event(.trade) in messages { fills += 1 }
        return fills
    }
}

/// Counts the candle events an `ExchangeSession` emits (the collector's per-frame path without the
/// engine's batching).
final class SessionParsingHandler: CountingHandler {
    var session = ExchangeSession(
        adapter: OKXAdapter(), url: "ws://bench", configuration: SessionConfiguration(), seed: 1)
    var actions: [SessionAction] = []
    var budget = TokenBucket(capacity: 10, refillPerSecond: 10)
    let origin = DispatchTime.now().uptimeNanoseconds

    var now: Instant { Instant(nanoseconds: Int64(DispatchTime.now().uptimeNanoseconds - origin)) }

    override func webSocketDidConnect(_ channel: WebSocketChannel) {
        let stream = StreamID("okx/candles:1m/BTC-USDT")!
        _ = session.add([stream], now: now)
        _ = session.timerFired(.connect, now: now, connectionBudget: &budget)
        for action in session.connected(now: now, wallClock: 0) {
            if case .send(.text(let text)) = action { channel.send(text: text) }
        }
    }

    override func units(in payload: UnsafeRawBufferPointer) -> Int {
        actions.removeAll(keepingCapacity: true)
        session.frame(payload, isText: true, receivedAt: 0, now: now, into: &actions)
        var candles = 0
        for case .emit(.candle) in actions { candles += 1 }
        return candles
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

/// PostgreSQL candle writes through `PostgresSink`: new keys (COPY straight into `candles`), or
/// with `--existing` the keys the table already holds, written again unchanged (the upsert path), or
/// with `--revise` the same keys with a later collector time (every row really updated).
enum UpsertBench {
    static func run(_ options: BenchOptions) {
        guard let conninfo = options.string("conninfo") else { fail("--conninfo required") }
        let rows = options.int("rows", default: 1_000_000)
        let batch = options.int("batch", default: 10_000)
        // --backlog: the batches wait in a spool and the dispatcher drains it (--per-write events per write).
        let backlog = options.string("backlog") != nil
        let perWrite = options.int("per-write", default: 10_000)
        let copyFile = options.string("write-copy-file")
        // --existing / --revise: keep the table, so every key already exists (the update path).
        let revise = options.string("revise") != nil
        let existing = revise || options.string("existing") != nil
        let candles = makeCandles(rows, revision: revise ? 1 : 0)
        let first = candles.map(\.openTime).min() ?? 0
        let last = candles.map(\.openTime).max() ?? 0
        let executor = PGExecutor(conninfo: conninfo)
        if let copyFile {
            // The same rows in COPY text format, for the `psql \copy` baseline (partitions made too).
            PGBench.writeFile(PostgresSink.candleCopyText(candles), to: copyFile)
            PGBench.blocking { try await PGBench.prepare(executor, table: "candles", first: first, last: last) }
            print("RESULT mode=copy-file rows=\(rows) path=\(copyFile)")
            exit(0)
        }
        let events = candles.map(MarketEvent.candle)
        let (seconds, count) = PGBench.blocking {
            try await PGBench.prepare(executor, table: "candles", first: first, last: last)
            if !existing { try await PGBench.truncate(executor, table: "candles") }
            let seconds =
                backlog
                ? try await PGBench.timedBacklogDrain(
                    events, batch: batch, maxEventsPerWrite: perWrite, executor: executor)
                : try await PGBench.timedWrites(events, batch: batch, executor: executor)
            return (seconds, try await PGBench.count(executor, table: "candles"))
        }
        let mode =
            (revise ? "pg-upsert-revise" : existing ? "pg-upsert-existing" : "pg-upsert")
            + (backlog ? "-backlog" : "")
        print(
            "RESULT mode=\(mode) rows=\(count) batch=\(batch)\(backlog ? " per_write=\(perWrite)" : "") seconds=\(String(format: "%.3f", seconds)) rows_per_sec=\(Int(Double(count) / seconds))"
        )
        exit(0)
    }

    /// `rows` distinct keys: 100 symbols × consecutive minutes, realistic decimal text. A later
    /// `revision` has the same keys and prices with a later collector time.
    static func makeCandles(_ rows: Int, revision: Int64 = 0) -> [Candle] {
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
                timestampExchange: base + minute * 60_000_000,
                timestampCollector: base + minute * 60_000_000 + 1_000 + revision * 1_000_000)
        }
    }
}
