public import CollectorCore
public import MarketData

/// One exchange WebSocket connection's logic as a pure state machine (STYLE.md §3, DESIGN.md §4):
/// the streams it carries and their subscriptions (pending, acknowledged, refused), the subscribe
/// and connection budgets, keepalive and stale detection, pause and resume, reconnect backoff, the
/// parse-error circuit breaker, resubscription, candle continuity and its backfill requests.
///
/// Inputs are the `mutating func`s below, each given the current instant; outputs are
/// `SessionAction`s the driver performs. Nothing here reads a clock, arms a timer or touches a socket.
///
/// | input | what happens |
/// |---|---|
/// | `add` | streams join; the first one asks for a connection (through the `connect` timer and the exchange's connection budget) |
/// | `remove` | streams leave at once (unsubscribed if sent); the others are not disturbed; the last one closes the connection |
/// | `connected` | every wanted, not refused stream is subscribed, within the subscribe budget (the rest when it refills) |
/// | `frame` | parsed; events of wanted streams inside their window are emitted; a run of malformed frames recycles the connection |
/// | `closed` | transient: reconnect after capped jittered backoff, forever; permanent (TLS verification): streams refused, retried every `refusedRetryInterval` |
/// | `timerFired(.keepalive)` | ping after silence; recycle when silent past `staleAfter` unless reads are paused (our silence, not the exchange's) |
public struct ExchangeSession<Adapter: ExchangeAdapter>: Sendable {
    public let adapter: Adapter
    public let url: String
    public let configuration: SessionConfiguration

    public typealias Phase = SessionPhase
    public typealias Subscription = StreamSubscription

    public private(set) var phase: Phase = .idle
    var entries: [StreamID: SessionEntry] = [:]
    var link: SessionLink?
    var pendingRequests: [String: [StreamID]] = [:]
    private var subscribeBudget: TokenBucket
    private var backoff: Backoff
    private var rng: SeededRNG
    private var nextRequest = 0
    private var hasConnectedBefore = false
    public private(set) var isReadingPaused = false
    /// Streams removed while the subscribe budget was spent: their unsubscribe waits for the
    /// `subscribe` timer (the budget covers unsubscribes too: OKX counts both).
    var deferredUnsubscribes: [StreamID] = []
    /// `.replaceAll`: the wanted set changed and the new set could not be sent yet.
    var wantedSetChanged = false
    /// A permanent connection failure repeating: its reason and how often it happened.
    private var permanentFailure: (reason: String, times: Int)?
    /// A transient outage in progress: when the connection was lost and how many attempts failed
    /// since (logged when it starts, at 10, 100, 1,000… failures, and when it ends).
    private var outage: (since: Instant, failures: Int)?
    /// Reused parse output (kept between frames so the hot path does not allocate).
    var messages: [ExchangeMessage] = []
    /// The adapter's parser state for the current connection.
    var connectionState: Adapter.ConnectionState
    /// Wall-clock µs minus monotonic µs, learnt at `connected` (subscribe messages may depend on
    /// the wall-clock time: Coinbase's JWT).
    private var wallOffset: Int64 = 0

    public init(adapter: Adapter, url: String, configuration: SessionConfiguration, seed: UInt64) {
        self.adapter = adapter
        self.url = url
        self.configuration = configuration
        self.subscribeBudget = adapter.limits.subscribeMessages
        self.backoff = configuration.reconnectBackoff
        self.rng = SeededRNG(seed: seed)
        self.connectionState = adapter.makeConnectionState()
        messages.reserveCapacity(8)
    }

    // MARK: Reading the state

    /// The streams this connection carries.
    public var streams: Set<StreamID> { Set(entries.keys) }
    public var isEmpty: Bool { entries.isEmpty }
    public var capacityLeft: Int { adapter.limits.maxStreamsPerConnection - entries.count }
    public func subscription(of stream: StreamID) -> Subscription? { entries[stream]?.subscription }
    public func window(of stream: StreamID) -> EventWindow? { entries[stream]?.window }
    public var isOpen: Bool { phase == .open }
    /// Requests still waiting for an answer (each forgotten once its last stream is answered).
    public var pendingRequestCount: Int { pendingRequests.count }

