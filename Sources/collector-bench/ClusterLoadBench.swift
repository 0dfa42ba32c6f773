import Cluster
import CollectorCore
import ControlProtocol
import Coordination
import Dispatch
import Foundation
import Observability
import Runtime
import Synchronization

/// Coordinator scale (issue 10): `--workers` real control clients (`ControlClient`, the worker's
/// side of the protocol over TCP) against a running `coordinator serve` at `--coordinator
/// HOST:PORT`, spread over `--loops` event loops. Each client's data plane reports a shard live as
/// soon as it is assigned and, once a second, the events it "stored" for every shard it runs (the
/// shard's default weight in events times `--rate-scale`, with the current time and, for trades
/// and books, an id), so the heartbeats carry the per-shard deltas a real worker sends. Runs for
/// `--seconds`, or until SIGTERM/SIGINT, then stops every client and prints what they ran.
///
/// The secret comes from `CLUSTER_SECRET` (or `CLUSTER_SECRET_FILE`), as for the coordinator.
enum ClusterLoadBench {
    static func run(_ options: BenchOptions) {
        let workerCount = options.int("workers", default: 1000)
        let seconds = options.int("seconds", default: 60)
        let loopCount = options.int("loops", default: 2)
        let capacity = options.int("capacity", default: 1_000_000)
        let rateScale = options.int("rate-scale", default: 1)
        guard workerCount > 0, seconds > 0, loopCount > 0, capacity > 0, rateScale >= 0 else {
            fail("--workers, --seconds, --loops and --capacity must be positive, --rate-scale not negative")
        }
        guard let target = options.string("coordinator"), let colon = target.lastIndex(of: ":"),
            let port = Int(target[target.index(after: colon)...]), target[..<colon].isEmpty == false
        else {
            fail("--coordinator HOST:PORT is required")
        }
        let endpoint = Endpoint(host: String(target[..<colon]), port: port)
        let secret: [UInt8]
        do {
            secret = try ClusterSecret.load(from: ProcessInfo.processInfo.environment)
        } catch {
            fail(error.description)
        }
        let loops: [EventLoop] = (0..<loopCount).map { i in
            do {
                return try EventLoop.start(name: "cluster-load-\(i)")
            } catch {
                fail("cannot start an event loop: \(error)")
            }
        }
        let stopSignal = StopSignal()
        let signalSources = stopSignal.install()
        let report = PGBench.blocking {
            await drive(
                LoadPlan(
                    workerCount: workerCount, seconds: seconds, capacity: capacity, rateScale: rateScale,
                    endpoint: endpoint, secret: secret),
                loops: loops, stopSignal: stopSignal)
        }
        for loop in loops { loop.shutdown() }
        for source in signalSources { source.cancel() }
        print(
            "RESULT workers=\(workerCount) established=\(report.established) shards_running=\(report.shardsRunning)"
                + " shards_distinct=\(report.shardsDistinct) starts=\(report.starts) stops=\(report.stops)"
                + " orphaned=\(report.orphaned) stored_reports=\(report.storedReports)"
                + " all_established_ms=\(report.allEstablishedMillis.map(String.init) ?? "never")"
                + " seconds=\(String(format: "%.1f", report.elapsedSeconds))")
    }

    /// What one run asks for.
    struct LoadPlan: Sendable {
        var workerCount: Int
        var seconds: Int
        var capacity: Int
        var rateScale: Int
        var endpoint: Endpoint
        var secret: [UInt8]
    }

    /// What the run printed.
    struct Report: Sendable {
        var established = 0
        var shardsRunning = 0
        var shardsDistinct = 0
        var starts = 0
        var stops = 0
        var orphaned = 0
        var storedReports = 0
        var allEstablishedMillis: Int?
        var elapsedSeconds = 0.0
    }

