public import CollectorCore
import Crypto
public import Exchanges
import Locking
public import MarketData
public import Observability
public import Runtime
import Synchronization
public import TLS

/// How the data plane behaves (DESIGN.md §4, §7).
public struct CollectorConfiguration: Sendable {
    public var okx: OKXAdapter.Endpoints = .production
    /// Events per batch, and the longest a partial batch waits.
    public var batchSize = 1000
    public var batchTimeout: Duration = .seconds(1)
    /// Batches queued for the writer before exchange sockets are paused (back-pressure).
    public var writerQueueBatches = 16
    public var connectTimeout: Duration = .seconds(10)
    public var reconnectBackoff = Backoff(initial: .milliseconds(500), maximum: .seconds(30))
    /// Send the adapter's ping after this much silence (nil: the adapter's own rule, OKX 20 s).
    public var pingAfter: Duration?
    /// Recycle a connection silent for this long (`message_timeout`).
    public var staleAfter: Duration = .seconds(30)
    /// How often keepalive is checked.
    public var keepaliveCheckInterval: Duration = .seconds(1)
    /// Malformed frames in a row that trip the circuit breaker.
    public var parseErrorLimit = 10
    /// At shutdown, how long REST backfills already running may take to land.
    public var backfillShutdownWait: Duration = .seconds(5)
    /// A refused subscription (or a connection failing for good) is tried again at most this often.
    public var refusedRetryInterval: Duration = .seconds(300)
    /// Whole-book snapshot rows of a book stream this often in exchange time (nil: only at every
    /// synchronisation).
    public var bookSnapshotInterval: Duration? = .seconds(600)
    /// Token makers for authenticated channels, by exchange (none needed for public market data).
    public var signers: [ExchangeName: any SubscribeSigner] = [:]
    /// Trust for `wss` exchange endpoints and `https` REST (nil: the system store).
    public var webSocketTLS: TLSContext?
    public var restTLS: TLSContext?

    public init() {}

    /// The per-connection session's settings.
    var session: SessionConfiguration {
        var c = SessionConfiguration()
        c.pingAfter = pingAfter
        c.staleAfter = staleAfter
        c.keepaliveCheckInterval = keepaliveCheckInterval
        c.parseErrorLimit = parseErrorLimit
        c.reconnectBackoff = reconnectBackoff
        c.refusedRetryInterval = refusedRetryInterval
        c.bookSnapshotInterval = bookSnapshotInterval
        return c
    }
}

/// The collector's data plane: exchange connections → parse → batches → spool → sinks, with backfill.
///
/// A Sendable facade over a loop-confined core. Batches are formed on the event loop and handed to
/// one writer task through a bounded queue; the writer appends them to the spool (the
/// acknowledgement), from which the dispatcher feeds every sink. When the spool is full the writer
/// waits, the queue fills, and sockets stop being read.
public final class CollectorEngine: Sendable {
    public let status: StatusRegistry
    public let deadLetters: DeadLetters
    public let storage: SinkDispatcher
    private let core: LoopBound<EngineCore>
    private let batches: AsyncQueue<[MarketEvent]>
    private let writer: Locked<Task<Void, Never>?>
    private let acknowledged = Atomic<Int>(0)
    private let readsPaused: PauseFlag

    private init(
        core: LoopBound<EngineCore>, status: StatusRegistry, deadLetters: DeadLetters, storage: SinkDispatcher,
        batches: AsyncQueue<[MarketEvent]>, paused: PauseFlag
    ) {
        self.core = core
        self.status = status
        self.deadLetters = deadLetters
        self.storage = storage
        self.batches = batches
        self.writer = Locked(nil)
        self.readsPaused = paused
    }

    /// Whether exchange sockets are paused because the writer is behind (the spool is full).
    public var isReadingPaused: Bool { readsPaused.value.load(ordering: .relaxed) }

    /// REST backfills running now.
    public var runningBackfills: Int { readsPaused.backfills.load(ordering: .relaxed) }

