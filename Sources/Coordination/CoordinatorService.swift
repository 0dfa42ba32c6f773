public import CollectorCore
public import ControlProtocol

/// Everything the coordinator does with its control connections, as one pure machine (issue 10):
/// per-connection handshakes, worker admission (incarnations, `duplicate-id`), the steady-state
/// messages, and the `CoordinatorCore` behind them. The driver owns the sockets, the clock, the
/// nonces (`SecureRandom`) and the epoch file; it feeds decoded frames in and performs what comes
/// out. Bad input on one connection closes that connection, with a reason in the log, and nothing
/// else changes.
public struct CoordinatorService: Sendable {
    public typealias ConnectionID = UInt64

    public struct Configuration: Sendable {
        public var core = CoordinatorCore.Configuration()
        /// A connection must finish its handshake within this long.
        public var handshakeTimeout: Duration = .seconds(5)
        /// Connections still in their handshake at once; more are closed at once (a flood).
        public var maxPendingHandshakes = 256
        /// Once half of those are taken, at most this many from one address (host, without the
        /// port), so one flooding address cannot take every slot while workers behind one NAT may
        /// still use all the free ones; `nil`: no bound per address.
        public var maxPendingHandshakesPerAddress: Int? = 32
        /// Bound on authenticated workers.
        public var maxWorkers = 10_000
        public init() {}
    }

    public enum Input: Sendable {
        /// A connection was accepted; `nonce` is 32 bytes from `SecureRandom`.
        case opened(ConnectionID, remote: String, nonce: [UInt8])
        case frame(ConnectionID, ControlFrame)
        /// The connection's bytes did not decode as frames (its decoder stays failed).
        case invalid(ConnectionID, String)
        case closed(ConnectionID)
        case tick
        case epochsPersisted(upTo: UInt64)
        /// An operator or API request (subscribe, unsubscribe, cordon, uncordon, drain).
        case request(CoordinatorCore.Event)
    }

    public enum Output: Hashable, Sendable {
        case send(ConnectionID, ControlFrame)
        /// Close after what was sent is flushed.
        case close(ConnectionID)
        case persistEpochs(upTo: UInt64)
        /// The connection proved the secret: its frames may now be as large as a full sync
        /// (before, `ControlFrameDecoder.minimumLimit`, so unproven peers hold little memory).
        case admitted(ConnectionID)
        case log(level: String, String, [String: String])
    }

    enum Connection: Sendable {
        case handshaking(CoordinatorHandshake, openedAt: Instant, remote: String)
        case worker(id: String, remote: String)
        /// Refused or replaced: waiting for the driver's close.
        case closing
    }

    public let configuration: Configuration
    private let secret: [UInt8]
    public private(set) var core: CoordinatorCore
    private var admission: WorkerAdmission
    private var connections: [ConnectionID: Connection] = [:]
    private var pendingHandshakes = 0
    /// Handshakes in progress per remote host (entries at 0 are removed: at most one per handshake).
    private var pendingByHost: [String: Int] = [:]
    /// Counters for the gauges (monotonic).
    public private(set) var rejectedHandshakes = 0
    public private(set) var leaseExpiries = 0

    /// `secret`: the cluster secret (an HMAC key only: never sent or logged).
    public init(configuration: Configuration, secret: [UInt8], core: CoordinatorCore) {
        self.configuration = configuration
        self.secret = secret
        self.core = core
        admission = WorkerAdmission(
            heartbeatInterval: configuration.core.heartbeatInterval, maxWorkers: configuration.maxWorkers)
    }

    public var connectionCount: Int { connections.count }

    /// The connection that speaks for `workerID` now.
    public func connection(of workerID: String) -> ConnectionID? { admission.connection(of: workerID) }

    /// Whether `connection` is still tracked (until its `.closed`).
    public func hasConnection(_ connection: ConnectionID) -> Bool { connections[connection] != nil }

    /// The remote address of the connection speaking for `workerID`.
    public func address(of workerID: String) -> String? {
        guard let c = admission.connection(of: workerID), case .worker(_, let remote)? = connections[c] else {
            return nil
        }
        return remote
    }

