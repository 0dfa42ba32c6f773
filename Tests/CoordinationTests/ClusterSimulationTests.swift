import CollectorCore
import ControlProtocol
import Coordination
import Exchanges
import Foundation
import MarketData
import Testing

/// A seeded simulation of the whole control plane: the real `CoordinatorService` (handshakes,
/// admission, the core) and real `WorkerSession` machines, exchanging encoded frames over a
/// simulated network and clock. The network behaves like TCP: per-connection FIFO with random
/// delay; a partition holds packets (delivered late after the heal unless the connection closed),
/// and loss and duplication happen only across reconnects (what was in flight on a closed
/// connection is gone; the worker re-reports what it runs when it rejoins).
///
/// Faults: worker crashes and restarts (new incarnations), a second process with a live worker's
/// id, partitions and heals, scale-up, drains (the drained worker then exits: scale-down),
/// cordons, subscription bursts with `replicas` 1–2, instruments the exchange refuses (for good,
/// and one start in twenty transiently),
/// coordinator restarts with a down time. Invariants are checked after every step; a failure
/// names its seed, and `SIM_SEED=n` replays exactly that one. `SIM_SEEDS` sets how many run;
/// `SIM_TRACE=text` prints every coordinator message containing `text` (a shard's name) as it leaves.
@Suite struct ClusterSimulationTests {
    /// One worker process: its session machine and what its data plane really runs.
    struct Process {
        var name: String
        var id: String
        var incarnation: UInt64
        var session: WorkerSession
        var alive = true
        var partitioned = false
        /// Shard → epoch the data plane runs.
        var runs: [String: UInt64] = [:]
        var pendingLive: [(shard: String, epoch: UInt64, at: Int64)] = []
        /// Shard → where the data plane starts storing (a move's cutover, wall µs), if not at once.
        var storesFrom: [String: Int64] = [:]
        /// Shard → (epoch, cutover): handed over, the data plane stores up to the cutover, then stops.
        var handedOver: [String: (epoch: UInt64, until: Int64)] = [:]
        var link: UInt64?
        /// Since when the session has been established with the current coordinator (ms).
        var establishedSince: Int64?
        /// A duplicate-id process exits at this time.
        var exitAt: Int64?
    }

    enum Packet {
        case frame([UInt8])
        case fin
    }

    struct Link {
        var process: String
        var toCoordinator: [(at: Int64, packet: Packet)] = []
        var toWorker: [(at: Int64, packet: Packet)] = []
        var coordinatorDecoder = ControlFrameDecoder()
        var workerDecoder = ControlFrameDecoder()
    }

    static let secret = Array("sim-cluster-secret".utf8)
    static let heartbeatMs: Int64 = 1000
    static let maxDelayMs: Int64 = 150
    static let trace = ProcessInfo.processInfo.environment["SIM_TRACE"]

    struct World {
        var rng: SeededRNG
        var now: Int64 = 0  // ms
        var service: CoordinatorService?
        var downUntil: Int64?
        var term: UInt64 = 1
        var persisted: UInt64 = 0
        var processes: [String: Process] = [:]
        var links: [UInt64: Link] = [:]
        var nextLink: UInt64 = 1
        var nextWorker = 0
        var desired: [CoordinatorCore.DesiredShard] = []
        var weights: [String: Int] = [:]
        /// Instruments the simulated exchange refuses (permanent failures).
        var refused: Set<String> = []
        /// Faults have stopped: no partitions, crashes, restarts or transient refusals from here on.
        var quiet = false
        /// The egress group sizes the map last had, and when they last changed: workers hear a change
        /// in their next heartbeat's answer, so agreement is checked a beat and a round trip after.
        var groupSizes: [String: Int] = [:]
        var groupsChangedAt: Int64 = 0
        var highestIssued: UInt64 = 0
        /// Per egress group and exchange, when its recent assignments were sent (ms; the last 256).
        var assignedAt: [String: [Int64]] = [:]
        /// The cutover each epoch was assigned with (a move's new owner, or a hand-over's successor).
        var issuedCutover: [UInt64: Int64] = [:]
        /// What each exchange had to place when quiet began (frozen: the settle allowance).
        var backlog: [String: Int] = [:]
        /// Per shard, the spans of time (ms) its rows are stored for: by a process storing it at the
        /// end of a step, or by a backfill when an owner starts without a cutover (from the resume
        /// point it is given, else from the stored data's end, as a worker reads it from the store).
        /// Trades and candles backfill; books and tickers cannot (a failover loses their gap), so
        /// holes are checked on the first two only.
        var covered: [String: [(from: Int64, to: Int64)]] = [:]
        /// When the coordinator was down (ms, to when it came back up).
        var outages: [(from: Int64, to: Int64)] = []
        /// Per shard, when a process storing it died mid-move (ms): the known limit's cause.
        var handOverDeaths: [String: [Int64]] = [:]
        /// Holes in stored rows near a coordinator restart (see `checkSettled`), for the summary.
        var holesNearRestarts: [String] = []
        /// (process, shard, epoch) → when the process was first seen running it without owning it.
        var strays: [String: Int64] = [:]
        var log: [String] = []
        /// The coordinator input being handled (for `SIM_TRACE`).
        var cause = ""
        /// The per-IP budget a burst of new owners spends, per exchange: its tightest REST bucket
        /// (each new owner backfills with at least one request), from the adapters' published limits.
        static let restBudget: [String: (burst: Double, perSecond: Double)] = {
            func tightest(_ b: [String: TokenBucket]) -> (burst: Double, perSecond: Double) {
                (b.values.map(\.capacity).min() ?? 0, b.values.map(\.refillPerSecond).min() ?? 0)
            }
            return [
                "okx": tightest(OKXAdapter.restBudgets), "binance": tightest(BinanceAdapter.restBudgets),
                "coinbase": tightest(CoinbaseAdapter.restBudgets), "upbit": tightest(UpbitAdapter.restBudgets),
                "bybit": tightest(BybitAdapter.restBudgets),
            ]
        }()
        static let exchanges = ["okx", "binance", "coinbase", "upbit", "bybit"]

