public import CollectorCore

/// A worker's side of the control connection as one pure machine (DESIGN.md §3, issue 10): connect,
/// handshake, heartbeats that renew the lease (per-shard deltas, a full report every
/// `fullSyncEvery` beats), assignments in, status out, and the orphan rule. Inputs are events and
/// the current instant; outputs are actions for a thin driver (open or close the socket, send a
/// frame, start or stop a shard in the data plane). The driver ticks it at least every 100 ms.
///
/// Cut off (no lease), the worker keeps collecting what it has and says so (`orphaned(true)`); it
/// reconnects with jittered backoff and reports what it runs in its `Hello`, so the coordinator
/// revokes at once what a newer epoch owns. A lower term than the highest seen is ignored.
public struct WorkerSession: Sendable {
    public struct Configuration: Sendable {
        public var workerID: String
        public var incarnation: UInt64
        public var capacity: Int
        public var egressGroup: String?
        public var version = ControlVersion.current
        /// Every this many beats the heartbeat reports every shard, not only what changed.
        public var fullSyncEvery = 30
        /// Connecting plus the handshake must finish within this, or the attempt is abandoned.
        public var handshakeTimeout: Duration = .seconds(5)
        public var reconnect = Backoff(initial: .milliseconds(200), maximum: .seconds(2))
        /// How long a hand-over is remembered for `Hello`: longer than any cutover lead.
        public var handOverMemory: Duration = .seconds(60)
        /// Failures kept to report once connected again (the oldest are dropped, and logged).
        public var maxPendingFailures = 1024

        public init(workerID: String, incarnation: UInt64, capacity: Int, egressGroup: String? = nil) {
            self.workerID = workerID
            self.incarnation = incarnation
            self.capacity = capacity
            self.egressGroup = egressGroup
        }
    }

    public enum Input: Sendable {
        /// The driver's connection attempt succeeded; `nonce` is 32 bytes from `SecureRandom`.
        case connected(nonce: [UInt8])
        case frame(ControlFrame)
        /// The connection closed or could not be opened (or its bytes did not decode).
        case disconnected(String)
        case tick
        /// The exchange confirmed the shard's subscription (books: synchronised).
        case shardLive(shard: String, epoch: UInt64)
        /// The data plane cannot run the shard (it has stopped it).
        case shardFailed(shard: String, epoch: UInt64, permanent: Bool, code: String, reason: String)
        /// Events stored for the shard since the last report, and the newest one's time and id.
        case stored(shard: String, epoch: UInt64, events: Int64, lastEventTime: Int64?, lastEventID: String?)
        /// The process is shutting down: ask the coordinator to move every shard away (said again
        /// after each reconnect, until the process exits).
        case leave(reason: String)
    }

    public enum Action: Hashable, Sendable {
        /// Open a connection to the coordinator now.
        case connect
        case send(ControlFrame)
        /// Close the connection (the reason is for the log).
        case close(String)
        /// Run the shard: subscribe, backfill from `resumeFrom`, store from `cutoverAt` when moving. A
        /// start of a shard already running (or handing over) replaces that epoch and keeps its
        /// subscription.
        case start(Assignment)
        /// Stop the shard: at once (`until` nil), or once rows reach the cutover `until` (µs).
        case stop(shard: String, epoch: UInt64, until: Int64?)
        /// Whether the worker runs shards without a lease (cut off: `/ready` false, a gauge).
        case orphaned(Bool)
        /// The workers sharing this one's egress group changed: take 1/`groupSize` of each
        /// exchange's per-IP connection, subscribe and REST budgets.
        case egressShare(groupSize: Int)
        case log(level: String, String, [String: String])
    }

    /// A shard the data plane runs for us.
    public struct Running: Hashable, Sendable {
        public var epoch: UInt64
        public var live = false
        public var eventsDelta: Int64 = 0
        public var lastEventTime: Int64?
        public var lastEventID: String?
        /// A move's new owner stores from the cutover (wall µs): reported in `Hello`.
        public var storesFrom: Int64?
        /// Changed since the last beat.
        var dirty = true
    }

