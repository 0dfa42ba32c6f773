import CollectorCore
import Dispatch
import Locking
public import MarketData
public import Observability
import Runtime
public import Synchronization

/// The durability point and the fan-out to every sink (DESIGN.md §4).
///
/// `append` writes a batch to the spool (fsynced) and returns: that is the acknowledgement. One
/// delivery task per sink then reads batches in order from its own cursor (from memory while they
/// are fresh, from disk otherwise) and writes them to its sink:
///
/// | outcome of `sink.write` | what happens |
/// |---|---|
/// | success | the sink's cursor moves past the batch; a batch every sink has stored is deleted |
/// | `transient` error | the sink is marked down (`/ready` false), the batch is retried with capped, jittered backoff (0.2 s → 10 s); the other sinks go on |
/// | `permanent` error | the batch is split in halves until the refused events are alone; each of those goes to the dead letters with the sink's reason; the rest is stored; the batches behind it are not held up |
///
/// A sink that is down holds only its own cursor back; the spool's bound (`maxBytes`) is the limit
/// of how far the sinks may drift apart before `append` waits for space (back-pressure up to the
/// exchange sockets). Spool file I/O runs on one private serial queue.
public final class SinkDispatcher: Sendable {
    public let spool: Spool
    public let sinks: [any Sink]
    private let deadLetters: DeadLetters
    private let logger: Logger
    private let io = DispatchQueue(label: "collector.spool-io")
    private let state = Locked(State())
    private let tasks = Locked<[Task<Void, Never>]>([])
    /// Told of the ledger entries the dispatcher records itself (events a sink refused), so they
    /// show in the status and metrics as the session's gaps do.
    private let gapObserver = Locked<(@Sendable ([GapRecord]) -> Void)?>(nil)
    private let watermarkFile: WatermarkFile?
    /// A write in flight longer than this marks its sink down (before its own timeout fires).
    public let stallAfter: Duration
    /// The most events one `sink.write` carries when a backlog lets several spool batches be joined
    /// (a single batch larger than this is written alone, whole).
    public let maxEventsPerWrite: Int
    public let counters = Counters()

    enum Limits {
        /// Events kept in memory after `append`, so healthy sinks read fresh batches without touching
        /// the disk (about 200 bytes each: ~50 MB). Older batches are read back from the spool files.
        static let maxCachedEvents = 250_000
        /// Spool batches joined into one write at most (with `maxEventsPerWrite`, the bound of a
        /// coalesced write).
        static let maxBatchesPerWrite = 64
    }

    /// Totals for metrics and tests.
    public final class Counters: Sendable {
        public let appendedBatches = Atomic<Int>(0)
        public let appendedEvents = Atomic<Int>(0)
        public let spoolWriteErrors = Atomic<Int>(0)
        public let unreadableBatches = Atomic<Int>(0)
    }

    /// What one sink is doing, for `/ready`, the status API and metrics.
    public struct SinkState: Sendable, Equatable {
        public var name: String
        public var isHealthy = true
        public var lastError: String?
        public var storedEvents = 0
        public var storedBatches = 0
        public var transientErrors = 0
        public var permanentErrors = 0
        public var deadLettered = 0
        /// Start of the write in flight (monotonic ns), if any.
        var writeStartedAt: UInt64?
    }

    private struct State {
        var cache: [UInt64: [MarketEvent]] = [:]
        var cachedEvents = 0
        var sinks: [String: SinkState] = [:]
        /// Delivery tasks waiting for a new batch.
        var idle: [String: CheckedContinuation<Void, Never>] = [:]
        /// Appenders waiting for spool space.
        var spaceWaiters: [CheckedContinuation<Void, Never>] = []
        var drainWaiters: [Int: CheckedContinuation<Bool, Never>] = [:]
        /// Drain waits whose timeout fired before they were registered.
        var expiredWaits: Set<Int> = []
        var nextWaiter = 0
        var isSpoolFull = false
        /// Bumped whenever a sink stores a batch (space may have been freed).
        var progress: UInt64 = 0
        var spoolError: String?
        var isFinishing = false
        /// Watermarks of events every sink has stored.
        var watermarks: [StreamID: Watermark] = [:]
        var watermarksDirty = false
    }