        init(seed: UInt64) {
            rng = SeededRNG(seed: seed)
            service = Self.makeService(term: 1, persisted: 0, recovering: false)
        }

        static func makeService(term: UInt64, persisted: UInt64, recovering: Bool) -> CoordinatorService {
            var core = CoordinatorCore.Configuration()
            core.assignmentPaceByExchange = AssignmentPacing.all
            return CoordinatorService(
                configuration: CoordinatorService.Configuration(), secret: ClusterSimulationTests.secret,
                core: CoordinatorCore(
                    configuration: core, term: term, persistedEpochs: persisted, recovering: recovering))
        }

        var instant: Instant { Instant(nanoseconds: now * 1_000_000) }
        var wall: Int64 { 1_700_000_000_000_000 + now * 1000 }
        var core: CoordinatorCore? { service?.core }

        mutating func random(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }
        mutating func nonce() -> [UInt8] { (0..<32).map { _ in UInt8(truncatingIfNeeded: rng.next()) } }
        mutating func delay() -> Int64 { 1 + Int64(random(Int(ClusterSimulationTests.maxDelayMs))) }

        /// Workers share two egress addresses.
        static func group(of id: String) -> String { "g\((Int(id.dropFirst()) ?? 0) % 2)" }

        mutating func spawn(id: String, incarnation: UInt64, name: String) throws {
            var configuration = WorkerSession.Configuration(
                workerID: id, incarnation: incarnation, capacity: 10_000, egressGroup: Self.group(of: id))
            configuration.fullSyncEvery = 5
            processes[name] = Process(
                name: name, id: id, incarnation: incarnation,
                session: WorkerSession(
                    configuration: configuration, secret: ClusterSimulationTests.secret, seed: rng.next(),
                    now: instant))
            try worker(name, .tick)
        }

        // MARK: Coordinator side

        mutating func coordinator(_ input: CoordinatorService.Input) throws {
            guard service != nil else { return }
            // In place: a copy of the service would make the core copy its whole map on write.
            let outputs = service!.handle(input, now: instant, wallClock: wall)
            cause = "\(input)".prefix(160).description
            for output in outputs {
                switch output {
                case .send(let c, let frame):
                    try observe(frame, to: c)
                    guard links[c] != nil else { continue }
                    let at = max(links[c]!.toWorker.last?.at ?? 0, now + delay())
                    links[c]!.toWorker.append((at, .frame(frame.encoded())))
                case .close(let c):
                    guard links[c] != nil else { continue }
                    links[c]!.toCoordinator = []
                    let at = max(links[c]!.toWorker.last?.at ?? 0, now + delay())
                    links[c]!.toWorker.append((at, .fin))
                    // The driver's close completes on its side at once.
                    try coordinator(.closed(c))
                case .persistEpochs(let upTo):
                    persisted = max(persisted, upTo)
                    try coordinator(.epochsPersisted(upTo: upTo))
                case .log(_, let message, let fields):
                    // Not checked here (the frame limit lives in the TCP driver); traced.
                    if let t = ClusterSimulationTests.trace, "\(message) \(fields)".contains(t) {
                        print("TRACE \(now) log \(message) \(fields.sorted { $0.key < $1.key })")
                    }
                case .admitted:
                    break
                }
            }
        }