    // MARK: Streams

    /// Streams join the connection (ones already here are ignored), each with its event-time
    /// window when one is given (set before any event of the stream can be accepted: a cutover).
    public mutating func add(
        _ streams: [StreamID], windows: [StreamID: EventWindow] = [:], now: Instant
    ) -> [SessionAction] {
        var actions: [SessionAction] = []
        let fresh = streams.filter { entries[$0] == nil }
        guard !fresh.isEmpty, phase != .stopped else { return actions }
        deferredUnsubscribes.removeAll { fresh.contains($0) }
        for stream in fresh {
            var entry = SessionEntry()
            entry.window = windows[stream]
            entries[stream] = entry
            actions.append(.phase(stream, phase == .open ? .subscribing : .connecting, detail: nil))
        }
        switch phase {
        case .open: subscribeUnsent(now: now, into: &actions)
        case .idle: wantConnection(at: now, into: &actions)
        case .waiting, .connecting, .closing, .stopped: break  // subscribed once the connection opens
        }
        assertInvariants()
        return actions
    }

    /// Streams leave the connection at once; the others on it are not disturbed.
    public mutating func remove(_ streams: [StreamID], now: Instant) -> [SessionAction] {
        var actions: [SessionAction] = []
        var sent: [StreamID] = []
        for stream in streams {
            guard let entry = entries.removeValue(forKey: stream) else { continue }
            switch entry.subscription {
            case .pending, .live: sent.append(stream)
            case .unsent, .refused: break
            }
        }
        if phase == .open && !sent.isEmpty {
            switch adapter.subscriptionModel {
            case .incremental:
                deferredUnsubscribes += sent
                sendDeferredUnsubscribes(now: now, into: &actions)
            case .replaceAll:
                // No unsubscribe: the remaining set replaces the old one (the last stream leaving closes
                // the connection below instead).
                wantedSetChanged = true
                if !entries.isEmpty { resendWantedSet(now: now, into: &actions) }
            }
        }
        for (id, list) in pendingRequests {
            let kept = list.filter { entries[$0] != nil }
            pendingRequests[id] = kept.isEmpty ? nil : kept
        }
        if entries.isEmpty {
            deferredUnsubscribes = []  // the connection closes: nothing left to unsubscribe
            becomeIdle(into: &actions)
        }
        assertInvariants()
        return actions
    }

    /// Sets (or clears) the event-time window of one stream.
    public mutating func setWindow(_ window: EventWindow?, for stream: StreamID) {
        entries[stream]?.window = window
    }

    /// The newest confirmed bar already stored (from the sinks' watermarks), so the first push after
    /// subscribing reveals any hole since then.
    public mutating func seedLastConfirmed(_ stream: StreamID, _ openTime: Int64) {
        guard var entry = entries[stream] else { return }
        if entry.lastConfirmed ?? .min < openTime { entry.lastConfirmed = openTime }
        entries[stream] = entry
    }

    /// The newest trade already stored (from the sinks' watermark: its numeric id and time), so the
    /// first fill after subscribing reveals any fills missed since then.
    public mutating func seedLastTrade(_ stream: StreamID, id: Int64, time: Int64) {
        guard var entry = entries[stream] else { return }
        if entry.lastTradeID ?? .min < id {
            entry.lastTradeID = id
            entry.lastTradeTime = time
        }
        entries[stream] = entry
    }