    public mutating func handle(_ input: Input, now: Instant, wallClock: Int64) -> [Output] {
        var out: [Output] = []
        switch input {
        case .opened(let c, let remote, let nonce):
            let host = Self.host(of: remote)
            var refusal: (String, Int)?
            if pendingHandshakes >= configuration.maxPendingHandshakes {
                refusal = ("too many handshakes in progress", configuration.maxPendingHandshakes)
            } else if let limit = configuration.maxPendingHandshakesPerAddress,
                pendingHandshakes >= configuration.maxPendingHandshakes / 2, pendingByHost[host, default: 0] >= limit
            {
                // Only while the slots are contended (half taken): a whole cluster behind one NAT
                // may use every free slot on a mass reconnect, a flood cannot take the other half.
                refusal = ("too many handshakes from one address", limit)
            }
            if let (why, limit) = refusal {
                rejectedHandshakes += 1
                out.append(
                    .log(
                        level: "warning", "control connection refused: \(why)", ["remote": remote, "limit": "\(limit)"])
                )
                connections[c] = .closing
                out.append(.close(c))
                break
            }
            pendingHandshakes += 1
            pendingByHost[host, default: 0] += 1
            let handshake = CoordinatorHandshake(
                secret: secret, nonce: nonce, term: core.term, leaseMilliseconds: configuration.core.leaseMilliseconds,
                heartbeatMilliseconds: configuration.core.heartbeatInterval.millisecondsClamped)
            connections[c] = .handshaking(handshake, openedAt: now, remote: remote)
        case .frame(let c, let frame):
            received(frame, on: c, now: now, wallClock: wallClock, into: &out)
        case .invalid(let c, let reason):
            drop(c, level: "warning", "control connection closed: bad framing", ["error": reason], into: &out)
        case .closed(let c):
            switch connections.removeValue(forKey: c) {
            case .handshaking(_, _, let remote)?:
                handshakeEnded(remote)
                out.append(
                    .log(level: "warning", "control handshake abandoned: the peer closed", ["remote": remote]))
            case .worker(let id, _)?: admission.closed(workerID: id, connection: c)
            case .closing?, nil: break
            }
        case .tick:
            let overdue = connections.compactMap { c, connection -> (ConnectionID, String)? in
                guard case .handshaking(_, let openedAt, let remote) = connection,
                    now.duration(since: openedAt) >= configuration.handshakeTimeout
                else { return nil }
                return (c, remote)
            }
            for (c, remote) in overdue.sorted(by: { $0.0 < $1.0 }) {
                rejectedHandshakes += 1
                drop(c, level: "warning", "control handshake timed out", ["remote": remote], into: &out)
            }
            feed(.tick, now: now, wallClock: wallClock, into: &out)
        case .epochsPersisted(let upTo):
            feed(.epochsPersisted(upTo: upTo), now: now, wallClock: wallClock, into: &out)
        case .request(let event):
            feed(event, now: now, wallClock: wallClock, into: &out)
        }
        return out
    }

    private mutating func received(
        _ frame: ControlFrame, on c: ConnectionID, now: Instant, wallClock: Int64, into out: inout [Output]
    ) {
        switch connections[c] {
        case .handshaking(var handshake, let openedAt, let remote)?:
            let actions = handshake.received(frame)
            connections[c] = .handshaking(handshake, openedAt: openedAt, remote: remote)
            for action in actions {
                switch action {
                case .send(let f):
                    out.append(.send(c, f))
                case .fail(let reason, let text):
                    rejectedHandshakes += 1
                    drop(
                        c, level: "warning", "control handshake refused",
                        ["remote": remote, "reason": reason.rawValue, "error": text], into: &out)
                    return
                case .acceptedWorker(let hello):
                    switch admission.admit(
                        workerID: hello.workerID, incarnation: hello.incarnation, connection: c, now: now)
                    {
                    case .rejected(let reason, let text):
                        rejectedHandshakes += 1
                        for refusal in handshake.refuse(reason, text) {
                            if case .send(let f) = refusal { out.append(.send(c, f)) }
                        }
                        drop(
                            c, level: "warning", "control handshake refused",
                            ["remote": remote, "reason": reason.rawValue, "error": text], into: &out)
                        // It proved the secret and now stops what it runs (a version-2 worker does): the
                        // core keeps where its rows end.
                        if reason == .duplicateID && hello.version >= 2 && !hello.shards.isEmpty {
                            feed(.workerRefused(hello), now: now, wallClock: wallClock, into: &out)
                        }
                        return
                    case .replaced(let old, let incarnation):
                        if connections[old] != nil {
                            connections[old] = .closing
                            out.append(.close(old))
                        }
                        out.append(
                            .log(
                                level: "notice", "worker session replaced",
                                [
                                    "worker": hello.workerID, "incarnation": "\(hello.incarnation)",
                                    "old.incarnation": "\(incarnation)",
                                ]))
                    case .admitted:
                        break
                    }
                    handshakeEnded(remote)
                    connections[c] = .worker(id: hello.workerID, remote: remote)
                    out.append(.admitted(c))
                    out.append(
                        .log(
                            level: "notice", "worker joined",
                            [
                                "worker": hello.workerID, "remote": remote, "incarnation": "\(hello.incarnation)",
                                "version": "\(hello.version)", "egress.group": hello.egressGroup,
                                "shards": "\(hello.shards.count)",
                            ]))
                    // The welcome goes out before anything the core sends the new worker.
                    if let welcome = actions.last, case .send(let f) = welcome { out.append(.send(c, f)) }
                    feed(.workerJoined(hello), now: now, wallClock: wallClock, into: &out)
                    return
                case .welcomed:
                    break  // the worker side's action
                }
            }
        case .worker(let id, let remote)?:
            let message: ClusterMessage
            do {
                message = try ClusterMessage.decode(frame)
            } catch {
                drop(
                    c, level: "warning", "control connection closed: malformed message",
                    ["worker": id, "remote": remote, "error": error.reason], into: &out)
                return
            }
            admission.heard(workerID: id, connection: c, now: now)
            switch message {
            case .heartbeat(let sequence, let full, let reports):
                feed(
                    .heartbeat(workerID: id, sequence: sequence, full: full, reports: reports), now: now,
                    wallClock: wallClock, into: &out)
            case .shardLive(let shard, let epoch):
                feed(.shardLive(workerID: id, shard: shard, epoch: epoch), now: now, wallClock: wallClock, into: &out)
            case .shardFailed(let shard, let epoch, let permanent, let code, let reason):
                out.append(
                    .log(
                        level: permanent ? "warning" : "notice", "shard failed",
                        [
                            "worker": id, "shard": shard, "epoch": "\(epoch)", "permanent": "\(permanent)",
                            "exchange.code": code, "error": reason,
                        ]))
                feed(
                    .shardFailed(
                        workerID: id, shard: shard, epoch: epoch, permanent: permanent, code: code, reason: reason),
                    now: now, wallClock: wallClock, into: &out)
            case .acknowledged:
                break
            case .leaving(let reason):
                out.append(.log(level: "notice", "worker leaving: draining it", ["worker": id, "reason": reason]))
                feed(.workerLeaving(workerID: id), now: now, wallClock: wallClock, into: &out)
            case .heartbeatAck, .assign, .revoke, .handOver:
                drop(
                    c, level: "warning", "control connection closed: a coordinator message from a worker",
                    ["worker": id, "remote": remote], into: &out)
            }
        case .closing?, nil:
            break
        }
    }