    enum State: Sendable {
        case idle(retryAt: Instant)
        case connecting(since: Instant)
        case handshaking(WorkerHandshake, since: Instant)
        case established(heartbeat: Duration, lease: Duration, nextBeat: Instant)
    }

    public let configuration: Configuration
    private var state: State
    private var rng: SeededRNG
    private var backoff: Backoff
    private var lease = WorkerLease()
    private var sequence: UInt64 = 0
    private var beatsSinceFull = 0
    private var pendingFailures: [ClusterMessage] = []
    public private(set) var running: [String: Running] = [:]
    /// Shards handed over and still stored up to their cutover: reported in `Hello` (so a restarted
    /// coordinator places no second writer before the cutover), forgotten `handOverMemory` after.
    public private(set) var handingOver: [String: HandingOver] = [:]

    public struct HandingOver: Hashable, Sendable {
        public var epoch: UInt64
        /// The cutover (wall µs) the data plane stores up to.
        public var until: Int64
        public var since: Instant
        /// What it stored since the last beat: a hand-over keeps reporting until its cutover, so the
        /// coordinator knows where its successor would backfill from and counts its events.
        public var eventsDelta: Int64 = 0
        public var lastEventTime: Int64?
        public var lastEventID: String?
        var dirty = false
    }
    public private(set) var isOrphaned = false
    /// Why the process is leaving, once it asked to be drained.
    public private(set) var leaving: String?
    /// Workers in this one's egress group, as the coordinator last said (1 until it says).
    public private(set) var egressGroupSize = 1
    /// The coordinator's term once welcomed.
    public private(set) var term: UInt64?

    /// The cluster secret: only ever an HMAC key, never sent or logged.
    private let secret: [UInt8]

    /// `seed`: for reconnect jitter (the driver draws it from `SecureRandom`).
    public init(configuration: Configuration, secret: [UInt8], seed: UInt64, now: Instant) {
        self.configuration = configuration
        self.secret = secret
        rng = SeededRNG(seed: seed)
        backoff = configuration.reconnect
        state = .idle(retryAt: now)
    }

    public var isEstablished: Bool { if case .established = state { true } else { false } }
    public var highestTerm: UInt64 { lease.highestTerm }

    public mutating func handle(_ input: Input, now: Instant) -> [Action] {
        var actions: [Action] = []
        switch input {
        case .connected(let nonce):
            guard case .connecting = state else {
                actions.append(.close("connected while not connecting"))
                break
            }
            // Version 1 reported running shards only, without these fields (the frozen transcript).
            let v2 = configuration.version >= 2
            let hello = Hello(
                version: configuration.version, workerID: configuration.workerID,
                incarnation: configuration.incarnation, capacity: configuration.capacity,
                egressGroup: configuration.egressGroup, nonce: nonce,
                shards: running.keys.sorted().map {
                    let r = running[$0]!
                    return ReportedShard(
                        shard: $0, epoch: r.epoch, lastEventTime: r.lastEventTime, lastEventID: r.lastEventID,
                        storesFrom: v2 ? r.storesFrom : nil, live: v2 ? r.live : nil)
                }
                    + handingOver.keys.sorted().filter { v2 && running[$0] == nil }.map {
                        ReportedShard(
                            shard: $0, epoch: handingOver[$0]!.epoch, lastEventTime: handingOver[$0]!.lastEventTime,
                            lastEventID: handingOver[$0]!.lastEventID, handingOverUntil: handingOver[$0]!.until)
                    })
            let handshake = WorkerHandshake(secret: secret, hello: hello)
            state = .handshaking(handshake, since: now)
            apply(handshake.start(), now: now, into: &actions)
        case .frame(let frame):
            received(frame, now: now, into: &actions)
        case .disconnected(let reason):
            switch state {
            case .idle: break
            case .connecting, .handshaking, .established:
                actions.append(.log(level: "warning", "control connection lost", ["reason": reason]))
                scheduleReconnect(now: now)
            }
        case .tick:
            tick(now: now, into: &actions)
        case .shardLive(let shard, let epoch):
            guard running[shard]?.epoch == epoch else { break }
            running[shard]?.live = true
            running[shard]?.dirty = true
            if isEstablished { actions.append(.send(ClusterMessage.shardLive(shard: shard, epoch: epoch).frame())) }
        case .shardFailed(let shard, let epoch, let permanent, let code, let reason):
            guard running[shard]?.epoch == epoch else { break }
            running[shard] = nil
            let message = ClusterMessage.shardFailed(
                shard: shard, epoch: epoch, permanent: permanent, code: code, reason: reason)
            if isEstablished {
                actions.append(.send(message.frame()))
            } else {
                if pendingFailures.count >= configuration.maxPendingFailures {
                    pendingFailures.removeFirst()
                    actions.append(
                        .log(level: "warning", "shard failure report dropped: too many while disconnected", [:]))
                }
                pendingFailures.append(message)
            }
        case .leave(let reason):
            guard leaving == nil else { break }
            leaving = reason
            if isEstablished && configuration.version >= 2 {
                actions.append(.send(ClusterMessage.leaving(reason: reason).frame()))
            }
        case .stored(let shard, let epoch, let events, let time, let id):
            if var h = handingOver[shard], h.epoch == epoch, running[shard]?.epoch != epoch {
                h.eventsDelta += events
                if let time { h.lastEventTime = max(h.lastEventTime ?? .min, time) }
                if let id { h.lastEventID = id }
                h.dirty = true
                handingOver[shard] = h
                break
            }
            guard var r = running[shard], r.epoch == epoch else { break }
            r.eventsDelta += events
            if let time { r.lastEventTime = max(r.lastEventTime ?? .min, time) }
            if let id { r.lastEventID = id }
            r.dirty = true
            running[shard] = r
        }
        updateOrphaned(now: now, into: &actions)
        return actions
    }

