import Cluster
import CollectorCore
import ControlProtocol
import Coordination
import Dispatch
import Foundation
import MarketData

/// The `GET /api/v1/cluster` document (issue 10) without sockets: one coordinator core with
/// `--workers` workers (1,000) and `--shards` shards (50,000: `--shards`/4 OKX symbols × trades,
/// ticker, book, 1m candles), every shard placed, live and with a stored event. `--renders` times
/// (10), after one round of heartbeats (every worker reporting every shard it runs), it reads the
/// map's view as the loop does (`ClusterView`) and renders it with one `DocumentRenderer`, as
/// `ClusterPlane.clusterDocument()` does: the first render builds the renderer's layout, the rest
/// reuse it. Prints the median and max render time, the document's size, a render by a new renderer
/// (`cold`), the loop's time to read a view, and the time the first heartbeat after it takes on the
/// loop, against a heartbeat while a copy of the core is held (what a `ClusterSnapshot` costs:
/// the map's dictionaries are copied on write). `--output PATH` writes the last document
/// there (the map is deterministic: two builds' documents compare byte for byte).
enum ClusterDocumentBench {
    static func run(_ options: BenchOptions) {
        let workerCount = options.int("workers", default: 1000)
        let shardCount = options.int("shards", default: 50_000)
        let renders = options.int("renders", default: 10)
        guard workerCount > 0, shardCount >= 4, renders > 0 else {
            fail("--workers and --renders must be positive, --shards at least 4")
        }
        var map = BenchMap(workerCount: workerCount, shardCount: shardCount)
        let renderer = ClusterPlane.DocumentRenderer()
        var renderTimes: [UInt64] = []
        var coldTimes: [UInt64] = []
        var viewTimes: [UInt64] = []
        var afterView: [UInt64] = []
        var afterCopy: [UInt64] = []
        var last: [UInt8] = []
        for _ in 0..<renders {
            map.heartbeatRound()
            var view: ClusterView?
            viewTimes.append(time { view = map.view() })
            guard let view else { preconditionFailure("the view was read above") }
            afterView.append(time { map.heartbeat(worker: 0) })
            // What a `ClusterSnapshot` costs instead: a copy of the core held while the loop goes on
            // (the same reports again, so the map's content does not change).
            let held = map.core
            afterCopy.append(time { map.heartbeat(worker: 1, repeating: true) })
            withExtendedLifetime(held) {}
            renderTimes.append(time { last = renderer.documentBytes(view) })
            coldTimes.append(time { _ = ClusterPlane.DocumentRenderer().documentBytes(view) })
        }
        if let path = options.string("output") {
            guard FileManager.default.createFile(atPath: path, contents: Data(last)) else {
                fail("cannot write \(path)")
            }
        }
        let live = map.core.shards.values.filter { $0.owners.contains { $0.state == .live } }.count
        func stats(_ name: String, _ values: [UInt64]) -> String {
            let sorted = values.sorted()
            return "\(name)_median_ms=\(millis(sorted[sorted.count / 2])) \(name)_max_ms=\(millis(sorted.last ?? 0))"
        }
        print(
            "RESULT mode=cluster-document workers=\(workerCount) shards=\(shardCount) live=\(live) renders=\(renders) "
                + stats("render", renderTimes) + " bytes=\(last.count) " + stats("cold_render", coldTimes) + " "
                + stats("loop_view", viewTimes) + " " + stats("heartbeat_after_view", afterView) + " "
                + stats("heartbeat_with_core_copy", afterCopy))
    }

    private static func time(_ body: () -> Void) -> UInt64 {
        let start = DispatchTime.now().uptimeNanoseconds
        body()
        return DispatchTime.now().uptimeNanoseconds - start
    }

    private static func millis(_ nanoseconds: UInt64) -> String {
        let tenths = (nanoseconds + 50_000) / 100_000
        return "\(tenths / 10).\(tenths % 10)"
    }
}

