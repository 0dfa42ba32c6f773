import CollectorCore
import Exchanges
import MarketData
import WireCore

// OKX: the push parser (any WebSocket frame), the REST reply parsers (candles, trades, book), and
// the session machine driven by a fuzzer-chosen script of connects, frames, timers and closes.
extension FuzzTarget {
    static let exchangeTargets: [FuzzTarget] = [
        FuzzTarget(
            name: "okx-message",
            summary: "OKX push parser: only valid JSON yields data, decimals and times valid, bounded output"
        ) { input throws(FuzzFinding) in try OKXFuzz.checkMessage(input) },
        FuzzTarget(
            name: "okx-rest",
            summary: "OKX REST replies (candles, trades, book): only valid JSON yields data, decimals and times valid"
        ) { input throws(FuzzFinding) in try OKXFuzz.checkREST(input) },
        FuzzTarget(
            name: "okx-session",
            summary: "session machine on a scripted connection: sends only when open, emits only wanted streams"
        ) { input throws(FuzzFinding) in try OKXSessionFuzz.check(input) },
    ]
}

enum OKXFuzz {
    static let adapter = OKXAdapter()
    static let receivedAt: Int64 = 1_700_000_000_123_456

    static func parse(_ input: [UInt8]) -> Result<[ExchangeMessage], ExchangeParseError> {
        input.withUnsafeBytes { bytes in
            Result { () throws(ExchangeParseError) in
                var out: [ExchangeMessage] = []
                try adapter.parse(bytes, receivedAt: receivedAt, into: &out)
                return out
            }
        }
    }

    static func checkMessage(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "okx-message"
        guard case .success(let messages) = parse(input) else { return }
        try require(messages.count <= input.count, target, "\(messages.count) messages from \(input.count) bytes")
        if input != Array("pong".utf8) && !messages.isEmpty {
            try require(isJSON(input), target, "messages \(messages.prefix(2)) from text that is not JSON")
        }
        for message in messages {
            if case .event(let event) = message { try checkEvent(event, target: target) }
        }
    }

    /// The three REST parsers on the same body: what any of them accepts came from valid JSON and
    /// holds every event's promises.
    static func checkREST(_ input: [UInt8]) throws(FuzzFinding) {
        let candles = StreamID(exchange: .okx, feed: .candles(Timeframe("1m")!), symbol: "BTC-USDT")
        let trades = StreamID(exchange: .okx, feed: .trades, symbol: "BTC-USDT")
        let books = StreamID(exchange: .okx, feed: .fullBook, symbol: "BTC-USDT")
        let events: [MarketEvent] = input.withUnsafeBytes { body in
            var events: [MarketEvent] = []
            if let request = adapter.backfillPage(for: candles, newerThan: 0, olderThan: receivedAt, now: receivedAt),
                let page = Result(catching: { () throws(RESTError) in
                    try adapter.parseBackfill(body, request: request, stream: candles, receivedAt: receivedAt)
                }).value
            {
                events += page.candles.map(MarketEvent.candle)
            }
            if let request = adapter.tradeBackfillPage(for: trades, newerThanID: 1, olderThanID: 1_000_000),
                let list = Result(catching: { () throws(RESTError) in
                    try adapter.parseTradeBackfill(body, request: request, stream: trades, receivedAt: receivedAt)
                }).value
            {
                events += list.map(MarketEvent.trade)
            }
            if let request = adapter.bookSnapshotRequest(for: books),
                case .success(let book?) = Result(catching: { () throws(RESTError) in
                    try adapter.parseBookSnapshot(body, request: request, stream: books, receivedAt: receivedAt)
                })
            {
                events.append(.book(book))
            }
            return events
        }
        if !events.isEmpty { try require(isJSON(input), "okx-rest", "data from a reply that is not JSON") }
        for event in events { try checkEvent(event, target: "okx-rest") }
    }

    /// Whether the strict reader of the `json` target accepts the text.
    static func isJSON(_ input: [UInt8]) -> Bool {
        input.withUnsafeBytes { bytes in
            let read = Result { () throws(JSONError) in
                var scanner = JSONScanner(bytes)
                try scanner.skipValue()
                try scanner.expectEnd()
            }
            if case .success = read { return true }
            return false
        }
    }