    private mutating func tick(now: Instant, into actions: inout [Action]) {
        if !handingOver.isEmpty {
            handingOver = handingOver.filter { now.duration(since: $0.value.since) < configuration.handOverMemory }
        }
        switch state {
        case .idle(let retryAt) where now >= retryAt:
            state = .connecting(since: now)
            actions.append(.connect)
        case .connecting(let since), .handshaking(_, let since):
            if now.duration(since: since) >= configuration.handshakeTimeout {
                actions.append(.close("connect and handshake took longer than \(configuration.handshakeTimeout)"))
                scheduleReconnect(now: now)
            }
        case .established(let heartbeat, let leaseLength, let nextBeat):
            if lease.expiresAt.map({ now >= $0 }) ?? false {
                // No ack renewed the lease in time: the coordinator may have given our shards away.
                actions.append(.close("lease expired without a heartbeat ack"))
                scheduleReconnect(now: now)
                return
            }
            if lease.expiresAt == nil, let since = welcomedAt, now.duration(since: since) >= leaseLength {
                actions.append(.close("no heartbeat ack within a lease of the welcome"))
                scheduleReconnect(now: now)
                return
            }
            if now >= nextBeat {
                beat(now: now, into: &actions)
                state = .established(heartbeat: heartbeat, lease: leaseLength, nextBeat: now.advanced(by: heartbeat))
            }
        case .idle:
            break  // not yet time to reconnect
        }
    }

    private var welcomedAt: Instant?

    private mutating func beat(now: Instant, into actions: inout [Action]) {
        sequence += 1
        beatsSinceFull += 1
        let full = beatsSinceFull >= configuration.fullSyncEvery || sequence == 1
        if full { beatsSinceFull = 0 }
        var reports: [ShardReport] = []
        for name in running.keys.sorted() {
            guard var r = running[name], full || r.dirty else { continue }
            reports.append(
                ShardReport(
                    shard: name, epoch: r.epoch, state: r.live ? .live : .starting, eventsDelta: r.eventsDelta,
                    lastEventTime: r.lastEventTime, lastEventID: r.lastEventID))
            r.eventsDelta = 0
            r.dirty = false
            running[name] = r
        }
        // Version 1 reported running shards only (the frozen transcript).
        for name in handingOver.keys.sorted() where configuration.version >= 2 && running[name] == nil {
            guard var h = handingOver[name], h.dirty else { continue }
            reports.append(
                ShardReport(
                    shard: name, epoch: h.epoch, state: .stopping, eventsDelta: h.eventsDelta,
                    lastEventTime: h.lastEventTime, lastEventID: h.lastEventID))
            h.eventsDelta = 0
            h.dirty = false
            handingOver[name] = h
        }
        lease.sent(sequence: sequence, now: now)
        actions.append(.send(ClusterMessage.heartbeat(sequence: sequence, full: full, shards: reports).frame()))
    }

