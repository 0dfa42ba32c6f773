import CollectorCore
import ControlProtocol
import Coordination
import Testing

/// Transcripts of the coordinator's connection machine and the worker session against it: the
/// handshake, admission, the lease, assignments, the orphan rule, and bad input on one connection
/// leaving every other peer served.
@Suite struct CoordinatorServiceTests {
    static let secret = Array("service-test-secret".utf8)
    static func at(_ ms: Int64) -> Instant { Instant(nanoseconds: ms * 1_000_000) }
    static func nonce(_ b: UInt8) -> [UInt8] { [UInt8](repeating: b, count: 32) }

    /// A service and workers wired by hand: frames are handed across at once, in order.
    struct Pair {
        var service: CoordinatorService
        var workers: [UInt64: WorkerSession] = [:]
        var started: [UInt64: [Assignment]] = [:]
        var stopped: [UInt64: [String]] = [:]
        var closedByCoordinator: Set<UInt64> = []
        var admitted: Set<UInt64> = []
        var logs: [String] = []
        var now: Int64 = 0
        /// Connections the network has cut: nothing crosses in either direction.
        var cut: Set<UInt64> = []

        init(secret: [UInt8] = CoordinatorServiceTests.secret, perAddress: Int? = 32, maxPending: Int = 4) {
            var configuration = CoordinatorService.Configuration()
            configuration.maxPendingHandshakes = maxPending
            configuration.maxPendingHandshakesPerAddress = perAddress
            service = CoordinatorService(
                configuration: configuration, secret: secret, core: CoordinatorCore(term: 7, persistedEpochs: 0))
        }

        mutating func coordinator(_ input: CoordinatorService.Input) {
            for output in service.handle(input, now: CoordinatorServiceTests.at(now), wallClock: now * 1000) {
                switch output {
                case .send(let c, let frame):
                    if workers[c] != nil && !cut.contains(c) { worker(c, .frame(frame)) }
                case .close(let c):
                    closedByCoordinator.insert(c)
                    if workers[c] != nil && !cut.contains(c) { worker(c, .disconnected("closed by the coordinator")) }
                    coordinator(.closed(c))
                case .persistEpochs(let upTo):
                    coordinator(.epochsPersisted(upTo: upTo))
                case .admitted(let c):
                    admitted.insert(c)
                case .log(_, let message, let fields):
                    logs.append("\(message) \(fields.sorted { $0.key < $1.key })")
                }
            }
        }

        mutating func worker(_ c: UInt64, _ input: WorkerSession.Input) {
            guard var session = workers[c] else { return }
            let actions = session.handle(input, now: CoordinatorServiceTests.at(now))
            workers[c] = session
            for action in actions {
                switch action {
                case .connect where cut.contains(c):
                    worker(c, .disconnected("network unreachable"))
                case .connect:
                    coordinator(.opened(c, remote: "10.0.0.\(c)", nonce: CoordinatorServiceTests.nonce(UInt8(c))))
                    worker(c, .connected(nonce: CoordinatorServiceTests.nonce(UInt8(100 + c))))
                case .send(let frame):
                    if !cut.contains(c) { coordinator(.frame(c, frame)) }
                case .close:
                    if !cut.contains(c) { coordinator(.closed(c)) }
                case .start(let a):
                    started[c, default: []].append(a)
                case .stop(let shard, _, _):
                    stopped[c, default: []].append(shard)
                case .orphaned, .log, .egressShare:
                    break
                }
            }
        }

        /// A worker on connection `c` connects (its first tick).
        mutating func join(
            _ c: UInt64, id: String, incarnation: UInt64 = 1, secret: [UInt8] = CoordinatorServiceTests.secret,
            group: String? = nil
        ) {
            workers[c] = WorkerSession(
                configuration: WorkerSession.Configuration(
                    workerID: id, incarnation: incarnation, capacity: 1000, egressGroup: group),
                secret: secret, seed: c, now: CoordinatorServiceTests.at(now))
            worker(c, .tick)
        }

        mutating func advance(to ms: Int64, beating: [UInt64]) {
            while now < ms {
                now += 100
                for c in beating { worker(c, .tick) }
                coordinator(.tick)
            }
        }
    }