    /// Stops for good: the connection is closed and nothing is reconnected.
    public mutating func stop(now: Instant) -> [SessionAction] {
        var actions: [SessionAction] = []
        guard phase != .stopped else { return actions }
        closeIfConnected(reason: "stopping", into: &actions)
        cancelTimers(into: &actions)
        phase = .stopped
        link = nil
        // The connection is gone, so nothing is awaiting an answer on it (found by the okx-session
        // fuzz target: a stop right after a subscribe left requests pending with no connection).
        pendingRequests = [:]
        deferredUnsubscribes = []
        for stream in entries.keys {
            if case .pending = entries[stream]?.subscription { entries[stream]?.subscription = .unsent }
        }
        for stream in entries.keys.sorted() { actions.append(.phase(stream, .stopped, detail: nil)) }
        assertInvariants()
        return actions
    }

    // MARK: Connection events

    /// The connection is open; `wallClock` is the wall-clock time now (µs since the epoch).
    public mutating func connected(now: Instant, wallClock: Int64) -> [SessionAction] {
        var actions: [SessionAction] = []
        guard phase == .connecting else { return actions }  // a late report after stop or removal
        phase = .open
        link = SessionLink(lastReceived: now)
        connectionState = adapter.makeConnectionState()
        wallOffset = wallClock - now.nanoseconds / 1000
        // The backoff is reset only once the connection proves healthy (its first acknowledgement or
        // event): a server that accepts and drops at once must not be hammered every 0.5 s.
        pendingRequests = [:]
        deferredUnsubscribes = []
        wantedSetChanged = false
        if let failure = permanentFailure {
            actions.append(
                .log(
                    .notice, "connected after a permanent failure",
                    ["error": failure.reason, "failures": "\(failure.times)"]))
            permanentFailure = nil
        }
        if hasConnectedBefore { actions.append(.count(.reconnect)) }
        for stream in entries.keys.sorted() {
            guard var entry = entries[stream] else { continue }
            // Refused by the exchange: waits for its retry. Refused because the connection failed: the
            // connection works again.
            if case .refused(let code, _, _, _) = entry.subscription, code != SessionRefusal.connectionFailureCode {
                continue
            }
            // (The session logged the recovery.)
            if entry.refusal?.code == SessionRefusal.connectionFailureCode { entry.refusal = nil }
            entry.subscription = .unsent
            entries[stream] = entry
            actions.append(.phase(stream, .subscribing, detail: nil))
            if hasConnectedBefore { actions.append(.reconnected(stream)) }
        }
        hasConnectedBefore = true
        for frame in adapter.connectionOpenedMessages(context: context(now)) { actions.append(.send(frame)) }
        subscribeUnsent(now: now, into: &actions)
        actions.append(.scheduleTimer(.keepalive, at: now.advanced(by: configuration.keepaliveCheckInterval)))
        assertInvariants()
        return actions
    }