    /// What every stored event promises: its decimals are decimals, its symbol is set, its time of
    /// receipt is ours.
    static func checkEvent(_ event: MarketEvent, target: String) throws(FuzzFinding) {
        var decimals: [DecimalText] = []
        switch event {
        case .candle(let c):
            decimals = [c.open, c.high, c.low, c.close, c.volume, c.quoteVolume]
            try require(!c.symbol.isEmpty, target, "a candle without a symbol")
            try require(c.timestampCollector == receivedAt, target, "candle received at \(c.timestampCollector)")
        case .trade(let t):
            decimals = [t.price, t.size]
            try require(!t.symbol.isEmpty && !t.tradeID.isEmpty, target, "a trade without a symbol or id: \(t)")
            try require(t.timestampCollector == receivedAt, target, "trade received at \(t.timestampCollector)")
        case .book(let b):
            decimals = (b.bids + b.asks).flatMap { [$0.price, $0.size] }
            try require(!b.symbol.isEmpty, target, "a book message without a symbol")
            if let depth = b.depth {
                try require(
                    b.bids.count <= max(depth, 400) && b.asks.count <= max(depth, 400), target,
                    "\(b.bids.count)/\(b.asks.count) levels for depth \(depth)")
            }
        case .ticker(let t):
            try require(!t.symbol.isEmpty, target, "a ticker without a symbol")
        case .gap:
            break
        }
        // Every OKX time is below 10^13 ms, so its µs value is below 10^16 (no overflow on the way).
        try require(
            (0..<10_000_000_000_000_000).contains(event.timestampExchange), target,
            "event time \(event.timestampExchange) outside the exchange's range")
        for decimal in decimals {
            try require(DecimalText(decimal.text) != nil, target, "invalid decimal '\(decimal.text)' in \(event)")
        }
    }
}

/// The OKX session machine under a fuzzer-written script. The script is the input read as
/// operations: a byte picks the operation and the bytes after it its arguments, so a seed from real
/// traffic replays a connection (connect, subscribe replies, pushes) and mutations reorder it.
enum OKXSessionFuzz {
    enum Socket: Equatable { case none, connecting, open, closing }

    static let universe: [StreamID] = [
        "okx/candles:1m/BTC-USDT", "okx/trades/BTC-USDT", "okx/book/BTC-USDT", "okx/book:5/ETH-USDT",
        "okx/book:1/BTC-USDT", "okx/ticker/BTC-USDT", "okx/trades/ETH-USDT", "okx/candles:1H/ETH-USDT",
    ].compactMap { StreamID($0) }

    /// One script step.
    enum Step {
        case connected, closed, frame([UInt8]), timer(SessionTimer), advance(Int64), add(StreamID), remove(StreamID)
        case answerREST([UInt8]), stop
    }

    /// Reads the script: `op` byte, then for frames and REST answers a 2-byte length and the bytes.
    static func script(_ input: [UInt8]) -> [Step] {
        var steps: [Step] = []
        var index = 0
        func byte() -> UInt8? {
            guard index < input.count else { return nil }
            defer { index += 1 }
            return input[index]
        }
        func payload() -> [UInt8] {
            let length = (Int(byte() ?? 0) << 8 | Int(byte() ?? 0))
            let end = min(input.count, index + length)
            defer { index = end }
            return Array(input[index..<end])
        }
        while let op = byte(), steps.count < 400 {
            if op == 255 {
                steps.append(.stop)
                continue
            }
            switch op % 10 {
            case 0: steps.append(.connected)
            case 1: steps.append(.closed)
            case 2: steps.append(.frame(payload()))
            case 3:
                let all = SessionTimer.allCases
                steps.append(.timer(all[Int(byte() ?? 0) % all.count]))
            case 4: steps.append(.advance(Int64(byte() ?? 0) * 250_000_000))
            case 5: steps.append(.add(universe[Int(byte() ?? 0) % universe.count]))
            case 6: steps.append(.remove(universe[Int(byte() ?? 0) % universe.count]))
            case 7: steps.append(.answerREST(payload()))
            case 8: steps.append(.advance(Int64(byte() ?? 0) * 60_000_000_000))
            default: continue  // 9: reserved (a no-op, so mutations can blank a step)
            }
        }
        return steps
    }

