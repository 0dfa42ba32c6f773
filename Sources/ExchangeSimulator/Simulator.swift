import CollectorCore
import Foundation
import HTTP1Protocol
import MarketData
public import Runtime
public import TLS
import WebSocketProtocol
import WireCore

/// How the simulator behaves.
public struct SimulatorConfiguration: Sendable {
    public var host = "127.0.0.1"
    /// WebSocket port (0 picks one).
    public var webSocketPort = 0
    /// REST and control port (0 picks one).
    public var restPort = 0
    /// Instruments that exist; others get 60018 / 51001.
    public var symbols: [String] = ["BTC-USDT", "ETH-USDT"]

    /// For an instrument the simulator does not have, what it has and how to add it (the simulator's
    /// addition to OKX's text: offline, the reason is ours, not the exchange's); empty otherwise.
    public func unknownInstrumentHint(_ instrument: String) -> String {
        guard !symbols.contains(instrument) else { return "" }
        let shown = symbols.prefix(12).joined(separator: ",") + (symbols.count > 12 ? ",…" : "")
        return " (exchange-sim has \(shown); start it with --symbols to add \(instrument))"
    }
    /// Real milliseconds per virtual minute: 200 makes a 1m bar every 200 ms.
    public var barMilliseconds = 200
    /// Virtual time at start (µs); nil means now, rounded down to the minute (in real time, with
    /// `barMilliseconds` 60,000: now exactly, so event times are the wall clock's).
    public var startTime: Int64?
    /// Forming-bar pushes per 1m bar.
    public var updatesPerBar = 4
    /// Close a connection after this long with no client message and nothing pushed (OKX: 30 s).
    public var idleTimeout: Duration = .seconds(30)
    /// Enforce OKX's REST limits (40 / 2 s recent candles, 20 / 2 s history).
    public var enforceRateLimits = true
    /// Bars served by the recent-candles endpoint.
    public var recentWindow = 1440
    /// Flood mode for benchmarks: on subscribe, push this many candle updates as fast as the client reads.
    public var floodMessages = 0
    public var tls: TLSContext?
    public var seed: UInt64 = 7
    /// Hold virtual time at `startTime` until `POST /control/resume` (tests start the clock on cue).
    public var startPaused = false
    /// Fills per virtual 1m bar in the trade model behind `trades-all`, `trades`, `tickers` and
    /// `history-trades` (TradeModel.swift): 120 is two a virtual second, 600 a real second at the
    /// default `barMilliseconds`. At most 60,000.
    public var tradesPerBar = 120
    /// Virtual minutes of fills before `startTime`, so a fresh client has history to backfill
    /// (at most 129,600: three months, as OKX keeps).
    public var tradeHistoryMinutes = 60
    /// Real milliseconds between trade pushes (tickers go at most every 100 ms whatever this is).
    public var feedIntervalMilliseconds = 50
    /// Virtual milliseconds per order-book step (BookModel.swift): OKX's `books` pushes every
    /// 100 ms. One step is one `books` update; at the default `barMilliseconds` that is 3,000 a
    /// real second per symbol, so slow the clock (or raise this) when that is too many.
    public var bookStepMilliseconds = 100
    /// `books` pushes carry `checksum: 0`, as OKX's do from 2026-06-23 (PROTOCOLS.md §1.6 point 1).
    public var bookChecksumZero = false
    /// Whether a `books` subscription starts with a snapshot; off, the first push after the ack
    /// is an update and clients seed from REST (PROTOCOLS.md §1.6 point 2).
    public var sendsBookSnapshot = true

    public init() {}
}

/// The simulator: a WebSocket server and an HTTP server on one event loop.
public final class ExchangeSimulator: Sendable {
    public let webSocketPort: Int
    public let restPort: Int
    private let state: LoopBound<SimulatorState>
    private let httpServer: HTTPServer

    private init(webSocketPort: Int, restPort: Int, state: LoopBound<SimulatorState>, httpServer: HTTPServer) {
        self.webSocketPort = webSocketPort
        self.restPort = restPort
        self.state = state
        self.httpServer = httpServer
    }