    /// The connection ended (or could not be made). `permanent`: retrying soon cannot help (a TLS
    /// certificate that does not verify).
    public mutating func closed(reason: String, permanent: Bool, now: Instant) -> [SessionAction] {
        var actions: [SessionAction] = []
        switch phase {
        case .connecting, .open, .closing: break
        case .idle, .waiting, .stopped: return actions  // a connection we already gave up
        }
        let why = link?.recycleReason ?? reason
        let planned = link?.recycleReason != nil
        link = nil
        actions.append(.cancelTimer(.keepalive))
        actions.append(.cancelTimer(.subscribe))
        actions.append(.cancelTimer(.acknowledgement))
        pendingRequests = [:]
        deferredUnsubscribes = []  // a new connection starts with nothing subscribed
        wantedSetChanged = false
        for stream in entries.keys.sorted() {
            guard var entry = entries[stream] else { continue }
            entry.lostData(cause: .reconnect, reason: why)
            if case .refused = entry.subscription {
                entries[stream] = entry
                continue
            }
            entry.subscription = .unsent
            entries[stream] = entry
            actions.append(.phase(stream, .reconnecting, detail: why))
        }
        guard !entries.isEmpty else {
            phase = .idle
            outage = nil  // nothing wanted: the next connection starts a new story
            return actions
        }
        let delay: Duration
        if permanent {
            let times = permanentFailure.map { $0.reason == why ? $0.times + 1 : 1 } ?? 1
            if times == 1 {
                actions.append(
                    .log(
                        .error, "connection failed for good: retrying rarely",
                        ["error": why, "retry.delay": "\(configuration.refusedRetryInterval)"]))
            }
            permanentFailure = (why, times)
            for stream in entries.keys.sorted() {
                refuse(
                    stream, code: SessionRefusal.connectionFailureCode, message: why, now: now, into: &actions,
                    scheduleRetry: false)
            }
            delay = configuration.refusedRetryInterval
        } else {
            delay = backoff.nextDelay(using: &rng)
            let fields = ["error": why, "reconnect.delay": "\(delay)"]
            if planned {
                actions.append(.log(.info, "reconnecting after a recycle", fields))
            } else if var current = outage {
                current.failures += 1
                outage = current
                let n = current.failures
                let decade = n >= 10 && String(n).first == "1" && String(n).dropFirst().allSatisfy { $0 == "0" }
                let counted = fields.merging(
                    [
                        "failures": "\(n)",
                        "down.seconds": "\((now.nanoseconds - current.since.nanoseconds) / 1_000_000_000)",
                    ]) { a, _ in a }
                actions.append(.log(decade ? .warning : .debug, "still reconnecting", counted))
            } else {
                outage = (now, 0)
                actions.append(.log(.warning, "connection lost, reconnecting", fields))
            }
        }
        wantConnection(at: now.advanced(by: delay), into: &actions)
        assertInvariants()
        return actions
    }

    /// A WebSocket ping or pong arrived: the exchange is alive (Binance pings and expects pongs; a
    /// `.webSocketPing` keepalive is answered by a pong), though no message came.
    public mutating func controlFrameReceived(now: Instant) {
        guard phase == .open || phase == .closing else { return }
        link?.lastReceived = now
        link?.pingSent = false
    }

    /// Back-pressure: the driver stopped reading this socket.
    public mutating func readingPaused(now: Instant) {
        isReadingPaused = true
    }

    /// Reading again: the silence clock restarts (the silence was ours).
    public mutating func readingResumed(now: Instant) {
        isReadingPaused = false
        link?.lastReceived = now
    }

    // MARK: Timers

    /// A timer fired. `connectionBudget` is the exchange's connection-attempt budget, shared by every
    /// session of the exchange (only the `connect` timer draws from it).
    public mutating func timerFired(
        _ timer: SessionTimer, now: Instant, connectionBudget: inout TokenBucket
    ) -> [SessionAction] {
        var actions: [SessionAction] = []
        switch timer {
        case .connect:
            guard case .waiting = phase, !entries.isEmpty else { return actions }
            if let wait = connectionBudget.take(now: now) {
                phase = .waiting(until: now.advanced(by: wait))
                actions.append(.scheduleTimer(.connect, at: now.advanced(by: wait)))
                return actions
            }
            phase = .connecting
            for stream in entries.keys.sorted() where !isRefused(stream) {
                actions.append(.phase(stream, .connecting, detail: nil))
            }
            actions.append(.connect(url: url))
        case .keepalive:
            checkKeepalive(now: now, into: &actions)
        case .subscribe:
            if phase == .open && sendDeferredUnsubscribes(now: now, into: &actions) {
                subscribeUnsent(now: now, into: &actions)
            }
        case .refusedRetry:
            retryRefused(now: now, into: &actions)
        case .acknowledgement:
            checkFirstMessages(now: now, into: &actions)
        }
        assertInvariants()
        return actions
    }

    // MARK: Internals

    mutating func makeRequestID() -> String {
        nextRequest += 1
        return "c\(nextRequest)"
    }

    func isRefused(_ stream: StreamID) -> Bool {
        if case .refused = entries[stream]?.subscription { return true }
        return false
    }

