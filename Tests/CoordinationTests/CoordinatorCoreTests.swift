import CollectorCore
import ControlProtocol
import Coordination
import Exchanges
import Testing

/// The coordinator core's first rules as transcripts on a simulated clock.
@Suite struct CoordinatorCoreTests {
    static func at(_ ms: Int64) -> Instant { Instant(nanoseconds: ms * 1_000_000) }
    static func hello(_ id: String, capacity: Int = 100, shards: [ReportedShard] = []) -> Hello {
        Hello(workerID: id, incarnation: 1, capacity: capacity, nonce: [UInt8](repeating: 0, count: 32), shards: shards)
    }
    static func assigns(_ actions: [CoordinatorCore.Action]) -> [(String, Assignment)] {
        actions.compactMap { if case .send(let w, .assign(let a)) = $0 { (w, a) } else { nil } }
    }
    static func revokes(_ actions: [CoordinatorCore.Action]) -> [(String, String, UInt64)] {
        actions.compactMap { if case .send(let w, .revoke(_, let s, let e)) = $0 { (w, s, e) } else { nil } }
    }

    /// A core whose first epoch block is already durable.
    static func core(persisted: UInt64 = 0) -> CoordinatorCore {
        var core = CoordinatorCore(term: 1, persistedEpochs: persisted)
        _ = core.handle(.epochsPersisted(upTo: persisted + 1000), now: at(0), wallClock: 0)
        return core
    }