    /// Starts serving on `loop`.
    public static func start(configuration: SimulatorConfiguration, loop: EventLoop) async throws -> ExchangeSimulator {
        let result: Result<(LoopBound<SimulatorState>, Int), any Error> = await withCheckedContinuation {
            continuation in
            loop.execute {
                do {
                    let state = try SimulatorState(configuration: configuration, loop: loop)
                    continuation.resume(returning: .success((LoopBound(state, loop: loop), state.webSocketPort)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        let (state, wsPort) = try result.get()
        let http = try await HTTPServer.start(
            configuration: HTTPServerConfiguration(host: configuration.host, port: configuration.restPort), loop: loop
        ) { request in
            let (response, delay) = await withCheckedContinuation { continuation in
                state.loop.execute {
                    let response = state.value.handleREST(request)
                    let delay = request.head.path.hasPrefix("/api/") ? state.value.restDelayMilliseconds : 0
                    continuation.resume(returning: (response, delay))
                }
            }
            // try?: only cancellation (server shutdown) ends the sleep early; the answer goes out anyway.
            if delay > 0 { try? await Task.sleep(for: .milliseconds(delay)) }
            return response
        }
        return ExchangeSimulator(webSocketPort: wsPort, restPort: http.port, state: state, httpServer: http)
    }

    /// Stops both servers.
    public func shutdown() async {
        let state = self.state
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            state.loop.execute {
                state.value.close()
                continuation.resume()
            }
        }
        await httpServer.shutdown(deadline: .seconds(1))
    }
}

/// Everything the simulator knows. Loop-confined.
final class SimulatorState {
    let configuration: SimulatorConfiguration
    let loop: EventLoop
    let model: CandleModel
    private var server: WebSocketServer?
    private var realStart: Int64
    private var isPaused: Bool
    let virtualStart: Int64
    private(set) var sessions: [ObjectIdentifier: Session] = [:]
    /// Confirmed bars pushed over WebSocket, per `symbol|timeframe`.
    private(set) var emittedConfirmed: [String: Set<Int64>] = [:]
    private var recentBucket = TokenBucket(requests: 40, per: 2)
    private var historyBucket = TokenBucket(requests: 20, per: 2)
    /// OKX: 20 requests / 2 s for history-trades, 100 / 2 s for recent trades (PROTOCOLS.md §1.8).
    var historyTradesBucket = TokenBucket(requests: 20, per: 2)
    var recentTradesBucket = TokenBucket(requests: 100, per: 2)
    /// OKX: 40 requests / 2 s for the order book (PROTOCOLS.md §1.8).
    var booksBucket = TokenBucket(requests: 40, per: 2)
    /// Order-book models with their checkpoints, per symbol, made on first use.
    var bookTimelines: [String: BookTimeline] = [:]
    let trades: TradeModel
    /// Trade ids pushed over WebSocket, per symbol (bounded by the configured symbols).
    var emittedTrades: [String: EmittedTradeLog] = [:]
    private var feedTimer: TimerHandle?
    /// Refuse WebSocket connections until this real time (ns), to hold a disconnection open.
    private var refuseUntil: Int64 = 0
    /// Push nothing (and optionally ignore pings) until this real time (ns): keepalive tests.
    private(set) var silentUntil: Int64 = 0
    /// Market-data REST answers are held this long (`/control/rest-delay?ms=N`): a slow exchange.
    private(set) var restDelayMilliseconds = 0
    private(set) var answersPingsWhileSilent = true
    /// Text pings received from clients.
    var pingsReceived = 0
    private var tickTimer: TimerHandle?
    private var nextConnectionID = 1

    var webSocketPort: Int { server?.port ?? 0 }

    init(configuration: SimulatorConfiguration, loop: EventLoop) throws {
        self.configuration = configuration
        self.loop = loop
        self.model = CandleModel(seed: configuration.seed)
        self.realStart = loop.now().nanoseconds
        self.isPaused = configuration.startPaused
        let now = Int64(Date().timeIntervalSince1970 * 1_000_000)
        // In real time (a virtual minute per real minute) event times are the wall clock's, as an
        // exchange's are, so a cutover (a wall-clock instant) falls among them where it would live.
        let realTime = configuration.barMilliseconds == 60_000
        self.virtualStart = configuration.startTime ?? (realTime ? now : now / 60_000_000 * 60_000_000)
        let bar = TradeModel.barMicroseconds
        let startBar = virtualStart >= 0 ? virtualStart / bar : -((-virtualStart + bar - 1) / bar)
        self.trades = TradeModel(
            candles: model, fillsPerBar: min(max(1, configuration.tradesPerBar), TradeModel.maxFillsPerBar),
            origin: (startBar - Int64(min(max(0, configuration.tradeHistoryMinutes), TradeModel.maxHistoryMinutes)))
                * bar)
        server = try WebSocketServer(
            host: configuration.host, port: configuration.webSocketPort, tls: configuration.tls, loop: loop
        ) { [weak self] in
            // A simulator dropped without `shutdown` has no state left to serve: the session closes.
            guard let self else { return ClosedSession() }
            return Session(simulator: self)
        }
        scheduleTick()
        scheduleFeedTick()
    }

    func close() {
        if let tickTimer { loop.cancelTimer(tickTimer) }
        if let feedTimer { loop.cancelTimer(feedTimer) }
        server?.close()
        server = nil
    }

    /// Virtual time now (µs).
    var virtualNow: Int64 {
        if isPaused { return virtualStart }
        let elapsedNs = loop.now().nanoseconds - realStart
        // One virtual minute per `barMilliseconds` real ms.
        let factor = 60_000.0 / Double(configuration.barMilliseconds)
        return virtualStart + Int64(Double(elapsedNs) / 1000 * factor)
    }

    private func scheduleTick() {
        let interval = max(1, configuration.barMilliseconds / max(1, configuration.updatesPerBar))
        tickTimer = loop.scheduleTimer(after: .milliseconds(interval)) { [weak self] in
            guard let self else { return }
            let now = virtualNow
            for session in sessions.values { session.tick(virtualNow: now) }
            scheduleTick()
        }
    }

    /// Pushes trades and tickers to every session that subscribed some.
    private func scheduleFeedTick() {
        feedTimer = loop.scheduleTimer(after: .milliseconds(max(1, configuration.feedIntervalMilliseconds))) {
            [weak self] in
            guard let self else { return }
            let now = virtualNow
            var heads: [String: Int64] = [:]
            advanceBookTimelines(virtualNow: now)
            for session in sessions.values {
                if session.hasFeeds { session.feedTick(virtualNow: now, heads: &heads) }
                if session.hasBookFeeds { session.bookTick(virtualNow: now) }
            }
            scheduleFeedTick()
        }
    }

    func register(_ session: Session) -> Int {
        sessions[ObjectIdentifier(session)] = session
        nextConnectionID += 1
        return nextConnectionID
    }

    func unregister(_ session: Session) { sessions[ObjectIdentifier(session)] = nil }

    var isRefusingConnections: Bool { loop.now().nanoseconds < refuseUntil }
    var isSilent: Bool { loop.now().nanoseconds < silentUntil }

    func recordEmitted(_ candle: Candle) {
        emittedConfirmed["\(candle.symbol)|\(candle.timeframe.key)", default: []].insert(candle.openTime)
    }

    // MARK: REST

    func handleREST(_ request: HTTPRequest) -> HTTPResponse {
        let path = request.head.path
        let query = Dictionary(
            (PercentDecoding.queryItems(request.head.query) ?? []).map { ($0.name, $0.value) },
            uniquingKeysWith: { a, _ in a })
        switch (request.head.method, path) {
        case ("GET", "/api/v5/market/candles"): return candles(query, history: false)
        case ("GET", "/api/v5/market/history-candles"): return candles(query, history: true)
        case ("GET", "/api/v5/market/history-trades"): return historyTrades(query)
        case ("GET", "/api/v5/market/trades"): return recentTrades(query)
        case ("GET", "/api/v5/market/books"): return restBook(query)
        case ("GET", "/control/book"): return oracleBook(query)
        case ("POST", "/control/book-fault"): return bookFault(query)
        case ("GET", "/control/trades"): return oracleTrades(query)
        case ("GET", "/control/emitted-trades"): return emittedTradeIDs(query)
        case ("POST", "/control/disconnect"):
            let pause = Int64(query["pause_ms"] ?? "0") ?? 0
            refuseUntil = loop.now().nanoseconds + pause * 1_000_000
            let count = sessions.count
            for session in sessions.values { session.connection.abort() }
            return json(200, "{\"disconnected\":\(count)}")
        case ("POST", "/control/notice"):
            for session in sessions.values {
                session.connection.send(
                    text:
                        #"{"event":"notice","code":"64008","msg":"The connection will soon be closed for a service upgrade. Please reconnect.","connId":"sim"}"#
                )
            }
            return json(200, "{\"noticed\":\(sessions.count)}")
        case ("POST", "/control/resume"):
            if isPaused {
                isPaused = false
                realStart = loop.now().nanoseconds
            }
            return json(200, "{\"virtualNow\":\(virtualNow / 1000)}")
        case ("GET", "/control/emitted"):
            let key = "\(query["instId"] ?? "")|\(query["bar"] ?? "")"
            let times = (emittedConfirmed[key] ?? []).sorted().map { String($0 / 1000) }
            return json(200, "{\"confirmed\":[\(times.joined(separator: ","))]}")
        case ("POST", "/control/rest-delay"):
            restDelayMilliseconds = max(0, Int(query["ms"] ?? "0") ?? 0)
            return json(200, "{\"rest_delay_ms\":\(restDelayMilliseconds)}")
        case ("POST", "/control/silence"):
            let ms = Int64(query["ms"] ?? "0") ?? 0
            silentUntil = loop.now().nanoseconds + ms * 1_000_000
            answersPingsWhileSilent = query["pong"] != "0"
            return json(200, "{\"silent_ms\":\(ms)}")
        case ("GET", "/control/status"):
            return json(
                200,
                "{\"connections\":\(sessions.count),\"pings\":\(pingsReceived),\"virtualNow\":\(virtualNow / 1000)}")
        default:
            return json(404, #"{"code":"404","msg":"not found","data":[]}"#)
        }
    }

    func json(_ status: Int, _ body: String) -> HTTPResponse {
        HTTPResponse(status: status, contentType: "application/json", body: Array(body.utf8))
    }

    func okxError(_ status: Int, _ code: String, _ message: String) -> HTTPResponse {
        json(status, "{\"code\":\"\(code)\",\"msg\":\(JSONText.quoted(message)),\"data\":[]}")
    }

    /// `/api/v5/market/candles` and `/history-candles` (PROTOCOLS.md §1.8): newest first; `after` returns
    /// bars older than it, `before` newer; limit ≤ 300 (recent) or ≤ 100 (history).
    private func candles(_ query: [String: String], history: Bool) -> HTTPResponse {
        if configuration.enforceRateLimits {
            let wait = history ? historyBucket.take(now: loop.now()) : recentBucket.take(now: loop.now())
            if wait != nil {
                return okxError(
                    429, "50011",
                    "Rate limit reached. Please refer to API documentation and throttle requests accordingly.")
            }
        }
        guard let instrument = query["instId"], !instrument.isEmpty else {
            return okxError(400, "50014", "Parameter instId can not be empty.")
        }
        guard configuration.symbols.contains(instrument) else {
            return okxError(200, "51001", "Instrument ID does not exist.")
        }
        let barKey = query["bar"] ?? "1m"
        guard let timeframe = Timeframe(barKey), history || barKey != "1s", !barKey.hasPrefix("5D") else {
            return okxError(400, "51000", "Parameter bar error.")
        }
        let maxLimit = history ? 100 : 300
        guard let limit = Int(query["limit"] ?? "100"), limit >= 1, limit <= maxLimit else {
            return okxError(400, "51000", "Parameter limit error.")
        }
        let after = query["after"].flatMap { Int64($0) }.map { $0 * 1000 }
        let before = query["before"].flatMap { Int64($0) }.map { $0 * 1000 }
        let now = virtualNow
        let current = model.openTime(containing: now, timeframe: timeframe)
        // The recent endpoint covers the latest `recentWindow` bars, including the forming one.
        var oldest = Int64.min
        if !history {
            var t = current
            for _ in 1..<configuration.recentWindow { t = timeframe.previousOpenTime(before: t) }
            oldest = t
        }
        var newest = history ? timeframe.previousOpenTime(before: current) : current
        if let after { newest = min(newest, model.openTime(containing: after - 1, timeframe: timeframe)) }
        var rows: [String] = []
        var t = newest
        while rows.count < limit && t >= oldest {
            if let before, t <= before { break }
            let (candle, _) = model.candle(symbol: instrument, timeframe: timeframe, openTime: t, asOf: now)
            rows.append(CandleModel.row(candle))
            t = timeframe.previousOpenTime(before: t)
        }
        return json(200, "{\"code\":\"0\",\"msg\":\"\",\"data\":[\(rows.joined(separator: ","))]}")
    }
}

/// One WebSocket client of the simulator. Loop-confined.
final class Session: WebSocketServerHandler {
    /// Strong: an open session keeps the state it serves alive (the cycle ends at `unregister`).
    let simulator: SimulatorState
    var connection: WebSocketServerConnection!  // set in webSocketDidConnect, before any other callback
    private(set) var isBusiness = false
    private(set) var connectionID = 0
    /// Subscribed (symbol, timeframe) → open time of the last bar pushed.
    private var subscriptions: [String: (symbol: String, timeframe: Timeframe, lastOpen: Int64?)] = [:]
    var lastActivity: Int64 = 0
    var floodRemaining = 0
    /// Trade and ticker subscriptions, by `channel|instId`.
    var feeds: [String: FeedSubscription] = [:]
    /// Order-book subscriptions (`books`, `books5`, `bbo-tbt`), by instId.
    var bookFeeds: [String: BookFeed] = [:]

    init(simulator: SimulatorState) { self.simulator = simulator }

    func webSocketDidConnect(_ connection: WebSocketServerConnection, request: HTTPRequest) {
        self.connection = connection
        if simulator.isRefusingConnections {
            connection.abort()
            return
        }
        let path = request.head.path
        guard path == "/ws/v5/business" || path == "/ws/v5/public" else {
            connection.close(code: 1008, reason: "unknown path")
            return
        }
        isBusiness = path == "/ws/v5/business"
        connectionID = simulator.register(self)
        lastActivity = simulator.loop.now().nanoseconds
    }

    func webSocket(_ connection: WebSocketServerConnection, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {
        lastActivity = simulator.loop.now().nanoseconds
        if payload.count == 4 && String(decoding: payload, as: UTF8.self) == "ping" {
            simulator.pingsReceived += 1
            if simulator.isSilent && !simulator.answersPingsWhileSilent { return }
            connection.send(text: "pong")
            return
        }
        handleRequest(payload)
    }

    func webSocketBecameWritable(_ connection: WebSocketServerConnection) { flood() }

    func webSocketDidClose(_ connection: WebSocketServerConnection, info: WSCloseInfo) {
        simulator.unregister(self)
    }

    private func handleRequest(_ payload: UnsafeRawBufferPointer) {
        var op: String?
        var id: String?
        var args: [(channel: String, instId: String)] = []
        var scanner = JSONScanner(payload)
        do {
            try scanner.readObject { key, s throws(JSONError) in
                if s.equals(key, "op") {
                    op = try s.readString()
                } else if s.equals(key, "id") {
                    id = try s.readString()
                } else if s.equals(key, "args") {
                    try s.readArray { _, s2 throws(JSONError) in
                        var channel = ""
                        var instrument = ""
                        try s2.readObject { k, s3 throws(JSONError) in
                            if s3.equals(k, "channel") {
                                channel = try s3.readString()
                            } else if s3.equals(k, "instId") {
                                instrument = try s3.readString()
                            } else {
                                try s3.skipValue()
                            }
                        }
                        args.append((channel, instrument))
                    }
                } else {
                    try s.skipValue()
                }
            }
            try scanner.expectEnd()
        } catch {
            sendError(id: id, code: "60012", message: "Invalid request: \(String(decoding: payload, as: UTF8.self))")
            return
        }
        guard let op, op == "subscribe" || op == "unsubscribe", !args.isEmpty else {
            sendError(
                id: id, code: op == nil ? "60012" : "60019",
                message: "Invalid request: \(String(decoding: payload, as: UTF8.self))")
            return
        }
        let idField = id.map { "\"id\":\(JSONText.quoted($0))," } ?? ""
        for arg in args {
            let argJSON = "{\"channel\":\(JSONText.quoted(arg.channel)),\"instId\":\(JSONText.quoted(arg.instId))}"
            if let channel = BookChannel(rawValue: arg.channel) {
                handleBookRequest(op: op, id: id, channel: channel, instrument: arg.instId, argJSON: argJSON)
                continue
            }
            if let feed = FeedChannel(rawValue: arg.channel) {
                handleFeedRequest(op: op, id: id, feed: feed, instrument: arg.instId, argJSON: argJSON)
                continue
            }
            let timeframe = arg.channel.hasPrefix("candle") ? Timeframe(String(arg.channel.dropFirst(6))) : nil
            guard let timeframe, isBusiness, simulator.configuration.symbols.contains(arg.instId) else {
                let message =
                    "Subscribe failed, wrong URL or channel:\(arg.channel),instId:\(arg.instId) doesn't exist."
                    + simulator.configuration.unknownInstrumentHint(arg.instId)
                sendError(id: id, code: "60018", message: message)
                continue
            }
            let key = "\(arg.instId)|\(timeframe.key)"
            if op == "subscribe" {
                if subscriptions[key] == nil { subscriptions[key] = (arg.instId, timeframe, nil) }
            } else {
                subscriptions[key] = nil
            }
            connection.send(
                text: "{\(idField)\"event\":\"\(op)\",\"arg\":\(argJSON),\"connId\":\"sim\(connectionID)\"}")
        }
        let floodsTrades = feeds.keys.contains { $0.hasPrefix("trades-all|") }
        let floodsBooks = bookFeeds.values.contains { $0.books != nil }
        if op == "subscribe" && simulator.configuration.floodMessages > 0
            && (!subscriptions.isEmpty || floodsTrades || floodsBooks)
        {
            floodRemaining = simulator.configuration.floodMessages
            flood()
        }
    }

    func sendError(id: String?, code: String, message: String) {
        let idField = id.map { "\"id\":\(JSONText.quoted($0))," } ?? ""
        connection.send(
            text:
                "{\(idField)\"event\":\"error\",\"code\":\"\(code)\",\"msg\":\(JSONText.quoted(message)),\"connId\":\"sim\(connectionID)\"}"
        )
    }

    /// Pushes the forming bar of every subscription, and each bar that completed since the last tick.
    func tick(virtualNow: Int64) {
        guard connection.isOpen, floodRemaining == 0, !simulator.isSilent else { return }
        let realNow = simulator.loop.now().nanoseconds
        if subscriptions.isEmpty {
            if Duration.nanoseconds(realNow - lastActivity) > simulator.configuration.idleTimeout { connection.abort() }
            return
        }
        for (key, sub) in subscriptions {
            let current = simulator.model.openTime(containing: virtualNow, timeframe: sub.timeframe)
            var open = sub.lastOpen ?? current
            // Confirm every bar that ended since the last push (OKX sends the closed bar with confirm "1").
            while open < current {
                let (candle, _) = simulator.model.candle(
                    symbol: sub.symbol, timeframe: sub.timeframe, openTime: open, asOf: virtualNow)
                push(candle)
                simulator.recordEmitted(candle)
                open = sub.timeframe.nextOpenTime(after: open)
            }
            let (forming, _) = simulator.model.candle(
                symbol: sub.symbol, timeframe: sub.timeframe, openTime: current, asOf: virtualNow)
            push(forming)
            subscriptions[key]?.lastOpen = current
        }
        lastActivity = realNow
    }

    private func push(_ candle: Candle) {
        connection.send(
            text:
                "{\"arg\":{\"channel\":\"candle\(candle.timeframe.key)\",\"instId\":\(JSONText.quoted(candle.symbol))},\"data\":[\(CandleModel.row(candle))]}"
        )
    }

    /// Benchmark mode: pre-encoded pushes for the first subscription, as fast as the client reads.
    private var floodBlock: [UInt8] = []
    private func flood() {
        guard floodRemaining > 0 else { return }
        // Candles and trades flood first; `books` only when neither is subscribed.
        let floodsTrades = feeds.keys.contains { $0.hasPrefix("trades-all|") }
        if floodBlock.isEmpty && subscriptions.isEmpty && !floodsTrades && floodBooks() { return }
        if floodBlock.isEmpty, subscriptions.isEmpty, let key = feeds.keys.first(where: { $0.hasPrefix("trades-all|") })
        {
            // Trades: one fill per push (~180 bytes), sequential ids, as `trades-all` sends them.
            let symbol = String(key.dropFirst("trades-all|".count))
            for i in 0..<1000 {
                let price = 42_000 + (i * 7) % 500
                let text =
                    "{\"arg\":{\"channel\":\"trades-all\",\"instId\":\(JSONText.quoted(symbol))},\"data\":[{\"instId\":\(JSONText.quoted(symbol)),\"tradeId\":\"\(130_639_474 + i)\",\"px\":\"\(price).\(i % 10)\",\"sz\":\"0.\(10_000_000 + (i &* 7_919) % 90_000_000)\",\"side\":\"\(i % 3 == 0 ? "sell" : "buy")\",\"ts\":\"\(1_630_048_897_897 + i)\"}]}"
                Array(text.utf8).withUnsafeBytes {
                    WSFrameEncoder.encode(opcode: .text, payload: $0, maskKey: nil, into: &floodBlock)
                }
            }
        }
        guard !floodBlock.isEmpty || !subscriptions.isEmpty else { return }
        if floodBlock.isEmpty, let sub = subscriptions.values.first {
            for i in 0..<1000 {
                let (candle, _) = simulator.model.candle(
                    symbol: sub.symbol, timeframe: sub.timeframe,
                    openTime: simulator.virtualStart + Int64(i) * 60_000_000,
                    asOf: simulator.virtualStart + Int64(i) * 60_000_000 + 30_000_000)
                let text =
                    "{\"arg\":{\"channel\":\"candle\(candle.timeframe.key)\",\"instId\":\(JSONText.quoted(candle.symbol))},\"data\":[\(CandleModel.row(candle))]}"
                Array(text.utf8).withUnsafeBytes {
                    WSFrameEncoder.encode(opcode: .text, payload: $0, maskKey: nil, into: &floodBlock)
                }
            }
        }
        while floodRemaining > 0 && connection.isWritable {
            floodBlock.withUnsafeBytes { connection.sendEncodedFrames($0) }
            floodRemaining -= 1000
        }
        if floodRemaining <= 0 { floodRemaining = 0 }
    }
}

/// The handler for a connection that reaches a simulator already released without `shutdown`:
/// it closes at once with 1001 (going away).
final class ClosedSession: WebSocketServerHandler {
    func webSocketDidConnect(_ connection: WebSocketServerConnection, request: HTTPRequest) {
        connection.close(code: 1001, reason: "simulator stopped")
    }
    func webSocket(_ connection: WebSocketServerConnection, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {}
    func webSocketDidClose(_ connection: WebSocketServerConnection, info: WSCloseInfo) {}
}