    /// Arms the `connect` timer for `instant` (the budget is checked when it fires).
    private mutating func wantConnection(at instant: Instant, into actions: inout [SessionAction]) {
        phase = .waiting(until: instant)
        actions.append(.scheduleTimer(.connect, at: instant))
    }

    /// No streams left: close the connection and disarm everything; a later `add` starts again.
    private mutating func becomeIdle(into actions: inout [SessionAction]) {
        guard phase != .stopped else { return }
        closeIfConnected(reason: "no streams left", into: &actions)
        cancelTimers(into: &actions)
        phase = .idle
        link = nil
        pendingRequests = [:]
    }

    private mutating func closeIfConnected(reason: String, into actions: inout [SessionAction]) {
        switch phase {
        case .connecting, .open, .closing: actions.append(.close(code: 1001, reason: reason, reportClosed: false))
        case .idle, .waiting, .stopped: break
        }
    }

    private func cancelTimers(into actions: inout [SessionAction]) {
        for timer in SessionTimer.allCases { actions.append(.cancelTimer(timer)) }
    }

    /// Drops the connection and reconnects (after backoff, or at once).
    mutating func recycle(immediately: Bool, reason: String, into actions: inout [SessionAction]) {
        guard phase == .open else { return }
        actions.append(.log(.info, "recycling connection", ["reason": reason]))
        link?.recycleReason = reason
        if immediately { backoff.reset() }
        phase = .closing
        actions.append(.cancelTimer(.keepalive))
        actions.append(.cancelTimer(.subscribe))
        actions.append(.close(code: 1001, reason: "recycling", reportClosed: true))
    }

    /// Subscribes every unsent stream, one request per per-message chunk, while the subscribe budget
    /// lasts (one token per message sent); the rest waits for the `subscribe` timer (armed once, for
    /// the refill). `.replaceAll` adapters get the connection's whole wanted set in one request.
    mutating func subscribeUnsent(now: Instant, into actions: inout [SessionAction]) {
        let unsent = entries.filter { $0.value.subscription == .unsent }.map(\.key).sorted()
        if adapter.subscriptionModel == .replaceAll {
            if !unsent.isEmpty || wantedSetChanged { resendWantedSet(now: now, into: &actions) }
            return
        }
        guard !unsent.isEmpty else { return }
        let per = max(1, adapter.limits.maxStreamsPerSubscribeMessage)
        var index = 0
        while index < unsent.count {
            let chunk = Array(unsent[index..<min(index + per, unsent.count)])
            guard send(subscribing: chunk, now: now, into: &actions) else { return }
            index += chunk.count
        }
    }

    /// One subscribe request for `streams` if the budget has a token per message (else the
    /// `subscribe` timer is armed and nothing is sent): they become pending.
    private mutating func send(
        subscribing streams: [StreamID], now: Instant, into actions: inout [SessionAction]
    ) -> Bool {
        let id = "c\(nextRequest + 1)"
        let frames = adapter.subscribeMessages(for: streams, requestID: id, context: context(now))
        if let wait = subscribeBudget.take(frames.count, now: now) {
            actions.append(.scheduleTimer(.subscribe, at: now.advanced(by: wait)))
            return false
        }
        nextRequest += 1
        for frame in frames { actions.append(.send(frame)) }
        // Only streams still waiting for an answer are tracked (a re-sent set holds live ones too).
        let waiting = streams.filter { entries[$0]?.subscription != .live }
        if !waiting.isEmpty { pendingRequests[id] = waiting }
        for stream in waiting { entries[stream]?.subscription = .pending(requestID: id, sentAt: now) }
        if case .firstMessage(let within) = adapter.acknowledgement {
            actions.append(.scheduleTimer(.acknowledgement, at: earliestPendingSentAt().advanced(by: within)))
        }
        return true
    }