        /// What the coordinator sends, checked as it leaves: epochs only increase, the egress
        /// budget holds, and a hand-over never leaves the stream without a live owner.
        mutating func observe(_ frame: ControlFrame, to c: UInt64) throws {
            guard frame.type >= ClusterMessage.typeBase else { return }  // a handshake frame
            let message: ClusterMessage
            do {
                message = try ClusterMessage.decode(frame)
            } catch {
                throw SimFailure("the coordinator sent a message that does not decode: \(error)")
            }
            if let t = ClusterSimulationTests.trace, "\(message)".contains(t) {
                let to = links[c].flatMap { processes[$0.process]?.name } ?? "connection \(c) (gone)"
                print("TRACE \(now) -> \(to) \(message) (on \(cause))")
            }
            guard let process = links[c].flatMap({ processes[$0.process] }) else { return }
            switch message {
            case .assign(let a):
                guard a.epoch > highestIssued else {
                    throw SimFailure("epoch \(a.epoch) issued after \(highestIssued)")
                }
                highestIssued = a.epoch
                if let cutover = a.cutoverAt { issuedCutover[a.epoch] = cutover }
                // The exchange's per-IP REST bucket never runs dry: in every window ending now, the
                // assignments to one group are at most its burst plus what it refills.
                let exchange = String(a.shard.split(separator: "/")[0])
                let key = "\(Self.group(of: process.id))|\(exchange)"
                guard let budget = Self.restBudget[exchange] else { throw SimFailure("no budget for \(exchange)") }
                var times = assignedAt[key, default: []]
                times.append(now)
                if times.count > 256 { times.removeFirst() }
                assignedAt[key] = times
                for (i, start) in times.enumerated() {
                    let count = Double(times.count - i)
                    guard count <= budget.burst + budget.perSecond * Double(now - start) / 1000 + 1e-6 else {
                        throw SimFailure("egress budget exceeded: \(key) sent \(Int(count)) since \(start) ms")
                    }
                }
            case .revoke(_, let shard, let epoch):
                try checkCoverage(revoking: shard, epoch: epoch, of: process)
            case .handOver(_, let shard, let epoch, let until):
                let live = core?.shards[shard]?.owners.filter { $0.epoch != epoch && $0.state == .live } ?? []
                guard !live.isEmpty else { throw SimFailure("hand-over of \(shard) leaves no live owner") }
                // The map records it, with the same cutover, so it holds the slot until then.
                guard core?.leaving[shard]?.contains(where: { $0.epoch == epoch && $0.until == until }) == true else {
                    throw SimFailure("hand-over of \(shard)@\(epoch) until \(until) is not in the map")
                }
                // The old owner must learn where to stop before its rows get there (an exact overlap).
                guard wall < until else {
                    throw SimFailure("hand-over of \(shard) at \(wall) comes after its cutover \(until)")
                }
            default:
                break
            }
        }

        // MARK: Worker side

        mutating func worker(_ name: String, _ input: WorkerSession.Input) throws {
            guard processes[name]?.alive == true else { return }
            let now = instant
            let actions = processes[name]!.session.handle(input, now: now)
            for action in actions { try perform(action, by: name) }
        }

        mutating func perform(_ action: WorkerSession.Action, by name: String) throws {
            guard var p = processes[name] else { return }
            switch action {
            case .connect:
                guard service != nil, !p.partitioned else {
                    try worker(name, .disconnected("connection refused"))
                    return
                }
                let c = nextLink
                nextLink += 1
                links[c] = Link(process: name)
                p.link = c
                processes[name] = p
                try coordinator(.opened(c, remote: name, nonce: nonce()))
                try worker(name, .connected(nonce: nonce()))
            case .send(let frame):
                guard let c = p.link, links[c] != nil else { return }
                let at = max(links[c]!.toCoordinator.last?.at ?? 0, now + delay())
                links[c]!.toCoordinator.append((at, .frame(frame.encoded())))
            case .close:
                guard let c = p.link else { return }
                p.link = nil
                processes[name] = p
                guard links[c] != nil else { return }
                links[c]!.toWorker = []
                let at = max(links[c]!.toCoordinator.last?.at ?? 0, now + delay())
                links[c]!.toCoordinator.append((at, .fin))
            case .start(let a):
                if a.cutoverAt == nil && !refused.contains(a.shard) && Self.backfillable(a.shard) {
                    // The assignment's resume point wins (as in `WorkerPlane`): one later than where the
                    // rows end leaves a hole, which fails the seed.
                    let end = covered[a.shard]?.last?.to
                    let from = a.resumeFrom.map { ($0.time - 1_700_000_000_000_000) / 1000 } ?? end ?? now
                    cover(a.shard, from: from, to: now)
                }
                p.runs[a.shard] = a.epoch
                p.storesFrom[a.shard] = a.cutoverAt
                p.handedOver[a.shard] = nil
                processes[name] = p
                if refused.contains(a.shard) {
                    try worker(
                        name,
                        .shardFailed(
                            shard: a.shard, epoch: a.epoch, permanent: true, code: "51001",
                            reason: "Instrument ID does not exist"))
                    processes[name]?.runs[a.shard] = nil
                } else if !quiet && random(20) == 0 {
                    // A transient refusal (the exchange is busy): retried with backoff, maybe elsewhere.
                    try worker(
                        name,
                        .shardFailed(
                            shard: a.shard, epoch: a.epoch, permanent: false, code: "50011", reason: "Too Many Requests"
                        ))
                    processes[name]?.runs[a.shard] = nil
                } else {
                    let at = now + 1 + Int64(random(300))
                    processes[name]?.pendingLive.append((a.shard, a.epoch, at))
                }
            case .stop(let shard, let epoch, let until):
                guard p.runs[shard] == epoch else { return }
                if let until, wall < until {
                    // Handed over: rows keep being stored up to the cutover, as the real plane does.
                    processes[name]?.handedOver[shard] = (epoch, until)
                } else {
                    processes[name]?.runs[shard] = nil
                    processes[name]?.handedOver[shard] = nil
                    processes[name]?.storesFrom[shard] = nil
                }
            case .orphaned, .log, .egressShare:
                break
            }
        }

        // MARK: Time