    /// Starts the engine on `loop`, storing through `storage` (started here).
    public static func start(
        configuration: CollectorConfiguration, loop: EventLoop, storage: SinkDispatcher, deadLetters: DeadLetters,
        metrics: CollectorMetrics? = nil, logger: Logger = .disabled
    ) async -> CollectorEngine {
        let status = StatusRegistry()
        let batches = AsyncQueue<[MarketEvent]>(
            capacity: configuration.writerQueueBatches, lowWater: max(0, configuration.writerQueueBatches / 4))
        let paused = PauseFlag()
        let core: LoopBound<EngineCore> = await withCheckedContinuation { continuation in
            loop.execute {
                let core = EngineCore(
                    configuration: configuration, loop: loop, status: status, deadLetters: deadLetters,
                    batches: batches, paused: paused,
                    metrics: metrics, logger: logger)
                continuation.resume(returning: LoopBound(core, loop: loop))
            }
        }
        batches.setOnDemand { loop.execute { core.value.resumeReading() } }
        let engine = CollectorEngine(
            core: core, status: status, deadLetters: deadLetters, storage: storage, batches: batches, paused: paused)
        storage.observeRecordedGaps { records in loop.execute { core.value.showRecordedGaps(records) } }
        storage.start()
        let task = Task { [storage, batches] in
            for await batch in batches {
                // A full spool holds the batch here; the queue above it fills and sockets pause.
                let started = ContinuousClock.now
                await storage.append(batch)
                metrics?.batchWriteSeconds.observe((ContinuousClock.now - started).secondsDouble)
                engine.acknowledged.add(batch.count, ordering: .relaxed)
            }
        }
        engine.writer.withLock { $0 = task }
        return engine
    }

    /// Events made durable in the spool: every acknowledged event.
    public var acknowledgedEvents: Int { acknowledged.load(ordering: .relaxed) }

    /// Starts collecting `streams`; returns the ones refused with the reason. `resumeFrom`: where a
    /// stream's stored data ends as the cluster knows it (a worker's assignment), used instead of
    /// this process's own watermark, so the first push reveals — and backfills — the hole since then.
    @discardableResult
    /// `windows`: the events each stream keeps from its first push (a move's new owner stores only
    /// from its cutover), set in the same loop turn as the subscription, before any event arrives.
    public func subscribe(
        _ streams: [StreamID], resumeFrom: [StreamID: Watermark] = [:], windows: [StreamID: EventWindow] = [:]
    ) async -> [StreamID: String] {
        // Learn where each stream's stored data ends first, so the first push after subscribing reveals
        // any hole since the last run (no watermark: continuity starts from the first push).
        let marks = await storage.watermarks().merging(resumeFrom) { _, given in given }
        // The ledger of earlier runs, so the status shows every known gap, not only this run's.
        let ledger = await storage.gapLedger(of: streams, perStream: StreamStatus.maxGaps)
        for (stream, gaps) in ledger { status.update(stream) { $0.addGaps(gaps) } }
        var seeds: [StreamID: Int64] = [:]
        var tradeSeeds: [StreamID: (id: Int64, time: Int64)] = [:]
        for stream in streams {
            guard let mark = marks[stream] else { continue }
            switch stream.feed {
            case .candles: seeds[stream] = mark.time
            case .trades: if let id = mark.id.flatMap({ Int64($0) }) { tradeSeeds[stream] = (id, mark.time) }
            case .book, .ticker: break
            }
        }
        let core = self.core
        let known = seeds
        let knownTrades = tradeSeeds
        return await withCheckedContinuation { continuation in
            core.loop.execute {
                let refused = core.value.subscribe(streams, windows: windows)
                for (stream, last) in known { core.value.seedLastConfirmed(stream, last) }
                for (stream, last) in knownTrades { core.value.seedLastTrade(stream, id: last.id, time: last.time) }
                continuation.resume(returning: refused)
            }
        }
    }