/// A coordinator core driven to the steady state of cluster_scale.sh: every worker joined, every
/// shard assigned, live and reporting stored events once a second (simulated time).
private struct BenchMap {
    var core: CoordinatorCore
    private var now: Int64 = 0
    /// Wall-clock µs at simulated time 0 (a date in 2026: realistic widths for the ages).
    private let wallStart: Int64 = 1_780_000_000_000_000
    private let workerCount: Int
    private let addresses: [String: String]
    /// What each worker runs: (shard, epoch), filled from the assignments.
    private var running: [[(shard: String, epoch: UInt64, weight: Int64)]]

    init(workerCount: Int, shardCount: Int) {
        var configuration = CoordinatorCore.Configuration()
        // Placement as fast as the core allows: the bench measures the document, not the pacing.
        configuration.assignmentPace = AssignmentPace(burst: 1_000_000, perSecond: 1_000_000)
        configuration.epochBlock = 1_000_000
        // Measured rates (each worker's `events_per_second`) from the second round on; each shard
        // reports its default weight in events per second, so no weight changes and nothing moves.
        configuration.weightWindow = .seconds(1)
        core = CoordinatorCore(configuration: configuration, term: 1, persistedEpochs: 0)
        self.workerCount = workerCount
        running = Array(repeating: [], count: workerCount)
        var addresses: [String: String] = [:]
        for i in 0..<workerCount { addresses["w\(i)"] = "127.0.0.1:\(40_000 + i)" }
        self.addresses = addresses
        for i in 0..<workerCount {
            feed(
                .workerJoined(
                    Hello(
                        workerID: "w\(i)", incarnation: 1, capacity: 1_000_000,
                        nonce: [UInt8](repeating: 0, count: 32))))
        }
        guard let candles = Feed("candles:1m") else { preconditionFailure("1m candles are a known feed") }
        let feeds: [Feed] = [.trades, .ticker, .fullBook, candles]
        let symbols = shardCount / 4
        var streams: [StreamID] = []
        for s in 0..<symbols {
            let digits = String(s)
            let symbol = "S" + String(repeating: "0", count: max(0, 5 - digits.count)) + digits + "-USDT"
            for f in feeds { streams.append(StreamID(exchange: .okx, feed: f, symbol: symbol)) }
        }
        feed(.subscribe(ClusterPlane.desired(streams, replicas: 1)))
        feed(.tick)
        heartbeatRound()
    }

    private func instant() -> Instant { Instant(nanoseconds: now * 1_000_000) }

    /// One event and whatever it leads to (epoch blocks are durable at once; assignments are
    /// remembered as what the worker runs, live from its next heartbeat).
    private mutating func feed(_ event: CoordinatorCore.Event) {
        var queue = [event]
        while !queue.isEmpty {
            for action in core.handle(queue.removeFirst(), now: instant(), wallClock: wallStart + now * 1000) {
                switch action {
                case .persistEpochs(let upTo): queue.append(.epochsPersisted(upTo: upTo))
                case .send(let w, .assign(let a)):
                    if let i = Int(w.dropFirst()) {
                        running[i].append(
                            (a.shard, a.epoch, Int64(CoordinatorCore.DesiredShard.defaultWeight(ofShard: a.shard))))
                    }
                case .send, .log, .workerExpired: break
                }
            }
        }
    }

    /// A second passes and every worker beats, reporting each shard it runs live with a new event.
    mutating func heartbeatRound() {
        now += 1000
        for i in 0..<workerCount { heartbeat(worker: i) }
        feed(.tick)
    }

    /// `repeating`: the worker's last reports again, with no new events (nothing changes but the
    /// lease, though each shard is written to).
    mutating func heartbeat(worker i: Int, repeating: Bool = false) {
        let reports = running[i].map {
            ShardReport(
                shard: $0.shard, epoch: $0.epoch, state: .live, eventsDelta: repeating ? 0 : $0.weight,
                lastEventTime: wallStart + (now - 300) * 1000)
        }
        feed(.heartbeat(workerID: "w\(i)", sequence: UInt64(now), full: false, reports: reports))
    }

    /// What `ControlServer.clusterView()` reads on the loop.
    func view() -> ClusterView {
        ClusterView(core: core, now: instant(), wallClock: wallStart + now * 1000) { addresses[$0] }
    }
}