        /// 100 ms: packets due are delivered, data planes report, machines tick, invariants checked.
        mutating func advance() throws {
            for _ in 0..<10 {
                now += 10
                try deliver()
            }
            if let until = downUntil, now >= until {
                downUntil = nil
                term += 1
                log.append("\(now) coordinator up, term \(term)")
                if let last = outages.indices.last { outages[last].to = now }
                service = Self.makeService(term: term, persisted: persisted, recovering: true)
                try coordinator(.request(.subscribe(desired)))
            }
            for name in processes.keys.sorted() {
                guard let p = processes[name], p.alive else { continue }
                if let exit = p.exitAt, now >= exit {
                    try kill(name, "duplicate exits")
                    processes[name] = nil
                    continue
                }
                for (shard, h) in p.handedOver where wall >= h.until {
                    processes[name]?.handedOver[shard] = nil
                    if processes[name]?.runs[shard] == h.epoch {
                        processes[name]?.runs[shard] = nil
                        processes[name]?.storesFrom[shard] = nil
                    }
                }
                let due = p.pendingLive.filter { $0.at <= now }
                processes[name]?.pendingLive.removeAll { $0.at <= now }
                for d in due where processes[name]?.runs[d.shard] == d.epoch {
                    try worker(name, .shardLive(shard: d.shard, epoch: d.epoch))
                }
                if now % 1000 == 0 {
                    // Only what it stores is reported stored (a move's new owner waits for its cutover).
                    for (shard, epoch) in (processes[name]?.runs ?? [:]).sorted(by: { $0.key < $1.key })
                    where processes[name].map({ stores($0, shard, epoch: epoch) }) ?? false {
                        try worker(
                            name,
                            .stored(
                                shard: shard, epoch: epoch, events: Int64(weights[shard] ?? 1), lastEventTime: wall,
                                lastEventID: "\(now)"))
                    }
                }
                try worker(name, .tick)
                // A drained worker has nothing left and exits (scale-down).
                if let core, let w = core.workers[p.id], w.draining, w.load == 0, p.runs.isEmpty, p.exitAt == nil {
                    log.append("\(now) \(name) drained, exits")
                    try kill(name, "drained")
                    processes[name] = nil
                }
            }
            try coordinator(.tick)
            if let sizes = core?.groupSizes, sizes != groupSizes {
                groupSizes = sizes
                groupsChangedAt = now
            }
            for p in processes.values where p.alive {
                for (shard, epoch) in p.runs where stores(p, shard, epoch: epoch) {
                    cover(shard, from: now - 100, to: now)
                }
            }
            try checkMap()
            try checkStrays()
            try checkWriters()
        }

        /// Adds a stored span, merging it with the spans it touches.
        mutating func cover(_ shard: String, from: Int64, to: Int64) {
            var spans = covered[shard] ?? []
            spans.append((from, to))
            spans.sort { $0.from < $1.from }
            var merged: [(from: Int64, to: Int64)] = []
            for span in spans {
                if let last = merged.last, span.from <= last.to {
                    merged[merged.count - 1].to = max(last.to, span.to)
                } else {
                    merged.append(span)
                }
            }
            covered[shard] = merged
        }

        mutating func deliver() throws {
            for c in links.keys.sorted() {
                guard let link = links[c], let p = processes[link.process] else {
                    links[c] = nil
                    continue
                }
                guard !p.partitioned else { continue }
                while let first = links[c]?.toCoordinator.first, first.at <= now {
                    links[c]!.toCoordinator.removeFirst()
                    switch first.packet {
                    case .fin:
                        try coordinator(.closed(c))
                        links[c]!.toCoordinator = []
                    case .frame(let bytes):
                        do {
                            for frame in try links[c]!.coordinatorDecoder.feed(bytes) {
                                try coordinator(.frame(c, frame))
                            }
                        } catch let error as ControlFrameError {
                            try coordinator(.invalid(c, error.description))
                        }
                    }
                }
                while let first = links[c]?.toWorker.first, first.at <= now {
                    links[c]!.toWorker.removeFirst()
                    guard processes[link.process]?.link == c else {
                        links[c]!.toWorker = []
                        break
                    }
                    switch first.packet {
                    case .fin:
                        processes[link.process]?.link = nil
                        links[c]!.toWorker = []
                        try worker(link.process, .disconnected("closed by the coordinator"))
                    case .frame(let bytes):
                        do {
                            for frame in try links[c]!.workerDecoder.feed(bytes) {
                                try worker(link.process, .frame(frame))
                            }
                        } catch let error as ControlFrameError {
                            throw SimFailure("the coordinator sent a bad frame: \(error)")
                        }
                    }
                }
                if let l = links[c], l.toWorker.isEmpty, l.toCoordinator.isEmpty,
                    processes[l.process]?.link != c
                {
                    // Both sides are done with it once nothing is in flight and the worker left it.
                    if service == nil || !(service!.hasConnection(c)) { links[c] = nil }
                }
            }
        }

        /// The process dies: its socket closes (the coordinator sees it once the network delivers).
        mutating func kill(_ name: String, _ why: String) throws {
            guard var p = processes[name] else { return }
            // Mid-move: handing it over, or storing it while another process waits for its cutover.
            let successors = Set(
                processes.values.filter { $0.alive && $0.name != name }.flatMap { q in
                    q.storesFrom.compactMap { $0.value > wall ? $0.key : nil }
                })
            for shard in Set(p.runs.keys).union(p.handedOver.keys) where p.alive {
                let handing = p.handedOver[shard].map { wall < $0.until } ?? false
                if handing || successors.contains(shard) { handOverDeaths[shard, default: []].append(now) }
            }
            p.alive = false
            p.runs = [:]
            p.pendingLive = []
            p.storesFrom = [:]
            p.handedOver = [:]
            if let c = p.link, links[c] != nil {
                links[c]!.toWorker = []
                let at = max(links[c]!.toCoordinator.last?.at ?? 0, now + delay())
                links[c]!.toCoordinator.append((at, .fin))
            }
            p.link = nil
            processes[name] = p
        }