    /// `.replaceAll`: the whole wanted (not refused) set in one request; live streams stay live.
    private mutating func resendWantedSet(now: Instant, into actions: inout [SessionAction]) {
        let wanted = entries.filter { !isRefused($0.key) }.map(\.key).sorted()
        guard !wanted.isEmpty else { return }
        if send(subscribing: wanted, now: now, into: &actions) { wantedSetChanged = false }
    }

    /// Sends the deferred unsubscribes if the budget allows (one token per message); false when it
    /// does not (the `subscribe` timer is armed and subscriptions wait behind them, in order).
    @discardableResult
    mutating func sendDeferredUnsubscribes(now: Instant, into actions: inout [SessionAction]) -> Bool {
        guard !deferredUnsubscribes.isEmpty else { return true }
        let per = max(1, adapter.limits.maxStreamsPerSubscribeMessage)
        while !deferredUnsubscribes.isEmpty {
            let chunk = Array(deferredUnsubscribes.prefix(per)).sorted()
            let id = "c\(nextRequest + 1)"
            let frames = adapter.unsubscribeMessages(for: chunk, requestID: id, context: context(now))
            if let wait = subscribeBudget.take(frames.count, now: now) {
                actions.append(.scheduleTimer(.subscribe, at: now.advanced(by: wait)))
                return false
            }
            nextRequest += 1
            for frame in frames { actions.append(.send(frame)) }
            deferredUnsubscribes.removeFirst(min(per, deferredUnsubscribes.count))
        }
        return true
    }

    /// A stream leaves `.pending`: it no longer waits on its request (an empty request is forgotten).
    mutating func settle(_ stream: StreamID) {
        guard case .pending(let id, _) = entries[stream]?.subscription else { return }
        pendingRequests[id]?.removeAll { $0 == stream }
        if pendingRequests[id]?.isEmpty == true { pendingRequests[id] = nil }
    }

    /// The connection proved healthy (an acknowledgement or an event arrived): the next failure starts
    /// the backoff from its first step.
    mutating func provedHealthy(into actions: inout [SessionAction]) {
        guard link?.isHealthy == false else { return }
        link?.isHealthy = true
        backoff.reset()
        if let current = outage, let now = link?.lastReceived {
            outage = nil
            actions.append(
                .log(
                    .notice, "connection recovered",
                    [
                        "failures": "\(current.failures)",
                        "down.seconds": "\((now.nanoseconds - current.since.nanoseconds) / 1_000_000_000)",
                    ]))
        }
    }

    /// The subscribe context at `now`.
    func context(_ now: Instant) -> SubscribeContext {
        SubscribeContext(now: now.nanoseconds / 1000 + wallOffset)
    }

    private func earliestPendingSentAt() -> Instant {
        var earliest = Instant(nanoseconds: .max)
        for entry in entries.values {
            if case .pending(_, let at) = entry.subscription { earliest = min(earliest, at) }
        }
        return earliest
    }

    /// No-acknowledgement exchanges: a stream still without a message `within` after its subscribe
    /// is refused (and retried like any refusal).
    private mutating func checkFirstMessages(now: Instant, into actions: inout [SessionAction]) {
        guard phase == .open, case .firstMessage(let within) = adapter.acknowledgement else { return }
        for stream in entries.keys.sorted() {
            guard case .pending(_, let at) = entries[stream]?.subscription, now.duration(since: at) >= within
            else { continue }
            refuse(
                stream, code: "no-data", message: "no message within \(within) of subscribing", now: now, into: &actions
            )
        }
        let earliest = earliestPendingSentAt()
        if earliest.nanoseconds != .max {
            actions.append(.scheduleTimer(.acknowledgement, at: earliest.advanced(by: within)))
        }
    }