    /// Drops `stream`'s events outside `window` (nil: keep all): the cluster's make-before-break
    /// cutover. Applies to a stream this engine collects; set it right after `subscribe`.
    public func setWindow(_ window: EventWindow?, for stream: StreamID) async {
        let core = self.core
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            core.loop.execute {
                core.value.setWindow(window, for: stream)
                continuation.resume()
            }
        }
    }

    /// Stops collecting `streams`.
    public func unsubscribe(_ streams: [StreamID]) async {
        let core = self.core
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            core.loop.execute {
                core.value.unsubscribe(streams)
                continuation.resume()
            }
        }
    }

    /// Stops every connection and waits until the writer has put every batch (and the partial one)
    /// in the spool. The sinks go on draining it; `storage.finish(timeout:)` ends them.
    public func shutdown() async {
        let core = self.core
        // Stop reading first, then let REST fetches already running land in the batch: their bars
        // fill holes the stored live bars already lie beyond, so a lost reply would be a hole no
        // later start could see. Bounded: a fetch still running after `backfillShutdownWait` is
        // abandoned and logged.
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            core.loop.execute {
                core.value.stopAll()
                core.value.whenBackfillsFinish(within: core.value.configuration.backfillShutdownWait) {
                    continuation.resume()
                }
            }
        }
        let held: [MarketEvent] = await withCheckedContinuation { continuation in
            core.loop.execute { continuation.resume(returning: core.value.takeHeldBatch()) }
        }
        batches.finish()
        let task = writer.withLock { $0 }
        await task?.value
        if !held.isEmpty {
            await storage.append(held)
            acknowledged.add(held.count, ordering: .relaxed)
        }
        await deadLetters.flush()
    }
}

/// Whether exchange reads are paused, and how many REST backfills run, readable from any thread.
final class PauseFlag: Sendable {
    let value = Atomic<Bool>(false)
    let backfills = Atomic<Int>(0)
}

/// The engine's loop-confined state: it routes streams to connections (each one a session machine
/// and its driver), routes events into batches, owns batching and back-pressure, and runs the REST
/// fetches sessions ask for. Every per-connection rule lives in `ExchangeSession`.
final class EngineCore {
    let configuration: CollectorConfiguration
    let loop: EventLoop
    let status: StatusRegistry
    let deadLetters: DeadLetters
    private let batches: AsyncQueue<[MarketEvent]>
    private let okx: OKXAdapter
    /// REST fetchers by exchange (an exchange without one has its holes recorded as gaps).
    private let backfillers: [ExchangeName: RESTBackfiller]
    private(set) var streams: Set<StreamID> = []
    private var connections: [any EngineConnection] = []
    private var connectionBudgets: [ExchangeName: TokenBucket] = [:]
    private var batch: [MarketEvent] = []
    private var batchTimer: TimerHandle?
    /// True while the writer queue is full: sockets are not read (new connections start paused).
    private(set) var isReadingPaused = false {
        didSet { pausedFlag.value.store(isReadingPaused, ordering: .relaxed) }
    }
    private let pausedFlag: PauseFlag
    private var seed: UInt64
    /// REST backfills running, by stream and range (for the shutdown wait and its log).
    /// Backfills accepted and not yet answered (running or waiting), by id.
    private var backfillsInFlight: [Int: InFlightBackfill] = [:]
    private var waitingBackfills: [Int] = []
    private var runningFetches = 0
    private var nextBackfill = 0
    private var backfillWaiters: [() -> Void] = []
    let metrics: CollectorMetrics?
    let logger: Logger

    init(
        configuration: CollectorConfiguration, loop: EventLoop, status: StatusRegistry, deadLetters: DeadLetters,
        batches: AsyncQueue<[MarketEvent]>, paused: PauseFlag, metrics: CollectorMetrics?, logger: Logger
    ) {
        self.pausedFlag = paused
        self.metrics = metrics
        self.logger = logger
        self.configuration = configuration
        self.loop = loop
        self.status = status
        self.deadLetters = deadLetters
        self.batches = batches
        self.okx = OKXAdapter(endpoints: configuration.okx)
        var backfillers: [ExchangeName: RESTBackfiller] = [:]
        if let base = RESTBaseURL(configuration.okx.restURL, tls: configuration.restTLS) {
            backfillers[.okx] = RESTBackfiller(
                adapter: okx, base: base, budgets: RESTBudgets(okx.restBudgets), loop: loop)
        }
        self.backfillers = backfillers
        seed = SecureRandom.uint64()
        batch.reserveCapacity(configuration.batchSize)
    }

