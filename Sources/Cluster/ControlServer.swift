import Collector
public import CollectorCore
import ControlProtocol
public import Coordination
import Crypto
import Dispatch
import Locking
public import Observability
public import Runtime
import Synchronization

/// The coordinator's control listener (issue 10): the thin driver around `CoordinatorService`. It
/// owns the sockets, the 100 ms tick, the clocks, handshake nonces (`SecureRandom`) and the state
/// file; every decision is the service's. Connection state lives on the event loop; the state file
/// is written on its own queue (file I/O never runs on the loop) and the service learns when the
/// reserved epochs are durable.
public final class ControlServer: Sendable {
    public struct Settings: Sendable {
        public var host = "0.0.0.0"
        /// `CONTROL_PORT` (0 picks a free port).
        public var port = 7070
        public var service = CoordinatorService.Configuration()
        public var tick: Duration = .milliseconds(100)
        public init() {}
    }

    /// Counts for the metrics, refreshed every tick.
    public struct Summary: Sendable {
        public var workersByState: [String: Int] = [:]
        public var shardsByState: [String: Int] = [:]
        public var unowned = 0
        public var moves = 0
        public var leaseExpiries = 0
        public var rejectedHandshakes = 0
        public var connections = 0
        /// `CoordinatorCore.receivedEventTotals`.
        public var receivedEvents: [EventTotalsKey: Int64] = [:]
    }

    private let state: LoopBound<ServerState>
    public let port: Int
    public let term: UInt64
    private let summaryBox: SummaryBox

    final class SummaryBox: Sendable {
        let value = Locked(Summary())
    }

    private init(state: LoopBound<ServerState>, port: Int, term: UInt64, summary: SummaryBox) {
        self.state = state
        self.port = port
        self.term = term
        self.summaryBox = summary
    }

    public var summary: Summary { summaryBox.value.withLock { $0 } }