    private mutating func scheduleReconnect(now: Instant) {
        let delay = backoff.nextDelay(using: &rng)
        state = .idle(retryAt: now.advanced(by: delay))
        lease = WorkerLease(highestTerm: lease.highestTerm)
        welcomedAt = nil
    }

    private mutating func received(_ frame: ControlFrame, now: Instant, into actions: inout [Action]) {
        switch state {
        case .handshaking(var handshake, let since):
            let out = handshake.received(frame)
            state = .handshaking(handshake, since: since)
            apply(out, now: now, into: &actions)
        case .established:
            let message: ClusterMessage
            do {
                message = try ClusterMessage.decode(frame)
            } catch {
                actions.append(.close("malformed message from the coordinator: \(error.reason)"))
                scheduleReconnect(now: now)
                return
            }
            obey(message, now: now, into: &actions)
        case .idle, .connecting:
            actions.append(.close("a frame arrived while not connected"))
        }
    }

    private mutating func apply(_ out: [HandshakeAction], now: Instant, into actions: inout [Action]) {
        for action in out {
            switch action {
            case .send(let frame):
                actions.append(.send(frame))
            case .acceptedWorker:
                break  // the coordinator side's action
            case .fail(let reason, let text):
                actions.append(
                    .log(level: "error", "control handshake failed", ["reason": reason.rawValue, "error": text]))
                if reason == .duplicateID && !(running.isEmpty && handingOver.isEmpty) {
                    // Another live process holds this id, and the map gives its shards to that one (or
                    // has moved them): collecting on would be a second writer with no end. Stop all.
                    actions.append(
                        .log(
                            level: "warning", "another process holds this worker id: stopping every shard",
                            ["shards": "\(running.count)"]))
                    for (shard, r) in running.sorted(by: { $0.key < $1.key }) {
                        actions.append(.stop(shard: shard, epoch: r.epoch, until: nil))
                    }
                    for (shard, h) in handingOver.sorted(by: { $0.key < $1.key }) {
                        actions.append(.stop(shard: shard, epoch: h.epoch, until: nil))
                    }
                    running = [:]
                    handingOver = [:]
                }
                actions.append(.close(text))
                scheduleReconnect(now: now)
            case .welcomed(let term, let leaseMilliseconds, let heartbeatMilliseconds):
                guard lease.admits(term: term) else {
                    let text = "coordinator term \(term) is older than \(lease.highestTerm): a deposed coordinator"
                    actions.append(.log(level: "warning", "control handshake refused", ["error": text]))
                    actions.append(.close(text))
                    scheduleReconnect(now: now)
                    return
                }
                self.term = term
                backoff.reset()
                welcomedAt = now
                let heartbeat = Duration.milliseconds(max(10, heartbeatMilliseconds))
                state = .established(heartbeat: heartbeat, lease: .milliseconds(leaseMilliseconds), nextBeat: now)
                actions.append(
                    .log(
                        level: "notice", "joined the coordinator",
                        ["term": "\(term)", "lease.ms": "\(leaseMilliseconds)", "shards": "\(running.count)"]))
                for failure in pendingFailures { actions.append(.send(failure.frame())) }
                pendingFailures = []
                if let leaving, configuration.version >= 2 {
                    actions.append(.send(ClusterMessage.leaving(reason: leaving).frame()))
                }
                for name in running.keys.sorted() where running[name]?.live == true {
                    actions.append(.send(ClusterMessage.shardLive(shard: name, epoch: running[name]!.epoch).frame()))
                }
                // The first beat at once: the lease starts now, not a heartbeat later.
                tick(now: now, into: &actions)
            }
        }
    }