    @Test func shardsArePlacedByLoadPerCapacityWithReplicasOnDistinctWorkers() {
        var core = Self.core()
        _ = core.handle(.workerJoined(Self.hello("a", capacity: 100)), now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("b", capacity: 200)), now: Self.at(0), wallClock: 0)
        let shards =
            (0..<6).map { CoordinatorCore.DesiredShard(shard: "okx/trades/S\($0)-USDT", weight: 10) }
            + [CoordinatorCore.DesiredShard(shard: "okx/book/BTC-USDT", replicas: 2, weight: 50)]
        let actions = core.handle(.subscribe(shards), now: Self.at(1), wallClock: 0)
        let placed = Self.assigns(actions)
        #expect(placed.count == 8, "six trades and two book replicas")
        let book = placed.filter { $0.1.shard == "okx/book/BTC-USDT" }.map(\.0)
        #expect(Set(book) == ["a", "b"], "replicas on distinct workers")
        // Loads end near proportional to capacity (a 100, b 200; 160 in all).
        let loadA = core.workers["a"]?.load ?? 0
        let loadB = core.workers["b"]?.load ?? 0
        #expect(loadA + loadB == 160 && abs(Double(loadB) / Double(loadA) - 2) < 1, "\(loadA) \(loadB)")
        // Every epoch distinct and increasing in issue order.
        let epochs = placed.map(\.1.epoch)
        #expect(epochs == epochs.sorted() && Set(epochs).count == epochs.count)
    }

    @Test func aWorkerWhoseLeaseRunsOutLosesItsShardsToTheOthersWithNewerEpochsAndTheResumePoint() {
        var core = Self.core()
        _ = core.handle(.subscribe([.init(shard: "okx/trades/BTC-USDT", weight: 10)]), now: Self.at(0), wallClock: 0)
        // a re-reports the shard (epoch 1, stored up to exchange time 42): adopted as it is.
        let adopted = core.handle(
            .workerJoined(
                Self.hello("a", shards: [ReportedShard(shard: "okx/trades/BTC-USDT", epoch: 1, lastEventTime: 42)])),
            now: Self.at(0), wallClock: 0)
        #expect(Self.assigns(adopted).isEmpty && Self.revokes(adopted).isEmpty)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(1000), wallClock: 0)
        // b beats, a does not: at a's lease expiry (5 s) the shard moves to b.
        for t in stride(from: Int64(1000), through: 5000, by: 1000) {
            _ = core.handle(.heartbeat(workerID: "b", sequence: UInt64(t)), now: Self.at(t), wallClock: 0)
        }
        #expect(Self.assigns(core.handle(.tick, now: Self.at(4999), wallClock: 0)).isEmpty, "a's lease still holds")
        let moved = Self.assigns(core.handle(.tick, now: Self.at(5000), wallClock: 0))
        #expect(moved.map(\.0) == ["b"])
        #expect((moved.first?.1.epoch ?? 0) > 1, "a newer epoch")
        #expect(moved.first?.1.resumeFrom == ResumePoint(time: 42), "the new owner backfills from a's last event")
        #expect(core.workers["a"] == nil)
    }

    /// An owner told to backfill that is lost before it goes live may not have backfilled: its
    /// replacement starts from the same point, not from what the lost owner's stream reached.
    @Test func aBackfillingOwnerLostBeforeLiveHandsItsResumePointOn() {
        var core = Self.core()
        let name = "okx/trades/BTC-USDT"
        _ = core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: 0)
        _ = core.handle(
            .workerJoined(Self.hello("a", shards: [ReportedShard(shard: name, epoch: 1, lastEventTime: 42)])),
            now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(0), wallClock: 0)
        for t in stride(from: Int64(1000), through: 5000, by: 1000) {
            _ = core.handle(.heartbeat(workerID: "b", sequence: UInt64(t)), now: Self.at(t), wallClock: 0)
        }
        let toB = Self.assigns(core.handle(.tick, now: Self.at(5000), wallClock: 0))
        #expect(toB.map(\.0) == ["b"] && toB.first?.1.resumeFrom == ResumePoint(time: 42))
        // b stores live rows (its backfill not done: not live yet), then falls silent; c takes over.
        let epoch = toB.first?.1.epoch ?? 0
        _ = core.handle(
            .heartbeat(
                workerID: "b", sequence: 10,
                reports: [
                    ShardReport(shard: name, epoch: epoch, state: .starting, eventsDelta: 3, lastEventTime: 5_000_000)
                ]), now: Self.at(5100), wallClock: 0)
        #expect(core.shards[name]?.lastEventTime == 5_000_000)
        _ = core.handle(.workerJoined(Self.hello("c")), now: Self.at(6000), wallClock: 0)
        for t in stride(from: Int64(7000), through: 11000, by: 1000) {
            _ = core.handle(.heartbeat(workerID: "c", sequence: UInt64(t)), now: Self.at(t), wallClock: 0)
        }
        let toC = Self.assigns(core.handle(.tick, now: Self.at(11000), wallClock: 0))
        #expect(toC.map(\.0) == ["c"])
        #expect(toC.first?.1.resumeFrom == ResumePoint(time: 42), "from b's resume point, not its stream's end")
    }

    /// The same process reconnecting is not lost: its resume point is not handed on, so a later
    /// owner resumes from where its rows really end, not from a stale backfill point.
    @Test func aReconnectingOwnerKeepsNoStaleBackfillPoint() {
        var core = Self.core()
        let name = "okx/trades/BTC-USDT"
        _ = core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: 0)
        _ = core.handle(
            .workerJoined(Self.hello("a", shards: [ReportedShard(shard: name, epoch: 1, lastEventTime: 42)])),
            now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(0), wallClock: 0)
        for t in stride(from: Int64(1000), through: 5000, by: 1000) {
            _ = core.handle(.heartbeat(workerID: "b", sequence: UInt64(t)), now: Self.at(t), wallClock: 0)
        }
        let toB = Self.assigns(core.handle(.tick, now: Self.at(5000), wallClock: 0))
        let epoch = try? #require(toB.first?.1.epoch)
        // b reconnects (same incarnation) before it is live, reporting the shard; then goes live.
        _ = core.handle(
            .workerJoined(
                Self.hello("b", shards: [ReportedShard(shard: name, epoch: epoch ?? 0, lastEventTime: 42, live: false)])
            ),
            now: Self.at(5100), wallClock: 0)
        _ = core.handle(.shardLive(workerID: "b", shard: name, epoch: epoch ?? 0), now: Self.at(5200), wallClock: 0)
        _ = core.handle(
            .heartbeat(
                workerID: "b", sequence: 99,
                reports: [
                    ShardReport(shard: name, epoch: epoch ?? 0, state: .live, eventsDelta: 9, lastEventTime: 59_000_000)
                ]),
            now: Self.at(6000), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("c")), now: Self.at(6000), wallClock: 0)
        for t in stride(from: Int64(7000), through: 12000, by: 1000) {
            _ = core.handle(.heartbeat(workerID: "c", sequence: UInt64(t)), now: Self.at(t), wallClock: 0)
        }
        let toC = Self.assigns(core.handle(.tick, now: Self.at(12000), wallClock: 0))
        #expect(toC.map(\.0) == ["c"])
        #expect(toC.first?.1.resumeFrom?.time == 59_000_000, "from b's rows, not the stale 42")
    }

    /// A process refused as a duplicate stops what it runs: a shard nobody owns is placed from where
    /// that process's rows end (its `Hello` said), not from the map's older watermark.
    @Test func aProcessRefusedAsADuplicateLeavesItsResumePoint() {
        var core = CoordinatorCore(term: 3, persistedEpochs: 1000)
        _ = core.handle(.epochsPersisted(upTo: 2000), now: Self.at(0), wallClock: 0)
        let name = "binance/trades/S11"
        _ = core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: 0)
        let refused = Hello(
            workerID: "w2", incarnation: 1, capacity: 100, nonce: [UInt8](repeating: 0, count: 32),
            shards: [
                ReportedShard(shard: name, epoch: 12, lastEventTime: 777, lastEventID: "9", handingOverUntil: 5_000_000)
            ])
        _ = core.handle(.workerRefused(refused), now: Self.at(10), wallClock: 10_000)
        let placed = Self.assigns(core.handle(.workerJoined(Self.hello("w5")), now: Self.at(20), wallClock: 20_000))
        #expect(placed.map(\.0) == ["w5"])
        #expect(placed.first?.1.resumeFrom == ResumePoint(time: 777, id: "9"))
    }

    /// An operator's move goes make-before-break to the named worker; what cannot be done now is
    /// refused with a reason, and nothing changes.
    @Test func anOperatorMoveIsMakeBeforeBreakAndRefusedWithAReason() {
        var core = Self.core()
        let name = "okx/trades/BTC-USDT"
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: 0)
        let placed = Self.assigns(
            core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: 0))
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(0), wallClock: 0)
        let move = CoordinatorCore.Event.move(shard: name, to: "b")
        #expect(
            core.refusal(of: move, now: Self.at(1), wallClock: 1)?.contains("can hand it over") == true, "not live yet")
        _ = core.handle(.shardLive(workerID: "a", shard: name, epoch: placed[0].1.epoch), now: Self.at(1), wallClock: 1)
        #expect(core.refusal(of: .move(shard: "okx/trades/NOPE", to: "b"), now: Self.at(1), wallClock: 1) != nil)
        #expect(core.refusal(of: .move(shard: name, to: "zz"), now: Self.at(1), wallClock: 1)?.contains("zz") == true)
        #expect(
            core.refusal(of: .move(shard: name, to: "a"), now: Self.at(1), wallClock: 1)?.contains("already") == true)
        #expect(core.refusal(of: .drain(workerID: "zz"), now: Self.at(1), wallClock: 1) != nil)
        #expect(core.refusal(of: move, now: Self.at(1), wallClock: 1) == nil)
        let moved = Self.assigns(core.handle(move, now: Self.at(2), wallClock: 2))
        #expect(moved.map(\.0) == ["b"] && moved.first?.1.cutoverAt != nil, "to b, with a cutover")
        #expect(core.moves[name]?.from.workerID == "a")
        #expect(core.refusal(of: move, now: Self.at(3), wallClock: 3) != nil, "one move at a time")
        // A refused move changes nothing.
        let again = core.handle(.move(shard: name, to: "zz"), now: Self.at(3), wallClock: 3)
        #expect(Self.assigns(again).isEmpty && Self.revokes(again).isEmpty)
    }

    /// Paused, balance is not judged on joins or ticks; resumed, it is.
    @Test func aPausedRebalanceMovesNothingUntilResumed() {
        var core = Self.core()
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: 0)
        let placed = Self.assigns(
            core.handle(
                .subscribe((0..<6).map { .init(shard: "okx/trades/S\($0)", weight: 10) }), now: Self.at(0), wallClock: 0
            ))
        for (_, a) in placed {
            _ = core.handle(.shardLive(workerID: "a", shard: a.shard, epoch: a.epoch), now: Self.at(0), wallClock: 0)
        }
        _ = core.handle(.pauseRebalance(true), now: Self.at(0), wallClock: 0)
        #expect(Self.assigns(core.handle(.workerJoined(Self.hello("b")), now: Self.at(100), wallClock: 0)).isEmpty)
        #expect(Self.assigns(core.handle(.tick, now: Self.at(2000), wallClock: 0)).isEmpty)
        _ = core.handle(.pauseRebalance(false), now: Self.at(2100), wallClock: 0)
        #expect(!Self.assigns(core.handle(.tick, now: Self.at(3200), wallClock: 0)).isEmpty, "moves start again")
    }

    /// A restarted coordinator places nothing for one lease length: live workers re-report first.
    @Test func aRecoveringCoordinatorWaitsOneLeaseBeforePlacing() {
        var core = CoordinatorCore(term: 2, persistedEpochs: 1000, recovering: true)
        _ = core.handle(.epochsPersisted(upTo: 2000), now: Self.at(0), wallClock: 0)
        _ = core.handle(.subscribe([.init(shard: "okx/trades/A", weight: 10)]), now: Self.at(0), wallClock: 0)
        let early = core.handle(.workerJoined(Self.hello("a")), now: Self.at(100), wallClock: 0)
        #expect(Self.assigns(early).isEmpty)
        #expect(Self.assigns(core.handle(.tick, now: Self.at(4999), wallClock: 0)).isEmpty)
        #expect(Self.assigns(core.handle(.tick, now: Self.at(5000), wallClock: 0)).map(\.0) == ["a"])
    }

    /// The hold ends on whatever event comes first past it: a heartbeat places at once too.
    @Test func aRecoveryHoldEndingOnAHeartbeatPlacesAtOnce() {
        var core = CoordinatorCore(term: 2, persistedEpochs: 1000, recovering: true)
        _ = core.handle(.epochsPersisted(upTo: 2000), now: Self.at(0), wallClock: 0)
        _ = core.handle(.subscribe([.init(shard: "okx/trades/A", weight: 10)]), now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(100), wallClock: 0)
        let held = core.handle(.heartbeat(workerID: "a", sequence: 1), now: Self.at(4999), wallClock: 0)
        #expect(Self.assigns(held).isEmpty)
        let placed = core.handle(.heartbeat(workerID: "a", sequence: 2), now: Self.at(5000), wallClock: 0)
        #expect(Self.assigns(placed).map(\.0) == ["a"])
    }

    /// Balance is judged on every join, and on ticks at most once per `rebalanceInterval`.
    @Test func balanceIsJudgedOnTicksAtMostOncePerInterval() {
        var cfg = CoordinatorCore.Configuration()
        cfg.maxConcurrentMoves = 1
        cfg.rebalanceInterval = .seconds(1)
        var core = CoordinatorCore(configuration: cfg, term: 1, persistedEpochs: 0)
        _ = core.handle(.epochsPersisted(upTo: 1000), now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("a", capacity: 100)), now: Self.at(0), wallClock: 0)
        let placed = Self.assigns(
            core.handle(
                .subscribe((0..<10).map { .init(shard: "okx/trades/S\($0)", weight: 10) }), now: Self.at(0),
                wallClock: 0))
        for (_, a) in placed {
            _ = core.handle(.shardLive(workerID: "a", shard: a.shard, epoch: a.epoch), now: Self.at(0), wallClock: 0)
        }
        let joined = Self.assigns(core.handle(.workerJoined(Self.hello("b")), now: Self.at(1000), wallClock: 0))
        #expect(joined.count == 1, "the join judges balance: one move (the bound)")
        guard let first = joined.first else {
            Issue.record("no move on the join")
            return
        }
        _ = core.handle(
            .shardLive(workerID: "b", shard: first.1.shard, epoch: first.1.epoch), now: Self.at(1100), wallClock: 0)
        let wall = (first.1.cutoverAt ?? 0) + 1
        for id in ["a", "b"] {
            _ = core.handle(.heartbeat(workerID: id, sequence: 1), now: Self.at(1200), wallClock: wall)
        }
        // The move completes on this tick, but balance was judged 200 ms ago: no new move yet.
        let early = core.handle(.tick, now: Self.at(1200), wallClock: wall)
        #expect(core.moves.isEmpty, "the first move completed")
        #expect(Self.assigns(early).isEmpty, "judged at most once per interval")
        #expect(Self.assigns(core.handle(.tick, now: Self.at(1900), wallClock: wall)).isEmpty)
        let due = Self.assigns(core.handle(.tick, now: Self.at(2000), wallClock: wall))
        #expect(due.map(\.0) == ["b"], "a second later the next move starts")
    }

    /// Placement is paced per egress group and exchange: a burst waits for the next second.
    @Test func assignmentsArePacedPerEgressGroup() {
        var cfg = CoordinatorCore.Configuration()
        cfg.assignmentPace = AssignmentPace(burst: 4, perSecond: 4)
        var core = CoordinatorCore(configuration: cfg, term: 1, persistedEpochs: 0)
        _ = core.handle(.epochsPersisted(upTo: 1000), now: Self.at(0), wallClock: 0)
        for id in ["a", "b"] {
            _ = core.handle(
                .workerJoined(
                    Hello(
                        workerID: id, incarnation: 1, capacity: 1000, egressGroup: "nat-1",
                        nonce: [UInt8](repeating: 0, count: 32))), now: Self.at(0), wallClock: 0)
        }
        let burst = core.handle(
            .subscribe((0..<10).map { .init(shard: "okx/trades/S\($0)", weight: 1) }), now: Self.at(0), wallClock: 0)
        #expect(Self.assigns(burst).count == 4, "one group shares one budget: its burst")
        // A token bucket: one more every 250 ms, up to the burst of 4 after an idle second.
        #expect(Self.assigns(core.handle(.tick, now: Self.at(240), wallClock: 0)).isEmpty)
        #expect(Self.assigns(core.handle(.tick, now: Self.at(250), wallClock: 0)).count == 1)
        #expect(Self.assigns(core.handle(.tick, now: Self.at(1250), wallClock: 0)).count == 4)
        #expect(Self.assigns(core.handle(.tick, now: Self.at(1500), wallClock: 0)).count == 1)
    }

    /// A heavy shard with no room left does not hold back lighter ones that fit.
    @Test func aShardTooHeavyForAnyWorkerDoesNotBlockLighterOnes() {
        var core = Self.core()
        _ = core.handle(.workerJoined(Self.hello("a", capacity: 60)), now: Self.at(0), wallClock: 0)
        let placed = Self.assigns(
            core.handle(
                .subscribe(
                    [.init(shard: "okx/book/A", weight: 50), .init(shard: "okx/book/B", weight: 50)]
                        + (0..<5).map { .init(shard: "okx/candles:1m/C\($0)", weight: 1) }), now: Self.at(0),
                wallClock: 0))
        #expect(placed.count == 6, "one book and all five candles: \(placed.map(\.1.shard))")
        #expect(core.shards["okx/book/B"]?.owners.isEmpty == true)
    }

    @Test func afterARestartReportedShardsAreAdoptedAndTheHighestEpochWins() {
        var core = Self.core(persisted: 2000)
        _ = core.handle(.subscribe([.init(shard: "okx/trades/BTC-USDT", weight: 10)]), now: Self.at(0), wallClock: 0)
        // No worker yet: nothing placed. Then two workers both claim it.
        _ = core.handle(
            .workerJoined(
                Self.hello("a", shards: [ReportedShard(shard: "okx/trades/BTC-USDT", epoch: 1500, lastEventTime: 7)])),
            now: Self.at(0), wallClock: 0)
        let second = core.handle(
            .workerJoined(
                Self.hello("b", shards: [ReportedShard(shard: "okx/trades/BTC-USDT", epoch: 1700, lastEventTime: 9)])),
            now: Self.at(1), wallClock: 0)
        #expect(Self.revokes(second).map { "\($0.0) \($0.2)" } == ["a 1500"], "the lower epoch is revoked")
        #expect(core.shards["okx/trades/BTC-USDT"]?.owners.map(\.workerID) == ["b"])
        #expect(core.shards["okx/trades/BTC-USDT"]?.lastEventTime == 9)
        #expect(core.nextEpoch == 2001, "epochs continue above the persisted mark")
        // A shard no longer desired is revoked where it is reported.
        let stale = core.handle(
            .workerJoined(
                Self.hello("c", shards: [ReportedShard(shard: "okx/trades/GONE-USDT", epoch: 3, lastEventTime: nil)])),
            now: Self.at(2), wallClock: 0)
        #expect(Self.revokes(stale).map(\.1) == ["okx/trades/GONE-USDT"])
    }

    @Test func aPermanentFailureIsRejectedAndNotMovedAround() throws {
        var core = Self.core()
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(0), wallClock: 0)
        let placed = Self.assigns(
            core.handle(
                .subscribe([.init(shard: "okx/candles:1m/NOPE-USDT", weight: 1)]), now: Self.at(0), wallClock: 0))
        let owner = placed.first
        let after = core.handle(
            .shardFailed(
                workerID: owner?.0 ?? "", shard: "okx/candles:1m/NOPE-USDT", epoch: owner?.1.epoch ?? 0,
                permanent: true,
                code: "60018", reason: "doesn't exist"),
            now: Self.at(10), wallClock: 0)
        #expect(Self.assigns(after).isEmpty, "not moved to the other worker")
        #expect(core.shards["okx/candles:1m/NOPE-USDT"]?.rejected?.code == "60018")
        // A transient failure is placed again (after the first retry delay, 1 s).
        _ = core.handle(.subscribe([.init(shard: "okx/trades/X-USDT", weight: 10)]), now: Self.at(11), wallClock: 0)
        let x = core.shards["okx/trades/X-USDT"]?.owners.first
        _ = core.handle(
            .shardFailed(
                workerID: x?.workerID ?? "", shard: "okx/trades/X-USDT", epoch: x?.epoch ?? 0, permanent: false,
                code: "", reason: "timeout"),
            now: Self.at(12), wallClock: 0)
        let retriedX = core.handle(.tick, now: Self.at(1012), wallClock: 0)
        #expect(Self.assigns(retriedX).count == 1)
        // Placed again once `rejectedRetry` (5 minutes) has passed: the exchange may list it later.
        // (The workers beat meanwhile, so their leases hold.)
        for (i, ms) in stride(from: 2000, through: 298_000, by: 2000).enumerated() {
            for id in ["a", "b"] {
                _ = core.handle(
                    .heartbeat(workerID: id, sequence: UInt64(i + 1)), now: Self.at(Int64(ms)), wallClock: 0)
            }
        }
        #expect(Self.assigns(core.handle(.tick, now: Self.at(299_000), wallClock: 0)).isEmpty)
        for id in ["a", "b"] {
            _ = core.handle(.heartbeat(workerID: id, sequence: 200), now: Self.at(300_000), wallClock: 0)
        }
        let retried = Self.assigns(core.handle(.tick, now: Self.at(300_010), wallClock: 0))
        #expect(retried.map(\.1.shard) == ["okx/candles:1m/NOPE-USDT"], "\(retried)")
        #expect(core.shards["okx/candles:1m/NOPE-USDT"]?.rejected == nil)
        let again = try #require(retried.first)
        _ = core.handle(
            .shardFailed(
                workerID: again.0, shard: again.1.shard, epoch: again.1.epoch, permanent: true, code: "60018",
                reason: "doesn't exist"),
            now: Self.at(300_020), wallClock: 0)
        #expect(core.shards["okx/candles:1m/NOPE-USDT"]?.rejected?.code == "60018", "rejected again")
    }

    /// Epochs come from durable blocks: the next block is asked for at half use, and nothing is
    /// assigned beyond what is durable.
    @Test func epochsAreIssuedOnlyFromDurableBlocksAskedForAhead() {
        var cfg = CoordinatorCore.Configuration()
        cfg.epochBlock = 4
        var core = CoordinatorCore(configuration: cfg, term: 1, persistedEpochs: 0)
        _ = core.handle(.workerJoined(Self.hello("a", capacity: 1000)), now: Self.at(0), wallClock: 0)
        let cold = core.handle(
            .subscribe((0..<3).map { .init(shard: "okx/trades/S\($0)", weight: 1) }), now: Self.at(0), wallClock: 0)
        #expect(Self.assigns(cold).isEmpty, "nothing is durable yet")
        #expect(cold.contains(.persistEpochs(upTo: 4)))
        let warm = core.handle(.epochsPersisted(upTo: 4), now: Self.at(1), wallClock: 0)
        #expect(Self.assigns(warm).map(\.1.epoch) == [1, 2, 3])
        #expect(warm.contains(.persistEpochs(upTo: 8)), "the next block is asked for at half use")
    }

    /// A coordinator that took over and found every shard re-reported issues no epoch on its own:
    /// a tick still reserves a block, so an operator's move is not refused for ever.
    @Test func aTakeOverThatAssignsNothingStillReservesEpochsForAMove() {
        var core = CoordinatorCore(term: 2, persistedEpochs: 1000, recovering: true)
        let name = "okx/trades/BTC-USDT"
        _ = core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: 0)
        let reported = [ReportedShard(shard: name, epoch: 900, lastEventTime: 7)]
        _ = core.handle(.workerJoined(Self.hello("a", shards: reported)), now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(0), wallClock: 0)
        _ = core.handle(.shardLive(workerID: "a", shard: name, epoch: 900), now: Self.at(1), wallClock: 1)
        let move = CoordinatorCore.Event.move(shard: name, to: "b")
        #expect(core.refusal(of: move, now: Self.at(2), wallClock: 2)?.contains("no durable epoch") == true)
        let tick = core.handle(.tick, now: Self.at(100), wallClock: 100)
        #expect(tick.contains(.persistEpochs(upTo: 1000 + core.configuration.epochBlock)))
        #expect(!core.handle(.tick, now: Self.at(200), wallClock: 200).contains { $0.isPersistEpochs }, "asked once")
        _ = core.handle(.epochsPersisted(upTo: 1000 + core.configuration.epochBlock), now: Self.at(300), wallClock: 300)
        #expect(core.refusal(of: move, now: Self.at(301), wallClock: 301) == nil)
        let moved = Self.assigns(core.handle(move, now: Self.at(302), wallClock: 302))
        #expect(moved.map(\.0) == ["b"] && moved.first?.1.epoch == 1001)
    }

    /// The cluster's event totals add heartbeat deltas: a worker's restart (its own counters
    /// from zero), an unsubscribe and a hostile delta never take them back or trap.
    @Test func eventTotalsOnlyGrowThroughRestartsUnsubscribesAndHostileDeltas() {
        var core = Self.core()
        let trades = "okx/trades/BTC-USDT"
        let candles = "okx/candles:1m/BTC-USDT"
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: 0)
        let placed = Self.assigns(
            core.handle(
                .subscribe([.init(shard: trades, weight: 10), .init(shard: candles, weight: 1)]), now: Self.at(0),
                wallClock: 0))
        let epoch = Dictionary(uniqueKeysWithValues: placed.map { ($0.1.shard, $0.1.epoch) })
        let tradesKey = EventTotalsKey(exchange: "okx", feed: "trades")
        let candlesKey = EventTotalsKey(exchange: "okx", feed: "candles")
        func totals(trades: Int64, candles: Int64) -> [EventTotalsKey: Int64] {
            [tradesKey: trades, candlesKey: candles]
        }
        func beat(_ sequence: UInt64, _ deltas: [String: Int64], incarnationOf worker: String = "a") {
            let reports = deltas.sorted { $0.key < $1.key }.map {
                ShardReport(shard: $0.key, epoch: epoch[$0.key] ?? 0, state: .live, eventsDelta: $0.value)
            }
            _ = core.handle(
                .heartbeat(workerID: worker, sequence: sequence, reports: reports), now: Self.at(Int64(sequence)),
                wallClock: 0)
        }
        beat(1, [trades: 120, candles: 3])
        beat(2, [trades: 80])
        #expect(core.receivedEventTotals == totals(trades: 200, candles: 3))
        // A new incarnation re-reports what it runs; its counters started again, its deltas add on.
        var hello = Self.hello(
            "a", shards: placed.map { ReportedShard(shard: $0.1.shard, epoch: $0.1.epoch, lastEventTime: nil) })
        hello.incarnation = 2
        _ = core.handle(.workerJoined(hello), now: Self.at(10), wallClock: 0)
        beat(11, [trades: 5, candles: 1])
        #expect(core.receivedEventTotals == totals(trades: 205, candles: 4))
        _ = core.handle(.unsubscribe([trades]), now: Self.at(12), wallClock: 0)
        beat(13, [candles: 2, trades: 7])
        #expect(core.receivedEventTotals == totals(trades: 205, candles: 6), "nothing counted for a gone shard")
        beat(14, [candles: -50])
        beat(15, [candles: .max])
        beat(16, [candles: .max])
        #expect(core.receivedEventTotals[candlesKey] == .max, "held at the maximum, no trap")
        #expect(core.receivedEventTotals[tradesKey] == 205)
    }

    /// Drain is make-before-break: the new owner is assigned with a cutover ahead and stores from it;
    /// once it is live the old owner is handed over at once with `until` = the cutover (rows before it
    /// are the old owner's), so it knows where to stop before its rows get there. A cordoned worker
    /// gets nothing new.
    @Test func aDrainMovesEveryShardMakeBeforeBreakAtItsCutover() {
        var cfg = CoordinatorCore.Configuration()
        cfg.maxConcurrentMoves = 0  // no rebalancing: the drain alone moves shards here
        var core = CoordinatorCore(configuration: cfg, term: 1, persistedEpochs: 0)
        _ = core.handle(.epochsPersisted(upTo: 1000), now: Self.at(0), wallClock: 0)
        let wall: Int64 = 1_700_000_000_000_000
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: wall)
        let placed = Self.assigns(
            core.handle(
                .subscribe([
                    .init(shard: "okx/trades/BTC-USDT", weight: 10), .init(shard: "okx/ticker/BTC-USDT", weight: 5),
                ]),
                now: Self.at(0), wallClock: wall))
        #expect(placed.map(\.0) == ["a", "a"])
        for (_, a) in placed {
            _ = core.handle(.shardLive(workerID: "a", shard: a.shard, epoch: a.epoch), now: Self.at(1), wallClock: wall)
        }
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(2), wallClock: wall)
        _ = core.handle(.workerJoined(Self.hello("c")), now: Self.at(2), wallClock: wall)
        _ = core.handle(.cordon(workerID: "c"), now: Self.at(3), wallClock: wall)
        let started = Self.assigns(core.handle(.drain(workerID: "a"), now: Self.at(4), wallClock: wall))
        #expect(started.map(\.0) == ["b", "b"], "not to the cordoned worker")
        #expect(started.allSatisfy { $0.1.cutoverAt == wall + 10_000_000 })
        #expect(core.moves.count == 2 && core.shards["okx/trades/BTC-USDT"]?.owners.count == 2)
        // b goes live well before the cutover: a learns at once where to stop.
        var done: [CoordinatorCore.Action] = []
        for (_, a) in started {
            done += core.handle(
                .shardLive(workerID: "b", shard: a.shard, epoch: a.epoch), now: Self.at(5), wallClock: wall + 1)
        }
        let handed = done.compactMap { action -> (String, Int64)? in
            if case .send("a", .handOver(_, let shard, _, let until)) = action { (shard, until) } else { nil }
        }
        #expect(Set(handed.map(\.0)) == ["okx/trades/BTC-USDT", "okx/ticker/BTC-USDT"])
        #expect(handed.allSatisfy { $0.1 == wall + 10_000_000 })
        #expect(done.contains(.log("worker drained", ["worker": "a"])))
        #expect(core.moves.isEmpty && core.shards.values.allSatisfy { $0.owners.map(\.workerID) == ["b"] })
    }

    /// If the new owner dies mid-move, the old one keeps the shard: no move leaves it ownerless.
    @Test func aMoveWhoseNewOwnerDiesLeavesTheOldOwnerInPlace() {
        var core = Self.core()
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: 0)
        _ = core.handle(.subscribe([.init(shard: "okx/trades/BTC-USDT", weight: 10)]), now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(0), wallClock: 0)
        _ = core.handle(.drain(workerID: "a"), now: Self.at(1), wallClock: 0)
        #expect(core.moves.count == 1)
        // a keeps beating; b never does: at b's lease expiry the move ends and a still owns it.
        for t in stride(from: Int64(1000), through: 5000, by: 1000) {
            _ = core.handle(.heartbeat(workerID: "a", sequence: UInt64(t)), now: Self.at(t), wallClock: 0)
        }
        _ = core.handle(.tick, now: Self.at(5001), wallClock: 20_000_000)
        #expect(core.workers["b"] == nil)
        #expect(core.shards["okx/trades/BTC-USDT"]?.owners.map(\.workerID) == ["a"])
        #expect(core.moves.isEmpty, "no other worker to move to")
    }

    /// A worker joining an unbalanced cluster takes shards until every load is within ±10 % of the
    /// mean, at most `maxConcurrentMoves` in flight, without overshoot, and a shard just moved stays
    /// put for `minDwell`.
    @Test func aJoiningWorkerIsFilledToTheMeanWithBoundedConcurrentMoves() {
        var cfg = CoordinatorCore.Configuration()
        cfg.maxConcurrentMoves = 3
        var core = CoordinatorCore(configuration: cfg, term: 1, persistedEpochs: 0)
        _ = core.handle(.epochsPersisted(upTo: 1000), now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("a", capacity: 100)), now: Self.at(0), wallClock: 0)
        let placed = Self.assigns(
            core.handle(
                .subscribe((0..<10).map { .init(shard: "okx/trades/S\($0)", weight: 10) }), now: Self.at(0),
                wallClock: 0))
        for (_, a) in placed {
            _ = core.handle(.shardLive(workerID: "a", shard: a.shard, epoch: a.epoch), now: Self.at(0), wallClock: 0)
        }
        var t: Int64 = 1
        var wall: Int64 = 0
        var inFlightMax = 0
        let joined = core.handle(.workerJoined(Self.hello("b", capacity: 100)), now: Self.at(t), wallClock: wall)
        var pending = Self.assigns(joined)
        inFlightMax = max(inFlightMax, core.moves.count)
        #expect(pending.count == 3, "at most three moves at once")
        while !pending.isEmpty {
            var next: [(String, Assignment)] = []
            for (w, a) in pending {
                next += Self.assigns(
                    core.handle(
                        .shardLive(workerID: w, shard: a.shard, epoch: a.epoch), now: Self.at(t), wallClock: wall))
            }
            t += 1_000  // balance is judged once a second on ticks
            wall += 10_000_001  // past the cutover
            for id in ["a", "b"] {
                next += Self.assigns(
                    core.handle(.heartbeat(workerID: id, sequence: UInt64(t)), now: Self.at(t), wallClock: wall))
            }
            inFlightMax = max(inFlightMax, core.moves.count)
            next += Self.assigns(core.handle(.tick, now: Self.at(t), wallClock: wall))
            inFlightMax = max(inFlightMax, core.moves.count)
            pending = next
        }
        #expect(inFlightMax <= 3)
        #expect(core.workers["a"]?.load == 50 && core.workers["b"]?.load == 50, "balanced, no overshoot")
        #expect(core.shards.values.allSatisfy { $0.owners.count == 1 })
        // c joins at once: the shards just moved to b are within min_dwell; a's unmoved ones may go.
        _ = core.handle(.workerJoined(Self.hello("c", capacity: 100)), now: Self.at(t), wallClock: wall)
        let movedAgain = core.moves.keys.filter { name in
            core.shards[name]?.owners.contains { $0.workerID == "b" } == true && core.moves[name]?.from.workerID == "b"
        }
        #expect(movedAgain.isEmpty, "nothing moved twice within min_dwell")
        #expect(!core.moves.isEmpty, "a's shards start moving to c")
    }

    @Test func transientFailuresAreRetriedWithBackoffAndMoveAfterThreeOnOneWorker() {
        var core = Self.core()
        _ = core.handle(.workerJoined(Self.hello("a", capacity: 100)), now: Self.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(Self.hello("b", capacity: 50)), now: Self.at(0), wallClock: 0)
        let name = "okx/trades/BTC-USDT"
        var placed = Self.assigns(
            core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(1), wallClock: 0))
        #expect(placed.map(\.0) == ["a"], "a has the lower load per capacity")
        var t: Int64 = 1
        // Three transient failures on a: each waits longer (1 s, 2 s, 4 s) before the next try.
        for (attempt, delay) in [(1, Int64(1000)), (2, 2000), (3, 4000)] {
            let failed = core.handle(
                .shardFailed(
                    workerID: "a", shard: name, epoch: placed[0].1.epoch, permanent: false, code: "503",
                    reason: "exchange busy"), now: Self.at(t), wallClock: 0)
            #expect(Self.assigns(failed).isEmpty, "attempt \(attempt): not retried at once")
            #expect(core.shards[name]?.failures == attempt)
            let early = core.handle(.tick, now: Self.at(t + delay - 1), wallClock: 0)
            #expect(Self.assigns(early).isEmpty, "attempt \(attempt): held for \(delay) ms")
            t += delay
            for w in ["a", "b"] {
                _ = core.handle(.heartbeat(workerID: w, sequence: UInt64(t)), now: Self.at(t), wallClock: 0)
            }
            placed = Self.assigns(core.handle(.tick, now: Self.at(t), wallClock: 0))
            #expect(placed.count == 1)
            if attempt < 3 { #expect(placed.first?.0 == "a", "attempt \(attempt): still the best worker") }
        }
        // After three failures on a it goes to b, although b is smaller; live there, the count resets.
        #expect(placed.first?.0 == "b")
        _ = core.handle(.shardLive(workerID: "b", shard: name, epoch: placed[0].1.epoch), now: Self.at(t), wallClock: 0)
        #expect(core.shards[name]?.failures == 0)
        #expect(core.shards[name]?.rejected == nil)
    }

    @Test func anAssignmentThatNeverGoesLiveIsRevokedAndRetried() {
        var core = Self.core()
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: 0)
        let name = "okx/books/BTC-USDT"
        let placed = Self.assigns(
            core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: 0))
        #expect(placed.map(\.0) == ["a"])
        // Heartbeats go on, but the book never synchronises: at 30 s the assignment is revoked.
        var t: Int64 = 0
        var revoked: [(String, String, UInt64)] = []
        var retried: [(String, Assignment)] = []
        while t < 32_000 && retried.isEmpty {
            t += 100
            _ = core.handle(.heartbeat(workerID: "a", sequence: UInt64(t)), now: Self.at(t), wallClock: 0)
            let out = core.handle(.tick, now: Self.at(t), wallClock: 0)
            revoked += Self.revokes(out)
            retried += Self.assigns(out)
            if t < 30_000 { #expect(revoked.isEmpty, "revoked at \(t) ms, before the deadline") }
        }
        #expect(revoked.map(\.2) == [placed[0].1.epoch])
        #expect(core.shards[name]?.failures == 1)
        // Retried after the first backoff step with a new epoch.
        #expect(retried.first.map { $0.1.epoch > placed[0].1.epoch } == true)
        #expect(t >= 30_000 && t <= 31_100)
        #expect(core.indexProblem() == nil)
    }

    /// A move whose new owner is not live by the margin before the cutover is abandoned: the old
    /// owner keeps the shard (it never got `until`), the new one is revoked.
    @Test func aMoveNotLiveBeforeTheCutoverIsAbandonedAndTheOldOwnerKeepsIt() {
        var core = Self.core()
        let wall: Int64 = 1_700_000_000_000_000
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: wall)
        let placed = Self.assigns(
            core.handle(.subscribe([.init(shard: "okx/books/BTC-USDT", weight: 10)]), now: Self.at(0), wallClock: wall))
        _ = core.handle(
            .shardLive(workerID: "a", shard: placed[0].1.shard, epoch: placed[0].1.epoch), now: Self.at(0),
            wallClock: wall)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(1), wallClock: wall)
        let moved = Self.assigns(core.handle(.drain(workerID: "a"), now: Self.at(1), wallClock: wall))
        #expect(moved.map(\.0) == ["b"])
        let cutover = moved[0].1.cutoverAt ?? 0
        // Both keep beating; 7.9 s on, b is still not live: the move stands.
        for t in stride(from: Int64(1_000), through: 8_000, by: 1_000) {
            for w in ["a", "b"] {
                _ = core.handle(.heartbeat(workerID: w, sequence: UInt64(t)), now: Self.at(t - 100), wallClock: wall)
            }
        }
        let early = core.handle(.tick, now: Self.at(7_900), wallClock: cutover - 2_100_000)
        #expect(Self.revokes(early).isEmpty && core.moves.count == 1)
        // At the margin (2 s before the cutover) it is abandoned.
        let late = core.handle(.tick, now: Self.at(8_000), wallClock: cutover - 2_000_000)
        #expect(Self.revokes(late).map { [$0.0, "\($0.2)"] } == [["b", "\(moved[0].1.epoch)"]])
        #expect(!late.contains { if case .send(_, .handOver) = $0 { true } else { false } })
        let owners = core.shards["okx/books/BTC-USDT"]?.owners ?? []
        #expect(owners.contains { $0.workerID == "a" && $0.epoch == placed[0].1.epoch }, "a keeps it")
        // a is still draining: the drain tries again, with a new epoch and a new cutover.
        let retry = Self.assigns(late)
        #expect(retry.map(\.0) == ["b"] && retry.allSatisfy { $0.1.epoch > moved[0].1.epoch })
        #expect(retry.allSatisfy { ($0.1.cutoverAt ?? 0) > cutover })
        #expect(core.indexProblem() == nil)
    }

    /// A move's new owner failing after the hand-over: the old owner still stores up to the cutover,
    /// so the replacement is told to store only from there (no second writer, no gap).
    @Test func aReplacementForAFailedNewOwnerStartsAtTheOldOwnersCutover() {
        var core = Self.core()
        let wall: Int64 = 1_700_000_000_000_000
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: wall)
        let placed = Self.assigns(
            core.handle(.subscribe([.init(shard: "okx/trades/BTC-USDT", weight: 10)]), now: Self.at(0), wallClock: wall)
        )
        let name = placed[0].1.shard
        _ = core.handle(
            .shardLive(workerID: "a", shard: name, epoch: placed[0].1.epoch), now: Self.at(0), wallClock: wall)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(1), wallClock: wall)
        let moved = Self.assigns(core.handle(.drain(workerID: "a"), now: Self.at(1), wallClock: wall))
        let cutover = moved[0].1.cutoverAt ?? 0
        let live = core.handle(
            .shardLive(workerID: "b", shard: name, epoch: moved[0].1.epoch), now: Self.at(2), wallClock: wall + 1_000)
        #expect(live.contains { if case .send("a", .handOver(_, _, _, cutover)) = $0 { true } else { false } })
        #expect(core.leaving[name]?.map(\.workerID) == ["a"])
        _ = core.handle(.workerJoined(Self.hello("c")), now: Self.at(3), wallClock: wall + 2_000)
        let failed = core.handle(
            .shardFailed(
                workerID: "b", shard: name, epoch: moved[0].1.epoch, permanent: false, code: "50011", reason: "busy"),
            now: Self.at(4), wallClock: wall + 3_000)
        #expect(Self.assigns(failed).isEmpty, "retried after the retry delay")
        let retry = Self.assigns(core.handle(.tick, now: Self.at(1_100), wallClock: wall + 100_000))
        // b failed once (it may get it back); either way it stores from a's cutover.
        #expect(retry.count == 1 && retry.allSatisfy { $0.1.cutoverAt == cutover })
        // A lease past the cutover the old owner is forgotten (until then its death would mean a
        // backfill for its successor).
        _ = core.handle(.tick, now: Self.at(1_200), wallClock: cutover + 5_000_000)
        #expect(core.leaving[name] == nil)
        #expect(core.indexProblem() == nil)
    }

    /// A coordinator that restarted mid-move hears of the hand-over in the old owner's `Hello`; a
    /// cutover further ahead than any move's lead is refused with a revoke. The same process taking
    /// the shard back keeps storing (no cutover: the hand-over ends).
    @Test func aRestartedCoordinatorLearnsOfAHandOverFromHello() {
        var core = CoordinatorCore(term: 2, persistedEpochs: 0, recovering: true)
        _ = core.handle(.epochsPersisted(upTo: 1000), now: Self.at(0), wallClock: 0)
        let wall: Int64 = 1_700_000_000_000_000
        let until = wall + 5_000_000
        _ = core.handle(.subscribe([.init(shard: "okx/trades/BTC-USDT", weight: 10)]), now: Self.at(0), wallClock: wall)
        let reported = [
            ReportedShard(shard: "okx/trades/BTC-USDT", epoch: 7, lastEventTime: nil, handingOverUntil: until),
            ReportedShard(
                shard: "okx/trades/ETH-USDT", epoch: 8, lastEventTime: nil, handingOverUntil: wall + 60_000_000),
        ]
        _ = core.handle(.subscribe([.init(shard: "okx/trades/ETH-USDT", weight: 10)]), now: Self.at(0), wallClock: wall)
        let joined = core.handle(.workerJoined(Self.hello("a", shards: reported)), now: Self.at(1), wallClock: wall)
        #expect(core.leaving["okx/trades/BTC-USDT"]?.map(\.until) == [until])
        #expect(Self.revokes(joined).map(\.1) == ["okx/trades/ETH-USDT"], "a cutover 60 s ahead is not ours")
        // After the recovery hold, a gets BTC-USDT again: it keeps storing (no cutover for itself).
        let assigned = Self.assigns(core.handle(.tick, now: Self.at(5_000), wallClock: wall + 1_000))
        #expect(assigned.first { $0.1.shard == "okx/trades/BTC-USDT" }.map { $0.1.cutoverAt == nil } == true)
        #expect(core.leaving["okx/trades/BTC-USDT"] == nil, "the hand-over ended: a owns it again")
        #expect(assigned.allSatisfy { $0.1.epoch > 8 }, "epochs continue above what workers report")
        #expect(core.indexProblem() == nil)
    }

    /// After a restart mid-move, old and new owner re-report in either order: the new one stores from
    /// the cutover (`stores_from`), so the old one is not revoked before it — the pair is one claim.
    @Test(arguments: [false, true]) func aRestartedCoordinatorKeepsBothSidesOfAHandOver(newOwnerFirst: Bool) {
        var core = CoordinatorCore(term: 2, persistedEpochs: 0, recovering: true)
        _ = core.handle(.epochsPersisted(upTo: 1000), now: Self.at(0), wallClock: 0)
        let wall: Int64 = 1_700_000_000_000_000
        let until = wall + 5_000_000
        let name = "okx/trades/BTC-USDT"
        _ = core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: wall)
        let old = Self.hello(
            "a", shards: [ReportedShard(shard: name, epoch: 7, lastEventTime: nil, handingOverUntil: until)])
        let new = Self.hello("b", shards: [ReportedShard(shard: name, epoch: 9, lastEventTime: nil, storesFrom: until)])
        var revoked: [(String, String, UInt64)] = []
        for hello in newOwnerFirst ? [new, old] : [old, new] {
            revoked += Self.revokes(core.handle(.workerJoined(hello), now: Self.at(1), wallClock: wall))
        }
        revoked += Self.revokes(core.handle(.tick, now: Self.at(5_000), wallClock: wall + 1_000))
        #expect(revoked.isEmpty, "neither side is stopped early: \(revoked)")
        #expect(core.leaving[name]?.map(\.successor) == [9])
        #expect(core.shards[name]?.owners.map(\.storesFrom) == [until])
        // The new owner rejoining (a blip) still stores from the cutover: the old one stays.
        let blip = core.handle(.workerJoined(new), now: Self.at(5_000), wallClock: wall + 1_100)
        #expect(Self.revokes(blip).isEmpty)
        #expect(core.leaving[name]?.map(\.workerID) == ["a"])
        #expect(core.indexProblem() == nil)
    }

    /// A restart mid-move, before the new owner went live: it re-reports `live: false` with the
    /// cutover it will store from, the old owner re-reports the shard running. The move is rebuilt:
    /// the old owner is not revoked, and is handed over once the new one is live.
    @Test func aRestartMidMoveBeforeTheNewOwnerIsLiveRebuildsTheMove() {
        var core = CoordinatorCore(term: 2, persistedEpochs: 0, recovering: true)
        _ = core.handle(.epochsPersisted(upTo: 1000), now: Self.at(0), wallClock: 0)
        let wall: Int64 = 1_700_000_000_000_000
        let cutover = wall + 8_000_000
        let name = "okx/book/BTC-USDT"
        _ = core.handle(.subscribe([.init(shard: name, weight: 50)]), now: Self.at(0), wallClock: wall)
        var revoked: [(String, String, UInt64)] = []
        let old = ReportedShard(shard: name, epoch: 5, lastEventTime: wall)
        let new = ReportedShard(shard: name, epoch: 7, lastEventTime: nil, storesFrom: cutover, live: false)
        revoked += Self.revokes(
            core.handle(.workerJoined(Self.hello("a", shards: [old])), now: Self.at(1), wallClock: wall))
        revoked += Self.revokes(
            core.handle(.workerJoined(Self.hello("b", shards: [new])), now: Self.at(2), wallClock: wall))
        #expect(revoked.isEmpty, "the old owner stores until the new one is live: \(revoked)")
        #expect(core.moves[name]?.from.workerID == "a" && core.moves[name]?.to.epoch == 7)
        let live = core.handle(
            .shardLive(workerID: "b", shard: name, epoch: 7), now: Self.at(5_000), wallClock: wall + 1_000)
        #expect(
            live.contains { if case .send("a", .handOver(_, _, 5, cutover)) = $0 { true } else { false } },
            "\(live) \(core.shards[name]?.owners ?? []) \(String(describing: core.moves[name]))")
        #expect(core.indexProblem() == nil)
    }

    /// Unsubscribing a stream mid-hand-over stops the old owner too, not only the owners.
    @Test func anUnsubscribeRevokesAHandOverStillStoring() {
        var core = Self.core()
        let wall: Int64 = 1_700_000_000_000_000
        let name = "okx/trades/BTC-USDT"
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: wall)
        let placed = Self.assigns(
            core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: wall))
        _ = core.handle(
            .shardLive(workerID: "a", shard: name, epoch: placed[0].1.epoch), now: Self.at(0), wallClock: wall)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(1), wallClock: wall)
        let moved = Self.assigns(core.handle(.drain(workerID: "a"), now: Self.at(1), wallClock: wall))
        _ = core.handle(
            .shardLive(workerID: "b", shard: name, epoch: moved[0].1.epoch), now: Self.at(2), wallClock: wall)
        #expect(core.leaving[name]?.map(\.workerID) == ["a"])
        let gone = Self.revokes(core.handle(.unsubscribe([name]), now: Self.at(3), wallClock: wall + 1_000))
        #expect(Set(gone.map(\.0)) == ["a", "b"])
        #expect(core.leaving[name] == nil && core.shards[name] == nil)
        #expect(core.indexProblem() == nil)
    }

    /// `replicas: 2`: a hand-over and its successor hold one slot, so a healthy second replica with a
    /// lower epoch is not revoked, and a replica placed for an unrelated loss stores at once.
    @Test func aHandOverAndItsSuccessorHoldOneReplicaSlot() {
        var core = Self.core()
        let wall: Int64 = 1_700_000_000_000_000
        let name = "okx/trades/BTC-USDT"
        for id in ["a", "b"] { _ = core.handle(.workerJoined(Self.hello(id)), now: Self.at(0), wallClock: wall) }
        let placed = Self.assigns(
            core.handle(.subscribe([.init(shard: name, replicas: 2, weight: 10)]), now: Self.at(0), wallClock: wall))
        #expect(Set(placed.map(\.0)) == ["a", "b"])
        for (w, a) in placed {
            _ = core.handle(.shardLive(workerID: w, shard: name, epoch: a.epoch), now: Self.at(0), wallClock: wall)
        }
        // b drains to c: the move completes, b hands over with c as successor.
        _ = core.handle(.workerJoined(Self.hello("c")), now: Self.at(1), wallClock: wall)
        let moved = Self.assigns(core.handle(.drain(workerID: "b"), now: Self.at(1), wallClock: wall))
        #expect(moved.map(\.0) == ["c"])
        let cutover = moved[0].1.cutoverAt ?? 0
        let live = core.handle(
            .shardLive(workerID: "c", shard: name, epoch: moved[0].1.epoch), now: Self.at(2), wallClock: wall + 1_000)
        #expect(Self.revokes(live).isEmpty)
        #expect(core.leaving[name]?.map(\.successor) == [moved[0].1.epoch])
        // a (the lowest epoch) rejoins: three epochs, two slots, but the hand-over pairs with c.
        let aEpoch = placed.first { $0.0 == "a" }!.1.epoch
        let rejoin = core.handle(
            .workerJoined(Self.hello("a", shards: [ReportedShard(shard: name, epoch: aEpoch, lastEventTime: nil)])),
            now: Self.at(3), wallClock: wall + 2_000)
        #expect(Self.revokes(rejoin).isEmpty, "the healthy replica stays")
        // a dies: its replacement is unrelated to b's hand-over and stores at once.
        _ = core.handle(.workerJoined(Self.hello("d")), now: Self.at(4), wallClock: wall + 3_000)
        for id in ["b", "c", "d"] {
            _ = core.handle(.heartbeat(workerID: id, sequence: 1), now: Self.at(5_000), wallClock: wall + 3_500)
        }
        let expired = core.handle(.tick, now: Self.at(6_000), wallClock: wall + 4_000)
        #expect(expired.contains(.workerExpired("a")))
        let replacement = Self.assigns(expired).filter { $0.1.shard == name }
        #expect(replacement.count == 1 && replacement.allSatisfy { $0.1.cutoverAt == nil })
        #expect(core.leaving[name]?.map(\.until) == [cutover], "b still stores up to its cutover for c")
        #expect(core.indexProblem() == nil)
    }

    /// An old owner that dies while handing over (before, or less than a lease before, the cutover)
    /// may have stopped any time since its last beat: its successor, which stores only from the
    /// cutover and would not backfill, is assigned again at a new epoch to store at once and backfill
    /// from where the old owner's rows were at risk.
    @Test(arguments: [false, true]) func aSuccessorBackfillsWhenItsOldOwnerDies(afterTheCutover: Bool) {
        var core = Self.core()
        let wall: Int64 = 1_700_000_000_000_000
        let name = "okx/trades/BTC-USDT"
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: wall)
        let placed = Self.assigns(
            core.handle(.subscribe([.init(shard: name, weight: 10)]), now: Self.at(0), wallClock: wall))
        _ = core.handle(
            .shardLive(workerID: "a", shard: name, epoch: placed[0].1.epoch), now: Self.at(0), wallClock: wall)
        _ = core.handle(
            .heartbeat(
                workerID: "a", sequence: 1,
                reports: [
                    ShardReport(
                        shard: name, epoch: placed[0].1.epoch, state: .live, eventsDelta: 5, lastEventTime: wall + 500,
                        lastEventID: "77")
                ]), now: Self.at(500), wallClock: wall + 500)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(1_000), wallClock: wall + 1_000)
        let moved = Self.assigns(core.handle(.drain(workerID: "a"), now: Self.at(1_000), wallClock: wall + 1_000))
        let cutover = moved[0].1.cutoverAt ?? 0
        _ = core.handle(
            .shardLive(workerID: "b", shard: name, epoch: moved[0].1.epoch), now: Self.at(1_500),
            wallClock: wall + 1_500)
        #expect(core.leaving[name]?.first?.resume == ResumePoint(time: wall + 500, id: "77"))
        // a beats no more; b does. a's lease runs out 5 s after its last beat.
        let expiry: Int64 = afterTheCutover ? cutover + 2_000_000 : wall + 5_600_000
        _ = core.handle(.heartbeat(workerID: "b", sequence: 1), now: Self.at(5_000), wallClock: wall + 5_000_000)
        let expired = core.handle(.tick, now: Self.at(5_600), wallClock: expiry)
        #expect(expired.contains(.workerExpired("a")))
        let again = Self.assigns(expired)
        #expect(again.map(\.0) == ["b"])
        #expect(again.first?.1.cutoverAt == nil, "stores at once")
        #expect(again.first?.1.resumeFrom == ResumePoint(time: wall + 500, id: "77"), "from a's last report")
        #expect((again.first?.1.epoch ?? 0) > moved[0].1.epoch)
        #expect(core.indexProblem() == nil)
    }

    /// The new side of a move reconnecting mid-move (it reports the shard at its epoch) does not make
    /// the old owner be revoked: the move is abandoned, the old owner keeps the shard.
    @Test func aRejoinMidMoveKeepsTheOldOwner() {
        var core = Self.core()
        let wall: Int64 = 1_700_000_000_000_000
        _ = core.handle(.workerJoined(Self.hello("a")), now: Self.at(0), wallClock: wall)
        let placed = Self.assigns(
            core.handle(.subscribe([.init(shard: "okx/trades/BTC-USDT", weight: 10)]), now: Self.at(0), wallClock: wall)
        )
        let old = placed[0].1
        _ = core.handle(.shardLive(workerID: "a", shard: old.shard, epoch: old.epoch), now: Self.at(0), wallClock: wall)
        _ = core.handle(.workerJoined(Self.hello("b")), now: Self.at(1), wallClock: wall)
        let moved = Self.assigns(core.handle(.drain(workerID: "a"), now: Self.at(1), wallClock: wall))
        #expect(moved.map(\.0) == ["b"])
        let rejoin = core.handle(
            .workerJoined(
                Self.hello(
                    "b", shards: [ReportedShard(shard: old.shard, epoch: moved[0].1.epoch, lastEventTime: nil)])),
            now: Self.at(2), wallClock: wall + 1)
        let revoked = Self.revokes(rejoin)
        #expect(!revoked.contains { $0.0 == "a" }, "the old owner is not revoked")
        #expect(revoked.contains { $0.0 == "b" && $0.2 == moved[0].1.epoch })
        #expect(core.shards[old.shard]?.owners.contains { $0.workerID == "a" && $0.epoch == old.epoch } == true)
        #expect(core.indexProblem() == nil)
    }
}

