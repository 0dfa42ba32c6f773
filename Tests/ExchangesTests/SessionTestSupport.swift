import CollectorCore
import Exchanges
import MarketData

/// A tiny line protocol standing in for an exchange, so transcripts read plainly:
/// `sub <stream>` / `unsub <stream>` are what we send (one stream per line); the exchange answers
/// `ok <stream>`, `no <stream> <code>`, `noreq <requestID> <code>`, `bar <stream> <minute> <0|1>`
/// (a 1m candle at that minute of 2025-03-01), `notice` (reconnect soon), `pong`, `err`, and
/// anything else is malformed.
struct ScriptedAdapter: ExchangeAdapter {
    var name: ExchangeName { .okx }
    var limits: ExchangeLimits
    var keepalive: KeepalivePolicy

    init(
        perMessage: Int = 1, perConnection: Int = 100, subscribeBurst: Double = 100, subscribeRefill: Double = 100,
        connections: TokenBucket = TokenBucket(capacity: 3, refillPerSecond: 3),
        keepalive: KeepalivePolicy = .textPing("ping", reply: "pong", idle: .seconds(20))
    ) {
        limits = ExchangeLimits(
            maxStreamsPerConnection: perConnection, maxStreamsPerSubscribeMessage: perMessage,
            subscribeMessages: TokenBucket(capacity: subscribeBurst, refillPerSecond: subscribeRefill),
            connections: connections, maxMessageBytes: 1 << 16)
        self.keepalive = keepalive
    }

    var acknowledgement = AcknowledgementPolicy.explicit
    var subscriptionModel = SubscriptionModel.incremental
    /// Sent on every new connection before subscribing.
    var openedMessages: [String] = []
    /// Each subscribe request is sent as this many messages (`sub …` then `more …`).
    var framesPerRequest = 1
    var restBudgets: [String: TokenBucket] { [:] }

    func connectionOpenedMessages(context: SubscribeContext) -> [OutgoingFrame] {
        openedMessages.map(OutgoingFrame.text)
    }

    func validate(_ stream: StreamID) -> String? { nil }
    func webSocketURL(for stream: StreamID) -> String { "ws://127.0.0.1:1/ws" }

    func subscribeMessages(for streams: [StreamID], requestID: String, context: SubscribeContext) -> [OutgoingFrame] {
        let line = "\(requestID) " + streams.map(\.description).joined(separator: ",")
        return [.text("sub " + line)] + (1..<max(1, framesPerRequest)).map { _ in .text("more " + line) }
    }