    private func adapter(for exchange: ExchangeName) -> (any ExchangeAdapter)? {
        exchange == .okx ? okx : nil
    }

    // MARK: Subscriptions

    func subscribe(_ list: [StreamID], windows: [StreamID: EventWindow] = [:]) -> [StreamID: String] {
        var refused: [StreamID: String] = [:]
        var byURL: [String: [StreamID]] = [:]
        for stream in list where !streams.contains(stream) {
            guard let adapter = adapter(for: stream.exchange) else {
                refused[stream] = "\(stream.exchange) collection is not implemented yet"
                continue
            }
            if let problem = adapter.validate(stream) {
                refused[stream] = problem
                continue
            }
            streams.insert(stream)
            status.update(stream) { $0.state = .pending }
            byURL[adapter.webSocketURL(for: stream), default: []].append(stream)
        }
        for (url, group) in byURL.sorted(by: { $0.key < $1.key }) {
            var rest = group.sorted()
            while !rest.isEmpty {
                let connection = connectionWithRoom(url: url, exchange: rest[0].exchange)
                let take = Array(rest.prefix(connection.capacityLeft))
                rest.removeFirst(take.count)
                connection.add(take, windows: windows.filter { take.contains($0.key) })
            }
        }
        return refused
    }

    private func connectionWithRoom(url: String, exchange: ExchangeName) -> any EngineConnection {
        if let existing = connections.first(where: { $0.url == url && $0.capacityLeft > 0 }) { return existing }
        seed &+= 0x9E37_79B9_7F4A_7C15
        // Force-unwrap: `subscribe` only groups streams whose adapter exists.
        let connection = makeConnection(adapter: adapter(for: exchange)!, url: url)
        connections.append(connection)
        return connection
    }

    /// A driver specialised for the adapter's concrete type (opened from the existential).
    private func makeConnection(adapter: some ExchangeAdapter, url: String) -> any EngineConnection {
        ConnectionDriver(core: self, adapter: adapter, url: url, configuration: configuration.session, seed: seed)
    }

    private func connection(carrying stream: StreamID) -> (any EngineConnection)? {
        connections.first { $0.carries(stream) }
    }

    func unsubscribe(_ list: [StreamID]) {
        let present = list.filter { streams.contains($0) }
        for connection in connections { connection.remove(present) }
        connections.removeAll { $0.isEmpty }
        for stream in present {
            streams.remove(stream)
            status.remove(stream)
        }
    }

    /// Seeds continuity from storage (the newest stored confirmed bar of a stream).
    func seedLastConfirmed(_ stream: StreamID, _ openTime: Int64) {
        connection(carrying: stream)?.seedLastConfirmed(stream, openTime)
    }

    /// Seeds trade continuity from storage (the newest stored fill of a stream).
    func seedLastTrade(_ stream: StreamID, id: Int64, time: Int64) {
        connection(carrying: stream)?.seedLastTrade(stream, id: id, time: time)
    }

    /// Sets a stream's event-time window (the cluster's cutover).
    func setWindow(_ window: EventWindow?, for stream: StreamID) {
        connection(carrying: stream)?.setWindow(window, for: stream)
    }

    func stopAll() {
        for connection in connections { connection.stop() }
        connections.removeAll()
    }

    /// Runs `body` with the exchange's connection-attempt budget (shared by its connections).
    func withConnectionBudget<T>(_ exchange: ExchangeName, _ body: (inout TokenBucket) -> T) -> T {
        var bucket =
            connectionBudgets[exchange] ?? adapter(for: exchange)?.limits.connections
            ?? TokenBucket(requests: 1, per: 1)
        defer { connectionBudgets[exchange] = bucket }
        return body(&bucket)
    }

