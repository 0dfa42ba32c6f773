import CollectorCore
import ControlProtocol
import Coordination
import Dispatch
import Exchanges

/// Failover in the deterministic simulation (issue 10): one coordinator core, `--workers` simulated
/// workers spread over `--groups` egress groups (default: each its own), `--shards` shards (candles, trades, tickers, books), `--lease-ms`
/// leases with 1 s heartbeats. One worker dies; for each of its shards, the simulated time from the
/// death until a new owner reports it live. The new owner confirms a trade, candle or ticker
/// subscription 100–300 ms after the assign, a book 0.5–2 s after (its snapshot). Prints max and
/// median for trades and candles, tickers and books apart, and the core's real CPU time for the whole run. Workers sharing a group share the
/// exchange's per-IP budget, so their failover is paced (OKX: 20 assignments, then 10 a second).
enum FailoverBench {
    static func run(_ options: BenchOptions) {
        let workerCount = options.int("workers", default: 20)
        let shardCount = options.int("shards", default: 2000)
        let leaseMs = Int64(options.int("lease-ms", default: 2000))
        let reps = options.int("reps", default: 5)
        let groups = max(1, min(workerCount, options.int("groups", default: workerCount)))
        var rng = SeededRNG(seed: UInt64(options.int("seed", default: 1)))
        var tradeTimes: [Int64] = []
        var tickerTimes: [Int64] = []
        var bookTimes: [Int64] = []
        var coreNanoseconds: UInt64 = 0
        for _ in 0..<reps {
            var cfg = CoordinatorCore.Configuration()
            cfg.leaseTTL = .milliseconds(leaseMs)
            // The pace the coordinator binary uses: each exchange's per-IP limits.
            cfg.assignmentPaceByExchange = AssignmentPacing.all
            var core = CoordinatorCore(configuration: cfg, term: 1, persistedEpochs: 0)
            var now: Int64 = 0
            var pendingLive: [(at: Int64, worker: String, shard: String, epoch: UInt64)] = []
            var dead: String?
            var diedAt: Int64 = 0
            var lost: Set<String> = []
            func instant() -> Instant { Instant(nanoseconds: now * 1_000_000) }
            func feed(_ event: CoordinatorCore.Event) {
                let start = DispatchTime.now().uptimeNanoseconds
                var queue = [event]
                var sends: [(String, ClusterMessage)] = []
                while !queue.isEmpty {
                    for action in core.handle(queue.removeFirst(), now: instant(), wallClock: now * 1000) {
                        switch action {
                        case .persistEpochs(let upTo): queue.append(.epochsPersisted(upTo: upTo))
                        case .send(let w, let m): sends.append((w, m))
                        case .log, .workerExpired: break
                        }
                    }
                }
                coreNanoseconds += DispatchTime.now().uptimeNanoseconds - start
                for (w, m) in sends where w != dead {
                    guard case .assign(let a) = m else { continue }
                    let isBook = a.shard.contains("/book")
                    let delay = isBook ? 500 + Int64(rng.next() % 1500) : 100 + Int64(rng.next() % 200)
                    pendingLive.append((now + delay, w, a.shard, a.epoch))
                }
            }
            for i in 0..<workerCount {
                feed(
                    .workerJoined(
                        Hello(
                            workerID: "w\(i)", incarnation: 1, capacity: 1_000_000, egressGroup: "g\(i % groups)",
                            nonce: [UInt8](repeating: 0, count: 32))))
            }
            let feeds = ["candles:1m", "trades", "ticker", "book"]
            feed(
                .subscribe(
                    (0..<shardCount).map { i in
                        let shard = "okx/\(feeds[i % 4])/S\(i)-USDT"
                        return .init(shard: shard, weight: CoordinatorCore.DesiredShard.defaultWeight(ofShard: shard))
                    }))
            // Simulated time in 10 ms steps (long enough for a paced group to place everything and
            // recover); w0 dies at a random point after it.
            let settle: Int64 = groups < workerCount ? 10_000 + Int64(shardCount / groups) * 100 : 10_000
            let deathAt = settle + Int64(rng.next() % 1000)
            while now < deathAt + settle + 20_000 {
                now += 10
                if dead == nil && now >= deathAt {
                    dead = "w0"
                    diedAt = now
                    lost = Set(core.shards.filter { $0.value.owners.contains { $0.workerID == "w0" } }.keys)
                }
                let due = pendingLive.filter { $0.at <= now }
                pendingLive.removeAll { $0.at <= now }
                for d in due where d.worker != dead {
                    feed(.shardLive(workerID: d.worker, shard: d.shard, epoch: d.epoch))
                    if lost.contains(d.shard) && now > diedAt {
                        lost.remove(d.shard)
                        if d.shard.contains("/book") {
                            bookTimes.append(now - diedAt)
                        } else if d.shard.contains("/ticker") {
                            tickerTimes.append(now - diedAt)
                        } else {
                            tradeTimes.append(now - diedAt)
                        }
                    }
                }
                if now % 1000 == 0 {
                    for i in 0..<workerCount where "w\(i)" != dead {
                        feed(.heartbeat(workerID: "w\(i)", sequence: UInt64(now)))
                    }
                }
                if now % 50 == 0 { feed(.tick) }
            }
            precondition(lost.isEmpty, "shards never recovered: \(lost.count)")
        }
        func stats(_ xs: [Int64]) -> String {
            let s = xs.sorted()
            guard let last = s.last else { return "n=0" }
            return "n=\(s.count) median_ms=\(s[s.count / 2]) max_ms=\(last)"
        }
        print(
            "RESULT mode=failover workers=\(workerCount) groups=\(groups) shards=\(shardCount) lease_ms=\(leaseMs) "
                + "reps=\(reps) "
                + "trades_candles: \(stats(tradeTimes)) tickers: \(stats(tickerTimes)) books: \(stats(bookTimes)) "
                + "core_cpu_ms=\(coreNanoseconds / 1_000_000) goal_ms=\(leaseMs + 1000)")
    }
}