    /// Starts the clients round-robin over `loops`, reports stored events every second, waits the
    /// run out (polling progress to stderr every second), then stops every client.
    static func drive(_ plan: LoadPlan, loops: [EventLoop], stopSignal: StopSignal) async -> Report {
        let started = ContinuousClock.now
        var groups: [LoadGroup] = []
        for loop in loops {
            // Each group is made on the loop it is confined to.
            let group: LoadGroup = await withCheckedContinuation { continuation in
                loop.execute { continuation.resume(returning: LoadGroup(loop: loop, rateScale: plan.rateScale)) }
            }
            groups.append(group)
        }
        var clients: [ControlClient] = []
        clients.reserveCapacity(plan.workerCount)
        for i in 0..<plan.workerCount {
            let group = groups[i % groups.count]
            let worker = LoadWorker()
            let client = await ControlClient.start(
                endpoint: plan.endpoint,
                configuration: WorkerSession.Configuration(
                    workerID: "load-\(i)", incarnation: 1, capacity: plan.capacity),
                secret: plan.secret, loop: group.loop, logger: .disabled
            ) { action in
                worker.handle(action)
            }
            group.loop.execute { group.attach(worker, client: client) }
            clients.append(client)
        }
        for group in groups { group.loop.execute { group.startReporting() } }

        var report = Report()
        let deadline = started + .seconds(plan.seconds)
        while ContinuousClock.now < deadline && !stopSignal.isRaised {
            // try?: a cancelled sleep only ends the wait early.
            try? await Task.sleep(for: .seconds(1))
            var established = 0
            for client in clients {
                if await client.status().established { established += 1 }
            }
            if established == clients.count && report.allEstablishedMillis == nil {
                report.allEstablishedMillis = Int((ContinuousClock.now - started).millisecondsClamped)
            }
            let counts = await counts(of: groups)
            FileHandle.standardError.write(
                Data(
                    ("cluster-load: t=\(Int((ContinuousClock.now - started).millisecondsClamped / 1000))s"
                        + " established=\(established) running=\(counts.running)\n").utf8))
        }

        var distinct: Set<String> = []
        for client in clients {
            let status = await client.status()
            if status.established { report.established += 1 }
            report.shardsRunning += status.running.count
            distinct.formUnion(status.running.keys)
        }
        report.shardsDistinct = distinct.count
        let counts = await counts(of: groups)
        report.starts = counts.starts
        report.stops = counts.stops
        report.orphaned = counts.orphaned
        report.storedReports = counts.storedReports
        for group in groups { group.loop.execute { group.stopReporting() } }
        for client in clients { await client.stop() }
        report.elapsedSeconds = Double((ContinuousClock.now - started).millisecondsClamped) / 1000
        return report
    }

    /// The data planes' counters summed over every group (each read on its own loop).
    static func counts(of groups: [LoadGroup]) async -> LoadGroup.Counts {
        var total = LoadGroup.Counts()
        for group in groups {
            let c: LoadGroup.Counts = await withCheckedContinuation { continuation in
                group.loop.execute { continuation.resume(returning: group.counts) }
            }
            total.running += c.running
            total.starts += c.starts
            total.stops += c.stops
            total.orphaned += c.orphaned
            total.storedReports += c.storedReports
        }
        return total
    }
}

/// The load clients of one event loop and the 1 s timer that reports their stored events.
final class LoadGroup: @unchecked Sendable {
    // @unchecked Sendable: every mutable field is touched only on `loop`'s thread (asserted); the
    // reference crosses threads only to be posted back there with `loop.execute`.
    struct Counts: Sendable {
        var running = 0
        var starts = 0
        var stops = 0
        var orphaned = 0
        var storedReports = 0
    }

    let loop: EventLoop
    private let rateScale: Int
    private var workers: [LoadWorker] = []
    private var timer: TimerHandle?
    private var storedReports = 0

    /// Made on `loop`.
    init(loop: EventLoop, rateScale: Int) {
        loop.assertInLoop()
        self.loop = loop
        self.rateScale = rateScale
    }