    /// Runs the core and turns its actions into outputs on the connections that speak for workers.
    private mutating func feed(_ event: CoordinatorCore.Event, now: Instant, wallClock: Int64, into out: inout [Output])
    {
        for action in core.handle(event, now: now, wallClock: wallClock) {
            switch action {
            case .send(let id, let message):
                if case .assign(let a) = message, a.cutoverAt == nil, let resume = a.resumeFrom, resume.id == nil,
                    a.shard.contains("/trades/")
                {
                    // A trade feed backfills by trade id: from a time alone it cannot (an open bug's suspect).
                    out.append(
                        .log(
                            level: "warning", "trades assigned to resume from a time without a trade id",
                            ["shard": a.shard, "worker": id, "epoch": "\(a.epoch)", "resume.time": "\(resume.time)"]))
                }
                // No open session: the worker reports what it runs when it rejoins.
                guard let c = admission.connection(of: id), case .worker(id, _)? = connections[c] else { continue }
                out.append(.send(c, message.frame()))
            case .persistEpochs(let upTo):
                out.append(.persistEpochs(upTo: upTo))
            case .workerExpired(let id):
                leaseExpiries += 1
                // A silent session that is still open is closed: the worker reconnects and re-reports.
                if let c = admission.connection(of: id), case .worker? = connections[c] {
                    connections[c] = .closing
                    out.append(.close(c))
                }
                admission.forget(workerID: id)
            case .log(let message, let fields):
                out.append(.log(level: "notice", message, fields))
            }
        }
    }

    private mutating func handshakeEnded(_ remote: String) {
        pendingHandshakes -= 1
        let host = Self.host(of: remote)
        let left = pendingByHost[host, default: 1] - 1
        pendingByHost[host] = left > 0 ? left : nil
    }

    /// The host part of a remote address as the driver writes it (`1.2.3.4:5`, `[::1]:5`, or bare).
    public static func host(of remote: String) -> String {
        if remote.hasPrefix("["), let end = remote.firstIndex(of: "]") {
            return String(remote[remote.index(after: remote.startIndex)..<end])
        }
        let colons = remote.filter { $0 == ":" }.count
        if colons == 1, let i = remote.lastIndex(of: ":") { return String(remote[..<i]) }
        return remote
    }

    private mutating func drop(
        _ c: ConnectionID, level: String, _ message: String, _ fields: [String: String], into out: inout [Output]
    ) {
        switch connections[c] {
        case .handshaking(_, _, let remote)?: handshakeEnded(remote)
        case .worker(let id, _)?: admission.closed(workerID: id, connection: c)
        case .closing?, nil: break
        }
        connections[c] = .closing
        out.append(.log(level: level, message, fields))
        out.append(.close(c))
    }
}
