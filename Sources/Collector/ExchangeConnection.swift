import CollectorCore
package import Exchanges
import MarketData
import Observability
package import Runtime
import WebSocketProtocol

/// One WebSocket connection to an exchange carrying a set of streams. Loop-confined.
///
/// Connects, subscribes (within the per-connection subscribe budget), keeps the connection alive
/// (the adapter's ping after silence; recycled when stale), parses frames into the engine, and
/// reconnects with capped, jittered backoff forever until stopped. A refused subscription is not
/// retried. A run of malformed frames trips a circuit breaker that recycles the connection.
final class ExchangeConnection: WebSocketHandler {
    // Strong: a connection must never outlive its engine's state (a test that fails before shutting
    // the engine down would otherwise read a freed core from a timer). The cycle is broken when the
    // engine stops or unsubscribes the connection's last stream (it is removed from `connections`).
    private let core: EngineCore
    let adapter: any ExchangeAdapter
    let url: String
    private(set) var streams: Set<StreamID> = []
    private var subscribed: Set<StreamID> = []
    private var rejected: Set<StreamID> = []
    private var pendingRequests: [String: [StreamID]] = [:]
    private var channel: WebSocketChannel?
    private var isStopped = false
    private var backoff: Backoff
    private var rng: SeededRNG
    private var subscribeBudget: TokenBucket
    private var lastReceived: Int64 = 0
    private var pingSent = false
    private var lastPingAt: Int64 = 0
    private var keepaliveTimer: TimerHandle?
    private var reconnectTimer: TimerHandle?
    private var subscribeTimer: TimerHandle?
    private var consecutiveParseErrors = 0
    private var messages: [ExchangeMessage] = []
    private var nextRequest = 0
    private var hasConnectedBefore = false
    /// Why we are recycling the connection (reported instead of the close handshake's text).
    private var recycleReason: String?
    private let logger: Logger

    init(core: EngineCore, adapter: any ExchangeAdapter, url: String, seed: UInt64) {
        self.core = core
        self.adapter = adapter
        self.url = url
        self.backoff = core.configuration.reconnectBackoff
        self.rng = SeededRNG(seed: seed)
        self.subscribeBudget = adapter.limits.subscribeMessages
        self.logger = core.logger.with(["ws.venue": adapter.name.rawValue, "ws.url": url])
        messages.reserveCapacity(8)
    }

    var capacityLeft: Int { adapter.limits.maxStreamsPerConnection - streams.count }
    var isEmpty: Bool { streams.isEmpty }

    // MARK: Streams

    func add(_ new: [StreamID]) {
        let fresh = new.filter { !streams.contains($0) }
        guard !fresh.isEmpty else { return }
        for stream in fresh {
            streams.insert(stream)
            rejected.remove(stream)
            core.status.update(stream) { $0.state = self.channel?.isOpen == true ? .subscribing : .connecting }
        }
        if channel?.isOpen == true {
            subscribe(fresh)
        } else if channel == nil && reconnectTimer == nil {
            connect()
        }
    }

    func remove(_ old: [StreamID]) {
        let present = old.filter { streams.contains($0) }
        guard !present.isEmpty else { return }
        for stream in present {
            streams.remove(stream)
            subscribed.remove(stream)
            rejected.remove(stream)
        }
        if let channel, channel.isOpen {
            for message in adapter.unsubscribeMessages(for: present, requestID: makeRequestID()) {
                channel.send(text: message)
            }
        }
        if streams.isEmpty { stop() }
    }

    func stop() {
        isStopped = true
        cancelTimers()
        channel?.close(code: WSCloseCode.goingAway, reason: "stopping")
        channel = nil
        for stream in streams { core.status.update(stream) { $0.state = .stopped } }
    }

    private func makeRequestID() -> String {
        nextRequest += 1
        return "c\(nextRequest)"
    }

    // MARK: Connecting

