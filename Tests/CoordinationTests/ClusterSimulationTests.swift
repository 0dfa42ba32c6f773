import CollectorCore
import ControlProtocol
import Coordination
import Foundation
import Testing

/// A seeded simulation of the coordinator core and a set of workers on a simulated clock and
/// network: crashes and restarts (new incarnations), partitions (a cut-off worker keeps running and
/// re-reports on reconnect), scale-up, drains, new subscriptions with replicas, and coordinator
/// restarts. Invariants are checked after every step; a failure names its seed, and `SIM_SEED=n`
/// replays exactly that one. `SIM_SEEDS` sets how many seeds run (default 500).
@Suite struct ClusterSimulationTests {
    struct SimWorker {
        var id: String
        var incarnation: UInt64 = 1
        var alive = true
        var connected = true
        /// Shard → epoch it runs, and whether it reported live yet.
        var running: [String: UInt64] = [:]
        var pendingLive: [(shard: String, epoch: UInt64, at: Int64)] = []
    }

    struct World {
        var rng: SeededRNG
        var now: Int64 = 0  // ms
        var core: CoordinatorCore
        var term: UInt64 = 1
        var persisted: UInt64 = 0
        var workers: [String: SimWorker] = [:]
        var nextWorker = 0
        var desired: [CoordinatorCore.DesiredShard] = []
        var highestIssued: UInt64 = 0
        /// Assignments per (egress group, exchange, second), to check the budget.
        var assignedPerSecond: [String: Int] = [:]
        static let groupBudget = CoordinatorCore.Configuration().assignmentsPerGroupPerSecond
        var log: [String] = []

        init(seed: UInt64) {
            rng = SeededRNG(seed: seed)
            core = CoordinatorCore(term: 1, persistedEpochs: 0)
        }

        var instant: Instant { Instant(nanoseconds: now * 1_000_000) }
        var wall: Int64 { 1_700_000_000_000_000 + now * 1000 }

        mutating func random(_ n: Int) -> Int { Int(rng.next() % UInt64(n)) }

        /// Feeds an event to the core and delivers what it sends (connected workers only).
        mutating func send(_ event: CoordinatorCore.Event) throws {
            var queue = [event]
            while !queue.isEmpty {
                let e = queue.removeFirst()
                for action in core.handle(e, now: instant, wallClock: wall) {
                    switch action {
                    case .persistEpochs(let upTo):
                        persisted = max(persisted, upTo)
                        queue.append(.epochsPersisted(upTo: upTo))
                    case .log: break
                    case .send(let id, let message):
                        guard var w = workers[id], w.alive, w.connected else { continue }
                        switch message {
                        case .assign(let a):
                            guard a.epoch > highestIssued else {
                                throw SimFailure("epoch \(a.epoch) issued after \(highestIssued)")
                            }
                            highestIssued = a.epoch
                            let key = "\(Self.group(of: id))|\(a.shard.split(separator: "/")[0])|\(now / 1000)"
                            assignedPerSecond[key, default: 0] += 1
                            guard assignedPerSecond[key, default: 0] <= Self.groupBudget else {
                                throw SimFailure("egress group budget exceeded: \(key)")
                            }
                            w.running[a.shard] = a.epoch
                            w.pendingLive.append((a.shard, a.epoch, now + 1 + Int64(random(300))))
                        case .revoke(_, let shard, let epoch), .handOver(_, let shard, let epoch, _):
                            if w.running[shard] == epoch { w.running[shard] = nil }
                        default: break
                        }
                        workers[id] = w
                    }
                }
            }
        }

        /// Workers share two egress addresses.
        static func group(of id: String) -> String { "g\((Int(id.dropFirst()) ?? 0) % 2)" }

        mutating func hello(_ w: SimWorker) -> Hello {
            Hello(
                workerID: w.id, incarnation: w.incarnation, capacity: 10_000, egressGroup: Self.group(of: w.id),
                nonce: [UInt8](repeating: 0, count: 32),
                shards: w.running.map { ReportedShard(shard: $0.key, epoch: $0.value, lastEventTime: now * 1000) }
                    .sorted { $0.shard < $1.shard })
        }

        mutating func addWorker() throws {
            let w = SimWorker(id: "w\(nextWorker)")
            nextWorker += 1
            workers[w.id] = w
            try send(.workerJoined(hello(w)))
        }

        /// 100 ms of time: live reports due, heartbeats each second, a tick.
        mutating func advance() throws {
            now += 100
            for id in workers.keys.sorted() {
                guard var w = workers[id], w.alive else { continue }
                let due = w.pendingLive.filter { $0.at <= now }
                w.pendingLive.removeAll { $0.at <= now }
                workers[id] = w
                guard w.connected else { continue }
                for d in due where w.running[d.shard] == d.epoch {
                    try send(.shardLive(workerID: id, shard: d.shard, epoch: d.epoch))
                }
                if now % 1000 == 0 { try send(.heartbeat(workerID: id, sequence: UInt64(now))) }
            }
            try send(.tick)
        }

