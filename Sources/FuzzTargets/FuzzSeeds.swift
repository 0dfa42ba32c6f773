import Cluster
import Collector
import Exchanges
import Foundation
import Gateway
import MarketData
import WebSocketProtocol

/// One seed input of a target's corpus (`Fuzz/corpus/TARGET/NAME`).
public struct FuzzSeed: Sendable, Equatable {
    public var target: String
    public var name: String
    public var bytes: [UInt8]

    public init(target: String, name: String, bytes: [UInt8]) {
        self.target = target
        self.name = name
        self.bytes = bytes
    }
}

/// The seed corpora, built from the recorded real messages (passed in by the caller, which reads
/// `Tests/Fixtures`), RFC examples, and our own encoders. `FuzzRegressionTests` checks that
/// `Fuzz/corpus` holds exactly these (`FUZZ_WRITE_SEEDS=1 swift test --filter FuzzSeed` rewrites
/// them), so the corpus is reproducible and reviewed like code.
public enum FuzzSeeds {
    /// `recorded`: file name → bytes of the OKX fixtures (`ws_*.json`, `http_*.json`, `OKX.ws.1.0`).
    public static func all(recorded: [String: [UInt8]]) -> [FuzzSeed] {
        var seeds: [FuzzSeed] = []
        func add(_ target: String, _ name: String, _ bytes: [UInt8]) {
            seeds.append(FuzzSeed(target: target, name: name, bytes: bytes))
        }
        func add(_ target: String, _ name: String, _ text: String) { add(target, name, Array(text.utf8)) }

        let pushes = okxMessages(recorded)
        webSocket(pushes: pushes, add: add)
        // JSON: every recorded message and reply, and the grammar's corners.
        for (name, bytes) in recorded.sorted(by: { $0.key < $1.key }) where name.hasSuffix(".json") {
            add("json", name.replacingOccurrences(of: ".json", with: ""), bytes)
        }
        add(
            "json", "corners",
            #"[-0.5e+10,0,-0,1E-7,true,false,null,"\u00e9\ud83d\ude00\n\"\\\/",{},[],{"a":{"b":[[]]}}]"#)
        add("json", "deep", String(repeating: "[", count: 64) + String(repeating: "]", count: 64))
        // OKX: one recorded push of each shape, the fixtures, a pong; REST replies.
        for (index, message) in pushes.enumerated() { add("okx-message", "recorded-\(index)", message) }
        for (name, bytes) in recorded.sorted(by: { $0.key < $1.key }) where name.hasPrefix("ws_") {
            add("okx-message", name.replacingOccurrences(of: ".json", with: ""), bytes)
        }
        if let trades = recorded["ws_trades.json"] {
            add("okx-message", "ws_trades-all", tradesAll(trades))
        }
        add("okx-message", "books5", books5)
        add("okx-message", "pong", "pong")
        add("okx-message", "error", #"{"event":"error","code":"60012","msg":"Invalid request","connId":"a4d3ae55"}"#)
        for (name, bytes) in recorded.sorted(by: { $0.key < $1.key }) where name.hasPrefix("http_") {
            add("okx-rest", name.replacingOccurrences(of: ".json", with: ""), bytes)
        }
        add("okx-rest", "error", #"{"code":"50011","msg":"Too Many Requests","data":[]}"#)
        sessions(recorded: recorded, add: add)
        for seed in ControlFuzz.seeds { add(seed.target, seed.name, seed.bytes) }
        configuration(add: add)
        files(add: add)
        return seeds
    }

    /// One received message per distinct shape (event or channel) from the recorded OKX log, each at
    /// most 4 KiB (libFuzzer's default input size is what the corpus holds).
    static func okxMessages(_ recorded: [String: [UInt8]]) -> [[UInt8]] {
        guard let log = recorded["OKX.ws.1.0"] else { return [] }
        var seen: Set<String> = []
        var out: [[UInt8]] = []
        for line in log.split(separator: 10) {
            // Received lines are `<time>: <json>`; sent ones start with the URL.
            guard line.first.map({ $0 >= UInt8(ascii: "0") && $0 <= UInt8(ascii: "9") }) == true,
                let colon = line.firstIndex(of: UInt8(ascii: ":"))
            else { continue }
            let message = Array(line[(colon + 2)...])
            guard message.count <= 4096 else { continue }
            let text = String(decoding: message, as: UTF8.self)
            let shape =
                ["\"event\":\"", "\"channel\":\""].compactMap { marker -> String? in
                    guard let start = text.range(of: marker)?.upperBound else { return nil }
                    return String(text[start...].prefix { $0 != "\"" })
                }.joined(separator: "/") + (text.contains("\"action\":\"update\"") ? "/update" : "")
            if seen.insert(shape).inserted { out.append(message) }
        }
        return out
    }

    static func webSocket(pushes: [[UInt8]], add: (String, String, [UInt8]) -> Void) {
        // RFC 6455 §5.7's examples.
        let hello: [UInt8] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        let maskedHello: [UInt8] = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        let fragmented: [UInt8] = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
        let ping: [UInt8] = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
        let maskedPong: [UInt8] = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
        let binary256 = WSFrameEncoder.encode(
            opcode: .binary, payload: Array(repeating: 0xAB, count: 256), maskKey: nil)
        let header64: [UInt8] = [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]
        let close = WSFrameEncoder.encode(
            opcode: .close, payload: WSFrameEncoder.closePayload(code: 1000, reason: "bye"), maskKey: nil)
        let maskedClose = WSFrameEncoder.encode(
            opcode: .close, payload: WSFrameEncoder.closePayload(code: 1001, reason: "going"), maskKey: 0x0102_0304)
        add("ws-frame", "rfc-hello", hello)
        add("ws-frame", "rfc-masked-hello", maskedHello)
        add("ws-frame", "binary-256", binary256)
        add("ws-frame", "header-64bit", header64)
        add("ws-frame", "masked-close", maskedClose)
        // Streams: what an exchange sends a client, and what a client sends our stream API.
        var fromServer = hello + fragmented + ping + close
        if let push = pushes.first {
            fromServer = WSFrameEncoder.encode(opcode: .text, payload: push, maskKey: nil) + fromServer
        }
        add("ws-connection", "server-stream", fromServer)
        add("ws-connection", "client-stream", maskedHello + maskedPong + maskedClose)
        add(
            "ws-connection", "fragmented-text",
            WSFrameEncoder.encode(
                opcode: .text, payload: Array("caf\u{e9} ".utf8.prefix(4)), isFinal: false, maskKey: nil)
                + WSFrameEncoder.encode(
                    opcode: .continuation, payload: Array("caf\u{e9} ".utf8.dropFirst(4)), maskKey: nil))
        // The opening handshake, RFC 6455 §1.2 and §1.3.
        add(
            "ws-handshake", "rfc-request",
            Array(
                ("GET /chat HTTP/1.1\r\nHost: server.example.com\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nOrigin: http://example.com\r\n"
                    + "Sec-WebSocket-Protocol: chat, superchat\r\nSec-WebSocket-Version: 13\r\n\r\n").utf8))
        add(
            "ws-handshake", "rfc-response",
            Array(
                ("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n").utf8))
    }

    static func sessions(recorded: [String: [UInt8]], add: (String, String, [UInt8]) -> Void) {
        typealias S = OKXSessionFuzz.Step
        let universe = OKXSessionFuzz.universe
        func ack(_ channel: String, _ symbol: String) -> S {
            .frame(Array(#"{"event":"subscribe","arg":{"channel":"\#(channel)","instId":"\#(symbol)"}}"#.utf8))
        }
        let candle = recorded["ws_candle.json"].map { bytes in
            Array(
                String(decoding: bytes, as: UTF8.self).replacingOccurrences(of: "candle1D", with: "candle1m").utf8)
        }
        var candles: [S] = [.add(universe[0]), .timer(.connect), .connected, ack("candle1m", "BTC-USDT")]
        if let candle { candles += [.frame(candle), .advance(1), .frame(candle)] }
        candles += [
            .advance(200), .timer(.keepalive), .frame(Array("pong".utf8)), .closed, .timer(.connect), .connected,
        ]
        add("okx-session", "candles", OKXSessionFuzz.encode(candles))
        var books: [S] = [.add(universe[2]), .add(universe[3]), .timer(.connect), .connected]
        books += [ack("books", "BTC-USDT"), ack("books5", "ETH-USDT")]
        for name in ["ws_books_snapshot.json", "ws_books_update.json"] {
            if let bytes = recorded[name] { books.append(.frame(bytes)) }
        }
        if let rest = recorded["http_get_order_book.json"] { books.append(.answerREST(rest)) }
        books.append(.frame(books5))
        books += [.remove(universe[2]), .timer(.subscribe), .stop]
        add("okx-session", "books", OKXSessionFuzz.encode(books))
        var trades: [S] = [.add(universe[1]), .timer(.connect), .connected, ack("trades-all", "BTC-USDT")]
        if let bytes = recorded["ws_trades.json"] { trades.append(.frame(tradesAll(bytes))) }
        trades += [.closed, .advance(40), .timer(.connect), .connected]
        if let rest = recorded["http_get_trades.json"] { trades.append(.answerREST(rest)) }
        add("okx-session", "trades", OKXSessionFuzz.encode(trades))
    }

    /// The recorded `trades` push as the per-fill `trades-all` channel we subscribe (same fields).
    static func tradesAll(_ trades: [UInt8]) -> [UInt8] {
        Array(
            String(decoding: trades, as: UTF8.self).replacingOccurrences(
                of: "\"channel\": \"trades\"", with: "\"channel\": \"trades-all\""
            ).utf8)
    }

    /// A `books5` push (whole five-level books: no checksum), shaped as PROTOCOLS.md §1.6 shows.
    static let books5 = Array(
        (#"{"arg":{"channel":"books5","instId":"ETH-USDT"},"data":[{"asks":[["2200.2","1.1","0","1"]],"#
            + #""bids":[["2200.1","3","0","2"]],"instId":"ETH-USDT","ts":"1700000040000","seqId":123}]}"#).utf8)

    static func configuration(add: (String, String, String) -> Void) {
        let file = """
            # collector.toml
            [collector]
            http_port = 8000
            log_level = "info"
            data_dir = './data'

            [storage]
            batch_size = 1_000
            batch_timeout = 1.0
            sinks = ["postgres"]

            [storage.retention]
            trades = 30

            [websocket]
            message_timeout = 30

            [[markets]]                     # pinned: always collected
            symbols = ["BTC-USDT", "ETH-USDT"]
            timeframes = ["1m", "1H", "1Dutc"]

            [[markets]]
            symbols = ["BTC-USDT"]
            feeds = ["candles", "trades", "book", "ticker"]
            replicas = 2

            """
        add("settings", "readme", file)
        add("toml", "readme", file)
        add(
            "toml", "corners",
            """
            "quoted key" = "tab\\there \\u00e9 \\U0001F600"
            literal = 'C:\\path'
            numbers = [1, -2, +3, 1_000, 0.5, -1e-3, 6.02E23]
            nested = [[1, 2], ["a", [true, false]],]   # trailing comma
            [a.b.c]
            x = 1
            [[a.list]]
            y = 2
            [[a.list]]
            [a.list.sub]
            z = 3

            """)
    }

    static func files(add: (String, String, [UInt8]) -> Void) {
        let t0: Int64 = 1_700_000_040_000_000
        let candle = Candle(
            exchange: .okx, symbol: "BTC-USDT", timeframe: Timeframe("1m")!, openTime: t0, open: "42000.1",
            high: "42010", low: "41990.5", close: "42005", volume: "12.5", quoteVolume: "525000.25", isConfirmed: true,
            timestampExchange: t0, timestampCollector: t0 + 61_000_000)
        let trade = Trade(
            exchange: .okx, symbol: "BTC-USDT", tradeID: "242720720", price: "42005.1", size: "0.01", side: .buy,
            timestampExchange: t0 + 1, timestampCollector: t0 + 2)
        let book = BookMessage(
            exchange: .okx, symbol: "BTC-USDT", sequence: 123_456, previousSequence: 123_450, action: .update,
            bids: [BookLevel(price: "42000", size: "1.5")], asks: [BookLevel(price: "42001", size: "0")],
            checksum: -855_196_043, timestampExchange: t0 + 3, timestampCollector: t0 + 4, depth: nil)
        let ticker = Ticker(
            exchange: .okx, symbol: "ETH-USDT", bidPrice: "2200.1", bidSize: "3", askPrice: "2200.2", askSize: "1.1",
            lastPrice: "2200.15", timestampExchange: t0 + 5, timestampCollector: t0 + 6)
        let gap = GapRecord(
            stream: StreamID(exchange: .okx, feed: .trades, symbol: "BTC-USDT"),
            gap: Gap(from: t0 - 5_000_000, to: t0, missing: 3, cause: .reconnect, reason: "connection lost"),
            recordedAt: t0 + 7)
        add(
            "spool-file", "format-3",
            SpoolFormat.encode([.candle(candle), .trade(trade), .book(book), .ticker(ticker), .gap(gap)]))
        add(
            "spool-file", "format-1",
            Array(
                #"["okx","BTC-USDT","1m","1700000040000000","1","2","0.5","1.5","10","15","1","1700000040000000","1700000101000000"]"#
                    .utf8) + [10])
        add(
            "spool-file", "format-2-book",
            Array(
                ("collector-spool 2\n"
                    + #"["b","okx","BTC-USDT","7","","snapshot",[["1","2"]],[["3","4"]],"","1700000040000000","1700000040000001"]"#
                    + "\n").utf8))
        let marks: [StreamID: Watermark] = [
            StreamID(exchange: .okx, feed: .trades, symbol: "BTC-USDT"): Watermark(time: t0, id: "242720720"),
            StreamID(exchange: .okx, feed: .candles(Timeframe("1m")!), symbol: "BTC-USDT"): Watermark(time: t0),
        ]
        add("watermark-file", "two-streams", WatermarkFileFormat.encode(marks))
        add("watermark-file", "empty", Array("{}\n".utf8))
        add(
            "subscriptions-file", "replicas",
            SubscriptionFileFormat.encode([
                StreamID(exchange: .okx, feed: .trades, symbol: "BTC-USDT"): 1,
                StreamID(exchange: .okx, feed: .book(depth: 5), symbol: "ETH-USDT"): 3,
            ]))
        // What the JSONSerialization writer of earlier versions wrote (pretty-printed, sorted keys).
        add(
            "subscriptions-file", "version-1",
            Array(
                "[\n  \"okx/candles:1m/BTC-USDT\",\n  {\n    \"replicas\" : 2,\n    \"stream\" : \"okx/ticker/BTC-USDT\"\n  }\n]"
                    .utf8))
        add(
            "coordinator-state", "paused",
            CoordinatorStateStore.encode(.init(term: 7, epochsReserved: 4096, rebalancePaused: true)))
        add("coordinator-state", "version-1", Array(#"{"term":3,"epochs_reserved":1000}"#.utf8))
    }
}