        // MARK: Faults

        mutating func fault() throws {
            let names = processes.keys.sorted().filter { processes[$0]?.exitAt == nil }
            switch random(10) {
            case 0 where !names.isEmpty:
                let name = names[random(names.count)]
                guard processes[name]?.alive == true else { break }
                log.append("\(now) crash \(name)")
                try kill(name, "crash")
            case 1:  // a crashed worker comes back as a new incarnation
                if let name = names.first(where: { processes[$0]?.alive == false }), let p = processes[name] {
                    log.append("\(now) restart \(name)")
                    try spawn(id: p.id, incarnation: p.incarnation + 1, name: name)
                }
            case 2 where !names.isEmpty:
                let name = names[random(names.count)]
                if processes[name]?.alive == true, processes[name]?.partitioned == false {
                    processes[name]?.partitioned = true
                    log.append("\(now) partition \(name)")
                }
            case 3:
                if let name = names.first(where: { processes[$0]?.partitioned == true }) {
                    processes[name]?.partitioned = false
                    log.append("\(now) heal \(name)")
                }
            case 4 where processes.count < 8:
                let id = "w\(nextWorker)"
                nextWorker += 1
                log.append("\(now) join \(id)")
                try spawn(id: id, incarnation: 1, name: id)
            case 5 where !names.isEmpty:
                let name = names[random(names.count)]
                guard let id = processes[name]?.id else { break }
                let request: CoordinatorCore.Event = [.drain(workerID: id), .cordon(workerID: id)][random(2)]
                log.append("\(now) \(request) \(id)")
                try coordinator(.request(request))
                if random(3) == 0 { try coordinator(.request(.uncordon(workerID: id))) }
            case 6:  // a subscription burst of 1–40 streams, one in ten refused by the exchange
                var specs: [CoordinatorCore.DesiredShard] = []
                for _ in 0..<(1 + random(40)) {
                    let n = desired.count + specs.count
                    let feed = ["trades", "candles", "book", "ticker"][random(4)]
                    let spec = CoordinatorCore.DesiredShard(
                        shard: "\(Self.exchanges[random(5)])/\(feed)/S\(n)",
                        replicas: [1, 1, 2, 3][random(4)],
                        weight: 1 + random(50))
                    if random(10) == 0 { refused.insert(spec.shard) }
                    weights[spec.shard] = spec.weight
                    specs.append(spec)
                }
                desired += specs
                log.append("\(now) subscribe \(specs.count) from \(specs[0].shard)")
                try coordinator(.request(.subscribe(specs)))
            case 7 where !names.isEmpty:  // a second process with a live worker's id
                let name = names[random(names.count)]
                guard let p = processes[name], p.alive else { break }
                let dup = "\(name)#\(now)"
                log.append("\(now) duplicate of \(p.id)")
                try spawn(id: p.id, incarnation: p.incarnation + 100, name: dup)
                let exit = now + 3000 + Int64(random(5000))
                processes[dup]?.exitAt = exit
            case 8 where service != nil:  // the coordinator dies; a new term starts after a down time
                log.append("\(now) coordinator down")
                outages.append((now, .max))
                service = nil
                downUntil = now + Int64(random(3000))
                for c in links.keys.sorted() {
                    links[c]!.toCoordinator = []
                    let at = max(links[c]!.toWorker.last?.at ?? 0, now + delay())
                    links[c]!.toWorker.append((at, .fin))
                }
            default:
                break
            }
        }

        // MARK: Invariants

        /// The map never gives a shard more owners than its replicas, plus one during a move, on
        /// distinct workers; each worker's load is the weight of the shards it owns.
        func checkMap() throws {
            guard let core else { return }
            if let problem = core.indexProblem() { throw SimFailure(problem) }
            var loads: [String: Int] = [:]
            for shard in core.shards.values {
                for owner in shard.owners { loads[owner.workerID, default: 0] += shard.spec.weight }
            }
            for (id, worker) in core.workers where worker.load != loads[id, default: 0] {
                throw SimFailure("\(id) load \(worker.load), owns \(loads[id, default: 0])")
            }
            // Write windows: a move's new owner stores from its cutover and the old one is handed over
            // (told to stop there) before it, so no move may still stand once its cutover has come.
            for (name, move) in core.moves.sorted(by: { $0.key < $1.key }) where wall >= move.cutoverAt {
                throw SimFailure("\(name): the move to \(move.to.workerID) still stands at its cutover")
            }
            for (name, shard) in core.shards {
                let limit = shard.spec.replicas + (core.moves[name] == nil ? 0 : 1)
                guard shard.owners.count <= limit else {
                    throw SimFailure("\(name) has \(shard.owners.count) owners, limit \(limit)")
                }
                guard Set(shard.owners.map(\.workerID)).count == shard.owners.count else {
                    throw SimFailure("\(name) has two owners on one worker")
                }
            }
        }