    func deadLetter(_ exchange: ExchangeName, raw: String, reason: String, at time: Int64) {
        metrics?.deadLettered[CollectorMetrics.index(exchange)].increment()
        deadLetters.record(exchange: exchange, raw: raw, reason: reason, at: time)
    }

    // MARK: Events

    /// An event a session emitted: counted, shown in the stream's status, batched.
    func accept(_ event: MarketEvent) {
        let stream = event.stream
        guard streams.contains(stream) else { return }
        metrics?.received[CollectorMetrics.index(stream)].increment()
        let now = event.timestampCollector
        status.update(stream) {
            $0.messages += 1
            $0.lastEventTime = now
            if case .candle(let candle) = event {
                $0.lastCandleOpenTime = max($0.lastCandleOpenTime ?? .min, candle.openTime)
                if candle.isConfirmed {
                    $0.lastConfirmedOpenTime = max($0.lastConfirmedOpenTime ?? .min, candle.openTime)
                }
            }
        }
        append(event)
    }

    private func append(_ event: MarketEvent) {
        batch.append(event)
        if batch.count >= configuration.batchSize {
            flushBatch()
        } else if batchTimer == nil && !isReadingPaused {
            batchTimer = loop.scheduleTimer(after: configuration.batchTimeout) { [weak self] in
                self?.batchTimer = nil
                self?.flushBatch()
            }
        }
    }

    /// Hands the batch to the writer queue. A full queue refuses it: the batch is held here (it grows
    /// only by what was already read from the sockets), reading pauses, and the batch is handed over
    /// when the writer catches up.
    func flushBatch() {
        if let batchTimer { loop.cancelTimer(batchTimer) }
        batchTimer = nil
        guard !batch.isEmpty else { return }
        guard batches.push(batch) else {
            pauseReading()
            return
        }
        batch = []
        batch.reserveCapacity(configuration.batchSize)
    }

    /// At shutdown: the batch not yet handed over (the caller appends it after the queue's).
    func takeHeldBatch() -> [MarketEvent] {
        if let batchTimer { loop.cancelTimer(batchTimer) }
        batchTimer = nil
        defer { batch = [] }
        return batch
    }

    private func pauseReading() {
        guard !isReadingPaused else { return }
        isReadingPaused = true
        logger.warning("writer queue full: pausing exchange reads")
        for connection in connections { connection.pauseReading() }
    }

    func resumeReading() {
        guard isReadingPaused else { return }
        // The held batch goes first; if the queue refuses it again, stay paused.
        flushBatch()
        guard batch.isEmpty else { return }
        isReadingPaused = false
        logger.notice("writer caught up: resuming exchange reads")
        for connection in connections { connection.resumeReading() }
    }

    // MARK: Backfill (the REST fetches sessions ask for)

    /// A REST backfill running for a session: bars between two open times, or fills between two
    /// trade ids (the hole lying between the exchange times `from` and `to`).
    struct InFlightBackfill {
        enum Kind { case candles, trades(from: Int64, to: Int64) }
        var stream: StreamID
        var after: Int64
        var before: Int64
        var kind: Kind = .candles
        var connection: any EngineConnection
        var backfiller: RESTBackfiller
        var description: String {
            switch kind {
            case .candles:
                "\(stream) (\(UTCCalendar.iso8601(microseconds: after)), \(UTCCalendar.iso8601(microseconds: before)))"
            case .trades: "\(stream) trade ids (\(after), \(before))"
            }
        }

        /// Tells the session the fetch ended.
        func finish(candles: [Candle], trades: [Trade], error: String?) {
            switch kind {
            case .candles:
                connection.backfillFinished(stream, after: after, before: before, candles: candles, error: error)
            case .trades(let from, let to):
                connection.tradeBackfillFinished(
                    stream, after: after, before: before, from: from, to: to, trades: trades, error: error)
            }
        }
    }

