public import Collector
import CollectorCore
public import ControlProtocol
import Exchanges
import Locking
import MarketData
public import Observability
import Runtime
import Synchronization

/// A worker's data plane (issue 11): what its `ControlClient` decides is applied to the collector
/// engine through a `ShardRunner`, and what the engine does is reported back. One ordered, bounded
/// queue carries the session's actions and the once-a-`pollInterval` observation of the running
/// streams (state, messages, and the durable watermark as the shard's resume point), so a stop and
/// the start after it are applied in order.
public actor WorkerPlane {
    private let engine: CollectorEngine
    private let storage: SinkDispatcher
    private let logger: Logger
    private var runner: ShardRunner
    private var windows: [String: EventWindow] = [:]
    private let inputs: AsyncQueue<ShardRunner.Input>
    private var client: ControlClient?
    /// The consumer and the poller, cancelled by `stop` without waiting for the actor.
    private let tasks = Locked<[Task<Void, Never>]>([])
    /// Whether the session is cut off (the orphaned gauge, `/ready` false).
    public private(set) var orphaned = false
    /// Workers sharing this one's egress group, as the coordinator last said.
    public private(set) var egressGroupSize = 1

    public init(
        engine: CollectorEngine, storage: SinkDispatcher, runner: ShardRunner = ShardRunner(),
        queueCapacity: Int = 65_536,
        logger: Logger
    ) {
        self.engine = engine
        self.storage = storage
        self.runner = runner
        self.logger = logger
        inputs = AsyncQueue(capacity: queueCapacity, lowWater: queueCapacity / 2)
    }

    /// What `ControlClient.start(dataPlane:)` is given: session actions enter the queue in order.
    public nonisolated func sessionAction(_ action: WorkerSession.Action) {
        enqueue(.session(action))
    }

    @discardableResult
    private nonisolated func enqueue(_ input: ShardRunner.Input) -> Bool {
        // Bounded. Observations never fill it (at most one is queued: see `observe`), so only a
        // session whose actions the engine stopped applying can: that input is dropped with an error.
        guard inputs.push(input) else {
            logger.error("worker data-plane queue full: input dropped", ["capacity": "\(inputs.capacity)"])
            return false
        }
        return true
    }

    /// Starts applying inputs and observing the engine every `pollInterval`.
    /// `client` nil: reports go nowhere (tests of the data plane alone).
    public func start(client: ControlClient?, pollInterval: Duration = .milliseconds(500)) {
        self.client = client
        let inputs = self.inputs
        let consumer = Task { [weak self] in
            // What has queued up is applied as one batch: the new subscriptions in it reach the
            // engine in one call (one read of the watermarks and the gap ledger, not one per shard).
            while let first = await inputs.next() {
                var batch = [first]
                while batch.count < Self.batchLimit, let more = inputs.nextBuffered() { batch.append(more) }
                await self?.apply(batch)
            }
        }
        let poller = Task { [weak self] in
            while !Task.isCancelled {
                do { try await Task.sleep(for: pollInterval) } catch { return }  // cancelled: stopping
                guard let self else { return }
                await self.observe()
            }
        }
        tasks.withLock { $0 = [consumer, poller] }
    }

    /// Stops observing and applying (the engine's own shutdown flushes what it has). Not isolated:
    /// a shutdown must not wait behind a batch of subscriptions the actor is still applying.
    public nonisolated func stop() {
        inputs.finish()
        for task in tasks.withLock({ $0 }) { task.cancel() }
    }

    /// How long (µs of exchange time) an unfilled hole holds the reported watermark back: a
    /// backfill not done by then has failed (it stays in the gap ledger) and the watermark moves on.
    static let backfillReportHold: Int64 = 600_000_000

    /// The shards running now, by epoch.
    public var epochs: [String: UInt64] { runner.epochs }

    /// An observation (and its tick) is queued and not yet applied: the next one waits, so a slow
    /// engine never fills the queue with observations ahead of the session's starts and stops.
    private var observationQueued = false

    private func observe() {
        guard !observationQueued else { return }
        observationQueued = true
        let marks = storage.storedWatermarks()
        var observed: [ShardRunner.Observed] = []
        for (shard, _) in runner.epochs.sorted(by: { $0.key < $1.key }) {
            guard let stream = StreamID(shard) else { continue }
            let status = engine.status.status(stream)
            // A recent hole whose backfill has not finished (see `ShardRunner.Observed.fillingHole`).
            let recent = WallClock.microseconds() - Self.backfillReportHold
            let filling = status?.gaps.contains { !$0.recovered && $0.cause == .reconnect && $0.to >= recent } ?? false
            let mark = marks[stream]
            // A full-depth book is live once synchronised (DESIGN.md §3): a move's cutover must not
            // pass while the new owner still seeds its book.
            let needsSync = stream.feed == .fullBook
            let live = status?.state == .live && (!needsSync || status?.bookSynchronised == true)
            let permanent = status?.rejection?.code != SessionRefusal.connectionFailureCode
            var seen = ShardRunner.Observed(
                shard: shard, live: live, stored: Int64(status?.messages ?? 0),
                lastEventTime: mark?.time, lastEventID: mark?.id, rejection: status?.rejection,
                fillingHole: filling, passedUntil: status?.passedUntil)
            seen.rejectionIsPermanent = permanent
            observed.append(seen)
        }
        // The tick clears the flag when applied; one not queued leaves nothing to clear it.
        if !(enqueue(.observed(observed)) && enqueue(.tick)) { observationQueued = false }
    }

    /// Inputs applied as one batch at most (the queue's backlog beyond waits for the next).
    static let batchLimit = 512

    /// A new subscription waiting to reach the engine with the others of its batch.
    private struct NewSubscription {
        var shard: String
        var stream: StreamID
        var window: EventWindow
        var resume: Watermark?
    }

    private func apply(_ batch: [ShardRunner.Input]) async {
        var pending: [NewSubscription] = []
        for input in batch {
            if Task.isCancelled { break }  // stopping: the engine's shutdown follows
            switch input {
            case .session(.orphaned(let cutOff)):
                orphaned = cutOff
            case .session(.egressShare(let size)):
                egressGroupSize = size
            case .tick:
                observationQueued = false
            default:
                break
            }
            for action in runner.handle(input, wallClock: WallClock.microseconds()) {
                // Consecutive new subscriptions go together; anything else runs after them, in order.
                if case .run(let shard, let from, let until, let resume) = action, windows[shard] == nil,
                    !pending.contains(where: { $0.shard == shard }), let stream = StreamID(shard)
                {
                    pending.append(
                        NewSubscription(
                            shard: shard, stream: stream, window: EventWindow(from: from, until: until),
                            resume: resume.map { Watermark(time: $0.time, id: $0.id) }))
                    continue
                }
                await subscribe(pending)
                pending = []
                await perform(action)
            }
        }
        await subscribe(pending)
    }

    /// One engine call for `subscriptions`, each with its window (no event before a cutover is
    /// kept) and resume point; one the engine refuses is stopped and reported failed.
    private func subscribe(_ subscriptions: [NewSubscription]) async {
        guard !subscriptions.isEmpty else { return }
        var marks: [StreamID: Watermark] = [:]
        var bounded: [StreamID: EventWindow] = [:]
        for s in subscriptions {
            if let resume = s.resume { marks[s.stream] = resume }
            if s.window.from != nil || s.window.until != nil { bounded[s.stream] = s.window }
        }
        let refused = await engine.subscribe(subscriptions.map(\.stream), resumeFrom: marks, windows: bounded)
        for s in subscriptions {
            if let reason = refused[s.stream] {
                let epoch = runner.epochs[s.shard] ?? 0
                // Its one action, unsubscribing, has nothing to undo: the engine refused it.
                _ = runner.handle(
                    .session(.stop(shard: s.shard, epoch: epoch, until: nil)), wallClock: WallClock.microseconds())
                report(.shardFailed(shard: s.shard, epoch: epoch, permanent: true, code: "refused", reason: reason))
                continue
            }
            windows[s.shard] = s.window
        }
    }

    private func perform(_ action: ShardRunner.Action) async {
        switch action {
        case .run(let shard, let from, let until, let resume):
            guard let stream = StreamID(shard) else {
                report(
                    .shardFailed(
                        shard: shard, epoch: runner.epochs[shard] ?? 0, permanent: true, code: "bad-shard",
                        reason: "not a stream name (exchange/feed/symbol)"))
                return
            }
            // Subscribed but storing only from a cutover (a move's new owner) or only up to one (a
            // hand-over taken back after its successor died), now told to store at once from a
            // resume point: what the window kept out was never stored, so it subscribes again
            // to backfill from there.
            if let window = windows[shard], window.from != nil || window.until != nil, from == nil,
                resume != nil
            {
                windows[shard] = nil
                await engine.unsubscribe([stream])
            }
            let window = EventWindow(from: from, until: until)
            guard windows[shard] != nil else {
                let mark = resume.map { Watermark(time: $0.time, id: $0.id) }
                await subscribe([NewSubscription(shard: shard, stream: stream, window: window, resume: mark)])
                return
            }
            windows[shard] = window
            await engine.setWindow(from == nil && until == nil ? nil : window, for: stream)
        case .closeWindow(let shard, let until):
            guard let stream = StreamID(shard) else { return }
            let window = EventWindow(from: windows[shard]?.from, until: until)
            windows[shard] = window
            await engine.setWindow(window, for: stream)
        case .unsubscribe(let shard):
            windows[shard] = nil
            guard let stream = StreamID(shard) else { return }
            await engine.unsubscribe([stream])
        case .report(let input):
            report(input)
        }
    }

    private func report(_ input: WorkerSession.Input) {
        client?.report(input)
    }
}
