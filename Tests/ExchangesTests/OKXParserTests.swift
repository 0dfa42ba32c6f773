import Exchanges
import Foundation
import MarketData
import TestSupport
import Testing

/// Received frames of a cryptofeed legacy capture (`<recv_ts>: <payload>` lines).
func recordedFrames(_ file: String) throws -> [(receivedAt: Int64, payload: String)] {
    let text = try String(contentsOfFile: TestEnvironment.repositoryRoot + "/Tests/Fixtures/" + file, encoding: .utf8)
    return text.split(separator: "\n").compactMap { line in
        guard let first = line.first, first.isNumber, let sep = line.range(of: ": ") else { return nil }
        let ts = Double(line[..<sep.lowerBound]) ?? 0
        var payload = String(line[sep.upperBound...])
        if payload.hasPrefix("b'") && payload.hasSuffix("'") { payload = String(payload.dropFirst(2).dropLast()) }
        return (Int64(ts * 1_000_000), payload)
    }
}

func parse(_ text: String, receivedAt: Int64 = 42) throws -> [ExchangeMessage] {
    var out: [ExchangeMessage] = []
    let bytes = Array(text.utf8)
    try bytes.withUnsafeBytes { raw in try OKXAdapter().parse(raw, receivedAt: receivedAt, into: &out) }
    return out
}

func candles(_ messages: [ExchangeMessage]) -> [Candle] {
    messages.compactMap { if case .event(.candle(let c)) = $0 { c } else { nil } }
}

@Suite struct OKXParserTests {
    @Test func recordedOKCoinCaptureYieldsTwelveCandlesWithConfirmTransitions() throws {
        let frames = try recordedFrames("okx/OKCOIN.ws.1.0")
        var all: [Candle] = []
        var acks: [StreamID] = []
        for frame in frames {
            let messages = try parse(frame.payload, receivedAt: frame.receivedAt)
            all += candles(messages)
            for case .subscribed(let s) in messages { acks.append(s) }
        }
        #expect(all.count == 12)
        #expect(all.filter(\.isConfirmed).count == 4)
        #expect(all.filter { !$0.isConfirmed }.count == 8)
        #expect(Set(acks.map(\.symbol)) == ["USDC-USDT", "ETH-USD", "BTC-USD", "USDT-USD"])
        // Each rollover: the old bar confirmed ("1"), then the new bar forming ("0"), per symbol.
        for symbol in ["USDC-USDT", "ETH-USD", "BTC-USD", "USDT-USD"] {
            let series = all.filter { $0.symbol == symbol }
            let confirmed = series.filter(\.isConfirmed)
            for c in confirmed {
                #expect(series.contains { !$0.isConfirmed && $0.openTime == c.openTime + 60_000_000 })
            }
        }
        let first = try #require(all.first)
        #expect(first.symbol == "USDC-USDT" && first.timeframe.key == "1m")
        #expect(first.openTime == 1_685_221_620_000_000 && first.open == "0.9981")
        #expect(first.timestampCollector == 1_685_221_666_512_685)
    }