/// The pace of new shards per egress group comes from each exchange's published per-IP limits.
@Suite struct AssignmentPacingTests {
    @Test func eachExchangesPaceIsItsSlowestRESTBudgetAndTheCoreKeepsIt() {
        // OKX: history-candles and history-trades 20 requests / 2 s per IP; Coinbase public 5/s.
        // Binance klines 20/s, Bybit kline 50/s, Upbit candles 5/s.
        // Bursts are the smallest REST bucket (Coinbase and Upbit hold 4 although they refill 5/s).
        #expect(
            AssignmentPacing.all == [
                "okx": AssignmentPace(burst: 20, perSecond: 10), "binance": AssignmentPace(burst: 20, perSecond: 20),
                "bybit": AssignmentPace(burst: 50, perSecond: 50), "coinbase": AssignmentPace(burst: 4, perSecond: 5),
                "upbit": AssignmentPace(burst: 4, perSecond: 5),
            ])
        var configuration = CoordinatorCore.Configuration()
        configuration.assignmentPaceByExchange = ["okx": AssignmentPace(burst: 2, perSecond: 1)]
        var core = CoordinatorCore(configuration: configuration, term: 1, persistedEpochs: 0)
        _ = core.handle(.epochsPersisted(upTo: 1000), now: CoordinatorCoreTests.at(0), wallClock: 0)
        _ = core.handle(.workerJoined(CoordinatorCoreTests.hello("a")), now: CoordinatorCoreTests.at(0), wallClock: 0)
        let shards =
            (0..<3).map { CoordinatorCore.DesiredShard(shard: "okx/trades/S\($0)-USDT", weight: 1) }
            + [CoordinatorCore.DesiredShard(shard: "binance/trades/X", weight: 1)]
        let first = CoordinatorCoreTests.assigns(
            core.handle(.subscribe(shards), now: CoordinatorCoreTests.at(10), wallClock: 0))
        // Two OKX shards at once (its burst here), Binance on its own default budget; then 1/s.
        #expect(first.filter { $0.1.shard.hasPrefix("okx/") }.count == 2)
        #expect(first.contains { $0.1.shard == "binance/trades/X" })
        _ = core.handle(.heartbeat(workerID: "a", sequence: 1), now: CoordinatorCoreTests.at(1_000), wallClock: 0)
        let next = CoordinatorCoreTests.assigns(core.handle(.tick, now: CoordinatorCoreTests.at(1_010), wallClock: 0))
        #expect(next.map(\.1.shard).filter { $0.hasPrefix("okx/") }.count == 1)
    }
}

extension CoordinatorCore.Action {
    fileprivate var isPersistEpochs: Bool { if case .persistEpochs = self { true } else { false } }
}
