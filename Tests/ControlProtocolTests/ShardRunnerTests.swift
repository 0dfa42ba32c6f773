import ControlProtocol
import Testing

/// The worker's bookkeeping between its session and the engine, as transcripts.
@Suite struct ShardRunnerTests {
    static let wall: Int64 = 1_700_000_000_000_000
    static let name = "okx/trades/BTC-USDT"

    static func assignment(epoch: UInt64, cutover: Int64? = nil, resume: ResumePoint? = nil) -> Assignment {
        Assignment(term: 1, shard: name, epoch: epoch, cutoverAt: cutover, resumeFrom: resume)
    }

    /// The session inputs among `actions`, spelled for comparison.
    static func reports(_ actions: [ShardRunner.Action]) -> [String] {
        actions.compactMap {
            guard case .report(let input) = $0 else { return nil }
            switch input {
            case .shardLive(let shard, let epoch): return "live \(shard)@\(epoch)"
            case .stored(let shard, let epoch, let events, let time, let id):
                return "stored \(shard)@\(epoch) +\(events) \(time.map(String.init) ?? "-") \(id ?? "-")"
            case .shardFailed(let shard, let epoch, let permanent, let code, _):
                return "failed \(shard)@\(epoch) \(permanent ? "permanent" : "transient") \(code)"
            default: return "\(input)"
            }
        }
    }

    @Test func aStartRunsWithItsCutoverAndResumePointThenReportsLiveOnceAndStoredDeltas() {
        var runner = ShardRunner()
        let resume = ResumePoint(time: Self.wall - 5_000_000, id: "41")
        let started = runner.handle(
            .session(.start(Self.assignment(epoch: 3, cutover: Self.wall + 10_000_000, resume: resume))),
            wallClock: Self.wall)
        guard case .run(let shard, let from, let until, let resumeFrom) = started.first else {
            Issue.record("no run: \(started)")
            return
        }
        #expect(shard == Self.name && from == Self.wall + 10_000_000 && until == nil && resumeFrom == resume)
        // The first observation is the baseline: the engine's count may predate this epoch.
        let notYet = runner.handle(
            .observed([.init(shard: Self.name, live: false, stored: 40)]), wallClock: Self.wall + 1)
        #expect(Self.reports(notYet).isEmpty)
        let live = runner.handle(
            .observed([.init(shard: Self.name, live: true, stored: 47, lastEventTime: Self.wall + 2, lastEventID: "48")]
            ),
            wallClock: Self.wall + 2)
        #expect(Self.reports(live) == ["live \(Self.name)@3", "stored \(Self.name)@3 +7 \(Self.wall + 2) 48"])
        let again = runner.handle(
            .observed([.init(shard: Self.name, live: true, stored: 50, lastEventTime: Self.wall + 3)]),
            wallClock: Self.wall + 3)
        #expect(Self.reports(again) == ["stored \(Self.name)@3 +3 \(Self.wall + 3) -"], "live once; deltas")
        let same = runner.handle(
            .observed([.init(shard: Self.name, live: true, stored: 50, lastEventTime: Self.wall + 3)]),
            wallClock: Self.wall + 4)
        #expect(Self.reports(same).isEmpty, "nothing new, nothing reported")
    }

    @Test func aHandOverClosesTheWindowAndUnsubscribesOnceTheCutoverSettled() {
        var runner = ShardRunner(settle: .seconds(2))
        _ = runner.handle(.session(.start(Self.assignment(epoch: 3))), wallClock: Self.wall)
        let until = Self.wall + 4_000_000
        let stop = runner.handle(.session(.stop(shard: Self.name, epoch: 3, until: until)), wallClock: Self.wall + 1)
        guard case .closeWindow(let shard, let end) = stop.first, stop.count == 1 else {
            Issue.record("no window close: \(stop)")
            return
        }
        #expect(shard == Self.name && end == until)
        #expect(runner.handle(.tick, wallClock: until + 1_999_999).isEmpty, "rows still in flight")
        let done = runner.handle(.tick, wallClock: until + 2_000_000)
        guard case .unsubscribe(let gone) = done.first else {
            Issue.record("no unsubscribe: \(done)")
            return
        }
        #expect(gone == Self.name && runner.epochs.isEmpty)
    }

    /// The hand-over ends once an event at or past the cutover came through (all before it have), not
    /// on the clock alone while the settle lasts: a late stream keeps its rows. An older window's end
    /// does not count.
    @Test func aHandOverEndsWhenAnEventReachedTheCutoverNotOnTheClockAlone() {
        var runner = ShardRunner(settle: .seconds(5))
        _ = runner.handle(.session(.start(Self.assignment(epoch: 3))), wallClock: Self.wall)
        let until = Self.wall + 4_000_000
        _ = runner.handle(.session(.stop(shard: Self.name, epoch: 3, until: until)), wallClock: Self.wall + 1)
        func observe(passed: Int64?, at wall: Int64) {
            _ = runner.handle(
                .observed([.init(shard: Self.name, live: true, stored: 10, passedUntil: passed)]), wallClock: wall)
        }
        observe(passed: until - 1, at: until + 100_000)
        #expect(runner.handle(.tick, wallClock: until + 100_000).isEmpty, "an older window's end")
        #expect(runner.handle(.tick, wallClock: until + 4_999_999).isEmpty, "rows may still be on their way")
        observe(passed: until, at: until + 4_999_999)
        let done = runner.handle(.tick, wallClock: until + 4_999_999)
        guard case .unsubscribe(let gone) = done.first else {
            Issue.record("no unsubscribe once the cutover was reached: \(done)")
            return
        }
        #expect(gone == Self.name && runner.epochs.isEmpty)
    }