    /// A handed-over worker stores to the cutover and says so when it reconnects (so a restarted
    /// coordinator places no second writer before then), and forgets it after any cutover lead.
    @Test func aHandedOverShardIsReportedInHelloUntilForgotten() {
        var pair = Pair()
        let name = "okx/trades/BTC-USDT"
        pair.join(1, id: "w1")
        pair.coordinator(.request(.subscribe([CoordinatorCore.DesiredShard(shard: name, weight: 10)])))
        pair.worker(1, .shardLive(shard: name, epoch: pair.started[1]![0].epoch))
        pair.join(2, id: "w2")
        pair.coordinator(.request(.drain(workerID: "w1")))
        let moved = pair.started[2]?.first
        #expect(moved?.cutoverAt != nil)
        pair.worker(2, .shardLive(shard: name, epoch: moved?.epoch ?? 0))
        #expect(pair.stopped[1] == [name], "the hand-over reaches the data plane with its cutover")
        #expect(pair.workers[1]?.handingOver[name]?.until == moved?.cutoverAt)
        #expect(pair.workers[1]?.running[name] == nil)
        // Reconnecting (on connection 3), w1's Hello names the shard as handed over, with the cutover.
        pair.worker(1, .disconnected("reset"))
        pair.coordinator(.closed(1))
        pair.workers[3] = pair.workers.removeValue(forKey: 1)
        pair.advance(to: 3_000, beating: [2, 3])
        #expect(pair.workers[3]?.isEstablished == true, "\(pair.logs.suffix(3))")
        #expect(pair.service.core.leaving[name]?.map(\.workerID) == ["w1"])
        // The new owner reconnecting (on connection 4) reports that it stores from the cutover only,
        // over the wire: the old owner is not revoked before it.
        #expect(pair.workers[2]?.running[name]?.storesFrom == moved?.cutoverAt)
        pair.worker(2, .disconnected("reset"))
        pair.coordinator(.closed(2))
        pair.workers[4] = pair.workers.removeValue(forKey: 2)
        pair.advance(to: 4_000, beating: [3, 4])
        #expect(pair.workers[4]?.isEstablished == true, "\(pair.logs.suffix(3))")
        #expect(pair.service.core.shards[name]?.owners.map(\.storesFrom) == [moved?.cutoverAt])
        #expect(pair.service.core.leaving[name]?.map(\.successor) == [moved?.epoch])
        #expect(pair.workers[3]?.handingOver[name] != nil, "w1 still stores up to the cutover")
        // Forgotten once remembered longer than any cutover lead.
        pair.advance(to: 62_000, beating: [3, 4])
        #expect(pair.workers[3]?.handingOver.isEmpty == true)
    }

    /// A handing-over worker keeps reporting what it stores up to the cutover: where its rows end
    /// moves (its successor backfills from there if it dies) and its events count.
    @Test func aHandOverKeepsReportingWhatItStoresUntilTheCutover() {
        var pair = Pair()
        let name = "okx/trades/BTC-USDT"
        pair.join(1, id: "w1")
        pair.coordinator(.request(.subscribe([CoordinatorCore.DesiredShard(shard: name, weight: 10)])))
        let first = pair.started[1]![0].epoch
        pair.worker(1, .shardLive(shard: name, epoch: first))
        pair.join(2, id: "w2")
        pair.coordinator(.request(.drain(workerID: "w1")))
        let moved = pair.started[2]?.first
        pair.worker(2, .shardLive(shard: name, epoch: moved?.epoch ?? 0))
        #expect(pair.workers[1]?.handingOver[name] != nil)
        let before = pair.service.core.shards[name]?.eventsTotal ?? -1
        pair.worker(1, .stored(shard: name, epoch: first, events: 5, lastEventTime: 1_234_000, lastEventID: "77"))
        pair.advance(to: pair.now + 1_500, beating: [1, 2])
        let leaving = pair.service.core.leaving[name]?.first { $0.workerID == "w1" }
        #expect(leaving?.resume == ResumePoint(time: 1_234_000, id: "77"))
        #expect(pair.service.core.shards[name]?.eventsTotal == before + 5)
        #expect(pair.service.core.shards[name]?.lastEventTime == 1_234_000)
        // A stale epoch's report is not taken as the hand-over's.
        pair.worker(1, .stored(shard: name, epoch: first + 100, events: 9, lastEventTime: 9_999_000, lastEventID: nil))
        pair.advance(to: pair.now + 1_500, beating: [1, 2])
        #expect(pair.service.core.shards[name]?.eventsTotal == before + 5)
    }