    /// Encodes a script (the corpus generator writes seeds with it).
    static func encode(_ steps: [Step]) -> [UInt8] {
        var out: [UInt8] = []
        func bytes(_ op: UInt8, _ body: [UInt8]) {
            out += [op, UInt8(body.count >> 8), UInt8(body.count & 0xFF)] + body
        }
        for step in steps {
            switch step {
            case .connected: out.append(0)
            case .closed: out.append(1)
            case .frame(let body): bytes(2, body)
            case .timer(let timer): out += [3, UInt8(SessionTimer.allCases.firstIndex(of: timer) ?? 0)]
            case .advance(let nanoseconds): out += [4, UInt8(min(255, nanoseconds / 250_000_000))]
            case .add(let stream): out += [5, UInt8(universe.firstIndex(of: stream) ?? 0)]
            case .remove(let stream): out += [6, UInt8(universe.firstIndex(of: stream) ?? 0)]
            case .answerREST(let body): bytes(7, body)
            case .stop: out.append(255)
            }
        }
        return out
    }

    static func check(_ input: [UInt8]) throws(FuzzFinding) {
        let steps = script(input)
        let first = try run(steps)
        let second = try run(steps)
        try require(first == second, "okx-session", "the same script gave two transcripts")
    }

    /// Outstanding REST work the session asked for, oldest first (bounded by the script's length).
    enum Request: Equatable {
        case candles(StreamID, after: Int64, before: Int64)
        case trades(StreamID, after: Int64, before: Int64, from: Int64, to: Int64)
        case book(StreamID)
    }

    static func run(_ steps: [Step]) throws(FuzzFinding) -> [SessionAction] {
        let target = "okx-session"
        let adapter = OKXFuzz.adapter
        var session = ExchangeSession(
            adapter: adapter, url: "wss://ws.okx.com/ws/v5/public", configuration: SessionConfiguration(), seed: 7)
        var connections = TokenBucket(capacity: 3, refillPerSecond: 1)
        var now = Instant(nanoseconds: 1_000_000_000)
        var socket = Socket.none
        /// Whether the current socket ever opened (a closing one that never did delivers no frames).
        var opened = false
        /// The timers the session has armed, as a driver keeps them: only these fire, at their time.
        var armed: [SessionTimer: Instant] = [:]
        var requests: [Request] = []
        var transcript: [SessionAction] = []

        func apply(_ actions: [SessionAction], step: Int) throws(FuzzFinding) {
            for action in actions {
                switch action {
                case .connect:
                    try require(socket == .none, target, "step \(step): connect while the socket is \(socket)")
                    socket = .connecting
                    opened = false
                case .send(let frame):
                    try require(socket == .open, target, "step \(step): send \(frame) while the socket is \(socket)")
                    if case .text(let text) = frame { try checkSubscribe(text, session: session, step: step) }
                case .close(_, _, let reportClosed):
                    // A recycle closes an open (or connecting) socket and waits for its report; giving
                    // the connection up (stop, no streams left) may also detach one already closing.
                    try require(
                        socket == .open || socket == .connecting || (socket == .closing && !reportClosed), target,
                        "step \(step): close (report \(reportClosed)) while the socket is \(socket)")
                    socket = reportClosed ? .closing : .none
                case .emit(let event):
                    try require(
                        session.streams.contains(event.stream), target,
                        "step \(step): emitted \(event.stream), which is not wanted")
                case .backfill(let stream, let after, let before):
                    try require(after < before, target, "step \(step): backfill of an empty range \(after)…\(before)")
                    requests.append(.candles(stream, after: after, before: before))
                case .backfillTrades(let stream, let after, let before, let from, let to):
                    requests.append(.trades(stream, after: after, before: before, from: from, to: to))
                case .fetchBookSnapshot(let stream):
                    requests.append(.book(stream))
                case .scheduleTimer(let timer, let at):
                    try require(at >= now, target, "step \(step): a timer scheduled in the past")
                    armed[timer] = at
                case .cancelTimer(let timer):
                    armed[timer] = nil
                default:
                    break
                }
            }
            try require(requests.count <= 64 * universe.count, target, "\(requests.count) REST requests outstanding")
            transcript += actions
        }

        for (index, step) in steps.enumerated() {
            switch step {
            case .connected:
                guard socket == .connecting else { continue }  // a driver reports only what it started
                socket = .open
                opened = true
                try apply(
                    session.connected(now: now, wallClock: 1_700_000_000_000_000 + now.nanoseconds / 1000), step: index)
            case .closed:
                guard socket != .none else { continue }
                socket = .none
                try apply(session.closed(reason: "fuzz", permanent: false, now: now), step: index)
            case .frame(let bytes):
                guard socket == .open || (socket == .closing && opened) else { continue }
                var actions: [SessionAction] = []
                bytes.withUnsafeBytes { payload in
                    session.frame(
                        payload, isText: true, receivedAt: 1_700_000_000_000_000 + now.nanoseconds / 1000, now: now,
                        into: &actions)
                }
                try apply(actions, step: index)
            case .timer(let timer):
                // The earliest armed timer of that kind fires at its time (the clock jumps there).
                guard let at = armed.removeValue(forKey: timer) else { continue }
                if at > now { now = at }
                try apply(session.timerFired(timer, now: now, connectionBudget: &connections), step: index)
            case .advance(let nanoseconds):
                now = now.advanced(by: .nanoseconds(nanoseconds))
            case .add(let stream):
                try apply(session.add([stream], now: now), step: index)
            case .remove(let stream):
                try apply(session.remove([stream], now: now), step: index)
            case .answerREST(let body):
                guard !requests.isEmpty else { continue }
                try apply(answer(requests.removeFirst(), body: body, session: &session, now: now), step: index)
            case .stop:
                try apply(session.stop(now: now), step: index)
            }
        }
        return transcript
    }