    func attach(_ worker: LoadWorker, client: ControlClient) {
        loop.assertInLoop()
        worker.attach(client)
        workers.append(worker)
    }

    func startReporting() {
        loop.assertInLoop()
        timer = loop.scheduleTimer(after: .seconds(1)) { [weak self] in
            guard let self, self.timer != nil else { return }
            let now = WallClock.microseconds()
            for worker in self.workers { self.storedReports += worker.reportStored(now: now, scale: self.rateScale) }
            self.startReporting()
        }
    }

    func stopReporting() {
        loop.assertInLoop()
        if let timer { loop.cancelTimer(timer) }
        timer = nil
    }

    var counts: Counts {
        loop.assertInLoop()
        var c = Counts(storedReports: storedReports)
        for w in workers {
            c.running += w.running.count
            c.starts += w.starts
            c.stops += w.stops
            c.orphaned += w.orphanedCount
        }
        return c
    }
}

/// One load client's data plane: what it runs, reported live at once.
final class LoadWorker: @unchecked Sendable {
    // @unchecked Sendable: used only on its client's loop (the data-plane callback, the group's
    // timer and `attach` all run there); the reference crosses threads only inside closures posted
    // to that loop.
    struct Shard {
        var epoch: UInt64
        /// Events reported so far (the last one's id, for feeds that have ids).
        var events: Int64 = 0
        var hasID: Bool
        var eventsPerSecond: Int64
        var reportedLive = false
    }

    private var client: ControlClient?
    private(set) var running: [String: Shard] = [:]
    private(set) var starts = 0
    private(set) var stops = 0
    private(set) var orphanedCount = 0

    /// A data-plane action from the session (on the loop).
    func handle(_ action: WorkerSession.Action) {
        switch action {
        case .start(let a):
            starts += 1
            let feed = a.shard.split(separator: "/").dropFirst().first ?? ""
            running[a.shard] = Shard(
                epoch: a.epoch, hasID: feed == "trades" || feed.hasPrefix("book"),
                eventsPerSecond: Int64(CoordinatorCore.DesiredShard.defaultWeight(ofShard: a.shard)))
            reportLive(a.shard)
        case .stop(let shard, let epoch, _):
            guard running[shard]?.epoch == epoch else { return }
            stops += 1
            running[shard] = nil
        case .orphaned(let isOrphaned):
            if isOrphaned { orphanedCount += 1 }
        case .egressShare, .connect, .send, .close, .log:
            break  // only start, stop, orphaned and egressShare reach a data plane; no budgets here
        }
    }

    /// The client is known (an assignment may have come before): pending shards go live now.
    func attach(_ client: ControlClient) {
        self.client = client
        for name in running.keys { reportLive(name) }
    }

    private func reportLive(_ name: String) {
        guard let client, let shard = running[name], !shard.reportedLive else { return }
        running[name]?.reportedLive = true
        client.report(.shardLive(shard: name, epoch: shard.epoch))
    }

    /// One second's stored events for every shard it runs; returns how many reports it made.
    func reportStored(now: Int64, scale: Int) -> Int {
        guard let client else { return 0 }
        for index in running.indices {
            let name = running.keys[index]
            let events = running.values[index].eventsPerSecond * Int64(scale)
            running.values[index].events += events
            let shard = running.values[index]
            client.report(
                .stored(
                    shard: name, epoch: shard.epoch, events: events, lastEventTime: now,
                    lastEventID: shard.hasID ? String(shard.events) : nil))
        }
        return running.count
    }
}

/// Raised by SIGTERM or SIGINT: the run ends early (the result is still printed).
final class StopSignal: Sendable {
    private let raised = Atomic<Bool>(false)

    var isRaised: Bool { raised.load(ordering: .relaxed) }

    /// Installs the signal sources; they stay for the life of the process (the caller keeps them).
    func install() -> [any DispatchSourceSignal] {
        [SIGTERM, SIGINT].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { self.raised.store(true, ordering: .relaxed) }
            source.resume()
            return source
        }
    }
}