    /// A worker shutting down asks to be drained; it says so again after a reconnect, and its
    /// shard moves make-before-break to the other worker.
    @Test func aLeavingWorkerIsDrainedAndSaysSoAgainAfterAReconnect() {
        var pair = Pair()
        let name = "okx/trades/BTC-USDT"
        pair.join(1, id: "w1")
        pair.coordinator(.request(.subscribe([CoordinatorCore.DesiredShard(shard: name, weight: 10)])))
        pair.worker(1, .shardLive(shard: name, epoch: pair.started[1]![0].epoch))
        pair.join(2, id: "w2")
        #expect(pair.service.core.workers["w1"]?.draining == false)
        pair.worker(1, .leave(reason: "shutting down"))
        #expect(pair.service.core.workers["w1"]?.draining == true)
        #expect(pair.started[2]?.first?.cutoverAt != nil, "moved make-before-break")
        #expect(pair.logs.contains { $0.hasPrefix("worker leaving: draining it") })
        // A restarted coordinator hears it again when w1 rejoins.
        pair.service = CoordinatorService(
            configuration: CoordinatorService.Configuration(), secret: Self.secret,
            core: CoordinatorCore(term: 8, persistedEpochs: 1000))
        pair.worker(1, .disconnected("reset"))
        pair.workers[3] = pair.workers.removeValue(forKey: 1)
        pair.advance(to: 3_000, beating: [3])
        #expect(pair.workers[3]?.isEstablished == true, "\(pair.logs.suffix(3))")
        #expect(pair.service.core.workers["w1"]?.draining == true)
        // The process restarted (a new incarnation, not leaving): it takes shards again.
        pair.worker(3, .disconnected("exit"))
        pair.coordinator(.closed(3))
        pair.workers[3] = nil
        pair.join(4, id: "w1", incarnation: 2)
        #expect(pair.workers[4]?.isEstablished == true, "\(pair.logs.suffix(3))")
        #expect(pair.service.core.workers["w1"]?.draining == false)
        #expect(pair.service.core.workers["w1"]?.cordoned == false)
    }

    /// An operator's drain outlives the worker's process; only its own `leaving` does not.
    @Test func anOperatorsDrainSurvivesARestartOfTheWorker() {
        var pair = Pair()
        pair.join(1, id: "w1")
        pair.coordinator(.request(.drain(workerID: "w1")))
        pair.worker(1, .leave(reason: "shutting down"))
        pair.worker(1, .disconnected("exit"))
        pair.coordinator(.closed(1))
        pair.workers[1] = nil
        pair.join(2, id: "w1", incarnation: 2)
        #expect(pair.workers[2]?.isEstablished == true, "\(pair.logs.suffix(3))")
        #expect(pair.service.core.workers["w1"]?.draining == true)
    }

    @Test func aWorkerJoinsHeartbeatsAndRunsWhatItIsAssigned() {
        var pair = Pair()
        pair.join(1, id: "w1")
        #expect(pair.workers[1]?.isEstablished == true)
        #expect(pair.workers[1]?.term == 7)
        #expect(pair.service.core.workers["w1"] != nil)
        // Only now may its frames exceed the unproven limit.
        #expect(pair.admitted == [1])
        pair.coordinator(.request(.subscribe([CoordinatorCore.DesiredShard(shard: "okx/trades/BTC-USDT", weight: 10)])))
        #expect(pair.started[1]?.map(\.shard) == ["okx/trades/BTC-USDT"])
        pair.worker(1, .shardLive(shard: "okx/trades/BTC-USDT", epoch: pair.started[1]![0].epoch))
        #expect(pair.service.core.shards["okx/trades/BTC-USDT"]?.owners.first?.state == .live)
        // Heartbeats keep the lease for 30 s; stored events and the last trade id reach the map.
        pair.worker(
            1,
            .stored(
                shard: "okx/trades/BTC-USDT", epoch: pair.started[1]![0].epoch, events: 120, lastEventTime: 5_000,
                lastEventID: "trade-991"))
        pair.advance(to: 30_000, beating: [1])
        #expect(pair.service.core.workers["w1"] != nil)
        #expect(pair.workers[1]?.isOrphaned == false)
        let shard = pair.service.core.shards["okx/trades/BTC-USDT"]
        #expect(shard?.resumePoint == ResumePoint(time: 5_000, id: "trade-991"))
        #expect(shard?.eventsTotal == 120)
    }