        mutating func fault() throws {
            let ids = workers.keys.sorted()
            switch random(8) {
            case 0 where !ids.isEmpty:  // crash: everything it ran is gone
                let id = ids[random(ids.count)]
                workers[id]?.alive = false
                workers[id]?.running = [:]
                workers[id]?.pendingLive = []
                log.append("\(now) crash \(id)")
            case 1:  // a crashed worker comes back as a new incarnation
                if let id = ids.first(where: { workers[$0]?.alive == false }), var w = workers[id] {
                    w.alive = true
                    w.connected = true
                    w.incarnation += 1
                    workers[id] = w
                    log.append("\(now) restart \(id)")
                    try send(.workerJoined(hello(w)))
                }
            case 2 where !ids.isEmpty:  // partition: keeps running, silent
                let id = ids[random(ids.count)]
                if workers[id]?.alive == true && workers[id]?.connected == true {
                    workers[id]?.connected = false
                    log.append("\(now) partition \(id)")
                }
            case 3:  // heal: re-reports what it runs
                if let id = ids.first(where: { workers[$0]?.alive == true && workers[$0]?.connected == false }),
                    var w = workers[id]
                {
                    w.connected = true
                    workers[id] = w
                    log.append("\(now) heal \(id)")
                    try send(.workerJoined(hello(w)))
                }
            case 4 where workers.count < 8:
                try addWorker()
                log.append("\(now) join w\(nextWorker - 1)")
            case 5 where !ids.isEmpty:
                let id = ids[random(ids.count)]
                log.append("\(now) drain \(id)")
                try send(.drain(workerID: id))
            case 6:  // a subscription of 1–40 streams (a burst the egress budget must pace)
                var specs: [CoordinatorCore.DesiredShard] = []
                for _ in 0..<(1 + random(40)) {
                    let n = desired.count + specs.count
                    specs.append(
                        CoordinatorCore.DesiredShard(
                            shard: "okx/\(["trades", "book", "ticker"][random(3)])/S\(n)", replicas: 1 + random(2),
                            weight: 1 + random(50)))
                }
                desired += specs
                log.append("\(now) subscribe \(specs.count) from \(specs[0].shard)")
                try send(.subscribe(specs))
            default:  // coordinator restart: new term, epochs above the persisted mark, workers re-report
                term += 1
                log.append("\(now) coordinator restart term \(term)")
                core = CoordinatorCore(term: term, persistedEpochs: persisted, recovering: true)
                try send(.subscribe(desired))
                for id in ids where workers[id]?.alive == true && workers[id]?.connected == true {
                    if let w = workers[id] { try send(.workerJoined(hello(w))) }
                }
            }
        }

        /// The map never gives a shard more owners than its replicas, plus one during a move, and each
        /// worker's load is the weight of the shards it owns.
        func checkMap() throws {
            var loads: [String: Int] = [:]
            for shard in core.shards.values {
                for owner in shard.owners { loads[owner.workerID, default: 0] += shard.spec.weight }
            }
            for (id, worker) in core.workers where worker.load != loads[id, default: 0] {
                throw SimFailure("\(id) load \(worker.load), owns \(loads[id, default: 0])")
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

        /// After quiet: every desired shard has exactly its replicas of live owners writing now, each
        /// really running it with that epoch.
        func checkSettled() throws {
            let live = workers.values.filter { $0.alive && $0.connected && !(core.workers[$0.id]?.cordoned ?? true) }
            for spec in desired where spec.replicas <= live.count {
                guard let shard = core.shards[spec.shard] else { throw SimFailure("\(spec.shard) not in the map") }
                // During a move the old owner writes until the cutover and the new one from it: the
                // owners writing now are the shard's owners less the move's new side.
                let writing = shard.owners.filter { $0.epoch != core.moves[spec.shard]?.to.epoch }
                let owners = writing.filter { $0.state == .live }
                guard owners.count == spec.replicas else {
                    throw SimFailure(
                        "\(spec.shard): \(owners.count) live owners of \(spec.replicas) (\(shard.owners)); "
                            + "move: \(String(describing: core.moves[spec.shard])); "
                            + "draining: \(core.workers.values.filter(\.draining).map(\.hello.workerID))")
                }
                for o in owners where workers[o.workerID]?.running[spec.shard] != o.epoch {
                    throw SimFailure("\(spec.shard): \(o.workerID) is not running epoch \(o.epoch)")
                }
            }
        }
    }

    struct SimFailure: Error, CustomStringConvertible {
        var description: String
        init(_ d: String) { description = d }
    }

    static func run(seed: UInt64) throws {
        var world = World(seed: seed)
        do {
            try run(&world)
        } catch {
            throw SimFailure("\(error); last events: \(world.log.suffix(12).joined(separator: "; "))")
        }
    }

    static func run(_ world: inout World) throws {
        for _ in 0..<3 { try world.addWorker() }
        for _ in 0..<200 {
            if world.random(10) == 0 { try world.fault() }
            try world.advance()
            try world.checkMap()
        }
        // Quiet: heal everything, uncordon, then 2 × lease_ttl (and the cutover lead) with no faults.
        for id in world.workers.keys.sorted() {
            if world.workers[id]?.alive == true && world.workers[id]?.connected == false, var w = world.workers[id] {
                w.connected = true
                world.workers[id] = w
                try world.send(.workerJoined(world.hello(w)))
            }
        }
        for _ in 0..<250 {
            try world.advance()
            try world.checkMap()
        }
        try world.checkSettled()
    }

    @Test func invariantsHoldOnEverySeed() throws {
        let environment = ProcessInfo.processInfo.environment
        let seeds: [UInt64]
        if let one = environment["SIM_SEED"].flatMap(UInt64.init) {
            seeds = [one]
        } else {
            seeds = Array(1...UInt64(environment["SIM_SEEDS"].flatMap(Int.init) ?? 500))
        }
        var failures: [String] = []
        for seed in seeds {
            do {
                try Self.run(seed: seed)
            } catch {
                failures.append("SIM_SEED=\(seed): \(error)")
                if failures.count >= 3 { break }
            }
        }
        #expect(failures.isEmpty, "\(failures.joined(separator: "\n"))")
    }
}
