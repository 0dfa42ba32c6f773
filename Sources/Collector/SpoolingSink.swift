import CollectorCore
import Dispatch
public import MarketData
import PostgresClient
public import Synchronization

/// Writes candle batches to PostgreSQL; when it is away, to the spool, replaying in order when it
/// returns (DESIGN.md §4). While anything is spooled, new batches are spooled too, so order holds.
/// Spool I/O runs on a dedicated queue, never on the event loop or the cooperative pool.
public final class SpoolingSink: Sendable {
    public let store: CandleStore
    public let spool: Spool
    private let ioQueue = DispatchQueue(label: "collector.spool-io")
    private let state = Mutex(State())
    private let counters = Counters()

    private struct State {
        var isSpooling = false
        var isReplaying = false
        var appendsInFlight = 0
        var lastError: String?
    }

    /// Totals for metrics.
    public final class Counters: Sendable {
        public let storedCandles = Atomic<Int>(0)
        public let spooledBatches = Atomic<Int>(0)
        public let replayedBatches = Atomic<Int>(0)
        public let databaseErrors = Atomic<Int>(0)
        public let batches = Atomic<Int>(0)
    }

    public init(store: CandleStore, spool: Spool) {
        self.store = store
        self.spool = spool
        // Leftovers from a previous run are replayed before anything new is written directly.
        if !spool.isEmpty { state.withLock { $0.isSpooling = true } }
    }

    public var stats: Counters { counters }

    /// Whether batches are going to the spool right now.
    public var isSpooling: Bool { state.withLock { $0.isSpooling } }

    /// The last database error, if the sink is degraded.
    public var lastError: String? { state.withLock { $0.lastError } }

    /// Starts replaying leftovers (call once at start-up).
    public func start() {
        if isSpooling { startReplay() }
    }

    /// Stores one batch: directly, or durably in the spool. Throws `Spool.FullError` when the spool
    /// is full (the caller holds the batch and retries: back-pressure).
    public func write(_ candles: [Candle]) async throws {
        guard !candles.isEmpty else { return }
        counters.batches.add(1, ordering: .relaxed)
        let direct = state.withLock { s -> Bool in
            if s.isSpooling {
                s.appendsInFlight += 1
                return false
            }
            return true
        }
        if direct {
            do {
                let n = try await store.write(candles)
                _ = n
                counters.storedCandles.add(candles.count, ordering: .relaxed)
                return
            } catch {
                counters.databaseErrors.add(1, ordering: .relaxed)
                state.withLock { s in
                    s.isSpooling = true
                    s.appendsInFlight += 1
                    s.lastError = "\(error)"
                }
            }
        }
        defer { state.withLock { $0.appendsInFlight -= 1 } }
        try await appendToSpool(candles)
        counters.spooledBatches.add(1, ordering: .relaxed)
        startReplay()
    }

    private func appendToSpool(_ candles: [Candle]) async throws {
        let spool = self.spool
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            ioQueue.async {
                do {
                    try spool.append(candles)
                    continuation.resume()
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
    }

    private func startReplay() {
        let shouldStart = state.withLock { s -> Bool in
            if s.isReplaying { return false }
            s.isReplaying = true
            return true
        }
        guard shouldStart else { return }
        Task { await replay() }
    }

    /// Drains the spool into PostgreSQL, oldest first, retrying with backoff while it is away.
    private func replay() async {
        var backoff = Backoff(initial: .milliseconds(200), maximum: .seconds(10))
        var rng = SeededRNG(seed: UInt64(truncatingIfNeeded: DispatchTime.now().uptimeNanoseconds))
        let spool = self.spool
        while true {
            let next: (sequence: UInt64, candles: [Candle])?
            do {
                next = try await withCheckedThrowingContinuation { continuation in
                    ioQueue.async { continuation.resume(with: Result { try spool.oldest() }) }
                }
            } catch {
                // An unreadable batch cannot be replayed; keep it on disk for an operator and stop here.
                state.withLock { s in
                    s.isReplaying = false
                    s.lastError = "spool batch unreadable: \(error)"
                }
                return
            }
            guard let next else {
                let done = state.withLock { s -> Bool in
                    guard s.appendsInFlight == 0, spool.isEmpty else { return false }
                    s.isSpooling = false
                    s.isReplaying = false
                    s.lastError = nil
                    return true
                }
                if done { return }
                try? await Task.sleep(for: .milliseconds(10))  // an append is landing; look again
                continue
            }
            do {
                try await store.write(next.candles)
                counters.storedCandles.add(next.candles.count, ordering: .relaxed)
                counters.replayedBatches.add(1, ordering: .relaxed)
                try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
                    ioQueue.async { continuation.resume(with: Result { try spool.remove(next.sequence) }) }
                }
                backoff.reset()
            } catch {
                counters.databaseErrors.add(1, ordering: .relaxed)
                state.withLock { $0.lastError = "\(error)" }
                try? await Task.sleep(for: backoff.nextDelay(using: &rng))  // retry schedule, not a test wait
            }
        }
    }

    /// Waits until the spool is drained (or `timeout` passes); returns whether it drained.
    public func waitUntilDrained(timeout: Duration) async -> Bool {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if !isSpooling { return true }
            try? await Task.sleep(for: .milliseconds(20))  // polling a state owned by the replay task
        }
        return !isSpooling
    }
}