    @Test func aSilentWorkerIsOrphanedAndItsShardMovesWithTheResumePoint() {
        var pair = Pair()
        pair.join(1, id: "w1")
        pair.join(2, id: "w2")
        pair.coordinator(.request(.subscribe([CoordinatorCore.DesiredShard(shard: "okx/trades/ETH-USDT", weight: 10)])))
        let first = pair.started[1]?.first ?? pair.started[2]!.first!
        let owner: UInt64 = pair.started[1] != nil ? 1 : 2
        let other: UInt64 = 3 - owner
        pair.worker(owner, .shardLive(shard: first.shard, epoch: first.epoch))
        pair.worker(
            owner, .stored(shard: first.shard, epoch: first.epoch, events: 1, lastEventTime: 77, lastEventID: "t77"))
        pair.advance(to: 2_000, beating: [1, 2])
        // The network cuts the owner off; it keeps running, the other keeps beating.
        pair.cut.insert(owner)
        pair.advance(to: 9_000, beating: [1, 2])
        #expect(pair.service.core.workers[owner == 1 ? "w1" : "w2"] == nil)
        let moved = pair.started[other]?.first
        #expect(moved?.shard == first.shard)
        #expect(moved.map { $0.epoch > first.epoch } == true)
        #expect(moved?.resumeFrom == ResumePoint(time: 77, id: "t77"))
        // The cut-off worker still runs it, and knows it is orphaned.
        #expect(pair.workers[owner]?.isOrphaned == true)
        #expect(pair.workers[owner]?.running[first.shard] != nil)
        // Healed: it reconnects, reports the stale epoch, and the coordinator revokes it at once.
        pair.cut.remove(owner)
        pair.advance(to: 30_000, beating: [1, 2])
        #expect(pair.stopped[owner] == [first.shard])
        #expect(pair.workers[owner]?.isOrphaned == false)
        #expect(pair.service.core.shards[first.shard]?.owners.map(\.epoch) == [moved!.epoch])
    }

    @Test func aWrongSecretIsRefusedWithAReasonAndOthersAreServed() {
        var pair = Pair()
        pair.join(1, id: "w1")
        // A worker with another secret finds the coordinator's proof wrong and leaves; logged there.
        pair.join(2, id: "intruder", secret: Array("not-the-secret".utf8))
        #expect(pair.workers[2]?.isEstablished == false)
        #expect(pair.service.core.workers["intruder"] == nil)
        #expect(pair.logs.contains { $0.contains("control handshake abandoned") })
        // A peer that answers the challenge with a forged proof is refused with bad-proof.
        let hello = Hello(workerID: "forger", incarnation: 1, capacity: 10, nonce: Self.nonce(3))
        pair.coordinator(.opened(3, remote: "10.0.0.3", nonce: Self.nonce(4)))
        pair.coordinator(.frame(3, HandshakeMessage.hello(hello).frame()))
        pair.coordinator(.frame(3, HandshakeMessage.proof([UInt8](repeating: 0, count: 32)).frame()))
        #expect(pair.closedByCoordinator.contains(3))
        #expect(!pair.admitted.contains(2) && !pair.admitted.contains(3))
        #expect(pair.logs.contains { $0.contains("control handshake refused") && $0.contains("bad-proof") })
        #expect(!pair.logs.joined().contains("not-the-secret"))
        #expect(!pair.logs.joined().contains("service-test-secret"))
        pair.advance(to: 10_000, beating: [1])
        #expect(pair.service.core.workers["w1"] != nil)
    }