    @Test func docsExampleCandleMapsEveryField() throws {
        let text = try String(
            contentsOfFile: TestEnvironment.repositoryRoot + "/Tests/Fixtures/okx/ws_candle.json", encoding: .utf8)
        let candle = try #require(candles(try parse(text)).first)
        #expect(candle.timeframe.key == "1D" && candle.symbol == "BTC-USDT")
        #expect(candle.openTime == 1_597_026_383_085_000)
        #expect(
            [candle.open, candle.high, candle.low, candle.close, candle.volume, candle.quoteVolume]
                == ["8533.02", "8553.74", "8527.17", "8548.26", "45247", "5529.5858061"])
        #expect(candle.isConfirmed)
    }

    @Test(arguments: [
        (
            #"{"id":"1512","event":"subscribe","arg":{"channel":"candle1m","instId":"BTC-USDT"},"connId":"a4d3ae55"}"#,
            ExchangeMessage.subscribed(StreamID("okx/candles:1m/BTC-USDT")!)
        ),
        (
            #"{"event":"unsubscribe","arg":{"channel":"candle1Dutc","instId":"ETH-USDT"},"connId":"d0b44253"}"#,
            .unsubscribed(StreamID("okx/candles:1Dutc/ETH-USDT")!)
        ),
        (
            #"{"event":"error","msg":"Subscribe failed, wrong URL or channel:candle1m,instId:NOPE-USDT doesn't exist.","code":"60018","connId":"5e1f2fe5","id":"ob1"}"#,
            .subscriptionRejected(
                stream: StreamID("okx/candles:1m/NOPE-USDT")!, requestID: "ob1", code: "60018",
                message: "Subscribe failed, wrong URL or channel:candle1m,instId:NOPE-USDT doesn't exist.")
        ),
        (
            #"{"id":"1512","event":"error","code":"60012","msg":"Invalid request: {\"op\": \"subscribe\", \"argss\":[]}","connId":"a4d3ae55"}"#,
            .subscriptionRejected(
                stream: nil, requestID: "1512", code: "60012",
                message: #"Invalid request: {"op": "subscribe", "argss":[]}"#)
        ),
        (
            #"{"event":"error","code":"60014","msg":"Requests too frequent."}"#,
            .error(code: "60014", message: "Requests too frequent.")
        ),
        (
            #"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"a4d3ae55"}"#,
            .notice(
                code: "64008", message: "The connection will soon be closed for a service upgrade. Please reconnect.",
                reconnectSoon: true)
        ),
        ("pong", .pong),
        (
            #"{"event":"channel-conn-count","channel":"candle1m","connCount":"2","connId":"x"}"#,
            .unhandled(kind: "event:channel-conn-count")
        ),
        (
            #"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"1","px":"1","sz":"1","side":"buy","ts":"1"}]}"#,
            .unhandled(kind: "channel:trades")
        ),
    ])
    func everyControlShapeIsRecognised(text: String, expected: ExchangeMessage) throws {
        #expect(try parse(text) == [expected])
    }

    @Test func dataBeforeArgAndEightFieldRowsParse() throws {
        let text =
            #"{"data":[["1597026383085","1","2","0.5","1.5","10","20","1"]],"arg":{"channel":"candle3Mutc","instId":"BTC-USDT"}}"#
        let candle = try #require(candles(try parse(text)).first)
        #expect(candle.timeframe.key == "3Mutc" && candle.quoteVolume == "20" && candle.isConfirmed)
    }

    @Test(arguments: [
        "",
        "not json",
        "{",
        #"{"arg":{"channel":"candle1m","instId":"BTC-USDT"}}"#,
        #"{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["x","1","1","1","1","1","1","1","0"]]}"#,
        #"{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1","1","1","1","1","1","1","1","2"]]}"#,
        #"{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1","1e","1","1","1","1","1","1","0"]]}"#,
        #"{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1","1","1"]]}"#,
        #"{"arg":{"channel":"candle7m","instId":"BTC-USDT"},"data":[]}"#,
        #"{"arg":{"channel":"candle1m","instId":""},"data":[]}"#,
        #"{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1","1","1","1","1","1","1","1","0"]]} trailing"#,
    ])
    func malformedFramesAreRejectedWithAReason(text: String) {
        #expect(throws: ExchangeParseError.self) { try parse(text) }
    }

    @Test func subscribeMessagesCarryTheRequestID() {
        let adapter = OKXAdapter()
        let streams = (0..<150).map {
            StreamID(exchange: .okx, feed: .candles(Timeframe("1m")!), symbol: "S\($0)-USDT")
        }
        // One request per call: the session splits to the per-message limit (100 args for OKX).
        let messages = adapter.subscribeMessages(for: Array(streams.prefix(100)), requestID: "r7")
        #expect(messages.count == 1)
        #expect(
            messages[0].hasPrefix(#"{"id":"r7","op":"subscribe","args":[{"channel":"candle1m","instId":"S0-USDT"}"#))
        #expect(
            adapter.subscribeMessages(for: Array(streams.prefix(1)), requestID: "r8") == [
                #"{"id":"r8","op":"subscribe","args":[{"channel":"candle1m","instId":"S0-USDT"}]}"#
            ])
        #expect(adapter.webSocketURL(for: .candles(Timeframe("1m")!)).hasSuffix("/ws/v5/business"))
    }

    @Test func validationNamesTheProblem() {
        let adapter = OKXAdapter()
        #expect(adapter.validate(StreamID("okx/candles:1m/BTC-USDT")!) == nil)
        #expect(adapter.validate(StreamID("okx/candles:1m/btc usdt")!)?.contains("not an OKX instrument") == true)
        #expect(adapter.validate(StreamID("okx/trades/BTC-USDT")!) == nil)
        #expect(adapter.validate(StreamID("okx/ticker/BTC-USDT")!) == nil)
        #expect(adapter.validate(StreamID("okx/book/BTC-USDT")!) == nil)
        #expect(adapter.validate(StreamID("okx/book:5/BTC-USDT")!) == nil)
        #expect(adapter.validate(StreamID("okx/book:1/BTC-USDT")!) == nil)
        #expect(adapter.validate(StreamID("okx/book:50/BTC-USDT")!)?.contains("book:5 (books5)") == true)
        #expect(OKXAdapter.channel(for: .fullBook) == "books")
        #expect(OKXAdapter.channel(for: .book(depth: 5)) == "books5")
        #expect(OKXAdapter.channel(for: .book(depth: 1)) == "bbo-tbt")
        #expect(adapter.webSocketURL(for: .fullBook).hasSuffix("/ws/v5/public"))
        // Per-fill trades share the candles' endpoint; tickers are on /public.
        #expect(adapter.webSocketURL(for: .trades).hasSuffix("/ws/v5/business"))
        #expect(adapter.webSocketURL(for: .ticker).hasSuffix("/ws/v5/public"))
        #expect(OKXAdapter.channel(for: .trades) == "trades-all")
    }
}