    /// Opens the spool's sinks; `watermarkPath` (optional) is where the stored-everywhere watermarks
    /// are kept across restarts.
    public init(
        spool: Spool, sinks: [any Sink], deadLetters: DeadLetters, watermarkPath: String? = nil,
        stallAfter: Duration = .seconds(5), maxEventsPerWrite: Int = 10_000, logger: Logger = .disabled
    ) throws {
        precondition(Set(sinks.map(\.name)) == Set(spool.sinkNames), "the spool's cursors must match the sinks")
        self.spool = spool
        self.sinks = sinks
        self.deadLetters = deadLetters
        self.logger = logger
        self.stallAfter = stallAfter
        self.maxEventsPerWrite = maxEventsPerWrite
        self.watermarkFile = watermarkPath.map(WatermarkFile.init)
        let marks = try watermarkFile?.load() ?? [:]
        state.withLock { s in
            s.watermarks = marks
            for sink in sinks { s.sinks[sink.name] = SinkState(name: sink.name) }
        }
    }

    /// Starts one delivery task per sink (and the watermark writer). Call once.
    public func start() {
        var started: [Task<Void, Never>] = []
        for sink in sinks {
            started.append(Task { await self.deliver(to: sink) })
        }
        if watermarkFile != nil {
            started.append(Task { await self.persistWatermarksPeriodically() })
        }
        tasks.withLock { $0 = started }
    }

    // MARK: Appending (the acknowledgement)