    @Test func aSecondLiveProcessWithTheSameIDIsRejectedUntilTheFirstFallsSilent() {
        var pair = Pair()
        pair.join(1, id: "w1")
        pair.advance(to: 1_000, beating: [1])
        pair.join(2, id: "w1", incarnation: 2)
        #expect(pair.workers[2]?.isEstablished == false)
        #expect(pair.logs.contains { $0.contains("duplicate-id") })
        #expect(pair.workers[1]?.isEstablished == true)
        // The first one goes silent for more than a heartbeat and a half: the next attempt replaces it.
        pair.advance(to: 4_000, beating: [])
        pair.advance(to: 20_000, beating: [2])
        #expect(pair.workers[2]?.isEstablished == true)
        #expect(pair.closedByCoordinator.contains(1))
        #expect(pair.logs.contains { $0.contains("worker session replaced") })
    }

    @Test func aDisplacedProcessRefusedAsADuplicateStopsEveryShard() {
        var pair = Pair()
        pair.join(1, id: "w1")
        pair.coordinator(.request(.subscribe([CoordinatorCore.DesiredShard(shard: "okx/trades/SOL-USDT", weight: 10)])))
        let a = pair.started[1]![0]
        pair.worker(1, .shardLive(shard: a.shard, epoch: a.epoch))
        pair.advance(to: 1_000, beating: [1])
        // Cut off; a new process with the same id (the rescheduled pod) takes the id over.
        pair.cut.insert(1)
        pair.advance(to: 3_000, beating: [1])
        pair.join(2, id: "w1", incarnation: 2)
        pair.advance(to: 12_000, beating: [1, 2])
        #expect(pair.workers[2]?.isEstablished == true)
        #expect(pair.workers[1]?.running[a.shard] != nil)  // orphaned, still collecting
        #expect(pair.stopped[1] == nil)
        // Healed: the old process is refused as a duplicate and stops what it ran.
        pair.cut.remove(1)
        pair.advance(to: 30_000, beating: [1, 2])
        #expect(pair.logs.contains { $0.contains("duplicate-id") })
        #expect(pair.stopped[1] == [a.shard])
        #expect(pair.workers[1]?.running.isEmpty == true)
        #expect(pair.workers[2]?.isEstablished == true)
    }

    @Test func badFramesAndVersionsCloseOnlyTheirConnection() {
        var pair = Pair()
        pair.join(1, id: "w1")
        // Wrong version.
        let hello = Hello(version: 9, workerID: "w9", incarnation: 1, capacity: 10, nonce: Self.nonce(9))
        pair.coordinator(.opened(10, remote: "10.0.0.10", nonce: Self.nonce(1)))
        pair.coordinator(.frame(10, HandshakeMessage.hello(hello).frame()))
        #expect(pair.closedByCoordinator.contains(10))
        #expect(pair.logs.contains { $0.contains("bad-version") })
        // Bad framing (the driver's decoder failed) and a garbage body.
        pair.coordinator(.opened(11, remote: "10.0.0.11", nonce: Self.nonce(1)))
        pair.coordinator(.invalid(11, "frame length 0"))
        #expect(pair.closedByCoordinator.contains(11))
        pair.coordinator(.opened(12, remote: "10.0.0.12", nonce: Self.nonce(1)))
        pair.coordinator(.frame(12, ControlFrame(type: 1, body: Array("{not json".utf8))))
        #expect(pair.closedByCoordinator.contains(12))
        #expect(pair.logs.contains { $0.contains("malformed") })
        // A joined worker that sends a coordinator message is closed; the others stay.
        pair.join(2, id: "w2")
        pair.coordinator(.frame(2, ClusterMessage.revoke(term: 7, shard: "x", epoch: 1).frame()))
        #expect(pair.closedByCoordinator.contains(2))
        #expect(pair.workers[1]?.isEstablished == true)
        #expect(!pair.closedByCoordinator.contains(1))
    }