    /// Answers a REST request with the body parsed as the reply (its error when it does not parse).
    static func answer(
        _ request: Request, body: [UInt8], session: inout ExchangeSession<OKXAdapter>, now: Instant
    ) -> [SessionAction] {
        let adapter = OKXFuzz.adapter
        let receivedAt = 1_700_000_000_000_000 + now.nanoseconds / 1000
        return body.withUnsafeBytes { bytes in
            switch request {
            case .candles(let stream, let after, let before):
                let page = adapter.backfillPage(for: stream, newerThan: after, olderThan: before, now: receivedAt)
                let parsed = page.map { request in
                    Result { () throws(RESTError) in
                        try adapter.parseBackfill(bytes, request: request, stream: stream, receivedAt: receivedAt)
                    }
                }
                let candles = parsed?.value?.candles ?? []
                let error = parsed.flatMap { if case .failure(let e) = $0 { e.description } else { nil } }
                return session.backfillFinished(
                    stream, after: after, before: before, candles: candles, error: error, now: now)
            case .trades(let stream, let after, let before, let from, let to):
                let page = adapter.tradeBackfillPage(for: stream, newerThanID: after, olderThanID: before)
                let parsed = page.map { request in
                    Result { () throws(RESTError) in
                        try adapter.parseTradeBackfill(bytes, request: request, stream: stream, receivedAt: receivedAt)
                    }
                }
                let trades = parsed?.value ?? []
                let error = parsed.flatMap { if case .failure(let e) = $0 { e.description } else { nil } }
                return session.tradeBackfillFinished(
                    stream, after: after, before: before, from: from, to: to, trades: trades, error: error, now: now)
            case .book(let stream):
                let page = adapter.bookSnapshotRequest(for: stream)
                let parsed = page.map { request in
                    Result { () throws(RESTError) in
                        try adapter.parseBookSnapshot(bytes, request: request, stream: stream, receivedAt: receivedAt)
                    }
                }
                var snapshot: BookMessage?
                var error: String? = "no request"
                switch parsed {
                case .success(let book)?: (snapshot, error) = (book, book == nil ? "empty book" : nil)
                case .failure(let failure)?: error = failure.description
                case nil: break
                }
                return session.bookSnapshotFetched(stream, snapshot: snapshot, error: error, now: now)
            }
        }
    }

    /// A subscribe request names only streams the session wants.
    static func checkSubscribe(
        _ text: String, session: ExchangeSession<OKXAdapter>, step: Int
    ) throws(FuzzFinding) {
        guard text.contains("\"op\":\"subscribe\"") else { return }
        for stream in universe where text.contains(subscribeArgument(stream)) {
            try require(
                session.streams.contains(stream), "okx-session",
                "step \(step): subscribed \(stream), which is not wanted")
        }
    }

    static func subscribeArgument(_ stream: StreamID) -> String {
        "{\"channel\":\(JSONText.quoted(OKXAdapter.channel(for: stream.feed))),\"instId\":\(JSONText.quoted(stream.symbol))}"
    }
}