@Suite struct TimeframeTests {
    @Test func keysAreCaseSensitive() {
        #expect(Timeframe("1m")?.fixedMicroseconds == 60_000_000)
        #expect(Timeframe("1M")?.months == 1)
        #expect(Timeframe("1h") == nil)
        #expect(Timeframe("1Dutc") != Timeframe("1D"))
    }

    @Test func monthBarsFollowTheCalendarInTheirZone() {
        // 2024-01-01T00:00Z → 2024-02-01T00:00Z (UTC months)
        let jan = UTCCalendar.microseconds(year: 2024, month: 1, day: 1)
        #expect(Timeframe("1Mutc")!.nextOpenTime(after: jan) == UTCCalendar.microseconds(year: 2024, month: 2, day: 1))
        // Hong Kong months open at 16:00 UTC the previous day.
        let hkFeb = UTCCalendar.microseconds(year: 2024, month: 1, day: 31) + 16 * 3_600_000_000
        let hkMar = UTCCalendar.microseconds(year: 2024, month: 2, day: 29) + 16 * 3_600_000_000
        #expect(Timeframe("1M")!.nextOpenTime(after: hkFeb) == hkMar)
        #expect(
            Timeframe("3Mutc")!.previousOpenTime(before: jan) == UTCCalendar.microseconds(year: 2023, month: 10, day: 1)
        )
    }

    @Test func iso8601Formatting() {
        #expect(UTCCalendar.iso8601(microseconds: 1_597_026_383_085_000) == "2020-08-10T02:26:23.085Z")
        #expect(UTCCalendar.iso8601(microseconds: 1) == "1970-01-01T00:00:00.000001Z")
    }
}