    /// A newer epoch of a running shard (the session starts it without stopping the old one) keeps
    /// the subscription: the window changes, counts go to the new epoch, the old epoch's stop is stale.
    @Test func aNewerEpochOfARunningShardKeepsTheSubscription() {
        var runner = ShardRunner()
        _ = runner.handle(.session(.start(Self.assignment(epoch: 3))), wallClock: Self.wall)
        _ = runner.handle(.observed([.init(shard: Self.name, live: true, stored: 10)]), wallClock: Self.wall + 1)
        let handOver = runner.handle(
            .session(.stop(shard: Self.name, epoch: 3, until: Self.wall + 4_000_000)), wallClock: Self.wall + 2)
        #expect(handOver.count == 1, "a hand-over closes the window: \(handOver)")
        let newer = runner.handle(.session(.start(Self.assignment(epoch: 5))), wallClock: Self.wall + 3)
        #expect(newer.count == 1, "only a run: \(newer)")
        guard case .run(let shard, let from, let until, _) = newer.first else {
            Issue.record("no run: \(newer)")
            return
        }
        #expect(shard == Self.name && from == nil && until == nil, "the window reopens")
        #expect(runner.epochs == [Self.name: 5])
        #expect(
            runner.handle(.session(.stop(shard: Self.name, epoch: 3, until: nil)), wallClock: Self.wall + 4).isEmpty)
        #expect(runner.handle(.tick, wallClock: Self.wall + 60_000_000).isEmpty, "no cutover left to end it")
        _ = runner.handle(.observed([.init(shard: Self.name, live: true, stored: 12)]), wallClock: Self.wall + 5)
        let counted = runner.handle(
            .observed([.init(shard: Self.name, live: true, stored: 15, lastEventTime: Self.wall + 6)]),
            wallClock: Self.wall + 6)
        #expect(Self.reports(counted) == ["stored \(Self.name)@5 +3 \(Self.wall + 6) -"])
    }

    /// While a hole is being backfilled, events are counted but the watermark is not reported: a
    /// successor must not resume past rows never stored.
    @Test func aHoleBeingFilledHoldsTheReportedWatermarkBack() {
        var runner = ShardRunner()
        _ = runner.handle(.session(.start(Self.assignment(epoch: 3))), wallClock: Self.wall)
        _ = runner.handle(.observed([.init(shard: Self.name, live: true, stored: 0)]), wallClock: Self.wall)
        let filling = runner.handle(
            .observed([
                .init(
                    shard: Self.name, live: true, stored: 5, lastEventTime: Self.wall + 9, lastEventID: "99",
                    fillingHole: true)
            ]), wallClock: Self.wall + 1)
        #expect(Self.reports(filling) == ["stored \(Self.name)@3 +5 - -"], "counted, no watermark")
        let filled = runner.handle(
            .observed([.init(shard: Self.name, live: true, stored: 5, lastEventTime: Self.wall + 9, lastEventID: "99")]
            ),
            wallClock: Self.wall + 2)
        #expect(Self.reports(filled) == ["stored \(Self.name)@3 +0 \(Self.wall + 9) 99"], "reported once filled")
    }

    @Test func aStopOfAnotherEpochIsIgnoredAndAnImmediateStopUnsubscribes() {
        var runner = ShardRunner()
        _ = runner.handle(.session(.start(Self.assignment(epoch: 3))), wallClock: Self.wall)
        #expect(runner.handle(.session(.stop(shard: Self.name, epoch: 2, until: nil)), wallClock: Self.wall).isEmpty)
        let stop = runner.handle(.session(.stop(shard: Self.name, epoch: 3, until: nil)), wallClock: Self.wall)
        guard case .unsubscribe = stop.first else {
            Issue.record("no unsubscribe: \(stop)")
            return
        }
        // A past cutover is a stop now too.
        _ = runner.handle(.session(.start(Self.assignment(epoch: 4))), wallClock: Self.wall)
        let late = runner.handle(
            .session(.stop(shard: Self.name, epoch: 4, until: Self.wall - 1)), wallClock: Self.wall)
        guard case .unsubscribe = late.first else {
            Issue.record("no unsubscribe: \(late)")
            return
        }
    }

    @Test func aRefusedStreamIsReportedPermanentOnceAndAShardBeyondTheBoundIsRefused() {
        var runner = ShardRunner(maxShards: 1)
        _ = runner.handle(.session(.start(Self.assignment(epoch: 3))), wallClock: Self.wall)
        let refused = runner.handle(
            .observed([
                .init(shard: Self.name, live: false, stored: 0, rejection: ("51001", "Instrument ID does not exist"))
            ]),
            wallClock: Self.wall)
        #expect(Self.reports(refused) == ["failed \(Self.name)@3 permanent 51001"])
        #expect(runner.epochs.isEmpty)
        #expect(
            Self.reports(
                runner.handle(
                    .observed([.init(shard: Self.name, live: false, stored: 0, rejection: ("51001", "x"))]),
                    wallClock: Self.wall)
            ).isEmpty)
        _ = runner.handle(.session(.start(Self.assignment(epoch: 5))), wallClock: Self.wall)
        let other = Assignment(term: 1, shard: "okx/ticker/ETH-USDT", epoch: 6)
        let full = runner.handle(.session(.start(other)), wallClock: Self.wall)
        #expect(Self.reports(full) == ["failed okx/ticker/ETH-USDT@6 transient capacity"])
    }
}