        /// Write windows as the data planes hold them: at any instant, the processes storing a shard
        /// at an epoch the map gives them, plus those handed over that the map knows are still storing
        /// to their cutover, are never more than its replicas (a move's new owner stores only from the
        /// cutover its old owner stops at). Any other run is a stray, which the orphan rule stops within
        /// a heartbeat once connected (a hand-over from a deposed term the new one could not hear of,
        /// the worker being cut off, is bounded by its cutover, which every data plane keeps).
        func checkWriters() throws {
            guard let core else { return }
            var writers: [String: [String]] = [:]
            for name in processes.keys.sorted() {
                guard let p = processes[name], p.alive else { continue }
                for (shard, epoch) in p.runs {
                    if let h = p.handedOver[shard], h.epoch == epoch {
                        guard wall < h.until else { throw SimFailure("\(name) stores \(shard) past its cutover") }
                        // A move's new owner handed over again before its own cutover stores in between.
                        let known = core.leaving[shard]?.contains { $0.workerID == p.id && $0.epoch == epoch } ?? false
                        if wall >= p.storesFrom[shard] ?? .min, known {
                            writers[shard, default: []].append("\(name)@\(epoch) until \(h.until)")
                        }
                    } else if core.shards[shard]?.owners.contains(where: { $0.workerID == p.id && $0.epoch == epoch })
                        == true, wall >= p.storesFrom[shard] ?? .min
                    {
                        writers[shard, default: []].append("\(name)@\(epoch)")
                    }
                }
            }
            for (shard, list) in writers.sorted(by: { $0.key < $1.key }) {
                let replicas = core.shards[shard]?.spec.replicas ?? desired.first { $0.shard == shard }?.replicas ?? 1
                guard list.count <= replicas else {
                    throw SimFailure("\(shard) is stored by \(list.count) writers, replicas \(replicas): \(list)")
                }
            }
        }

        /// The orphan rule: a worker connected to the coordinator stops, within one heartbeat, every
        /// shard the map does not give it at that epoch (a newer epoch owns it, or it is gone).
        mutating func checkStrays() throws {
            guard let core else {
                strays = [:]
                return
            }
            var seen: [String: Int64] = [:]
            for name in processes.keys.sorted() {
                guard var p = processes[name], p.alive else { continue }
                // Connected: the session the coordinator speaks to for this id is this process's, and
                // the network delivers (a partitioned or displaced process cannot learn anything).
                let connected =
                    p.session.isEstablished && p.session.term == core.term && !p.partitioned && p.link != nil
                    && service?.connection(of: p.id) == p.link
                if !connected {
                    p.establishedSince = nil
                } else if p.establishedSince == nil {
                    p.establishedSince = now
                }
                processes[name] = p
                guard let since = p.establishedSince else { continue }
                for (shard, epoch) in p.runs {
                    let owned =
                        core.shards[shard]?.owners.contains { $0.workerID == p.id && $0.epoch == epoch } ?? false
                    // A hand-over the map knows of runs to its cutover (checked in `checkWriters`).
                    let leaving = core.leaving[shard]?.contains { $0.workerID == p.id && $0.epoch == epoch } ?? false
                    guard !owned, !(leaving && p.handedOver[shard]?.epoch == epoch) else { continue }
                    let key = "\(name)|\(shard)|\(epoch)"
                    let first = strays[key] ?? max(now, since)
                    seen[key] = first
                    let limit = ClusterSimulationTests.heartbeatMs + 4 * ClusterSimulationTests.maxDelayMs + 100
                    if now - first > limit {
                        throw SimFailure(
                            "\(name) still runs \(shard) epoch \(epoch) \(now - first) ms after the map stopped "
                                + "giving it (owners: \(core.shards[shard]?.owners ?? []))")
                    }
                }
            }
            strays = seen
        }

        /// Whether `p`'s data plane stores `shard` at `epoch` now.
        /// Whether the shard's feed can be backfilled over REST (trades and candles).
        static func backfillable(_ shard: String) -> Bool {
            let feed = shard.split(separator: "/").dropFirst().first
            return feed == "trades" || feed == "candles"
        }

        func stores(_ p: Process, _ shard: String, epoch: UInt64) -> Bool {
            guard p.alive, p.runs[shard] == epoch, wall >= p.storesFrom[shard] ?? .min else { return false }
            guard let h = p.handedOver[shard] else { return true }
            return h.epoch == epoch && wall < h.until
        }

        /// Coverage: a revoke never stops the writer of a stream while every other owner the map has
        /// stores only from a later cutover and no hand-over stores it until then (a gap nothing
        /// backfills: an owner with a cutover does not). Cutovers are the ones really assigned.
        func checkCoverage(revoking shard: String, epoch: UInt64, of p: Process) throws {
            guard stores(p, shard, epoch: epoch), let core, let s = core.shards[shard], s.rejected == nil else {
                return
            }
            let others = s.owners.filter { $0.epoch != epoch }
            guard !others.isEmpty else { return }  // placed again, from the resume point
            let ownerStores = others.contains { (issuedCutover[$0.epoch] ?? .min) <= wall }
            let handOverStores = core.leaving[shard]?.contains { $0.epoch != epoch && $0.until > wall } ?? false
            guard ownerStores || handOverStores else {
                throw SimFailure(
                    "revoking \(p.name)@\(epoch) leaves \(shard) unstored until a cutover: owners \(others), "
                        + "cutovers \(others.map { issuedCutover[$0.epoch].map { "\($0 - wall) µs ahead" } ?? "none" })"
                )
            }
        }