    private mutating func checkKeepalive(now: Instant, into actions: inout [SessionAction]) {
        guard phase == .open, var link else { return }
        let silence = now.duration(since: link.lastReceived)
        // While we are not reading (back-pressure) the silence is ours, not the exchange's: never
        // recycle for it, but keep pinging so the exchange does not drop us.
        if silence >= configuration.staleAfter && !isReadingPaused {
            recycle(immediately: true, reason: "no data for \(silence): recycling the connection", into: &actions)
            return
        }
        let frame: OutgoingFrame?
        let idle: Duration?
        switch adapter.keepalive {
        case .textPing(let text, _, let after):
            frame = .text(text)
            idle = after
        case .webSocketPing(let after):
            frame = .ping
            idle = after
        case .serverDriven:
            frame = nil
            idle = nil
        }
        if let frame, let idle {
            let pingAfter = min(idle, configuration.pingAfter ?? idle)
            // Paused, we cannot read the answer: ping again every `pingAfter`.
            let repeatWhilePaused =
                isReadingPaused && link.lastPingAt.map { now.duration(since: $0) >= pingAfter } ?? true
            if silence >= pingAfter && (!link.pingSent || repeatWhilePaused) {
                link.pingSent = true
                link.lastPingAt = now
                actions.append(.send(frame))
            }
        }
        self.link = link
        actions.append(.scheduleTimer(.keepalive, at: now.advanced(by: configuration.keepaliveCheckInterval)))
    }

    /// Marks `stream` refused; logged once per change of code, counted every time.
    mutating func refuse(
        _ stream: StreamID, code: String, message: String, now: Instant, into actions: inout [SessionAction],
        scheduleRetry: Bool = true
    ) {
        settle(stream)
        guard var entry = entries[stream] else { return }
        let times = entry.refusal.map { $0.code == code ? $0.times + 1 : 1 } ?? 1
        entry.refusal = (code, times)
        // (A connection failure is logged once, by the session.)
        if times == 1 && code != SessionRefusal.connectionFailureCode {
            actions.append(
                .log(
                    .warning, "subscription refused",
                    ["stream": "\(stream)", "exchange.code": code, "exchange.message": message]))
        }
        if code != SessionRefusal.connectionFailureCode {
            entry.lostData(cause: .refused, reason: "\(code): \(message)")
        }
        entry.subscription = .refused(
            code: code, message: message, times: times, retryAt: now.advanced(by: configuration.refusedRetryInterval))
        entries[stream] = entry
        actions.append(.refused(stream, code: code, message: message))
        if scheduleRetry { scheduleRefusedRetry(into: &actions) }
    }

    private func scheduleRefusedRetry(into actions: inout [SessionAction]) {
        var earliest: Instant?
        for entry in entries.values {
            if case .refused(let code, _, _, let at) = entry.subscription, code != SessionRefusal.connectionFailureCode
            {
                earliest = min(earliest ?? at, at)
            }
        }
        if let earliest { actions.append(.scheduleTimer(.refusedRetry, at: earliest)) }
    }

    private mutating func retryRefused(now: Instant, into actions: inout [SessionAction]) {
        for stream in entries.keys.sorted() {
            guard case .refused(let code, _, _, let at) = entries[stream]?.subscription,
                code != SessionRefusal.connectionFailureCode, at <= now
            else { continue }
            entries[stream]?.subscription = .unsent
            if phase == .open { actions.append(.phase(stream, .subscribing, detail: nil)) }
        }
        if phase == .open { subscribeUnsent(now: now, into: &actions) }
        scheduleRefusedRetry(into: &actions)
    }

    /// Debug-build checks after each transition.
    func assertInvariants() {
        assert(phase != .open || link != nil, "an open connection has its link state")
        assert(
            pendingRequests.values.allSatisfy { $0.allSatisfy { entries[$0] != nil } },
            "pending requests name only wanted streams")
        assert(
            phase == .open || phase == .closing
                || entries.values.allSatisfy { if case .pending = $0.subscription { false } else { true } },
            "nothing is pending without a connection")
    }
}