    @Test func aFloodOfHandshakesIsBoundedAndTimesOut() {
        var pair = Pair()
        pair.join(1, id: "w1")
        for c in UInt64(20)..<30 { pair.coordinator(.opened(c, remote: "10.9.9.9", nonce: Self.nonce(2))) }
        // Four may be in their handshake at once; the rest are closed at once.
        #expect(pair.closedByCoordinator.filter { $0 >= 20 }.count == 6)
        #expect(pair.logs.contains { $0.contains("too many handshakes in progress") })
        pair.advance(to: 6_000, beating: [1])
        #expect(pair.closedByCoordinator.filter { $0 >= 20 }.count == 10)
        #expect(pair.logs.contains { $0.contains("control handshake timed out") })
        #expect(pair.service.connectionCount == 1)
        #expect(pair.service.core.workers["w1"] != nil)
        // Slots are free again: a real worker joins.
        pair.join(3, id: "w3")
        #expect(pair.workers[3]?.isEstablished == true)
    }

    /// One address cannot take every handshake slot: past its own bound it is refused, and a worker
    /// from another address still joins; ports do not make addresses distinct.
    @Test func handshakesFromOneAddressAreBoundedApart() {
        // 8 slots: one address may take the free ones until half are busy (4 > its bound of 2),
        // then no more from it while the other half stays for everyone else.
        var pair = Pair(perAddress: 2, maxPending: 8)
        for c in UInt64(20)..<26 {
            pair.coordinator(.opened(c, remote: "10.9.9.9:\(40_000 + c)", nonce: Self.nonce(2)))
        }
        #expect(pair.closedByCoordinator.sorted() == [24, 25])
        #expect(pair.logs.filter { $0.contains("too many handshakes from one address") }.count == 2)
        pair.join(1, id: "w1")
        #expect(pair.workers[1]?.isEstablished == true, "another address is served")
        // The flood's slots free as its handshakes time out; then that address may connect again.
        pair.advance(to: 6_000, beating: [1])
        pair.coordinator(.opened(30, remote: "10.9.9.9:50000", nonce: Self.nonce(2)))
        #expect(!pair.closedByCoordinator.contains(30))
        #expect(CoordinatorService.host(of: "[::1]:7070") == "::1")
        #expect(CoordinatorService.host(of: "10.1.2.3:7070") == "10.1.2.3")
        #expect(CoordinatorService.host(of: "unknown") == "unknown")
    }

    @Test func aWorkerIgnoresALowerTermAndAFullBeatRevokesStrays() {
        var pair = Pair()
        pair.join(1, id: "w1")
        // An assignment from a deposed coordinator (term 6 < 7) is not obeyed.
        pair.worker(1, .frame(ClusterMessage.assign(Assignment(term: 6, shard: "okx/ticker/X", epoch: 99)).frame()))
        #expect(pair.started[1] == nil)
        // One from the current term is; the map does not give it, so the next full beat revokes it.
        pair.worker(1, .frame(ClusterMessage.assign(Assignment(term: 7, shard: "okx/ticker/X", epoch: 99)).frame()))
        #expect(pair.started[1]?.count == 1)
        pair.advance(to: 40_000, beating: [1])
        #expect(pair.stopped[1] == ["okx/ticker/X"])
    }

    @Test func workersBehindOneEgressAddressLearnTheirShareOfTheBudgets() {
        var pair = Pair()
        pair.join(1, id: "w1", group: "nat-a")
        pair.join(2, id: "w2", group: "nat-a")
        pair.join(3, id: "w3", group: "nat-b")
        pair.advance(to: 2_000, beating: [1, 2, 3])
        #expect(pair.workers[1]?.egressGroupSize == 2)
        #expect(pair.workers[2]?.egressGroupSize == 2)
        #expect(pair.workers[3]?.egressGroupSize == 1)
        // w2 is cut off and its lease runs out: w1 has the whole address's budgets again.
        pair.cut.insert(2)
        pair.advance(to: 9_000, beating: [1, 2, 3])
        #expect(pair.service.core.groupSizes["nat-a"] == 1)
        #expect(pair.workers[1]?.egressGroupSize == 1)
    }
}