        /// What each exchange must place for every accepted stream to have its replicas, as quiet
        /// begins: owners the map has that a live process really runs, not draining, count as placed.
        func backlogNow() -> [String: Int] {
            let alive = Set(processes.values.filter(\.alive).map(\.id))
            var backlog: [String: Int] = [:]
            for spec in desired {
                let exchange = String(spec.shard.split(separator: "/")[0])
                if refused.contains(spec.shard) {
                    if core?.shards[spec.shard]?.rejected == nil { backlog[exchange, default: 0] += 1 }
                    continue
                }
                let placed = (core?.shards[spec.shard]?.owners ?? []).filter { o in
                    core?.workers[o.workerID]?.draining != true
                        && processes.values.contains {
                            $0.alive && $0.id == o.workerID && $0.runs[spec.shard] == o.epoch
                        }
                }
                backlog[exchange, default: 0] += max(0, min(spec.replicas, alive.count) - placed.count)
            }
            return backlog
        }

        /// After quiet: every desired stream the exchange accepts has exactly its replicas of live
        /// owners writing now, each really running it at that epoch; refused ones are rejected.
        mutating func checkSettled() throws {
            guard let core else { throw SimFailure("no coordinator after quiet") }
            // Every process still running (partitions healed) holds a lease as itself.
            for p in processes.values where p.alive {
                guard p.session.isEstablished, core.workers[p.id]?.hello.incarnation == p.incarnation else {
                    throw SimFailure("\(p.name) is alive but not leased (incarnation \(p.incarnation))")
                }
            }
            // Every connected worker knows how many share its egress group (its budget share).
            for p in processes.values where p.alive && p.session.isEstablished {
                let group = Self.group(of: p.id)
                guard p.session.egressGroupSize == core.groupSizes[group] ?? 0 else {
                    throw SimFailure(
                        "\(p.name) thinks \(p.session.egressGroupSize) share \(group), the map says \(core.groupSizes[group] ?? 0)"
                    )
                }
                let leased = core.workers.values.filter { $0.hello.egressGroup == group }.count
                guard leased == core.groupSizes[group] else {
                    throw SimFailure(
                        "group \(group): \(leased) leased workers, groupSizes \(core.groupSizes[group] ?? 0)")
                }
            }
            let usable = Set(
                processes.values.filter { $0.alive && !(core.workers[$0.id]?.cordoned ?? true) }.map(\.id))
            for spec in desired {
                guard let shard = core.shards[spec.shard] else { throw SimFailure("\(spec.shard) not in the map") }
                if refused.contains(spec.shard) && !usable.isEmpty {
                    guard shard.rejected != nil, shard.owners.isEmpty else {
                        throw SimFailure("\(spec.shard) was refused but is not rejected: \(shard.owners)")
                    }
                    continue
                }
                guard !refused.contains(spec.shard) else { continue }
                // No hole in what was stored, from the first row to now. Known limit: an old owner that
                // dies mid-hand-over around a coordinator restart (a lease before it went down to two
                // leases after it came up: the new term never hears where that owner's rows ended)
                // can leave one; those are counted, and the test bounds how many seeds have one.
                // (With no usable worker left, nothing can backfill a hole: not checked.)
                if Self.backfillable(spec.shard), !usable.isEmpty, let spans = covered[spec.shard], spans.count > 1 {
                    let lease = CoordinatorCore.Configuration().leaseMilliseconds
                    let deaths = handOverDeaths[spec.shard] ?? []
                    for (a, b) in zip(spans, spans.dropFirst()) {
                        let hole = "\(spec.shard) \(a.to)–\(b.from) ms"
                        guard
                            outages.contains(where: { o in
                                // The hole [a.to, b.from] meets [down − lease, up + 2 × lease], and a process
                                // storing the shard mid-move died in that window.
                                let end = o.to == .max ? o.to : o.to + 2 * lease
                                return b.from >= o.from - lease && a.to <= end
                                    && deaths.contains { $0 >= o.from - lease && $0 <= end }
                            })
                        else { throw SimFailure("\(spec.shard) has rows missing: \(a.to)–\(b.from) ms") }
                        holesNearRestarts.append(hole)
                    }
                }
                let writing = shard.owners.filter { $0.epoch != core.moves[spec.shard]?.to.epoch }
                // Live, and storing now: from its cutover, or before it through the hand-over it succeeds
                // (whose process may store the stream under a newer epoch: it took a second slot back).
                let owners = writing.filter { o in
                    o.state == .live
                        && ((o.storesFrom ?? .min) <= wall
                            || (core.leaving[spec.shard] ?? []).contains { l in
                                l.successor == o.epoch
                                    && processes.values.contains { p in
                                        p.id == l.workerID
                                            && p.runs[spec.shard].map { stores(p, spec.shard, epoch: $0) } == true
                                    }
                            })
                }
                // Its replicas; with fewer usable workers, each usable one holds one beside those on
                // cordoned workers (a cordoned worker keeps what it has but takes nothing new).
                let onCordoned = owners.filter { !usable.contains($0.workerID) }.count
                guard owners.count <= spec.replicas, owners.count >= min(spec.replicas, onCordoned + usable.count)
                else {
                    // What each owner's process is doing with it, and how much else is unsettled.
                    let behind = desired.filter { d in
                        !refused.contains(d.shard)
                            && (core.shards[d.shard]?.owners.filter { $0.state == .live }.count ?? 0) < d.replicas
                    }
                    let seen = shard.owners.map { o in
                        let p = processes.values.first { $0.id == o.workerID }
                        let pending = p?.pendingLive.contains { $0.shard == spec.shard } ?? false
                        return "\(o.workerID): runs \(p?.runs[spec.shard].map(String.init) ?? "-"), live pending "
                            + "\(pending), connected \(p?.session.isEstablished ?? false)"
                    }
                    throw SimFailure(
                        "\(behind.count) of \(desired.count) streams short; \(seen.joined(separator: ", ")); retry at "
                            + "\(shard.retryAt.map { "\($0)" } ?? "-") after \(shard.failures) failures; "
                            + "\(spec.shard): \(owners.count) live owners of \(spec.replicas) (\(shard.owners)); "
                            + "move: \(String(describing: core.moves[spec.shard])); usable: \(usable.sorted())")
                }
                for o in owners
                where !processes.values.contains(where: { $0.id == o.workerID && $0.runs[spec.shard] == o.epoch }) {
                    throw SimFailure("\(spec.shard): \(o.workerID) is not running epoch \(o.epoch)")
                }
            }
        }
    }