    func unsubscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        [.text("unsub " + streams.map(\.description).joined(separator: ","))]
    }

    func backfillPage(for stream: StreamID, newerThan: Int64, olderThan: Int64, now: Int64) -> RESTRequest? { nil }

    func parseBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BackfillPage {
        throw RESTError(code: nil, message: "no REST here", isRetryable: false)
    }

    static let base = UTCCalendar.microseconds(year: 2025, month: 3, day: 1)

    func parse(
        _ frame: UnsafeRawBufferPointer, isText: Bool, receivedAt: Int64, state: inout NoConnectionState,
        into out: inout [ExchangeMessage]
    ) throws(ExchangeParseError) {
        let parts = String(decoding: frame, as: UTF8.self).split(separator: " ").map(String.init)
        switch parts.first {
        case "ok" where parts.count == 2:
            guard let stream = StreamID(parts[1]) else { throw ExchangeParseError("bad stream") }
            out.append(.subscribed(stream))
        case "okreq" where parts.count == 2:
            out.append(.subscribedRequest(requestID: parts[1]))
        case "nobody" where parts.count == 2:
            out.append(.subscriptionRejected(stream: nil, requestID: nil, code: parts[1], message: "refused"))
        case "no" where parts.count == 3:
            guard let stream = StreamID(parts[1]) else { throw ExchangeParseError("bad stream") }
            out.append(.subscriptionRejected(stream: stream, requestID: nil, code: parts[2], message: "refused"))
        case "noreq" where parts.count == 3:
            out.append(.subscriptionRejected(stream: nil, requestID: parts[1], code: parts[2], message: "refused"))
        case "bar" where parts.count == 4:
            guard let stream = StreamID(parts[1]), let minute = Int64(parts[2]), case .candles(let tf) = stream.feed
            else { throw ExchangeParseError("bad bar") }
            let open = Self.base + minute * 60_000_000
            out.append(
                .event(
                    .candle(
                        Candle(
                            exchange: stream.exchange, symbol: stream.symbol, timeframe: tf, openTime: open,
                            open: "1", high: "2", low: "1", close: "1.5", volume: "3", quoteVolume: "4",
                            isConfirmed: parts[3] == "1", timestampExchange: open, timestampCollector: receivedAt))))
        case "fill" where parts.count == 4:
            guard let stream = StreamID(parts[1]), let ms = Int64(parts[3]) else {
                throw ExchangeParseError("bad fill")
            }
            out.append(
                .event(
                    .trade(
                        Trade(
                            exchange: stream.exchange, symbol: stream.symbol, tradeID: parts[2], price: "1", size: "2",
                            side: .buy, timestampExchange: Self.base + ms * 1000, timestampCollector: receivedAt))))
        case "fills" where parts.count == 4:
            // Several fills in one frame, in the order given: `fills <stream> 12,11,10 <ms>`.
            guard let stream = StreamID(parts[1]), let ms = Int64(parts[3]) else {
                throw ExchangeParseError("bad fills")
            }
            for id in parts[2].split(separator: ",") {
                out.append(
                    .event(
                        .trade(
                            Trade(
                                exchange: stream.exchange, symbol: stream.symbol, tradeID: String(id), price: "1",
                                size: "2", side: .sell, timestampExchange: Self.base + ms * 1000,
                                timestampCollector: receivedAt))))
            }
        case "book" where parts.count == 8:
            // `book <stream> snap|upd <seq> <prev|-> <ms> <bids> <asks>`, levels `px:sz,px:sz` or `-`.
            guard let stream = StreamID(parts[1]), case .book(let depth) = stream.feed, let seq = Int64(parts[3]),
                let ms = Int64(parts[5]), let bids = Self.levels(parts[6]), let asks = Self.levels(parts[7])
            else { throw ExchangeParseError("bad book") }
            out.append(
                .event(
                    .book(
                        BookMessage(
                            exchange: stream.exchange, symbol: stream.symbol, sequence: seq,
                            previousSequence: Int64(parts[4]), action: parts[2] == "snap" ? .snapshot : .update,
                            bids: bids, asks: asks, timestampExchange: Self.base + ms * 1000,
                            timestampCollector: receivedAt, depth: depth))))
        case "tick" where parts.count == 3:
            // `tick <stream> <ms>`: a ticker at that millisecond.
            guard let stream = StreamID(parts[1]), let ms = Int64(parts[2]) else {
                throw ExchangeParseError("bad tick")
            }
            out.append(
                .event(
                    .ticker(
                        Ticker(
                            exchange: stream.exchange, symbol: stream.symbol, bidPrice: "1", askPrice: "2",
                            timestampExchange: Self.base + ms * 1000, timestampCollector: receivedAt))))
        case "notice":
            out.append(.notice(code: "64008", message: "upgrade", reconnectSoon: true))
        case "pong":
            out.append(.pong)
        case "err":
            out.append(.error(code: "1", message: "boom"))
        default:
            throw ExchangeParseError("malformed: \(parts.first ?? "")")
        }
    }
}

extension ScriptedAdapter {
    /// `px:sz,px:sz` or `-` (no levels).
    static func levels(_ text: String) -> [BookLevel]? {
        guard text != "-" else { return [] }
        var out: [BookLevel] = []
        for pair in text.split(separator: ",") {
            let parts = pair.split(separator: ":")
            guard parts.count == 2, let price = DecimalText(String(parts[0])), let size = DecimalText(String(parts[1]))
            else { return nil }
            out.append(BookLevel(price: price, size: size))
        }
        return out
    }
}

/// Streams for transcripts: `s(1)` is `okx/candles:1m/S1-USDT`, `tr(1)` is `okx/trades/S1-USDT`.
func s(_ i: Int) -> StreamID { StreamID("okx/candles:1m/S\(i)-USDT")! }
func tr(_ i: Int) -> StreamID { StreamID("okx/trades/S\(i)-USDT")! }

/// A session plus a simulated clock and the connection budget, driven like the runtime driver.
struct SessionHarness {
    var session: ExchangeSession<ScriptedAdapter>
    var now = Instant(nanoseconds: 1_000_000_000_000)
    var budget: TokenBucket
    /// Timers the session has armed and not cancelled.
    var timers: [SessionTimer: Instant] = [:]
    /// Everything the session asked for, in order.
    var log: [SessionAction] = []