/// The connection's phase.
public enum SessionPhase: Equatable, Sendable {
    /// No connection and none wanted (no streams yet, or all removed).
    case idle
    /// A connect is due at this instant (the `connect` timer is armed).
    case waiting(until: Instant)
    /// `connect` was sent; waiting for `connected` or `closed`.
    case connecting
    case open
    /// We asked for the close; waiting for `closed`.
    case closing
    case stopped
}

/// A stream's subscription.
public enum StreamSubscription: Equatable, Sendable {
    /// Wanted, not sent on this connection yet.
    case unsent
    /// Sent with this request id at `sentAt`, not acknowledged yet.
    case pending(requestID: String, sentAt: Instant)
    case live
    /// Refused by the exchange (or the connection failed for good); asked again at `retryAt`.
    case refused(code: String, message: String, times: Int, retryAt: Instant)
}

/// One stream on a session (non-generic, so the hot path needs no generic metadata).
struct SessionEntry: Sendable {
    var subscription: StreamSubscription = .unsent
    var window: EventWindow?
    /// The window's `until` an event of the stream has reached (said once per `until`).
    var passedUntil: Int64?
    /// Newest confirmed open time seen, stored or backfilled (candles); nil until known.
    var lastConfirmed: Int64?
    /// A backfill is running up to this open time (exclusive).
    var backfillingUntil: Int64?
    /// Newest trade id seen, stored or backfilled (numeric ids only), and its exchange time.
    var lastTradeID: Int64?
    var lastTradeTime: Int64?
    /// Book streams: the book kept in sync (made at the first book message).
    var book: BookSynchronizer?
    /// Tickers: the newest event's exchange time, and where a gap opened by a reconnect or a refusal
    /// started (recorded at the next event).
    var lastEventTime: Int64?
    var pendingGap: (cause: Gap.Cause, from: Int64, reason: String)?
    /// Why the stream last stopped receiving, until a hole it left is recorded: a refusal outranks the
    /// reconnect it came with (the refusal is what kept the data away).
    var lossCause: Gap.Cause?
    /// The cause each open hole (by its ledger `from`) was recorded with, so the entry that closes it
    /// after the backfill has the same ledger key. Bounded: the oldest is forgotten past `maxOpenHoles`
    /// (its close then says `reconnect`, a second entry rather than a lost one).
    var openHoleCauses: [(from: Int64, cause: Gap.Cause)] = []
    static let maxOpenHoles = 32

    /// The cause of a hole found now, remembered until it closes.
    mutating func openHole(from: Int64) -> Gap.Cause {
        let cause = lossCause ?? .reconnect
        lossCause = nil
        if openHoleCauses.count >= Self.maxOpenHoles { openHoleCauses.removeFirst() }
        openHoleCauses.append((from, cause))
        return cause
    }

    /// The cause the hole at `from` was opened with (forgotten now).
    mutating func closeHole(from: Int64) -> Gap.Cause {
        guard let i = openHoleCauses.firstIndex(where: { $0.from == from }) else { return .reconnect }
        return openHoleCauses.remove(at: i).cause
    }
    /// The refusal in force or last seen, kept across retries until the stream goes live, so a
    /// refusal repeating is counted, not logged again.
    var refusal: (code: String, times: Int)?
}

extension SessionEntry {
    /// The stream stopped receiving (a dropped connection, a refusal): a book must be synchronised
    /// again, and a ticker's silence is a gap recorded at its next event.
    mutating func lostData(cause: Gap.Cause, reason: String) {
        book?.connectionLost(cause: cause, detail: reason)
        if let last = lastEventTime, pendingGap == nil { pendingGap = (cause, last, reason) }
        if lossCause != .refused { lossCause = cause }
    }
}

/// What is known about the open connection.
struct SessionLink: Sendable {
    var lastReceived: Instant
    var pingSent = false
    var lastPingAt: Instant?
    var parseErrors = 0
    /// Why we are recycling it (reported instead of the close handshake's text).
    var recycleReason: String?
    /// An acknowledgement or an event arrived on it.
    var isHealthy = false
}