    func startTradeBackfill(
        _ stream: StreamID, after: Int64, before: Int64, from: Int64, to: Int64, for connection: any EngineConnection
    ) {
        guard let backfiller = backfillers[stream.exchange],
            backfiller.adapter.tradeBackfillPage(for: stream, newerThanID: after, olderThanID: before) != nil
        else {
            connection.tradeBackfillFinished(
                stream, after: after, before: before, from: from, to: to, trades: [],
                error: "no REST source for trades at \(stream.exchange)")
            return
        }
        enqueue(
            InFlightBackfill(
                stream: stream, after: after, before: before, kind: .trades(from: from, to: to),
                connection: connection, backfiller: backfiller))
    }

    func startBackfill(_ stream: StreamID, after: Int64, before: Int64, for connection: any EngineConnection) {
        guard let backfiller = backfillers[stream.exchange],
            backfiller.adapter.backfillPage(
                for: stream, newerThan: after, olderThan: before, now: WallClock.microseconds()) != nil
        else {
            connection.backfillFinished(
                stream, after: after, before: before, candles: [],
                error: "no REST source for \(stream.feed) at \(stream.exchange)")
            return
        }
        enqueue(
            InFlightBackfill(
                stream: stream, after: after, before: before, connection: connection, backfiller: backfiller))
    }

    /// REST fetches running at once at most (each holds up to `RESTBackfiller.maxTradesPerHole` fills,
    /// ~20 MB): the others wait their turn, so a mass reconnect cannot grow memory without bound.
    static let maxConcurrentBackfills = 4
    /// Fetches waiting for their turn at most; past it a hole is recorded as a gap at once.
    static let maxWaitingBackfills = 10_000

    private func enqueue(_ backfill: InFlightBackfill) {
        guard waitingBackfills.count < Self.maxWaitingBackfills else {
            backfill.finish(candles: [], trades: [], error: "too many REST backfills waiting")
            return
        }
        nextBackfill += 1
        backfillsInFlight[nextBackfill] = backfill
        waitingBackfills.append(nextBackfill)
        pausedFlag.backfills.add(1, ordering: .relaxed)
        startWaitingBackfills()
    }

    private func startWaitingBackfills() {
        while runningFetches < Self.maxConcurrentBackfills, !waitingBackfills.isEmpty {
            let id = waitingBackfills.removeFirst()
            guard let backfill = backfillsInFlight[id] else { continue }  // abandoned at shutdown
            runningFetches += 1
            let core = LoopBound(self, loop: loop)
            let loop = self.loop
            // Only Sendable values cross into the task; the connection stays on the loop.
            let (backfiller, stream, after, before) = (
                backfill.backfiller, backfill.stream, backfill.after, backfill.before
            )
            let isTrades = if case .trades = backfill.kind { true } else { false }
            Task {
                if isTrades {
                    let outcome = await backfiller.fetchTrades(stream, after: after, before: before)
                    loop.execute {
                        core.value.fetchEnded(id, candles: [], trades: outcome.trades, error: outcome.error)
                    }
                } else {
                    let outcome = await backfiller.fetch(stream, after: after, before: before)
                    loop.execute {
                        core.value.fetchEnded(id, candles: outcome.candles, trades: [], error: outcome.error)
                    }
                }
            }
        }
    }

    private func fetchEnded(_ id: Int, candles: [Candle], trades: [Trade], error: String?) {
        runningFetches -= 1
        backfillEnded(id, candles: candles, trades: trades, error: error)
        startWaitingBackfills()
    }

    /// A fetch ended: its session gets the reply, unless shutdown abandoned it (then its gaps were
    /// already recorded and the late reply is dropped: nothing would take its batch).
    private func backfillEnded(_ id: Int, candles: [Candle], trades: [Trade], error: String?) {
        guard let backfill = backfillsInFlight.removeValue(forKey: id) else { return }
        pausedFlag.backfills.subtract(1, ordering: .relaxed)
        backfill.finish(candles: candles, trades: trades, error: error)
        guard backfillsInFlight.isEmpty else { return }
        let waiters = backfillWaiters
        backfillWaiters = []
        for waiter in waiters { waiter() }
    }