    struct SimFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    /// Runs one seed; returns the holes it left near coordinator restarts (the known limit).
    @discardableResult
    static func run(seed: UInt64) throws -> [String] {
        var world = World(seed: seed)
        do {
            try run(&world)
        } catch {
            throw SimFailure(
                "\(error); at \(world.now) ms; last events: \(world.log.suffix(ProcessInfo.processInfo.environment["SIM_LOG"].flatMap { Int($0) } ?? 12).joined(separator: "; "))"
            )
        }
        return world.holesNearRestarts
    }

    static func run(_ world: inout World) throws {
        for i in 0..<3 { try world.spawn(id: "w\(i)", incarnation: 1, name: "w\(i)") }
        world.nextWorker = 3
        for _ in 0..<200 {
            if world.random(10) == 0 { try world.fault() }
            try world.advance()
        }
        // Quiet: duplicates exit, partitions heal, crashed workers stay down.
        for name in world.processes.keys.sorted() {
            if world.processes[name]?.exitAt != nil {
                try world.kill(name, "duplicate exits")
                world.processes[name] = nil
            } else {
                world.processes[name]?.partitioned = false
            }
        }
        // A coordinator that is down comes up now: quiet is the end of every fault.
        world.quiet = true
        if world.downUntil != nil { world.downUntil = world.now }
        world.backlog = world.backlogNow()
        // 2 × lease_ttl (DESIGN.md §3): every desired stream is whole again, plus the time the
        // exchange's per-IP budget needs for what had to be placed when quiet began, as if one
        // group placed it all (none if nothing was lost): pacing is the one wait the rule allows.
        let start = world.now
        let settle = 2 * CoordinatorCore.Configuration().leaseMilliseconds
        let paced =
            world.backlog.map { exchange, count -> Int64 in
                let budget = AssignmentPacing.all[exchange] ?? AssignmentPace(burst: 1, perSecond: 1)
                return Int64((Double(max(0, count - budget.burst)) / budget.perSecond * 1000).rounded(.up))
            }.max() ?? 0
        let deadline = start + settle + paced
        let heard = ClusterSimulationTests.heartbeatMs + 2 * ClusterSimulationTests.maxDelayMs + 100
        while world.now < max(deadline, world.groupsChangedAt + heard) {
            guard world.now - start < 60_000 else { throw SimFailure("not settled 60 s after quiet") }
            try world.advance()
        }
        try world.checkSettled()
    }

    /// The seeds, split into two chunks that run in parallel, each on a thread of its own: a long
    /// synchronous run must not occupy the cooperative pool the other tests' awaits need.
    @Test(arguments: 0..<2) func invariantsHoldOnEverySeed(chunk: Int) async throws {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = environment["SIM_SEED"].flatMap(UInt64.init) {
            seeds = chunk == 0 ? [one] : []
        } else {
            let count = UInt64(environment["SIM_SEEDS"].flatMap(Int.init) ?? 500)
            seeds = (1...count).filter { $0 % 2 == UInt64(chunk) }
        }
        let (failures, holed): ([String], [String]) = await withCheckedContinuation { continuation in
            Thread {
                var failures: [String] = []
                var holed: [String] = []
                for seed in seeds {
                    do {
                        let holes = try Self.run(seed: seed)
                        if !holes.isEmpty { holed.append("SIM_SEED=\(seed): \(holes.joined(separator: ", "))") }
                    } catch {
                        failures.append("SIM_SEED=\(seed): \(error)")
                        if failures.count >= 3 { break }
                    }
                }
                continuation.resume(returning: (failures, holed))
            }.start()
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
        // The known limit stays rare: at most 2 % of seeds lose rows around a coordinator restart.
        #expect(holed.count * 50 <= max(seeds.count, 50), "\(holed.count) seeds with holes: \(holed.prefix(5))")
        if !holed.isEmpty {
            print("seeds with rows missing around a coordinator restart: \(holed.count) of \(seeds.count)")
        }
    }
}