    /// Continues from `beginning` (or reads `state` and writes the next term itself): a restart
    /// continues the term and the epochs above what was reserved, and a paused rebalance stays
    /// paused. Then listens. `deposed` is called (on the loop) when a state write is refused because
    /// a newer coordinator wrote: the caller stops serving.
    public static func start(
        settings: Settings, secret: [UInt8], state store: CoordinatorStateStore,
        beginning: CoordinatorStateStore.Beginning? = nil, loop: EventLoop, logger: Logger,
        desired: [CoordinatorCore.DesiredShard] = [], deposed: @escaping @Sendable (String) -> Void = { _ in }
    ) async throws -> ControlServer {
        let begun: CoordinatorStateStore.Beginning
        if let beginning { begun = beginning } else { begun = try await store.begin() }
        let term = begun.term
        let reserved = begun.epochsReserved
        let configuration = settings.service
        let core = CoordinatorCore(
            configuration: configuration.core, term: term, persistedEpochs: reserved, recovering: begun.recovering)
        let service = CoordinatorService(configuration: configuration, secret: secret, core: core)
        let summary = SummaryBox()
        let result: Result<(LoopBound<ServerState>, Int), any Error> = await withCheckedContinuation { continuation in
            loop.execute {
                do {
                    let server = ServerState(
                        service: service, loop: loop, logger: logger, store: store, term: term,
                        reserved: reserved, tick: settings.tick, summary: summary, deposed: deposed)
                    if begun.rebalancePaused { server.input(.request(.pauseRebalance(true))) }
                    // The saved subscriptions are in the map before any worker can report: a shard a
                    // returning worker runs is never revoked as unknown.
                    if !desired.isEmpty { server.input(.request(.subscribe(desired))) }
                    let port = try server.listen(host: settings.host, port: settings.port)
                    continuation.resume(returning: .success((LoopBound(server, loop: loop), port)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        let (state, port) = try result.get()
        logger.notice(
            "control listening",
            [
                "control.port": "\(port)", "term": "\(term)", "epochs.reserved": "\(reserved)",
                "recovering": "\(begun.recovering)", "rebalance.paused": "\(begun.rebalancePaused)",
                "state": store.location,
            ])
        return ControlServer(state: state, port: port, term: term, summary: summary)
    }

    /// The cluster gauges and counters (labels bounded: states only), read from the last tick's summary.
    public func registerMetrics(in registry: MetricsRegistry) {
        let box = summaryBox
        let term = self.term
        @Sendable func read() -> Summary { box.value.withLock { $0 } }
        registry.registerCollector(
            "collector_cluster_workers", help: "Workers holding a lease, by state.", kind: .gauge
        ) {
            let s = read()
            return ["live", "cordoned", "draining"].map {
                MetricsRegistry.Sample([("state", $0)], Double(s.workersByState[$0] ?? 0))
            }
        }
        registry.registerCollector("collector_cluster_shards", help: "Desired shards, by state.", kind: .gauge) {
            let s = read()
            return ["live", "assigned", "unowned", "rejected"].map {
                MetricsRegistry.Sample([("state", $0)], Double(s.shardsByState[$0] ?? 0))
            }
        }
        registry.registerCollector(
            "collector_cluster_unowned_shards", help: "Shards no worker runs (not counting rejected ones).",
            kind: .gauge
        ) { [MetricsRegistry.Sample([], Double(read().unowned))] }
        registry.registerCollector(
            "collector_cluster_moves", help: "Make-before-break moves in flight.", kind: .gauge
        ) { [MetricsRegistry.Sample([], Double(read().moves))] }
        registry.registerCollector(
            "collector_cluster_lease_expiries_total", help: "Worker leases that ran out (their shards moved).",
            kind: .counter
        ) { [MetricsRegistry.Sample([], Double(read().leaseExpiries))] }
        registry.registerCollector(
            "collector_cluster_handshakes_rejected_total",
            help: "Control connections refused: bad proof, version or framing, duplicate id, timeout, flood.",
            kind: .counter
        ) { [MetricsRegistry.Sample([], Double(read().rejectedHandshakes))] }
        registry.registerCollector(
            "collector_cluster_control_connections", help: "Open control connections.", kind: .gauge
        ) { [MetricsRegistry.Sample([], Double(read().connections))] }
        registry.registerCollector(
            "collector_cluster_events_received_total",
            help:
                "Market events the workers received (each replica its own), summed from their heartbeats: never goes back on a worker's restart, a move or an unsubscribe (from zero at each coordinator start).",
            kind: .counter
        ) {
            read().receivedEvents.sorted { ($0.key.exchange, $0.key.feed) < ($1.key.exchange, $1.key.feed) }.map {
                MetricsRegistry.Sample([("exchange", $0.key.exchange), ("feed", $0.key.feed)], Double($0.value))
            }
        }
        registry.registerCollector("collector_cluster_term", help: "The coordinator's term.", kind: .gauge) {
            [MetricsRegistry.Sample([], Double(term))]
        }
    }

    /// An operator or API request (subscribe, unsubscribe, cordon, uncordon, drain).
    public func request(_ event: CoordinatorCore.Event) async {
        let state = self.state
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            state.loop.execute {
                state.value.input(.request(event))
                continuation.resume()
            }
        }
    }

    /// An operator's request, checked and applied in one step on the loop: why it was refused
    /// (`CoordinatorCore.refusal(of:)`), or nil once applied.
    public func command(_ event: CoordinatorCore.Event) async -> String? {
        let state = self.state
        return await withCheckedContinuation { continuation in
            state.loop.execute {
                let now = state.value.loop.now()
                if let reason = state.value.service.core.refusal(
                    of: event, now: now, wallClock: WallClock.microseconds())
                {
                    continuation.resume(returning: reason)
                    return
                }
                state.value.input(.request(event))
                if case .pauseRebalance = event { state.value.persist(epochs: false) }
                continuation.resume(returning: nil)
            }
        }
    }

    /// Adds desired shards to the map; returns the new ones refused because the map holds
    /// `maxShards` (the rest are placed). Shards already desired are not refused.
    public func subscribe(_ desired: [CoordinatorCore.DesiredShard]) async -> [String] {
        let state = self.state
        return await withCheckedContinuation { continuation in
            state.loop.execute { continuation.resume(returning: state.value.subscribe(desired)) }
        }
    }

    /// A consistent copy of the map (the core is a value: copying it on the loop is cheap; the
    /// caller formats it elsewhere).
    public func snapshot() async -> ClusterSnapshot {
        let state = self.state
        return await withCheckedContinuation { continuation in
            state.loop.execute { continuation.resume(returning: state.value.snapshot()) }
        }
    }

    /// The rows `GET /api/v1/cluster` shows, read on the loop when called (one pass over the map, no
    /// hashing: 5–10 ms of the loop at 50,000 shards); the caller renders them elsewhere.
    public func clusterView() async -> ClusterView {
        let state = self.state
        return await withCheckedContinuation { continuation in
            state.loop.execute { continuation.resume(returning: state.value.clusterView()) }
        }
    }

    /// Stops listening and closes every control connection.
    public func shutdown() async {
        let state = self.state
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            state.loop.execute {
                state.value.shutdown()
                continuation.resume()
            }
        }
    }
}

/// A copy of the whole map, for the API's statuses and owners. It shares the core's dictionaries:
/// while one is held, the loop's next change to the map copies them (50,000 shards: 10–40 ms of the
/// loop). `GET /api/v1/cluster` is rendered from a `ClusterView` instead.
public struct ClusterSnapshot: Sendable {
    public var core: CoordinatorCore
    public var addresses: [String: String]
    public var now: Instant
    public var wallClock: Int64
}

/// What `GET /api/v1/cluster` is rendered from: the rows of the map it shows, copied out of the core
/// on the loop. Unlike `ClusterSnapshot` it keeps none of the core's dictionaries, so the loop's next
/// change to the map copies nothing; what it shares with the map (ids, owner lists) is copied only
/// where the loop changes that shard while the view lives. A view is the map at one instant.
public struct ClusterView: Sendable {
    /// One desired shard as the document shows it.
    public struct Shard: Sendable {
        public var id: String
        public var owners: [CoordinatorCore.Owner]
        public var replicas: Int
        public var weight: Int
        public var lastEventTime: Int64?
        public var measuredRate: Double?
        public var rejected: (code: String, message: String)?
    }

    /// One worker holding a lease as the document shows it (`address` empty when not connected).
    public struct Worker: Sendable {
        public var id: String
        public var address: String
        public var leaseUntil: Instant
        public var load: Int
        public var capacity: Int
        public var egressGroup: String
        public var incarnation: UInt64
        public var cordoned: Bool
        public var draining: Bool
    }

    /// `cluster`, or `standalone` (the cluster with one in-process worker).
    public var mode = "cluster"
    public var term: UInt64
    public var moves: Int
    /// The operator paused balancing moves (`coordinator rebalance pause`).
    public var rebalancePaused: Bool
    /// In the map's own order (its dictionary's): the same from one view to the next while the set
    /// of shards stays the same, which is what lets the renderer keep its sorted order.
    public var shards: [Shard]
    /// In the map's order too.
    public var workers: [Worker]
    public var now: Instant
    /// Wall µs, for the ages of the last stored events.
    public var wallClock: Int64

    /// The rows of `core` at `now`; `address` gives a worker's control address, if connected. One
    /// pass over the map without hashing.
    public init(core: CoordinatorCore, now: Instant, wallClock: Int64, address: (String) -> String?) {
        term = core.term
        moves = core.moves.count
        rebalancePaused = core.rebalancePaused
        self.now = now
        self.wallClock = wallClock
        shards = []
        shards.reserveCapacity(core.shards.count)
        for (id, shard) in core.shards {
            shards.append(
                Shard(
                    id: id, owners: shard.owners, replicas: shard.spec.replicas, weight: shard.spec.weight,
                    lastEventTime: shard.lastEventTime, measuredRate: shard.measuredRate, rejected: shard.rejected))
        }
        workers = core.workers.map { id, w in
            Worker(
                id: id, address: address(id) ?? "", leaseUntil: w.leaseUntil, load: w.load, capacity: w.hello.capacity,
                egressGroup: w.hello.egressGroup, incarnation: w.hello.incarnation, cordoned: w.cordoned,
                draining: w.draining)
        }
    }

    /// The rows of a snapshot (tests, and `ClusterPlane.documentBytes`).
    public init(_ snapshot: ClusterSnapshot) {
        self.init(core: snapshot.core, now: snapshot.now, wallClock: snapshot.wallClock) { snapshot.addresses[$0] }
    }
}

/// The loop-confined half of `ControlServer`.
final class ServerState {
    private(set) var service: CoordinatorService
    let loop: EventLoop
    private let logger: Logger
    private let store: CoordinatorStateStore
    private let term: UInt64
    /// The highest epoch mark asked to be reserved (every write carries it: a later write of a
    /// lower mark would let a restart issue an epoch twice).
    private var reserved: UInt64
    private let deposed: @Sendable (String) -> Void
    private let tickInterval: Duration
    private let summary: ControlServer.SummaryBox
    typealias Summary = ControlServer.Summary
    private var listener: TCPListener?
    private var connections: [UInt64: ControlConnection] = [:]
    private var nextID: UInt64 = 1
    private var timer: TimerHandle?
    private var summaryAt: Instant?
    /// The pending retry of a failed state write, and whether the failure was already logged
    /// (once per outage: the retries go on every second without repeating it).
    private var persistRetry: TimerHandle?
    private var retryEpochs = false
    private var persistFailing = false
    private var stopped = false
    private let writer = DispatchQueue(label: "coordinator.state")

    init(
        service: CoordinatorService, loop: EventLoop, logger: Logger, store: CoordinatorStateStore, term: UInt64,
        reserved: UInt64, tick: Duration, summary: ControlServer.SummaryBox,
        deposed: @escaping @Sendable (String) -> Void
    ) {
        self.service = service
        self.loop = loop
        self.logger = logger
        self.store = store
        self.term = term
        self.reserved = reserved
        self.deposed = deposed
        self.tickInterval = tick
        self.summary = summary
    }

    func listen(host: String, port: Int) throws(SystemError) -> Int {
        let listener = try TCPListener(host: host, port: port, loop: loop) { [weak self] connection in
            self?.accepted(connection)
        }
        self.listener = listener
        scheduleTick()
        return listener.port
    }

    private func scheduleTick() {
        timer = loop.scheduleTimer(after: tickInterval) { [weak self] in
            guard let self, !self.stopped else { return }
            self.input(.tick)
            // Shard states are a pass over the whole map: once a second is fresh enough for gauges.
            let now = self.loop.now()
            let countShards = self.summaryAt.map { now.duration(since: $0) >= .seconds(1) } ?? true
            if countShards { self.summaryAt = now }
            self.publishSummary(countingShards: countShards)
            self.scheduleTick()
        }
    }

    private func accepted(_ transport: TCPConnection) {
        let id = nextID
        nextID += 1
        let remote = transport.remoteAddress.map { "\($0)" } ?? "unknown"
        let connection = ControlConnection(
            id: id, transport: transport, maxFrameBytes: ControlFrameDecoder.minimumLimit, server: self)
        transport.setHandler(connection)
        connections[id] = connection
        input(.opened(id, remote: remote, nonce: SecureRandom.bytes(HandshakeLimits.nonceBytes)))
    }

    func subscribe(_ desired: [CoordinatorCore.DesiredShard]) -> [String] {
        let core = service.core
        var room = core.configuration.maxShards - core.shards.count
        var accepted: [CoordinatorCore.DesiredShard] = []
        var refused: [String] = []
        var seen: Set<String> = []
        for spec in desired where seen.insert(spec.shard).inserted {
            if core.shards[spec.shard] != nil {
                accepted.append(spec)
            } else if room > 0 {
                room -= 1
                accepted.append(spec)
            } else {
                refused.append(spec.shard)
            }
        }
        if !accepted.isEmpty { input(.request(.subscribe(accepted))) }
        return refused
    }

    func input(_ input: CoordinatorService.Input) {
        let outputs = service.handle(input, now: loop.now(), wallClock: WallClock.microseconds())
        for output in outputs { perform(output) }
    }

    private func perform(_ output: CoordinatorService.Output) {
        switch output {
        case .send(let id, let frame):
            guard let connection = connections[id] else { return }
            guard connection.transport.isWritable else {
                // A peer that does not read its control messages cannot be led: it reconnects.
                logger.warning(
                    "control connection closed: the peer does not read", ["connection": "\(id)"])
                connection.transport.abort(error: nil)
                return
            }
            connection.transport.write(frame.encoded())
        case .close(let id):
            connections[id]?.transport.close()
        case .persistEpochs(let upTo):
            reserved = max(reserved, upTo)
            persist(epochs: true)
        case .admitted(let id):
            connections[id]?.raiseLimit(to: ControlFrameDecoder.limit(forShards: service.core.configuration.maxShards))
        case .log(let level, let message, let fields):
            logger.log(LogLevel(name: level) ?? .notice, message, fields)
        }
    }

    /// Writes the state (term, reserved epoch mark, paused rebalance) on the writer queue; where the
    /// write was for `epochs`, the service hears when the mark is durable. A failed write is retried
    /// every second (no epoch above the durable mark is issued meanwhile); a write refused because a
    /// newer term wrote deposes this coordinator.
    func persist(epochs: Bool) {
        let store = self.store
        let contents = CoordinatorStateStore.Contents(
            term: term, epochsReserved: reserved, rebalancePaused: service.core.rebalancePaused)
        let loop = self.loop
        let bound = LoopBound(self, loop: loop)
        writer.async {
            do {
                try store.store(contents)
                loop.execute { bound.value.persisted(contents, epochs: epochs) }
            } catch let error as StateDocumentFenced {
                loop.execute { bound.value.fenced(error) }
            } catch {
                loop.execute { bound.value.persistFailed(epochs: epochs, error: "\(error)") }
            }
        }
    }

    private func persisted(_ contents: CoordinatorStateStore.Contents, epochs: Bool) {
        if persistFailing {
            persistFailing = false
            logger.notice("the coordinator state is persisted again", ["state": store.location])
        }
        if epochs { input(.epochsPersisted(upTo: contents.epochsReserved)) }
    }

    private func fenced(_ error: StateDocumentFenced) {
        guard !stopped else { return }
        logger.error("a newer coordinator wrote the state: this one is deposed", ["error": error.description])
        deposed(error.description)
    }

    /// Logged once per outage; retried every second until it succeeds or the server stops.
    private func persistFailed(epochs: Bool, error: String) {
        guard !stopped else { return }
        if !persistFailing {
            persistFailing = true
            logger.error(
                "cannot persist the coordinator state; assignments wait",
                ["state": store.location, "error": error, "retry.seconds": "1"])
        }
        // One retry at a time: a second failing write joins it (the retry writes the whole state,
        // and says the epochs are durable if either write was for them).
        retryEpochs = retryEpochs || epochs
        guard persistRetry == nil else { return }
        persistRetry = loop.scheduleTimer(after: .seconds(1)) { [weak self] in
            guard let self, !self.stopped else { return }
            self.persistRetry = nil
            let epochs = self.retryEpochs
            self.retryEpochs = false
            self.persist(epochs: epochs)
        }
    }

    func received(_ frames: [ControlFrame], on id: UInt64) {
        for frame in frames { input(.frame(id, frame)) }
    }

    func failed(_ id: UInt64, _ error: ControlFrameError) {
        input(.invalid(id, error.description))
    }

    func closed(_ id: UInt64) {
        guard connections.removeValue(forKey: id) != nil else { return }
        input(.closed(id))
    }

    func snapshot() -> ClusterSnapshot {
        var addresses: [String: String] = [:]
        for id in service.core.workers.keys { addresses[id] = service.address(of: id) }
        return ClusterSnapshot(
            core: service.core, addresses: addresses, now: loop.now(), wallClock: WallClock.microseconds())
    }

    func clusterView() -> ClusterView {
        ClusterView(core: service.core, now: loop.now(), wallClock: WallClock.microseconds()) {
            service.address(of: $0)
        }
    }

    /// Workers and counters every tick; shard states when `countingShards` (else the last count).
    private func publishSummary(countingShards: Bool) {
        let core = service.core
        var s = Summary()
        if !countingShards {
            let last = summary.value.withLock { $0 }
            s.shardsByState = last.shardsByState
            s.unowned = last.unowned
        }
        for w in core.workers.values {
            let state = w.draining ? "draining" : w.cordoned ? "cordoned" : "live"
            s.workersByState[state, default: 0] += 1
        }
        for shard in core.shards.values where countingShards {
            let state =
                shard.rejected != nil
                ? "rejected"
                : shard.owners.isEmpty ? "unowned" : shard.owners.contains { $0.state == .live } ? "live" : "assigned"
            s.shardsByState[state, default: 0] += 1
            if shard.rejected == nil && shard.owners.isEmpty { s.unowned += 1 }
        }
        s.moves = core.moves.count
        s.leaseExpiries = service.leaseExpiries
        s.rejectedHandshakes = service.rejectedHandshakes
        s.connections = service.connectionCount
        s.receivedEvents = core.receivedEventTotals
        summary.value.withLock { $0 = s }
    }

    func shutdown() {
        stopped = true
        if let timer { loop.cancelTimer(timer) }
        if let persistRetry { loop.cancelTimer(persistRetry) }
        persistRetry = nil
        listener?.close()
        listener = nil
        for connection in connections.values { connection.transport.close() }
    }
}

/// One control connection's bytes → frames (bounded; the decoder stays failed after bad framing).
final class ControlConnection: TransportHandler {
    let id: UInt64
    let transport: TCPConnection
    private var decoder: ControlFrameDecoder
    private weak var server: ServerState?

    init(id: UInt64, transport: TCPConnection, maxFrameBytes: Int, server: ServerState) {
        self.id = id
        self.transport = transport
        self.decoder = ControlFrameDecoder(maxFrameBytes: maxFrameBytes)
        self.server = server
    }

    func raiseLimit(to limit: Int) { decoder.raiseLimit(to: limit) }

    func transportDidReceive(_ bytes: UnsafeRawBufferPointer) {
        guard decoder.error == nil else { return }
        do {
            let frames = try decoder.feed(bytes)
            server?.received(frames, on: id)
        } catch {
            transport.pauseReading()
            server?.failed(id, error)
        }
    }

    func transportDidClose(error: (any Error)?) {
        server?.closed(id)
    }
}