    /// Calls `done` once no backfill is running, or after `limit`: then the ones still running are
    /// abandoned, their holes recorded as gaps (status, metrics, log) so they are not lost silently.
    func whenBackfillsFinish(within limit: Duration, _ done: @escaping () -> Void) {
        guard !backfillsInFlight.isEmpty else {
            done()
            return
        }
        var called = false
        let once = {
            guard !called else { return }
            called = true
            done()
        }
        backfillWaiters.append(once)
        _ = loop.scheduleTimer(after: limit) { [weak self] in
            guard let self, !called else { return }
            let abandoned = backfillsInFlight.values.sorted { $0.description < $1.description }
            logger.error(
                "shutdown: REST backfills still running were abandoned; their bars are recorded as gaps",
                ["backfills": abandoned.map(\.description).joined(separator: "; ")])
            backfillsInFlight = [:]
            waitingBackfills = []
            pausedFlag.backfills.store(0, ordering: .relaxed)
            for backfill in abandoned {
                backfill.finish(candles: [], trades: [], error: "shutdown before the REST backfill finished")
            }
            once()
        }
    }

    /// Gap-ledger entries: shown in the stream's status, counted in metrics, and written to the
    /// sinks with the data (so the ledger survives a restart).
    func recordGaps(_ stream: StreamID, _ gaps: [Gap]) {
        guard streams.contains(stream) else { return }
        show(stream, gaps)
        let now = WallClock.microseconds()
        for gap in gaps { append(.gap(GapRecord(stream: stream, gap: gap, recordedAt: now))) }
    }

    /// Ledger entries the storage recorded itself (events a sink refused, already written to that
    /// sink): shown and counted like the session's.
    func showRecordedGaps(_ records: [GapRecord]) {
        for record in records where streams.contains(record.stream) { show(record.stream, [record.gap]) }
    }

    /// A stream's gaps into its status and the metrics.
    private func show(_ stream: StreamID, _ gaps: [Gap]) {
        var fresh: [Gap] = []
        status.update(stream) { fresh = $0.addGaps(gaps) }
        if let metrics {
            let missing = gaps.filter { !$0.recovered }.reduce(0) { $0 + $1.missing }
            metrics.gapBars[CollectorMetrics.index(stream)].increment(by: Int64(missing))
            for gap in fresh { metrics.gaps[CollectorMetrics.index(stream, gap.cause)].increment() }
        }
    }

    /// How many REST books each stream asked for lately, and when last: each ask within a minute of
    /// the one before waits longer (100 ms more each time, at most 5 s), so a book that keeps failing
    /// after every seed (a stale REST cache, a checksum that never matches) is paced, not hammered.
    private var bookSnapshotAttempts: [StreamID: (count: Int, at: ContinuousClock.Instant)] = [:]
    private let snapshotClock = ContinuousClock()

    func fetchBookSnapshot(_ stream: StreamID, for connection: any EngineConnection) {
        guard let backfiller = backfillers[stream.exchange], streams.contains(stream) else {
            connection.bookSnapshotFetched(stream, snapshot: nil, error: "no REST source for \(stream.exchange)")
            return
        }
        let now = snapshotClock.now
        let recent = bookSnapshotAttempts[stream].map { now - $0.at < .seconds(60) } ?? false
        let attempt = recent ? (bookSnapshotAttempts[stream]?.count ?? 0) + 1 : 1
        // Bounded: forgetting only un-paces the next ask.
        if bookSnapshotAttempts.count >= 100_000 { bookSnapshotAttempts.removeAll() }
        bookSnapshotAttempts[stream] = (attempt, now)
        let pause = Duration.milliseconds(min(5_000, 100 * (attempt - 1)))
        let target = LoopBound(connection, loop: loop)
        let loop = self.loop
        Task {
            if pause > .zero { try? await Task.sleep(for: pause) }  // pacing a retry; cancellation: shutdown
            let (snapshot, error) = await backfiller.fetchBookSnapshot(stream)
            loop.execute { target.value.bookSnapshotFetched(stream, snapshot: snapshot, error: error) }
        }
    }
}