    /// Makes `events` durable in the spool, waiting while the spool is full. A disk error is logged,
    /// counted and shown on `/ready`, and the append is retried with backoff: an acknowledged batch is
    /// one that is on disk, so nothing is acknowledged until it is.
    public func append(_ events: [MarketEvent]) async {
        guard !events.isEmpty else { return }
        var backoff = Backoff(initial: .milliseconds(100), maximum: .seconds(5))
        var rng = SeededRNG(seed: DispatchTime.now().uptimeNanoseconds)
        while true {
            let progress = state.withLock { $0.progress }
            let outcome: Result<UInt64, any Error> = await onIO { [spool] in Result { try spool.append(events) } }
            switch outcome {
            case .success(let sequence):
                let wake = state.withLock { s -> [CheckedContinuation<Void, Never>] in
                    s.isSpoolFull = false
                    s.spoolError = nil
                    // A sink may already have stored it (read from disk before this insert): then it is not cached.
                    let pending = spool.sinkNames.contains { spool.next(for: $0).map { $0 <= sequence } ?? false }
                    if pending && s.cachedEvents + events.count <= Limits.maxCachedEvents {
                        s.cache[sequence] = events
                        s.cachedEvents += events.count
                    }
                    defer { s.idle.removeAll() }
                    return Array(s.idle.values)
                }
                counters.appendedBatches.add(1, ordering: .relaxed)
                counters.appendedEvents.add(events.count, ordering: .relaxed)
                for continuation in wake { continuation.resume() }
                return
            case .failure(let error) where error is Spool.FullError:
                await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
                    let full = state.withLock { s -> Bool in
                        // A sink may have freed space between the refusal and now: then look again at once.
                        guard s.progress == progress else { return false }
                        if !s.isSpoolFull {
                            logger.warning("spool full: holding batches", ["spool.bytes": "\(spool.byteCount)"])
                        }
                        s.isSpoolFull = true
                        s.spaceWaiters.append(continuation)
                        return true
                    }
                    if !full { continuation.resume() }
                }
            case .failure(let error):
                counters.spoolWriteErrors.add(1, ordering: .relaxed)
                let delay = backoff.nextDelay(using: &rng)
                state.withLock { $0.spoolError = "\(error)" }
                logger.error("cannot write the spool", ["error": "\(error)", "retry.delay": "\(delay)"])
                // try?: the sleep ends early only when the task is cancelled (shutdown); the loop then retries once more.
                try? await Task.sleep(for: delay)
            }
        }
    }

    // MARK: Delivery

    private func deliver(to sink: any Sink) async {
        let name = sink.name
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(10))
        var rng = SeededRNG(seed: DispatchTime.now().uptimeNanoseconds ^ UInt64(truncatingIfNeeded: name.hashValue))
        // The next group, read and decoded while the sink writes this one (at most one group ahead).
        var prefetch: Task<[(sequence: UInt64, events: [MarketEvent])], Never>?
        while !Task.isCancelled {
            var loaded: [(sequence: UInt64, events: [MarketEvent])] = []
            if let ahead = prefetch {
                prefetch = nil
                loaded = await ahead.value
                // Still the next batches? (One may have been moved aside meanwhile.)
                if loaded.first?.sequence != spool.pending(for: name, limit: 1).first { loaded = [] }
            }
            if loaded.isEmpty {
                let sequences = spool.pending(for: name, limit: Limits.maxBatchesPerWrite)
                guard let first = sequences.first else {
                    let finished = await waitForWork(name)
                    if finished { return }
                    continue
                }
                guard let firstEvents = await load(first, for: name, backoff: &backoff, rng: &rng) else { continue }
                // A backlog (the sink was down or slower than the exchanges) is written several batches
                // per write, up to `maxEventsPerWrite`: one transaction's fixed cost is shared, so a
                // sink catches up faster than the collector fills the spool.
                loaded = [(first, firstEvents)]
                loaded += await gather(sequences.dropFirst(), total: firstEvents.count)
            }
            // Force-unwrap: `loaded` is not empty here.
            let last = loaded.last!.sequence
            let ahead = spool.pending(for: name, after: last, limit: Limits.maxBatchesPerWrite)
            if !ahead.isEmpty { prefetch = Task { await self.gather(ahead[...], total: 0) } }
            let events = loaded.count == 1 ? loaded[0].events : loaded.flatMap(\.events)
            guard await store(events, in: sink, backoff: &backoff, rng: &rng) else { return }  // cancelled
            let advanced: Result<Void, any Error> = await onIO { [spool] in
                Result { try spool.advance(name, to: last) }
            }
            if case .failure(let error) = advanced {
                // The batch is stored but its cursor is not durable: it will be written again after a
                // restart (idempotent). Keep going; report it.
                counters.spoolWriteErrors.add(1, ordering: .relaxed)
                logger.error("cannot record the sink's spool cursor", ["sink": name, "error": "\(error)"])
            }
            for batch in loaded { batchStored(batch.sequence, events: batch.events, by: name) }
        }
    }

    /// The events of batch `sequence` for `name`'s delivery: from memory, else from the spool file. An
    /// unreadable file is moved aside (nil: go on with the next batch); one that cannot be read now is
    /// reported and retried after backoff (nil).
    private func load(
        _ sequence: UInt64, for name: String, backoff: inout Backoff, rng: inout SeededRNG
    ) async -> [MarketEvent]? {
        if let cached = state.withLock({ $0.cache[sequence] }) { return cached }
        let read: Result<[MarketEvent], any Error> = await onIO { [spool] in Result { try spool.read(sequence) } }
        switch read {
        case .success(let events):
            return events
        case .failure(let error) where error is Spool.UnreadableBatch:
            counters.unreadableBatches.add(1, ordering: .relaxed)
            logger.error("spool batch unreadable: moved aside", ["spool.batch": "\(sequence)", "error": "\(error)"])
            let moved: Result<Void, any Error> = await onIO { [spool] in Result { try spool.quarantine(sequence) } }
            if case .failure(let moveError) = moved {
                markDown(name, "spool batch \(sequence) unreadable and cannot be moved aside: \(moveError)")
                // try?: cancellation (shutdown) ends the wait early; the loop condition then stops.
                try? await Task.sleep(for: backoff.nextDelay(using: &rng))
            } else {
                batchStored(sequence, events: [], by: name)  // frees space, wakes waiters
            }
            return nil
        case .failure(let error):
            // The file is there but could not be read now (EMFILE, EIO…): keep it, retry.
            markDown(name, "cannot read spool batch \(sequence): \(error)", transient: true)
            // try?: cancellation (shutdown) ends the wait early; the loop condition then stops.
            try? await Task.sleep(for: backoff.nextDelay(using: &rng))
            return nil
        }
    }

    /// The batches of `sequences` that join one write after `total` events already in it: in order,
    /// each readable, until `maxEventsPerWrite` would be passed.
    private func gather(
        _ sequences: ArraySlice<UInt64>, total: Int
    ) async -> [(sequence: UInt64, events: [MarketEvent])] {
        var out: [(sequence: UInt64, events: [MarketEvent])] = []
        var total = total
        for sequence in sequences {
            guard let events = await loadIfReadable(sequence) else { break }
            // The first batch of a group always goes, however large.
            guard total == 0 || total + events.count <= maxEventsPerWrite else { break }
            out.append((sequence, events))
            total += events.count
        }
        return out
    }

    /// A batch joining a coalesced write: from memory or its file. Any failure only ends the
    /// coalescing (nil); the batch then comes first in the next round, where `load` reports and
    /// handles it.
    private func loadIfReadable(_ sequence: UInt64) async -> [MarketEvent]? {
        if let cached = state.withLock({ $0.cache[sequence] }) { return cached }
        let read: Result<[MarketEvent], any Error> = await onIO { [spool] in Result { try spool.read(sequence) } }
        guard case .success(let events) = read else { return nil }
        return events
    }

    /// Writes one batch to one sink until it is stored (transient errors retried, permanent ones
    /// bisected and dead-lettered). Returns false when cancelled before it finished.
    private func store(
        _ events: [MarketEvent], in sink: any Sink, backoff: inout Backoff, rng: inout SeededRNG
    ) async -> Bool {
        let name = sink.name
        var work: [ArraySlice<MarketEvent>] = [events[...]]
        // Events this sink refused, as gap-ledger entries (cause `sink`) it is given afterwards.
        var refusedGaps: [MarketEvent] = []
        // Consecutive transient failures of this write: logged when the outage starts, at 10, 100,
        // 1,000… failures and when the sink recovers, not once per retry.
        var failures = 0
        while let piece = work.popLast() {
            if Task.isCancelled { return false }
            state.withLock { $0.sinks[name]?.writeStartedAt = DispatchTime.now().uptimeNanoseconds }
            do throws(SinkError) {
                try await sink.write(Array(piece))
                backoff.reset()
                state.withLock { s in
                    s.sinks[name]?.writeStartedAt = nil
                    s.sinks[name]?.storedEvents += piece.count
                    if s.sinks[name]?.isHealthy == false {
                        logger.notice("sink recovered", ["sink": name, "failures": "\(failures)"])
                    }
                    s.sinks[name]?.isHealthy = true
                    s.sinks[name]?.lastError = nil
                }
            } catch {
                state.withLock { $0.sinks[name]?.writeStartedAt = nil }
                switch error.kind {
                case .permanent:
                    state.withLock { $0.sinks[name]?.permanentErrors += 1 }
                    if piece.count == 1, let event = piece.first {
                        deadLetter(event, sink: name, reason: error.message)
                        if case .gap = event {
                        } else {
                            let gap = Gap(
                                from: event.timestampExchange, to: event.timestampExchange, missing: 1, cause: .sink,
                                reason: "refused by \(name): \(error.message)")
                            refusedGaps.append(
                                .gap(GapRecord(stream: event.stream, gap: gap, recordedAt: event.timestampCollector)))
                        }
                    } else {
                        // Halves, first half on top: order is kept and the refused events end up alone.
                        let middle = piece.startIndex + piece.count / 2
                        work.append(piece[middle...])
                        work.append(piece[..<middle])
                    }
                case .transient:
                    let delay = backoff.nextDelay(using: &rng)
                    let wasHealthy = state.withLock { $0.sinks[name]?.isHealthy ?? true }
                    markDown(name, error.message, transient: true)
                    failures += 1
                    let fields = [
                        "sink": name, "error": error.message, "retry.delay": "\(delay)", "failures": "\(failures)",
                    ]
                    if wasHealthy {
                        logger.warning("sink down: retrying (events wait in the spool)", fields)
                    } else if failures >= 10,
                        String(failures).first == "1" && String(failures).dropFirst().allSatisfy({ $0 == "0" })
                    {
                        logger.warning("sink still down", fields)
                    } else {
                        logger.debug("sink write failed: retrying", fields)
                    }
                    work.append(piece)
                    // try?: cancellation (shutdown past its deadline) ends the wait; the check above stops.
                    try? await Task.sleep(for: delay)
                }
            }
        }
        if !refusedGaps.isEmpty { await recordRefusals(refusedGaps, in: sink) }
        return true
    }

    /// Sets the observer of the ledger entries the dispatcher records (the engine shows them).
    public func observeRecordedGaps(_ observer: @escaping @Sendable ([GapRecord]) -> Void) {
        gapObserver.withLock { $0 = observer }
    }

    /// Writes the ledger entries of events `sink` refused (bounded: one per stream and exchange time
    /// of a batch, counting the events refused there); when the sink refuses those too, the dead
    /// letters hold the events and the log says so.
    private func recordRefusals(_ refused: [MarketEvent], in sink: any Sink) async {
        var merged: [GapRecord] = []
        var index: [String: Int] = [:]
        for case .gap(let record) in refused {
            let key = "\(record.stream)|\(record.gap.from)"
            if let i = index[key] {
                merged[i].gap.missing += record.gap.missing
            } else {
                index[key] = merged.count
                merged.append(record)
            }
        }
        let observer = gapObserver.withLock { $0 }
        observer?(merged)
        do throws(SinkError) {
            try await sink.write(merged.map { .gap($0) })
        } catch {
            logger.error(
                "cannot record refused events in the gap ledger (they are in the dead letters)",
                ["sink": sink.name, "entries": "\(merged.count)", "error": error.message])
        }
    }

    private func markDown(_ name: String, _ message: String, transient: Bool = false) {
        state.withLock { s in
            s.sinks[name]?.isHealthy = false
            s.sinks[name]?.lastError = message
            if transient { s.sinks[name]?.transientErrors += 1 }
        }
    }

    private func deadLetter(_ event: MarketEvent, sink: String, reason: String) {
        state.withLock { $0.sinks[sink]?.deadLettered += 1 }
        let raw = String(decoding: SpoolFormat.encode([event]).dropFirst(SpoolFormat.header.utf8.count), as: UTF8.self)
        logger.error(
            "event refused by a sink: dead-lettered", ["sink": sink, "stream": "\(event.stream)", "error": reason])
        deadLetters.record(
            exchange: event.stream.exchange, raw: raw.trimmingNewline, reason: "refused by \(sink): \(reason)",
            at: event.timestampCollector, source: "sink:\(sink)")
    }

    /// After a sink stored a batch: count it, drop it from memory once every sink has it, wake
    /// appenders waiting for space and drain waiters, and move the watermarks.
    private func batchStored(_ sequence: UInt64, events: [MarketEvent], by name: String) {
        let everywhere = spool.sinkNames.allSatisfy { spool.next(for: $0).map { $0 > sequence } ?? true }
        let drained = spool.isEmpty
        let (space, waiters) = state.withLock {
            s -> ([CheckedContinuation<Void, Never>], [CheckedContinuation<Bool, Never>]) in
            s.sinks[name]?.storedBatches += 1
            s.progress &+= 1
            if everywhere {
                if let removed = s.cache.removeValue(forKey: sequence) { s.cachedEvents -= removed.count }
                for event in events {
                    guard let mark = Watermark.of(event) else { continue }
                    if s.watermarks[event.stream].map({ mark.isAfter($0) }) ?? true {
                        s.watermarks[event.stream] = mark
                        s.watermarksDirty = true
                    }
                }
            }
            let space = s.spaceWaiters
            s.spaceWaiters.removeAll()
            var waiters: [CheckedContinuation<Bool, Never>] = []
            if drained {
                waiters = Array(s.drainWaiters.values)
                s.drainWaiters.removeAll()
            }
            return (space, waiters)
        }
        for continuation in space { continuation.resume() }
        for continuation in waiters { continuation.resume(returning: true) }
    }

    /// Waits until a batch is appended (false) or the dispatcher finishes (true).
    private func waitForWork(_ name: String) async -> Bool {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let ready = state.withLock { s -> Bool in
                if s.isFinishing || spool.next(for: name) != nil { return true }
                s.idle[name] = continuation
                return false
            }
            if ready { continuation.resume() }
        }
        return state.withLock { $0.isFinishing } && spool.next(for: name) == nil
    }

    // MARK: Status

    /// Every sink's state.
    public var sinkStates: [SinkState] {
        let now = DispatchTime.now().uptimeNanoseconds
        let stall =
            UInt64(stallAfter.components.seconds) * 1_000_000_000
            + UInt64(stallAfter.components.attoseconds / 1_000_000_000)
        return state.withLock { s in
            spool.sinkNames.compactMap { name in
                guard var sink = s.sinks[name] else { return nil }
                if let started = sink.writeStartedAt, now > started, now - started > stall {
                    sink.isHealthy = false
                    sink.lastError = "a write has not finished for \((now - started) / 1_000_000_000) s"
                }
                return sink
            }
        }
    }

    /// Whether everything acknowledged is flowing to every sink: false while a sink is down or
    /// stalled, the spool is full, or the spool cannot be written. The reason names the cause.
    public var readiness: (isReady: Bool, reason: String?) {
        let (full, spoolError) = state.withLock { ($0.isSpoolFull, $0.spoolError) }
        if let spoolError { return (false, "cannot write the spool: \(spoolError)") }
        if full { return (false, "spool full: exchange reads paused") }
        for sink in sinkStates where !sink.isHealthy {
            return (false, "sink \(sink.name) unavailable, batches kept in the spool: \(sink.lastError ?? "down")")
        }
        return (true, nil)
    }

    /// Where the streams' data stored by every sink ends, as this process recorded it (no sink
    /// queried: cheap enough to read every second).
    public func storedWatermarks() -> [StreamID: Watermark] { state.withLock { $0.watermarks } }

    /// Where each stream's stored data ends, for resuming: the local record of what every sink has
    /// stored where it has the stream; otherwise (a new data directory) the lowest watermark any sink
    /// reports, so resuming overlaps rather than skips (collection is at-least-once).
    public func watermarks() async -> [StreamID: Watermark] {
        let local = state.withLock { $0.watermarks }
        var reported: [StreamID: Watermark] = [:]
        for sink in sinks {
            do {
                for (stream, mark) in try await sink.watermarks() where local[stream] == nil {
                    if let known = reported[stream], mark.isAfter(known) { continue }
                    reported[stream] = mark
                }
            } catch {
                logger.warning("cannot read a sink's watermarks", ["sink": sink.name, "error": error.message])
            }
        }
        return local.merging(reported) { a, _ in a }
    }

    /// The gap ledger the sinks kept for `streams` (the union over sinks, by cause and start).
    public func gapLedger(of streams: [StreamID], perStream: Int) async -> [StreamID: [Gap]] {
        var out: [StreamID: [Gap]] = [:]
        for sink in sinks {
            do {
                for (stream, gaps) in try await sink.gapLedger(of: streams, perStream: perStream) {
                    var known = out[stream] ?? []
                    for gap in gaps where !known.contains(where: { $0.cause == gap.cause && $0.from == gap.from }) {
                        known.append(gap)
                    }
                    out[stream] = known.sorted { $0.from < $1.from }
                }
            } catch {
                logger.warning("cannot read a sink's gap ledger", ["sink": sink.name, "error": error.message])
            }
        }
        return out
    }

    /// The watermark of one stream from what every sink has stored (no I/O).
    public func storedWatermark(_ stream: StreamID) -> Watermark? { state.withLock { $0.watermarks[stream] } }

    // MARK: Shutdown

    /// Waits until every sink has stored every batch, for at most `timeout`; returns whether it drained.
    public func waitUntilDrained(timeout: Duration) async -> Bool {
        if spool.isEmpty { return true }
        let id = state.withLock { s -> Int in
            s.nextWaiter += 1
            return s.nextWaiter
        }
        let timer = Task {
            // try?: cancelled when the spool drains first; then there is nothing to time out.
            try? await Task.sleep(for: timeout)
            let waiter = state.withLock { s -> CheckedContinuation<Bool, Never>? in
                guard let waiter = s.drainWaiters.removeValue(forKey: id) else {
                    s.expiredWaits.insert(id)  // not registered yet: it returns false on registering
                    return nil
                }
                return waiter
            }
            waiter?.resume(returning: false)
        }
        let drained = await withCheckedContinuation { (continuation: CheckedContinuation<Bool, Never>) in
            let done = state.withLock { s -> Bool? in
                if spool.isEmpty { return true }
                if s.expiredWaits.remove(id) != nil { return false }
                s.drainWaiters[id] = continuation
                return nil
            }
            if let done { continuation.resume(returning: done) }
        }
        timer.cancel()
        state.withLock { _ = $0.expiredWaits.remove(id) }
        return drained
    }

    /// Delivers what it can within `timeout`, then stops the delivery tasks, flushes every sink and
    /// saves the watermarks. Whatever is not stored stays in the spool for the next start.
    @discardableResult
    public func finish(timeout: Duration) async -> Bool {
        let drained = await waitUntilDrained(timeout: timeout)
        let (idle, space) = state.withLock {
            s -> ([CheckedContinuation<Void, Never>], [CheckedContinuation<Void, Never>]) in
            s.isFinishing = true
            defer {
                s.idle.removeAll()
                s.spaceWaiters.removeAll()
            }
            return (Array(s.idle.values), s.spaceWaiters)
        }
        for continuation in idle { continuation.resume() }
        for continuation in space { continuation.resume() }
        let running = tasks.withLock { $0 }
        for task in running { task.cancel() }
        for task in running { await task.value }
        for sink in sinks {
            do {
                try await sink.flush()
            } catch {
                logger.error("cannot flush a sink", ["sink": sink.name, "error": error.message])
            }
        }
        await saveWatermarks()
        return drained
    }

    private func persistWatermarksPeriodically() async {
        while !Task.isCancelled {
            // try?: cancellation at shutdown ends the wait; `finish` saves one last time.
            try? await Task.sleep(for: .seconds(1))
            await saveWatermarks()
        }
    }

    private func saveWatermarks() async {
        guard let watermarkFile else { return }
        let marks = state.withLock { s -> [StreamID: Watermark]? in
            guard s.watermarksDirty else { return nil }
            s.watermarksDirty = false
            return s.watermarks
        }
        guard let marks else { return }
        let saved: Result<Void, any Error> = await onIO { Result { try watermarkFile.save(marks) } }
        if case .failure(let error) = saved {
            state.withLock { $0.watermarksDirty = true }
            logger.error("cannot save the watermarks", ["error": "\(error)"])
        }
    }

    private func onIO<T: Sendable>(_ body: @escaping @Sendable () -> T) async -> T {
        await withCheckedContinuation { continuation in
            io.async { continuation.resume(returning: body()) }
        }
    }
}

extension String {
    fileprivate var trimmingNewline: String { hasSuffix("\n") ? String(dropLast()) : self }
}