    private func connect() {
        guard !isStopped else { return }
        reconnectTimer = nil
        if let wait = core.takeConnectionToken(adapter.name) {
            reconnectTimer = core.loop.scheduleTimer(after: wait) { [weak self] in self?.connect() }
            return
        }
        guard let parsed = WebSocketURL(url) else {
            for stream in streams {
                core.status.update(stream) {
                    $0.state = .rejected
                    $0.lastError = "invalid WebSocket URL \(url)"
                }
            }
            return
        }
        var configuration = ExchangeWebSocket.configuration(
            for: adapter, connectTimeout: core.configuration.connectTimeout)
        configuration.tls = core.configuration.webSocketTLS
        let channel = WebSocketChannel.connect(to: parsed, configuration: configuration, loop: core.loop, handler: self)
        // Back-pressure holds across reconnects: a connection made while the writer is behind starts paused.
        if core.isReadingPaused { channel.pauseReading() }
        self.channel = channel
    }

    func webSocketDidConnect(_ channel: WebSocketChannel) {
        backoff.reset()
        consecutiveParseErrors = 0
        lastReceived = core.loop.now().nanoseconds
        pingSent = false
        subscribed = []
        pendingRequests = [:]
        let toSubscribe = streams.subtracting(rejected)
        for stream in toSubscribe {
            core.status.update(stream) {
                $0.state = .subscribing
                if self.hasConnectedBefore { $0.reconnects += 1 }
            }
        }
        if hasConnectedBefore { core.metrics?.reconnects[CollectorMetrics.index(adapter.name)].increment() }
        hasConnectedBefore = true
        subscribe(Array(toSubscribe).sorted())
        scheduleKeepalive()
    }

    private func subscribe(_ list: [StreamID]) {
        guard let channel, channel.isOpen, !list.isEmpty else { return }
        let id = makeRequestID()
        let messages = adapter.subscribeMessages(for: list, requestID: id)
        var sent = 0
        for message in messages {
            if let wait = subscribeBudget.take(now: core.loop.now()) {
                // Out of subscribe budget: send the rest once tokens refill.
                let rest = Array(list.dropFirst(sent * adapter.limits.maxStreamsPerSubscribeMessage))
                subscribeTimer = core.loop.scheduleTimer(after: wait) { [weak self] in self?.subscribe(rest) }
                break
            }
            channel.send(text: message)
            sent += 1
        }
        let sentStreams = Array(list.prefix(sent * adapter.limits.maxStreamsPerSubscribeMessage))
        pendingRequests[id] = sentStreams
        if messages.count > 1 {
            for (i, chunk) in stride(from: 0, to: sentStreams.count, by: adapter.limits.maxStreamsPerSubscribeMessage)
                .enumerated()
            {
                pendingRequests["\(id)x\(i)"] = Array(
                    sentStreams[chunk..<min(chunk + adapter.limits.maxStreamsPerSubscribeMessage, sentStreams.count)])
            }
        }
    }