    private mutating func obey(_ message: ClusterMessage, now: Instant, into actions: inout [Action]) {
        switch message {
        case .heartbeatAck(let term, let sequence, let leaseMilliseconds, let groupSize):
            guard lease.acknowledged(term: term, sequence: sequence, lease: .milliseconds(leaseMilliseconds)) else {
                return
            }
            if groupSize != egressGroupSize {
                egressGroupSize = groupSize
                actions.append(.egressShare(groupSize: groupSize))
            }
        case .assign(let a):
            guard lease.admits(term: a.term) else { return ignoredTerm(a.term, into: &actions) }
            if let current = running[a.shard] {
                if current.epoch == a.epoch { break }
                guard current.epoch < a.epoch else {
                    actions.append(
                        .log(
                            level: "warning", "assignment older than what runs ignored",
                            ["shard": a.shard, "epoch": "\(a.epoch)", "running.epoch": "\(current.epoch)"]))
                    return
                }
                // The newer epoch replaces the one running: the data plane keeps the subscription
                // (no stop first, which would drop and renew it).
            }
            // A shard it is handing over and gets again: the data plane keeps it running (a start
            // replaces the pending stop at the cutover).
            handingOver[a.shard] = nil
            running[a.shard] = Running(
                epoch: a.epoch, lastEventTime: a.resumeFrom?.time, lastEventID: a.resumeFrom?.id,
                storesFrom: a.cutoverAt)
            actions.append(.start(a))
            actions.append(.send(ClusterMessage.acknowledged(shard: a.shard, epoch: a.epoch, revoked: false).frame()))
        case .revoke(let term, let shard, let epoch):
            guard lease.admits(term: term) else { return ignoredTerm(term, into: &actions) }
            if let h = handingOver[shard], h.epoch == epoch {
                // Revoked while handing over: stop now rather than at the cutover.
                handingOver[shard] = nil
                actions.append(.stop(shard: shard, epoch: epoch, until: nil))
                actions.append(.send(ClusterMessage.acknowledged(shard: shard, epoch: epoch, revoked: true).frame()))
                return
            }
            stop(shard, epoch: epoch, until: nil, into: &actions)
        case .handOver(let term, let shard, let epoch, let until):
            guard lease.admits(term: term) else { return ignoredTerm(term, into: &actions) }
            guard let r = running[shard], r.epoch == epoch else { return }
            // What was stored before the hand-over and not yet reported goes with the next beat.
            handingOver[shard] = HandingOver(
                epoch: epoch, until: until, since: now, eventsDelta: r.eventsDelta, lastEventTime: r.lastEventTime,
                lastEventID: r.lastEventID, dirty: r.dirty)
            stop(shard, epoch: epoch, until: until, into: &actions)
        case .heartbeat, .acknowledged, .shardLive, .shardFailed, .leaving:
            actions.append(.log(level: "warning", "worker message from the coordinator ignored", [:]))
        }
    }

    private mutating func stop(_ shard: String, epoch: UInt64, until: Int64?, into actions: inout [Action]) {
        guard running[shard]?.epoch == epoch else { return }
        running[shard] = nil
        actions.append(.stop(shard: shard, epoch: epoch, until: until))
        actions.append(.send(ClusterMessage.acknowledged(shard: shard, epoch: epoch, revoked: true).frame()))
    }

    private func ignoredTerm(_ term: UInt64, into actions: inout [Action]) {
        actions.append(
            .log(
                level: "warning", "message from a deposed coordinator ignored",
                ["term": "\(term)", "highest.term": "\(lease.highestTerm)"]))
    }

    private mutating func updateOrphaned(now: Instant, into actions: inout [Action]) {
        let orphaned = !running.isEmpty && !lease.holds(at: now)
        guard orphaned != isOrphaned else { return }
        isOrphaned = orphaned
        actions.append(.orphaned(orphaned))
    }
}
