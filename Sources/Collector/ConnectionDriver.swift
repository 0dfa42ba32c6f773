import CollectorCore
package import Exchanges
import MarketData
import Observability
package import Runtime
import TLS
import WebSocketProtocol

/// What the engine needs from a connection, whatever its exchange's adapter type.
protocol EngineConnection: AnyObject {
    var exchange: ExchangeName { get }
    var url: String { get }
    var capacityLeft: Int { get }
    var isEmpty: Bool { get }
    func carries(_ stream: StreamID) -> Bool
    /// `windows`: the event-time window of each stream from its first event (a cutover).
    func add(_ streams: [StreamID], windows: [StreamID: EventWindow])
    func remove(_ streams: [StreamID])
    func setWindow(_ window: EventWindow?, for stream: StreamID)
    func seedLastConfirmed(_ stream: StreamID, _ openTime: Int64)
    func backfillFinished(_ stream: StreamID, after: Int64, before: Int64, candles: [Candle], error: String?)
    func tradeBackfillFinished(
        _ stream: StreamID, after: Int64, before: Int64, from: Int64, to: Int64, trades: [Trade], error: String?)
    func seedLastTrade(_ stream: StreamID, id: Int64, time: Int64)
    func bookSnapshotFetched(_ stream: StreamID, snapshot: BookMessage?, error: String?)
    func stop()
    func pauseReading()
    func resumeReading()
}

/// The thin driver of one `ExchangeSession` (STYLE.md §3): it alone reads the clock, arms timers and
/// touches the WebSocket; every decision is the session's. Loop-confined.
final class ConnectionDriver<Adapter: ExchangeAdapter>: WebSocketHandler, EngineConnection {
    // Strong: a connection must never outlive its engine's state (a test that fails before shutting
    // the engine down would otherwise read a freed core from a timer). The cycle is broken when the
    // engine stops or removes the connection's last stream (it leaves `connections`).
    private let core: EngineCore
    private var session: ExchangeSession<Adapter>
    private var channel: WebSocketChannel?
    private var timers: [SessionTimer: TimerHandle] = [:]
    /// Reused for frames, so the hot path does not allocate an action array per frame.
    private var scratch: [SessionAction] = []
    private let logger: Logger

    init(core: EngineCore, adapter: Adapter, url: String, configuration: SessionConfiguration, seed: UInt64) {
        self.core = core
        self.session = ExchangeSession(adapter: adapter, url: url, configuration: configuration, seed: seed)
        self.logger = core.logger.with(["ws.venue": adapter.name.rawValue, "ws.url": url])
        scratch.reserveCapacity(16)
    }

    var exchange: ExchangeName { session.adapter.name }
    var url: String { session.url }
    var capacityLeft: Int { session.capacityLeft }
    var isEmpty: Bool { session.isEmpty }
    func carries(_ stream: StreamID) -> Bool { session.subscription(of: stream) != nil }
    private var now: Instant { core.loop.now() }

    // MARK: Inputs

    func add(_ streams: [StreamID], windows: [StreamID: EventWindow]) {
        perform(session.add(streams, windows: windows, now: now))
    }
    func remove(_ streams: [StreamID]) { perform(session.remove(streams, now: now)) }
    func setWindow(_ window: EventWindow?, for stream: StreamID) { session.setWindow(window, for: stream) }
    func seedLastConfirmed(_ stream: StreamID, _ openTime: Int64) { session.seedLastConfirmed(stream, openTime) }
    func stop() { perform(session.stop(now: now)) }

    func backfillFinished(_ stream: StreamID, after: Int64, before: Int64, candles: [Candle], error: String?) {
        perform(
            session.backfillFinished(stream, after: after, before: before, candles: candles, error: error, now: now))
    }

    func tradeBackfillFinished(
        _ stream: StreamID, after: Int64, before: Int64, from: Int64, to: Int64, trades: [Trade], error: String?
    ) {
        perform(
            session.tradeBackfillFinished(
                stream, after: after, before: before, from: from, to: to, trades: trades, error: error, now: now))
    }