    func webSocket(_ channel: WebSocketChannel, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {
        let now = WallClock.microseconds()
        lastReceived = core.loop.now().nanoseconds
        pingSent = false
        messages.removeAll(keepingCapacity: true)
        do {
            try adapter.parse(payload, receivedAt: now, into: &messages)
            consecutiveParseErrors = 0
        } catch {
            consecutiveParseErrors += 1
            logger.debug("unparseable frame", ["error": error.reason])
            core.metrics?.parseErrors[CollectorMetrics.index(adapter.name)].increment()
            core.deadLetter(adapter.name, raw: String(decoding: payload, as: UTF8.self), reason: error.reason, at: now)
            if consecutiveParseErrors >= core.configuration.parseErrorLimit {
                for stream in streams {
                    core.status.update(stream) {
                        $0.errors += 1
                        $0.lastError = "circuit breaker: \(self.consecutiveParseErrors) malformed messages in a row"
                    }
                }
                recycle(reason: "circuit breaker: \(consecutiveParseErrors) malformed messages in a row")
            }
            return
        }
        for message in messages { handle(message, raw: payload, at: now) }
    }

    private func handle(_ message: ExchangeMessage, raw: UnsafeRawBufferPointer, at now: Int64) {
        switch message {
        case .event(let event):
            core.accept(event, raw: raw, at: now)
        case .subscribed(let stream):
            guard streams.contains(stream) else { return }
            subscribed.insert(stream)
            core.status.update(stream) {
                $0.state = .live
                $0.rejection = nil
            }
            core.streamSubscribed(stream)
        case .unsubscribed(let stream):
            subscribed.remove(stream)
        case .subscriptionRejected(let stream, let requestID, let code, let text):
            var affected: [StreamID] = []
            if let stream, streams.contains(stream) {
                affected = [stream]
            } else if let requestID, let list = pendingRequests[requestID] {
                affected = list.filter { !subscribed.contains($0) }
            }
            for stream in affected {
                logger.info(
                    "subscription refused", ["stream": "\(stream)", "exchange.code": code, "exchange.message": text])
                rejected.insert(stream)
                core.status.update(stream) {
                    $0.state = .rejected
                    $0.rejection = (code, text)
                    $0.errors += 1
                    $0.lastError = "\(code): \(text)"
                }
            }
        case .error(let code, let text):
            for stream in streams {
                core.status.update(stream) {
                    $0.errors += 1
                    $0.lastError = "\(code): \(text)"
                }
            }
        case .notice(_, _, let reconnectSoon):
            // 64008: the server will drop us for an upgrade; reconnect now rather than lose data later.
            if reconnectSoon { recycle(immediately: true, reason: "service upgrade notice: reconnecting early") }
        case .pong:
            break
        case .unhandled:
            core.countUnhandled(adapter.name)
        }
    }

    func webSocketDidClose(_ channel: WebSocketChannel, info: WSCloseInfo, error: (any Error)?) {
        guard channel === self.channel || self.channel == nil else { return }
        self.channel = nil
        cancelTimers()
        guard !isStopped else { return }
        let reason = recycleReason ?? error.map { "\($0)" } ?? "closed: \(info.code) \(info.reason)"
        recycleReason = nil
        for stream in streams where !rejected.contains(stream) {
            core.status.update(stream) {
                $0.state = .reconnecting
                $0.lastError = reason
            }
        }
        subscribed = []
        let delay = backoff.nextDelay(using: &rng)
        logger.info("connection lost, reconnecting", ["error": reason, "reconnect.delay": "\(delay)"])
        reconnectTimer = core.loop.scheduleTimer(after: delay) { [weak self] in self?.connect() }
    }

    /// Drops the connection and reconnects (after backoff, or at once).
    private func recycle(immediately: Bool = false, reason: String) {
        guard let channel else { return }
        logger.info("recycling connection", ["reason": reason])
        recycleReason = reason
        if immediately { backoff.reset() }
        channel.close(code: WSCloseCode.goingAway, reason: "recycling")
        // The close completes asynchronously; webSocketDidClose schedules the reconnect.
    }

    /// Back-pressure from the writer: stop or resume reading this socket.
    func pauseReading() { channel?.pauseReading() }
    func resumeReading() {
        lastReceived = core.loop.now().nanoseconds
        channel?.resumeReading()
    }

    // MARK: Keepalive

    private func scheduleKeepalive() {
        keepaliveTimer = core.loop.scheduleTimer(after: core.configuration.keepaliveCheckInterval) { [weak self] in
            self?.checkKeepalive()
        }
    }

    private func checkKeepalive() {
        guard let channel, channel.isOpen else { return }
        let silence = Duration.nanoseconds(core.loop.now().nanoseconds - lastReceived)
        // While we are not reading (back-pressure) the silence is ours, not the exchange's: never
        // recycle for it (the silence clock restarts when reading resumes), but keep pinging so the
        // exchange does not drop us.
        if silence >= core.configuration.staleAfter && !channel.isReadingPaused {
            recycle(immediately: true, reason: "no data for \(silence): recycling the connection")
            return
        }
        if case .textPing(let text, _, let idle) = adapter.keepalive {
            let pingAfter = min(idle, core.configuration.pingAfter ?? idle)
            let now = core.loop.now().nanoseconds
            // Paused, we cannot read the answer: ping again every `pingAfter` so the exchange keeps
            // seeing a live client.
            let repeatWhilePaused =
                channel.isReadingPaused && Duration.nanoseconds(now - lastPingAt) >= pingAfter
            if silence >= pingAfter && (!pingSent || repeatWhilePaused) {
                pingSent = true
                lastPingAt = now
                channel.send(text: text)
            }
        }
        scheduleKeepalive()
    }

    private func cancelTimers() {
        for timer in [keepaliveTimer, reconnectTimer, subscribeTimer].compactMap({ $0 }) {
            core.loop.cancelTimer(timer)
        }
        keepaliveTimer = nil
        reconnectTimer = nil
        subscribeTimer = nil
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