    init(adapter: ScriptedAdapter = ScriptedAdapter(), configure: (inout SessionConfiguration) -> Void = { _ in }) {
        var configuration = SessionConfiguration()
        configuration.keepaliveCheckInterval = .seconds(1)
        configuration.staleAfter = .seconds(30)
        configure(&configuration)
        session = ExchangeSession(adapter: adapter, url: "ws://127.0.0.1:1/ws", configuration: configuration, seed: 7)
        budget = adapter.limits.connections
    }

    mutating func record(_ actions: [SessionAction]) -> [SessionAction] {
        for action in actions {
            switch action {
            case .scheduleTimer(let timer, let at): timers[timer] = at
            case .cancelTimer(let timer): timers[timer] = nil
            default: break
            }
        }
        log += actions
        return actions
    }

    mutating func advance(_ duration: Duration) { now = now.advanced(by: duration) }

    @discardableResult mutating func add(
        _ streams: [StreamID], windows: [StreamID: EventWindow] = [:]
    ) -> [SessionAction] {
        record(session.add(streams, windows: windows, now: now))
    }
    @discardableResult mutating func remove(_ streams: [StreamID]) -> [SessionAction] {
        record(session.remove(streams, now: now))
    }
    @discardableResult mutating func connected() -> [SessionAction] {
        record(session.connected(now: now, wallClock: ScriptedAdapter.base + now.nanoseconds / 1000))
    }
    @discardableResult mutating func closed(_ reason: String = "reset", permanent: Bool = false) -> [SessionAction] {
        record(session.closed(reason: reason, permanent: permanent, now: now))
    }
    @discardableResult mutating func frame(_ text: String) -> [SessionAction] {
        var actions: [SessionAction] = []
        var bytes = Array(text.utf8)
        let receivedAt = ScriptedAdapter.base + now.nanoseconds / 1000
        let now = self.now
        bytes.withUnsafeBytes { raw in
            session.frame(raw, isText: true, receivedAt: receivedAt, now: now, into: &actions)
        }
        bytes.removeAll()
        return record(actions)
    }
    @discardableResult mutating func bookSnapshotFetched(
        _ stream: StreamID, _ snapshot: BookMessage?, error: String? = nil
    ) -> [SessionAction] {
        record(session.bookSnapshotFetched(stream, snapshot: snapshot, error: error, now: now))
    }
    /// Fires `timer` at its armed instant (the clock moves there).
    @discardableResult mutating func fire(_ timer: SessionTimer) -> [SessionAction] {
        guard let at = timers.removeValue(forKey: timer) else { return [] }
        if at > now { now = at }
        return record(session.timerFired(timer, now: now, connectionBudget: &budget))
    }
    /// Adds streams and brings the connection up: connect timer, connect, connected.
    @discardableResult mutating func open(_ streams: [StreamID]) -> [SessionAction] {
        add(streams)
        fire(.connect)
        return connected()
    }
}

extension [SessionAction] {
    /// The text frames sent.
    var sentTexts: [String] {
        compactMap { if case .send(.text(let t)) = $0 { return t } else { return nil } }
    }
    var emitted: [MarketEvent] {
        compactMap { if case .emit(let e) = $0 { return e } else { return nil } }
    }
    var books: [BookMessage] { emitted.compactMap { if case .book(let b) = $0 { b } else { nil } } }
    var gaps: [Gap] {
        flatMap { (action: SessionAction) -> [Gap] in if case .recordGaps(_, let g) = action { g } else { [] } }
    }
    var snapshotFetches: [StreamID] {
        compactMap { if case .fetchBookSnapshot(let s) = $0 { s } else { nil } }
    }
    var closes: Int { filter { if case .close = $0 { true } else { false } }.count }
    var logs: [String] { compactMap { if case .log(_, let m, _) = $0 { return m } else { return nil } } }
}

/// The streams a `sub` line names.
func subscribed(in texts: [String]) -> [StreamID] {
    texts.filter { $0.hasPrefix("sub ") }.flatMap { line in
        line.split(separator: " ")[2].split(separator: ",").compactMap { StreamID(String($0)) }
    }
}