    func seedLastTrade(_ stream: StreamID, id: Int64, time: Int64) { session.seedLastTrade(stream, id: id, time: time) }

    func bookSnapshotFetched(_ stream: StreamID, snapshot: BookMessage?, error: String?) {
        perform(session.bookSnapshotFetched(stream, snapshot: snapshot, error: error, now: now))
    }

    func pauseReading() {
        session.readingPaused(now: now)
        channel?.pauseReading()
    }

    func resumeReading() {
        session.readingResumed(now: now)
        channel?.resumeReading()
    }

    func webSocketDidConnect(_ channel: WebSocketChannel) {
        guard channel === self.channel else { return }
        perform(session.connected(now: now, wallClock: WallClock.microseconds()))
    }

    func webSocket(_ channel: WebSocketChannel, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {
        guard channel === self.channel else { return }
        var actions = scratch
        scratch = []
        actions.removeAll(keepingCapacity: true)
        session.frame(payload, isText: isText, receivedAt: WallClock.microseconds(), now: now, into: &actions)
        perform(actions)
        actions.removeAll(keepingCapacity: true)
        scratch = actions
    }

    func webSocketDidReceiveControlFrame(_ channel: WebSocketChannel) {
        guard channel === self.channel else { return }
        session.controlFrameReceived(now: now)
    }

    func webSocketDidClose(_ channel: WebSocketChannel, info: WSCloseInfo, error: (any Error)?) {
        // `WebSocketChannel.connect` may fail synchronously (a TLS context that cannot be made), before
        // `connect(_:)` has stored the channel: that report is ours too while the session is connecting.
        let early = self.channel == nil && session.phase == .connecting
        guard channel === self.channel || early else { return }
        self.channel = nil
        let reason = error.map { "\($0)" } ?? "closed: \(info.code) \(info.reason)"
        // A certificate that does not verify will not verify on the next attempt either.
        let permanent = (error as? TLSError)?.code == .certificateVerificationFailed
        perform(session.closed(reason: reason, permanent: permanent, now: now))
    }

    private func timerFired(_ timer: SessionTimer) {
        timers[timer] = nil
        let actions = core.withConnectionBudget(exchange) { budget in
            session.timerFired(timer, now: now, connectionBudget: &budget)
        }
        perform(actions)
    }

    // MARK: Outputs

    private func perform(_ actions: [SessionAction]) {
        for action in actions { perform(action) }
    }

    private func perform(_ action: SessionAction) {
        switch action {
        case .connect(let url):
            connect(url)
        case .send(let frame):
            guard let channel, channel.isOpen else { return }
            switch frame {
            case .text(let text): channel.send(text: text)
            case .binary(let bytes): channel.send(binary: bytes)
            case .ping: channel.sendPing()
            case .textWithToken(let prefix, let suffix):
                guard let signer = core.configuration.signers[exchange] else {
                    failPermanently("an authenticated channel needs a signer for \(exchange), and none is configured")
                    return
                }
                do {
                    channel.send(text: prefix + (try signer.token(now: WallClock.microseconds())) + suffix)
                } catch {
                    failPermanently("cannot sign the subscription: \(error)")
                }
            }
        case .close(let code, let reason, let reportClosed):
            channel?.close(code: code, reason: reason)
            if !reportClosed { channel = nil }
        case .scheduleTimer(let timer, let at):
            if let old = timers[timer] { core.loop.cancelTimer(old) }
            let delay = max(.zero, at.duration(since: now))
            timers[timer] = core.loop.scheduleTimer(after: delay) { [weak self] in self?.timerFired(timer) }
        case .cancelTimer(let timer):
            if let old = timers.removeValue(forKey: timer) { core.loop.cancelTimer(old) }
        case .emit(let event):
            core.accept(event)
        case .backfill(let stream, let after, let before):
            core.startBackfill(stream, after: after, before: before, for: self)
        case .backfillTrades(let stream, let after, let before, let from, let to):
            core.startTradeBackfill(stream, after: after, before: before, from: from, to: to, for: self)
        case .recordGaps(let stream, let gaps):
            core.recordGaps(stream, gaps)
        case .fetchBookSnapshot(let stream):
            core.fetchBookSnapshot(stream, for: self)
        case .backfilled(let stream, let bars):
            core.status.update(stream) { $0.backfilledBars += bars }
            core.metrics?.backfilledBars[CollectorMetrics.index(stream)].increment(by: Int64(bars))
        case .phase(let stream, let phase, let detail):
            core.status.update(stream) {
                $0.state = phase
                if let detail { $0.lastError = detail }
                if phase == .live { $0.rejection = nil } else { $0.bookSynchronised = false }
            }
        case .windowPassed(let stream, let until):
            core.status.update(stream) { $0.passedUntil = max($0.passedUntil ?? .min, until) }
        case .bookSynchronised(let stream, let synchronised):
            core.status.update(stream) { $0.bookSynchronised = synchronised }
        case .refused(let stream, let code, let message):
            core.status.update(stream) {
                $0.state = .rejected
                $0.rejection = (code, message)
                $0.errors += 1
                $0.lastError = "\(code): \(message)"
            }
        case .reconnected(let stream):
            core.status.update(stream) { $0.reconnects += 1 }
        case .streamError(let stream, let message):
            core.status.update(stream) {
                $0.errors += 1
                $0.lastError = message
            }
        case .deadLetter(let raw, let reason):
            core.deadLetter(exchange, raw: raw, reason: reason, at: WallClock.microseconds())
        case .log(let level, let message, let fields):
            switch level {
            case .debug: logger.debug(message, fields)
            case .info: logger.info(message, fields)
            case .notice: logger.notice(message, fields)
            case .warning: logger.warning(message, fields)
            case .error: logger.error(message, fields)
            }
        case .count(let counter):
            let index = CollectorMetrics.index(exchange)
            switch counter {
            case .reconnect: core.metrics?.reconnects[index].increment()
            case .parseError: core.metrics?.parseErrors[index].increment()
            case .unhandled: core.metrics?.unhandled[index].increment()
            }
        }
    }

    /// A connection that cannot work as configured: closed, and its streams refused (retried rarely).
    private func failPermanently(_ reason: String) {
        let channel = self.channel
        self.channel = nil
        channel?.close(code: WSCloseCode.policyViolation, reason: "collector configuration")
        perform(session.closed(reason: reason, permanent: true, now: now))
    }

    private func connect(_ url: String) {
        guard let parsed = WebSocketURL(url) else {
            perform(session.closed(reason: "invalid WebSocket URL \(url)", permanent: true, now: now))
            return
        }
        var configuration = ExchangeWebSocket.configuration(
            for: session.adapter, connectTimeout: core.configuration.connectTimeout)
        configuration.tls = core.configuration.webSocketTLS
        let channel = WebSocketChannel.connect(to: parsed, configuration: configuration, loop: core.loop, handler: self)
        // Failed synchronously (already reported through `webSocketDidClose`): nothing to keep.
        guard session.phase == .connecting else { return }
        self.channel = channel
        // Back-pressure holds across reconnects: a connection made while the writer is behind starts paused.
        if core.isReadingPaused {
            session.readingPaused(now: now)
            channel.pauseReading()
        }
    }
}

/// How the data plane configures its exchange WebSocket clients.
package enum ExchangeWebSocket {
    /// The client settings for one exchange: frame and message limits from its adapter (sized from its
    /// largest real message), not one default for every exchange.
    package static func configuration(
        for adapter: any ExchangeAdapter, connectTimeout: Duration
    ) -> WebSocketConfiguration {
        let configuration = WebSocketConfiguration(
            connection: .init(
                role: .client, maxFrameBytes: adapter.limits.maxMessageBytes,
                maxMessageBytes: adapter.limits.maxMessageBytes),
            connectTimeout: connectTimeout)
        return configuration
    }
}
