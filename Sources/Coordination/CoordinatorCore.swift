public import CollectorCore
public import ControlProtocol

/// The coordinator's decision logic (DESIGN.md §2–§3, issue 10) as one pure state machine: events
/// and the current instant in, actions out. No sockets, clocks or threads. This first part holds
/// the registry of desired shards, the workers and their leases, epochs reserved in blocks, and
/// placement of unowned shards (least loaded by weight per capacity, replicas on distinct workers).
public struct CoordinatorCore: Sendable {
    public struct Configuration: Sendable {
        public var leaseTTL: Duration = .seconds(5)
        public var heartbeatInterval: Duration = .seconds(1)
        /// Epochs reserved per persisted block; a new block is asked for when half of one is used.
        public var epochBlock: UInt64 = 1000
        /// Bound on desired shards.
        public var maxShards = 1_000_000
        /// How far ahead (exchange time) a move's cutover is set: time for the new owner to subscribe
        /// and report live while the old one still stores.
        public var cutoverLead: Duration = .seconds(10)
        /// A move's new owner must be live this long before the cutover, so the old owner learns
        /// where to stop (`HandOver.until`) before its rows reach it; otherwise the move is abandoned
        /// and the old owner keeps the shard.
        public var handOverMargin: Duration = .seconds(2)
        /// Balanced: every worker's load per capacity within this fraction of the mean.
        public var balanceTolerance = 0.10
        /// Rebalancing moves in flight at once.
        public var maxConcurrentMoves = 8
        /// A shard is not moved again (to rebalance) within this long of its last move.
        public var minDwell: Duration = .seconds(60)
        /// Balance is judged on every join and on ticks at most this often (a pass over the workers
        /// and the senders' shards: every 100 ms tick, an imbalance that cannot be fixed yet cost a
        /// tenth of a core at 1,000 workers).
        public var rebalanceInterval: Duration = .seconds(1)
        /// New assignments (each a subscribe, and after a failover a backfill) per exchange per egress
        /// group, as a token bucket: workers behind one address share the exchange's per-IP budgets,
        /// so a failover never makes a whole group subscribe and backfill at once. The rest wait.
        public var assignmentPace = AssignmentPace(burst: 20, perSecond: 20)
        /// The same per exchange (keyed as shard names start: `okx`, …), where known; the coordinator
        /// binary fills it from each adapter's per-IP limits (`AssignmentPacing`).
        public var assignmentPaceByExchange: [String: AssignmentPace] = [:]

        /// The pace for `shard`'s exchange.
        public func pace(ofShard shard: String) -> AssignmentPace {
            let exchange = shard.split(separator: "/").first.map(String.init) ?? ""
            return assignmentPaceByExchange[exchange] ?? assignmentPace
        }
        /// Weights are replaced by measured events/s (DESIGN.md §2) over windows this long; a shard's
        /// weight changes only when the measurement differs from it by more than 20 % (hysteresis).
        /// `nil`: the configured weights stay.
        public var weightWindow: Duration? = .seconds(60)
        /// A transient shard failure is retried after this, doubling per failure in a row up to
        /// `maxRetryDelay`; after `failuresBeforeMove` on one worker the shard goes elsewhere.
        public var retryDelay: Duration = .seconds(1)
        public var maxRetryDelay: Duration = .seconds(5)
        public var failuresBeforeMove = 3
        /// An assigned owner that has not reported live within this long (a subscription the exchange
        /// never confirmed, a book that never synchronised) is revoked and counted as a transient
        /// failure, so the shard is retried and, after `failuresBeforeMove`, placed elsewhere.
        public var liveDeadline: Duration = .seconds(30)
        /// A shard the exchange refused for good is placed again after this: the exchange may list
        /// the instrument later (the session retries its own refusals as often: 5 minutes).
        public var rejectedRetry: Duration = .seconds(300)
        public init() {}

        /// The lease as sent: whole milliseconds.
        public var leaseMilliseconds: Int64 { leaseTTL.nanosecondsClamped / 1_000_000 }
    }

    /// A desired stream: its shard id, how many distinct workers run it, and what it costs.
    public struct DesiredShard: Hashable, Sendable {
        public var shard: String
        public var replicas: Int
        public var weight: Int
        public init(shard: String, replicas: Int = 1, weight: Int) {
            self.shard = shard
            self.replicas = max(1, replicas)
            self.weight = max(1, weight)
        }

        /// DESIGN.md §2 default weights by feed: candles 1, ticker 5, trades 10, book 50.
        public static func defaultWeight(ofShard shard: String) -> Int {
            let feed = shard.split(separator: "/").dropFirst().first.map(String.init) ?? ""
            if feed.hasPrefix("book") { return 50 }
            if feed == "trades" { return 10 }
            if feed == "ticker" { return 5 }
            return 1
        }
    }

    public enum Event: Sendable {
        /// An authenticated worker (after `WorkerAdmission`), with what it runs now.
        case workerJoined(Hello)
        /// An authenticated process refused as a duplicate (`duplicate-id`), with what it reported: it
        /// stops everything it runs, hand-overs included.
        case workerRefused(Hello)
        /// A beat: renews the lease; `reports` are the shards that changed (all of them when `full`).
        case heartbeat(workerID: String, sequence: UInt64, full: Bool = false, reports: [ShardReport] = [])
        case subscribe([DesiredShard])
        case unsubscribe([String])
        case shardLive(workerID: String, shard: String, epoch: UInt64)
        case shardFailed(workerID: String, shard: String, epoch: UInt64, permanent: Bool, code: String, reason: String)
        /// No new shards go to the worker; what it runs stays.
        case cordon(workerID: String)
        case uncordon(workerID: String)
        /// Cordon, and move everything it runs elsewhere, make-before-break.
        case drain(workerID: String)
        /// The worker's process is shutting down (its `leaving` message): a drain of that incarnation.
        case workerLeaving(workerID: String)
        /// Stop (or resume) balancing moves; drains, failovers and placement go on.
        case pauseRebalance(Bool)
        /// An operator's move of `shard` to worker `to`, make-before-break (see `refusal(of:)`).
        case move(shard: String, to: String)
        /// The epoch block up to `upTo` is durable.
        case epochsPersisted(upTo: UInt64)
        /// Time passed (lease expiries, placement).
        case tick
    }

    public enum Action: Hashable, Sendable {
        case send(workerID: String, ClusterMessage)
        /// Persist that epochs up to `upTo` may be issued (a restart continues above it).
        case persistEpochs(upTo: UInt64)
        /// The worker's lease ran out: its shards are gone from the map (close its connection).
        case workerExpired(String)
        case log(String, [String: String])
    }

    public enum OwnerState: String, Sendable { case assigned, live }

    public struct Owner: Hashable, Sendable {
        public var workerID: String
        public var epoch: UInt64
        public var state: OwnerState
        /// Where it stores from (wall µs), when told to start at a cutover; `nil`: at once.
        public var storesFrom: Int64? = nil
        /// Reported by a version-1 worker, which does not say where it stores from: it may be a
        /// move's new owner waiting for a cutover up to `cutoverLead` ahead.
        public var startUnknown = false
        /// Where it was told to backfill from (an owner storing at once): if it is lost before it
        /// goes live, the next owner backfills from there too.
        public var resumeFrom: ResumePoint? = nil
    }

    public struct Shard: Sendable {
        public var spec: DesiredShard
        public var owners: [Owner] = []
        /// A permanent failure: the exchange's code and message; not moved around.
        public var rejected: (code: String, message: String)?
        /// The last stored event time any owner reported (where the next owner resumes), and that
        /// event's trade id or sequence where the feed has one.
        public var lastEventTime: Int64?
        public var lastEventID: String?
        /// Events its owners reported, in all (restart-safe totals come from these deltas).
        public var eventsTotal: Int64 = 0
        /// Its key in `receivedEventTotals`, once worked out.
        var totalsKey: EventTotalsKey?
        /// Events reported in the current weight window, and the last measured rate (events/s).
        var windowEvents: Int64 = 0
        public internal(set) var measuredRate: Double?

        /// Where a new owner resumes.
        public var resumePoint: ResumePoint? { lastEventTime.map { ResumePoint(time: $0, id: lastEventID) } }
        /// An earlier point the next owner placed backfills from instead (an owner that had to be
        /// assigned again to backfill, when no epoch was durable to do it at once).
        public var backfillFrom: ResumePoint?
        /// When the shard last got an owner by a move (hysteresis).
        public var lastMovedAt: Instant?
        /// Transient failures in a row (reset when an owner goes live), when it may be placed again,
        /// and the workers it failed on `failuresBeforeMove` times (avoided while others can take it).
        public var failures = 0
        public var retryAt: Instant?
        public var failedOn: [String: Int] = [:]
    }

    public struct Worker: Sendable {
        public var hello: Hello
        public var leaseUntil: Instant
        public var load = 0
        public var cordoned = false
        public var draining = false
        /// The drain was this process's own (`workerLeaving`): a new incarnation starts afresh.
        public var leaving = false
    }

    /// A make-before-break move: `to` runs the shard from `cutoverAt` (exchange time, µs), `from`
    /// until then; `from` is handed over (told to stop at the cutover) as soon as `to` is live.
    public struct Move: Hashable, Sendable {
        public var shard: String
        public var from: Owner
        public var to: Owner
        public var cutoverAt: Int64
    }

    public let configuration: Configuration
    public let term: UInt64
    public private(set) var shards: [String: Shard] = [:]
    public private(set) var workers: [String: Worker] = [:]
    public private(set) var moves: [String: Move] = [:]
    /// Old owners handed over and still storing up to their cutover (wall µs), per shard: a new owner
    /// placed before then (the move's new owner failed) stores only from that cutover, so the write
    /// windows never exceed the replicas.
    public private(set) var leaving: [String: [Leaving]] = [:]

    /// Hand-overs remembered per shard (each ends within `cutoverLead`; the earliest is dropped, and
    /// logged, beyond this).
    public static let maxHandOversPerShard = 16

    /// Shards to check for stranded successors, with the hand-overs dropped because their process
    /// died or restarted (an owner waiting for a cutover with nothing storing before it, or whose
    /// predecessor died before its cutover, is assigned again to store at once and backfill).
    private var successorCheck: [String: [Leaving]] = [:]

    public struct Leaving: Hashable, Sendable {
        public var workerID: String
        /// The process (a new incarnation with the same id is another one, still storing or not).
        public var incarnation: UInt64
        public var epoch: UInt64
        public var until: Int64
        /// The owner storing from `until` (the move's new owner, or one placed when that one failed):
        /// the two hold one replica slot between them. `nil`, or an epoch no longer an owner: none.
        public var successor: UInt64? = nil
        /// Where the rows it stores up to the cutover begin to be at risk: the shard's resume point
        /// when it was handed over. If it dies before the cutover, its successor backfills from here.
        public var resume: ResumePoint? = nil
        /// When it was handed over (wall µs).
        public var since: Int64 = 0
    }
    /// Assignment tokens by egress group and exchange, as of an instant (a full bucket is dropped).
    private var paceBuckets: [String: (tokens: Double, at: Instant)] = [:]
    /// Rejected shards, by when they are placed again (`rejectedRetry`).
    private var rejectedRetries: [String: Instant] = [:]
    /// Events workers reported received (their engines' per-stream counts; each replica its own), by
    /// exchange and feed (without its timeframe): summed from heartbeat deltas, so they only grow, through worker restarts (a new incarnation counts from
    /// zero, its deltas add on), moves and unsubscribes. Keys come from subscribed shard ids: a
    /// small, fixed set of labels.
    public private(set) var receivedEventTotals: [EventTotalsKey: Int64] = [:]
    /// The next epoch to issue, and the highest one durably reserved.
    public private(set) var nextEpoch: UInt64
    public private(set) var reservedUpTo: UInt64
    private var reservationPending = false

    /// After a restart nothing is placed or moved for one lease length from the first event, so the
    /// workers that are alive re-register with what they run first (DESIGN.md §3).
    private var recovering: Bool
    private var placementHeldUntil: Instant?
    private var lastRebalanceAt: Instant?
    /// Balancing moves are paused by the operator (`pauseRebalance`).
    public private(set) var rebalancePaused = false
    private var weightWindowStart: Instant?
    /// Leased workers per egress group (kept on join and expiry: heartbeats read it).
    public private(set) var groupSizes: [String: Int] = [:]
    /// Indices kept by `addOwner`, `removeOwners` and `reindex`, so no event scans the whole map:
    /// the shards each worker owns, and the shards short of their replicas (not rejected).
    private var ownedBy: [String: Set<String>] = [:]
    private var unplaced: Set<String> = []
    /// 0 for trades and candles (backfillable, with the tightest failover goal), 1 for the rest.
    static func placementRank(_ shard: String) -> Int {
        let feed = shard.split(separator: "/").dropFirst().first ?? ""
        return feed == "trades" || feed.hasPrefix("candles") ? 0 : 1
    }

    /// `unplaced` in placement order (trades and candles first, then heaviest first, ties by name), possibly with names since
    /// placed; sorted again only after a shard joins `unplaced` or changes weight (`orderStale`).
    private var placementOrder: [String] = []
    private var orderStale = false
    /// The instant of the event being handled (deadlines of owners added while handling it).
    private var lastNow = Instant(nanoseconds: 0)
    /// Owners not yet live, by epoch (unique per assignment): when each must be live by.
    private var awaitingLive: [UInt64: (shard: String, workerID: String, deadline: Instant)] = [:]

    /// `persistedEpochs`: the reserved high-water mark read back at start-up (0 for a new cluster);
    /// epochs continue above it, so they only increase across restarts. `recovering`: a restart of an
    /// existing cluster (placement waits one lease length for workers to re-report).
    public init(
        configuration: Configuration = Configuration(), term: UInt64, persistedEpochs: UInt64, recovering: Bool = false
    ) {
        self.configuration = configuration
        self.term = term
        self.recovering = recovering
        nextEpoch = persistedEpochs + 1
        reservedUpTo = persistedEpochs
    }

    /// `wallClock`: the current exchange-comparable time (µs since the epoch), used for cutovers only;
    /// every rule about leases and timing uses the monotonic `now`.
    public mutating func handle(_ event: Event, now: Instant, wallClock: Int64) -> [Action] {
        lastNow = now
        var actions: [Action] = []
        switch event {
        case .workerRefused(let hello):
            // Its hand-overs end now (their successors backfill, as when a worker dies), and a shard
            // nobody owns is placed again from where its rows end, not from the map's watermark.
            dropHandOvers { $0.workerID == hello.workerID && $0.incarnation == hello.incarnation }
            for reported in hello.shards {
                guard let shard = shards[reported.shard], shard.rejected == nil, shard.owners.isEmpty,
                    let time = reported.lastEventTime
                else { continue }
                let stored = ResumePoint(time: time, id: reported.lastEventID)
                let earlier = shard.backfillFrom.map { $0.time < time ? $0 : stored } ?? stored
                shards[reported.shard]?.backfillFrom = earlier
            }
        case .workerJoined(let hello):
            // A (re)joining worker runs exactly what it reports: ownerships the map still gives it
            // (from a previous incarnation, or lost while it was cut off) are gone, as are moves
            // involving it; a drain or cordon in force stays.
            let previous = workers[hello.workerID]
            if let old = previous?.hello.egressGroup { leaveGroup(old) }
            groupSizes[hello.egressGroup, default: 0] += 1
            // A move with it on either side is abandoned first: the new owner would store only from
            // the cutover, so the old one keeps the shard (the new one is revoked, even if it is this
            // worker reporting it).
            let abandoned = abandonMoves(involving: hello.workerID, into: &actions)
            // The same process reconnecting keeps its backfills; a new incarnation's predecessor is gone.
            forgetOwnerships(
                of: hello.workerID, lost: previous.map { $0.hello.incarnation != hello.incarnation } ?? false)
            // Another incarnation's hand-overs: that process is gone (its session was replaced) and
            // stores nothing; where a successor waits for one of its cutovers, it is placed again.
            dropHandOvers { $0.workerID == hello.workerID && $0.incarnation != hello.incarnation }
            var worker = Worker(hello: hello, leaseUntil: now.advanced(by: configuration.leaseTTL))
            // A drain or cordon in force stays, unless the old process asked for it as it shut
            // down: its successor (a restarted pod) takes shards again.
            let restartedAfterLeaving =
                previous.map { $0.leaving && $0.hello.incarnation != hello.incarnation } ?? false
            worker.cordoned = restartedAfterLeaving ? false : previous?.cordoned ?? false
            worker.draining = restartedAfterLeaving ? false : previous?.draining ?? false
            worker.leaving = restartedAfterLeaving ? false : previous?.leaving ?? false
            workers[hello.workerID] = worker
            adopt(hello, skipping: abandoned, wallClock: wallClock, into: &actions)
        case .heartbeat(let id, let sequence, let full, let reports):
            guard let worker = workers[id] else { break }
            workers[id]?.leaseUntil = now.advanced(by: configuration.leaseTTL)
            record(reports, from: id, full: full, into: &actions)
            actions.append(
                .send(
                    workerID: id,
                    .heartbeatAck(
                        term: term, sequence: sequence, leaseMilliseconds: configuration.leaseMilliseconds,
                        groupSize: groupSizes[worker.hello.egressGroup] ?? 1)))
        case .subscribe(let desired):
            for spec in desired where shards[spec.shard] == nil && shards.count < configuration.maxShards {
                shards[spec.shard] = Shard(spec: spec)
                reindex(spec.shard)
            }
        case .unsubscribe(let names):
            for name in names where shards[name] != nil {
                for owner in removeOwners(of: name, where: { _ in true }) {
                    actions.append(
                        .send(workerID: owner.workerID, .revoke(term: term, shard: name, epoch: owner.epoch)))
                }
                // Hand-overs still storing it stop too: nobody wants its rows any more.
                for h in handOvers(of: name, wallClock: wallClock) {
                    actions.append(.send(workerID: h.workerID, .revoke(term: term, shard: name, epoch: h.epoch)))
                }
                leaving[name] = nil
                shards[name] = nil
                reindex(name)
            }
        case .shardLive(let id, let name, let epoch):
            guard let i = shards[name]?.owners.firstIndex(where: { $0.workerID == id && $0.epoch == epoch }) else {
                break
            }
            shards[name]?.owners[i].state = .live
            awaitingLive[epoch] = nil
            shards[name]?.failures = 0
            shards[name]?.retryAt = nil
            shards[name]?.failedOn = [:]
        case .shardFailed(let id, let name, let epoch, let permanent, let code, let reason):
            failed(
                name, on: id, epoch: epoch, permanent: permanent, code: code, reason: reason, now: now, into: &actions)
        case .cordon(let id):
            workers[id]?.cordoned = true
        case .uncordon(let id):
            workers[id]?.cordoned = false
            workers[id]?.draining = false
            workers[id]?.leaving = false
        case .drain(let id):
            workers[id]?.cordoned = true
            workers[id]?.draining = true
        case .workerLeaving(let id):
            // An operator's drain or cordon already in force stays theirs (it outlives the process).
            if let w = workers[id], !w.draining, !w.cordoned { workers[id]?.leaving = true }
            workers[id]?.cordoned = true
            workers[id]?.draining = true
        case .pauseRebalance(let paused):
            rebalancePaused = paused
            actions.append(.log(paused ? "rebalancing paused" : "rebalancing resumed", [:]))
        case .move(let name, let to):
            if let reason = refusal(of: event, now: now, wallClock: wallClock) {
                actions.append(.log("move refused", ["shard": name, "to": to, "error": reason]))
            } else if let from = movableOwner(of: name, wallClock: wallClock),
                beginMove(name, from: from, to: to, now: now, wallClock: wallClock, into: &actions)
            {
                actions.append(.log("move requested", ["shard": name, "from": from.workerID, "to": to]))
            }
        case .epochsPersisted(let upTo):
            reservedUpTo = max(reservedUpTo, upTo)
            reservationPending = false
        case .tick:
            abandonLateMoves(wallClock: wallClock, into: &actions)
            // A move (CLI or balancer) must not wait for an assignment to reserve its epoch.
            topUpEpochs(into: &actions)
            if !leaving.isEmpty {
                // Kept a lease past the cutover: a worker found dead then may have stopped before it.
                let kept = wallClock - configuration.leaseTTL.nanosecondsClamped / 1000
                leaving = leaving.compactMapValues { l in l.filter { $0.until > kept }.nilIfEmpty }
            }
            expireLeases(now: now, into: &actions)
            expireAssignments(now: now, into: &actions)
            retryRejected(now: now, into: &actions)
            measureWeights(now: now)
            if !paceBuckets.isEmpty {
                paceBuckets = paceBuckets.filter { key, _ in
                    tokens(key, now: now) < Double(configuration.pace(ofShard: Self.exchange(ofKey: key)).burst)
                }
            }
        }
        var recovered = false
        if recovering {
            let until = placementHeldUntil ?? now.advanced(by: configuration.leaseTTL)
            placementHeldUntil = until
            if now < until { return actions }
            recovering = false
            // Re-reports are in: a new owner whose old owner did not come back (it may have died
            // before the cutover, unseen) stores at once and backfills the hand-over's span.
            let recent = wallClock - 2 * configuration.leaseTTL.nanosecondsClamped / 1000
            for (name, shard) in shards where shard.owners.contains(where: { ($0.storesFrom ?? .min) > recent }) {
                successorCheck[name, default: []] += []
            }
            recovered = true
        }
        if !successorCheck.isEmpty {
            for (name, dropped) in successorCheck.sorted(by: { $0.key < $1.key }) {
                replaceStrandedSuccessors(
                    name, dropped: dropped, afterRecovery: recovered, now: now, wallClock: wallClock, into: &actions)
            }
            successorCheck = [:]
        }
        switch event {
        case .heartbeat where !recovered:
            // A heartbeat only renews a lease: nothing in the map changed (unless it ended the
            // recovery hold: then placement runs now, not on the next tick).
            return actions
        case .shardLive where !recovered:
            completeMoves(wallClock: wallClock, into: &actions)
            return actions
        default:
            break
        }
        // Moves due complete first, so their slots are free for the moves started below.
        completeMoves(wallClock: wallClock, into: &actions)
        place(now: now, wallClock: wallClock, into: &actions)
        startMoves(now: now, wallClock: wallClock, into: &actions)
        // Balance is judged on ticks and joins only (a scan of the map), not on every message.
        switch event {
        case .workerJoined where !rebalancePaused:
            lastRebalanceAt = now
            rebalance(now: now, wallClock: wallClock, into: &actions)
        case .tick where !rebalancePaused:
            if lastRebalanceAt.map({ now.duration(since: $0) >= configuration.rebalanceInterval }) ?? true {
                lastRebalanceAt = now
                rebalance(now: now, wallClock: wallClock, into: &actions)
            }
        default: break
        }
        return actions
    }

    /// An owner could not run the shard: a permanent failure rejects it everywhere; a transient one
    /// is retried with backoff, elsewhere after repeated failures on one worker.
    private mutating func failed(
        _ name: String, on id: String, epoch: UInt64, permanent: Bool, code: String, reason: String, now: Instant,
        into actions: inout [Action]
    ) {
        // The old side of a move failing: the new one would store only from the cutover; revoke it.
        if let move = moves[name], move.from.workerID == id, move.from.epoch == epoch {
            abandonMove(name, move, reason: "the old owner failed mid-move", into: &actions)
        }
        // A failed move side ends the move (in `removeOwners`): the other side keeps or takes it.
        guard !removeOwners(of: name, lost: true, where: { $0.workerID == id && $0.epoch == epoch }).isEmpty else {
            return
        }
        if permanent {
            // Every owner would get the same answer: the shard waits, rejected, for an operator.
            shards[name]?.rejected = (code, reason)
            for owner in removeOwners(of: name, where: { _ in true }) {
                actions.append(
                    .send(workerID: owner.workerID, .revoke(term: term, shard: name, epoch: owner.epoch)))
            }
            reindex(name)
            rejectedRetries[name] = now.advanced(by: configuration.rejectedRetry)
            actions.append(
                .log(
                    "shard rejected",
                    [
                        "shard": name, "exchange.code": code, "reason": reason,
                        "retry.seconds": "\(configuration.rejectedRetry.components.seconds)",
                    ]))
        } else if var shard = shards[name] {
            // Transient: retried with backoff; after repeated failures on one worker, elsewhere.
            shard.failures += 1
            let exponent = min(shard.failures - 1, 20)
            let delay = min(configuration.retryDelay * (1 << exponent), configuration.maxRetryDelay)
            shard.retryAt = now.advanced(by: delay)
            if shard.failedOn.count < 64 || shard.failedOn[id] != nil { shard.failedOn[id, default: 0] += 1 }
            shards[name] = shard
        }
    }

    private mutating func leaveGroup(_ group: String) {
        let n = (groupSizes[group] ?? 1) - 1
        groupSizes[group] = n > 0 ? n : nil
    }

    /// A beat's shard reports: where each shard's stored data ends, event counts, live states. A full
    /// report naming a shard this worker does not own at that epoch (a revoke it has not applied, or
    /// one lost with a connection) is revoked again.
    private mutating func record(_ reports: [ShardReport], from id: String, full: Bool, into actions: inout [Action]) {
        for report in reports {
            let name = report.shard
            guard let shard = shards[name],
                let i = shard.owners.firstIndex(where: { $0.workerID == id && $0.epoch == report.epoch })
            else {
                // A hand-over it has not heard of yet (in flight) stays: it stops at its cutover. What it
                // reports stored moves where its successor would backfill from if it died.
                let i = leaving[name]?.firstIndex { $0.workerID == id && $0.epoch == report.epoch }
                let handingOver = i != nil
                if let i, let time = report.lastEventTime, time >= leaving[name]?[i].resume?.time ?? .min {
                    leaving[name]?[i].resume = ResumePoint(time: time, id: report.lastEventID)
                }
                if handingOver {
                    // Its rows count: stored totals and the watermark (not the measured rate, which is
                    // per owner).
                    noteLastEvent(name, time: report.lastEventTime, id: report.lastEventID)
                    countEvents(name, report.eventsDelta)
                }
                if full && !handingOver {
                    actions.append(.send(workerID: id, .revoke(term: term, shard: name, epoch: report.epoch)))
                }
                continue
            }
            noteLastEvent(name, time: report.lastEventTime, id: report.lastEventID)
            countEvents(name, report.eventsDelta, window: true)
            if report.state == .live && shard.owners[i].state == .assigned {
                shards[name]?.owners[i].state = .live
                awaitingLive[report.epoch] = nil
            }
        }
    }

    /// Rejected shards whose retry is due are placed again (placement runs after the tick).
    private mutating func retryRejected(now: Instant, into actions: inout [Action]) {
        guard !rejectedRetries.isEmpty else { return }
        for (name, at) in rejectedRetries where at <= now {
            rejectedRetries[name] = nil
            guard let rejected = shards[name]?.rejected else { continue }  // unsubscribed meanwhile
            shards[name]?.rejected = nil
            reindex(name)
            actions.append(.log("rejected shard placed again", ["shard": name, "exchange.code": rejected.code]))
        }
    }

    /// A reported delta of events, on the shard and on the cluster's totals (a negative one,
    /// which no honest worker sends, counts as none).
    /// In place, through one lookup (a heartbeat reports every shard of its worker).
    private mutating func countEvents(_ name: String, _ delta: Int64, window: Bool = false) {
        guard delta > 0, let index = shards.index(forKey: name) else { return }
        shards.values[index].eventsTotal = Self.saturating(shards.values[index].eventsTotal, delta)
        if window { shards.values[index].windowEvents = Self.saturating(shards.values[index].windowEvents, delta) }
        // The label key is worked out once per shard, not on every report.
        let key: EventTotalsKey
        if let known = shards.values[index].totalsKey {
            key = known
        } else {
            key = Self.totalsKey(of: name)
            shards.values[index].totalsKey = key
        }
        receivedEventTotals[key, default: 0] = Self.saturating(receivedEventTotals[key, default: 0], delta)
    }

    /// The totals key of a shard id (`okx/candles:1m/BTC-USDT` → okx, candles).
    static func totalsKey(of name: String) -> EventTotalsKey {
        let parts = name.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        let feed = parts.count > 1 ? parts[1].split(separator: ":").first.map(String.init) ?? "" : ""
        return EventTotalsKey(exchange: String(parts[0]), feed: feed)
    }

    /// `a + b`, held at `Int64.max` rather than trapping (a delta is a peer's number).
    static func saturating(_ a: Int64, _ b: Int64) -> Int64 {
        let (sum, overflow) = a.addingReportingOverflow(b)
        return overflow ? .max : sum
    }

    /// The newest stored event of a shard moves forward only.
    private mutating func noteLastEvent(_ name: String, time: Int64?, id: String?) {
        guard let time, let shard = shards[name] else { return }
        if time >= (shard.lastEventTime ?? .min) {
            shards[name]?.lastEventTime = time
            if let id { shards[name]?.lastEventID = id }
        }
    }

    /// At the end of each weight window, every owned shard's weight becomes its measured events/s
    /// (per owner: replicas each report the same stream), where it moved by more than 20 %.
    private mutating func measureWeights(now: Instant) {
        guard let window = configuration.weightWindow else { return }
        guard let start = weightWindowStart else {
            weightWindowStart = now
            return
        }
        let elapsed = now.duration(since: start)
        guard elapsed >= window else { return }
        weightWindowStart = now
        let seconds = max(elapsed.secondsDouble, 0.001)
        for name in shards.keys {
            guard let shard = shards[name] else { continue }
            shards[name]?.windowEvents = 0
            guard !shard.owners.isEmpty, shard.windowEvents > 0 else { continue }
            let rate = Double(shard.windowEvents) / seconds / Double(shard.owners.count)
            shards[name]?.measuredRate = rate
            let measured = max(1, Int(rate.rounded()))
            let current = shard.spec.weight
            guard abs(Double(measured - current)) > 0.2 * Double(current) else { continue }
            shards[name]?.spec.weight = measured
            if unplaced.contains(name) { orderStale = true }
            for owner in shard.owners { workers[owner.workerID]?.load += measured - current }
        }
    }

    /// The budget key of `shard` on worker `w`.
    private static func budgetKey(_ w: Worker, _ shard: String) -> String {
        w.hello.egressGroup + "|" + (shard.split(separator: "/").first.map(String.init) ?? "")
    }

    private static func exchange(ofKey key: String) -> String {
        key.split(separator: "|", omittingEmptySubsequences: false).last.map(String.init) ?? ""
    }

    /// The tokens in a budget bucket at `now` (full when unused).
    private func tokens(_ key: String, now: Instant) -> Double {
        let pace = configuration.pace(ofShard: Self.exchange(ofKey: key))
        guard let entry = paceBuckets[key] else { return Double(pace.burst) }
        let elapsed = max(0, now.duration(since: entry.at).secondsDouble)
        return min(Double(pace.burst), entry.tokens + elapsed * pace.perSecond)
    }

    /// Whether `w`'s egress group may take another assignment of `shard`'s exchange now.
    private func hasBudget(_ w: Worker, _ shard: String, now: Instant) -> Bool {
        tokens(Self.budgetKey(w, shard), now: now) >= 1 - 1e-9
    }

    private mutating func spendBudget(_ workerID: String, _ shard: String, now: Instant) {
        guard let w = workers[workerID] else { return }
        let key = Self.budgetKey(w, shard)
        paceBuckets[key] = (tokens(key, now: now) - 1, now)
    }

    /// The worker that takes `shard`: leased, not cordoned, with room and group budget, not one of
    /// `excluded`, lowest load per capacity (ties by id). One search costs a pass over the workers:
    /// `place` uses a `PlacementQueue` instead.
    private func bestWorker(for shard: Shard, excluding excluded: [Owner], now: Instant) -> Worker? {
        let weight = shard.spec.weight
        let avoided = Set(shard.failedOn.filter { $0.value >= configuration.failuresBeforeMove }.keys)
        let candidates = workers.values.filter { w in
            w.leaseUntil > now && !w.cordoned && !excluded.contains { $0.workerID == w.hello.workerID }
                && w.load + weight <= w.hello.capacity && hasBudget(w, shard.spec.shard, now: now)
        }
        // A worker the shard keeps failing on is used only when no other one can take it.
        let preferred = candidates.filter { !avoided.contains($0.hello.workerID) }
        return (preferred.isEmpty ? candidates : preferred).min(by: {
            (Double($0.load) / Double($0.hello.capacity), $0.hello.workerID)
                < (Double($1.load) / Double($1.hello.capacity), $1.hello.workerID)
        })
    }

    /// Draining workers' shards get a second owner whose window starts at a cutover ahead (drains
    /// are not limited by `maxConcurrentMoves`: the worker is leaving).
    private mutating func startMoves(now: Instant, wallClock: Int64, into actions: inout [Action]) {
        let draining = Set(workers.values.filter(\.draining).map(\.hello.workerID))
        guard !draining.isEmpty else { return }
        let outgoing = draining.reduce(into: Set<String>()) { $0.formUnion(ownedBy[$1] ?? []) }
        for name in outgoing.sorted() where moves[name] == nil {
            // Not to a worker still handing the shard over: it would store from two cutovers at once.
            let handing = (leaving[name] ?? []).map { Owner(workerID: $0.workerID, epoch: $0.epoch, state: .live) }
            // An owner that stores only from a cutover still to come moves once it has passed, and
            // its old owner is forgotten (a lease later: its death would mean a backfill here), so
            // hand-overs never chain (each slot has at most one predecessor storing for it).
            guard let shard = shards[name],
                let from = shard.owners.first(where: { o in
                    draining.contains(o.workerID) && (o.storesFrom ?? .min) <= wallClock
                        && !(leaving[name] ?? []).contains { $0.successor == o.epoch }
                }),
                let target = bestWorker(for: shard, excluding: shard.owners + handing, now: now)
            else { continue }
            guard beginMove(name, from: from, to: target.hello.workerID, now: now, wallClock: wallClock, into: &actions)
            else { return }
        }
    }

    /// Why an operator request cannot be applied now (`nil`: it can): an unknown worker for cordon,
    /// uncordon and drain; for a move, an unknown or rejected shard, a target that is not a live,
    /// uncordoned worker with room and budget, a shard that worker already stores, a move under way,
    /// or no owner able to hand it over now (one waiting for its own cutover moves once it passed).
    public func refusal(of event: Event, now: Instant, wallClock: Int64) -> String? {
        switch event {
        case .cordon(let id), .uncordon(let id), .drain(let id):
            return workers[id] == nil ? "no worker \(id) holds a lease" : nil
        case .move(let name, let to):
            guard let shard = shards[name] else { return "no shard \(name) is subscribed" }
            if let rejected = shard.rejected { return "\(name) is rejected by the exchange (\(rejected.code))" }
            guard let w = workers[to], w.leaseUntil > now else { return "no worker \(to) holds a lease" }
            if w.cordoned { return "worker \(to) is cordoned" }
            if shard.owners.contains(where: { $0.workerID == to }) { return "worker \(to) already runs \(name)" }
            if (leaving[name] ?? []).contains(where: { $0.workerID == to && $0.until > wallClock }) {
                return "worker \(to) is still handing \(name) over"
            }
            if moves[name] != nil { return "a move of \(name) is under way" }
            guard movableOwner(of: name, wallClock: wallClock) != nil else {
                return "no owner of \(name) can hand it over now (live, past its own cutover): retry shortly"
            }
            if w.load + shard.spec.weight > w.hello.capacity { return "worker \(to) has no room for \(name)" }
            if !hasBudget(w, name, now: now) {
                return "the egress group \(w.hello.egressGroup) has spent its assignment budget: retry in a second"
            }
            if nextEpoch > reservedUpTo { return "no durable epoch yet: retry in a moment" }
            return nil
        default:
            return nil
        }
    }

    /// The owner a move of `name` starts from: live, storing now, and no hand-over's successor.
    private func movableOwner(of name: String, wallClock: Int64) -> Owner? {
        shards[name]?.owners.first { o in
            o.state == .live && (o.storesFrom ?? .min) <= wallClock
                && !(leaving[name] ?? []).contains { $0.successor == o.epoch }
        }
    }

    /// The weight each worker sends away in moves under way (both owners count until they complete).
    private func movingOut() -> [String: Int] {
        moves.values.reduce(into: [:]) { $0[$1.from.workerID, default: 0] += shards[$1.shard]?.spec.weight ?? 0 }
    }

    /// Scale-up balance (DESIGN.md §3): while a worker is more than `balanceTolerance` above the mean
    /// load per capacity and another below it, a shard moves from the first to the second — the
    /// heaviest that does not overshoot, not moved within `minDwell` — at most `maxConcurrentMoves`
    /// moves at a time. Loads are judged settled: as they are once the moves under way complete.
    private mutating func rebalance(now: Instant, wallClock: Int64, into actions: inout [Action]) {
        while moves.count < configuration.maxConcurrentMoves {
            let eligible = workers.values.filter { $0.leaseUntil > now && !$0.cordoned }
            guard eligible.count >= 2 else { return }
            let away = movingOut()
            let settled: (Worker) -> Int = { $0.load - (away[$0.hello.workerID] ?? 0) }
            var util: [String: Double] = [:]
            for w in eligible { util[w.hello.workerID] = Double(settled(w)) / Double(w.hello.capacity) }
            let mean = util.values.reduce(0, +) / Double(eligible.count)
            let order: (Worker, Worker) -> Bool = { a, b in
                (util[a.hello.workerID] ?? 0, a.hello.workerID) < (util[b.hello.workerID] ?? 0, b.hello.workerID)
            }
            guard let low = eligible.min(by: order),
                (util[low.hello.workerID] ?? 0) < mean * (1 - configuration.balanceTolerance) - 1e-9
            else { return }
            // The fullest sender that has a shard free to move (one just moved stays for `minDwell`).
            let senders = eligible.filter {
                (util[$0.hello.workerID] ?? 0) > mean * (1 + configuration.balanceTolerance) + 1e-9
            }
            .sorted { order($1, $0) }
            let lowSettled = settled(low)
            var chosen: (shard: Shard, from: Owner)?
            for high in senders {
                let highSettled = settled(high)
                let candidates = (ownedBy[high.hello.workerID] ?? []).compactMap { shards[$0] }.filter { shard in
                    moves[shard.spec.shard] == nil
                        && shard.owners.contains { o in
                            o.workerID == high.hello.workerID && o.state == .live
                                && (o.storesFrom ?? .min) <= wallClock
                                && !(leaving[shard.spec.shard] ?? []).contains { $0.successor == o.epoch }
                        }
                        && !shard.owners.contains { $0.workerID == low.hello.workerID }
                        && !(leaving[shard.spec.shard] ?? []).contains { $0.workerID == low.hello.workerID }
                        && (shard.lastMovedAt.map {
                            now.nanoseconds - $0.nanoseconds >= configuration.minDwell.nanosecondsClamped
                        } ?? true)
                        && low.load + shard.spec.weight <= low.hello.capacity
                        && hasBudget(low, shard.spec.shard, now: now)
                        // No overshoot: afterwards the receiver is not fuller than the sender.
                        && Double(lowSettled + shard.spec.weight) / Double(low.hello.capacity)
                            <= Double(highSettled - shard.spec.weight) / Double(high.hello.capacity) + 1e-9
                }
                if let shard = candidates.min(by: {
                    ($0.spec.weight, $1.spec.shard) > ($1.spec.weight, $0.spec.shard)
                }),
                    let from = shard.owners.first(where: { $0.workerID == high.hello.workerID })
                {
                    chosen = (shard, from)
                    break
                }
            }
            guard let chosen,
                beginMove(
                    chosen.shard.spec.shard, from: chosen.from, to: low.hello.workerID, now: now, wallClock: wallClock,
                    into: &actions)
            else { return }
        }
    }

    /// Assigns `name` to `to` with a cutover ahead, beside `from`; false when no epoch is durable.
    private mutating func beginMove(
        _ name: String, from: Owner, to workerID: String, now: Instant, wallClock: Int64, into actions: inout [Action]
    ) -> Bool {
        guard let shard = shards[name], let epoch = issueEpoch(into: &actions) else { return false }
        spendBudget(workerID, name, now: now)
        let cutover = wallClock + configuration.cutoverLead.nanosecondsClamped / 1000
        let to = Owner(workerID: workerID, epoch: epoch, state: .assigned, storesFrom: cutover)
        addOwner(to, to: name)
        shards[name]?.lastMovedAt = now
        moves[name] = Move(shard: name, from: from, to: to, cutoverAt: cutover)
        actions.append(
            .send(
                workerID: workerID,
                .assign(
                    Assignment(
                        term: term, shard: name, epoch: epoch, cutoverAt: cutover,
                        resumeFrom: shard.resumePoint))))
        return true
    }

    /// A move whose new owner is live hands the old owner over at once, before the cutover: it
    /// stores rows before `until` (the cutover), the new owner rows from it, so the overlap is exact.
    private mutating func completeMoves(wallClock: Int64, into actions: inout [Action]) {
        for name in moves.keys.sorted() {
            guard let move = moves[name],
                shards[name]?.owners.contains(where: { $0.epoch == move.to.epoch && $0.state == .live }) == true
            else { continue }
            moves[name] = nil
            removeOwners(of: name, where: { $0.epoch == move.from.epoch })
            if move.cutoverAt > wallClock {
                addHandOver(
                    Leaving(
                        workerID: move.from.workerID, incarnation: workers[move.from.workerID]?.hello.incarnation ?? 0,
                        epoch: move.from.epoch, until: move.cutoverAt, successor: move.to.epoch,
                        resume: shards[name]?.resumePoint), to: name, at: wallClock, into: &actions)
            }
            actions.append(
                .send(
                    workerID: move.from.workerID,
                    .handOver(term: term, shard: name, epoch: move.from.epoch, until: move.cutoverAt)))
            if let w = workers[move.from.workerID], w.draining, w.load <= 0 {
                actions.append(.log("worker drained", ["worker": move.from.workerID]))
            }
        }
    }

    /// Ends the moves with `id` on either side in favour of the old owner: the new owner, which would
    /// store only from the cutover, is revoked. Returns the revoked epochs.
    @discardableResult
    private mutating func abandonMoves(involving id: String, into actions: inout [Action]) -> Set<UInt64> {
        var revoked: Set<UInt64> = []
        for (name, move) in moves.sorted(by: { $0.key < $1.key })
        where move.from.workerID == id || move.to.workerID == id {
            revoked.insert(move.to.epoch)
            abandonMove(name, move, reason: "\(id) rejoined, failed or expired mid-move", into: &actions)
        }
        return revoked
    }

    /// Moves whose new owner is not live by `handOverMargin` before the cutover are abandoned.
    private mutating func abandonLateMoves(wallClock: Int64, into actions: inout [Action]) {
        let margin = configuration.handOverMargin.nanosecondsClamped / 1000
        for (name, move) in moves.sorted(by: { $0.key < $1.key }) where wallClock >= move.cutoverAt - margin {
            abandonMove(name, move, reason: "the new owner was not live before the cutover", into: &actions)
        }
    }

    private mutating func abandonMove(_ name: String, _ move: Move, reason: String, into actions: inout [Action]) {
        for owner in removeOwners(of: name, where: { $0.epoch == move.to.epoch }) {
            actions.append(.send(workerID: owner.workerID, .revoke(term: term, shard: name, epoch: owner.epoch)))
        }
        moves[name] = nil
        actions.append(
            .log(
                "move abandoned", ["shard": name, "from": move.from.workerID, "to": move.to.workerID, "reason": reason])
        )
    }

    /// A (re)joining worker's report: shards it runs with the newest epoch stay its own; older
    /// epochs, shards no longer desired, or the new side of a move just abandoned (`skipping`, already
    /// revoked) are revoked there.
    private mutating func adopt(
        _ hello: Hello, skipping abandoned: Set<UInt64> = [], wallClock: Int64, into actions: inout [Action]
    ) {
        for reported in hello.shards where !abandoned.contains(reported.epoch) {
            let name = reported.shard
            if reported.epoch >= nextEpoch { nextEpoch = reported.epoch + 1 }
            if let until = reported.handingOverUntil {
                // No longer its shard, but stored up to the cutover: no second writer before then. A
                // cutover further ahead than any move's lead is not ours: the worker is told to stop.
                let latest = wallClock + configuration.cutoverLead.nanosecondsClamped / 1000
                guard until <= latest else {
                    actions.append(
                        .send(workerID: hello.workerID, .revoke(term: term, shard: name, epoch: reported.epoch)))
                    continue
                }
                // Kept a lease past its cutover too (its successor needs no backfill then).
                let kept = wallClock - configuration.leaseTTL.nanosecondsClamped / 1000
                // Where its rows end, as it reports: where its successor backfills from if it dies.
                let stored = reported.lastEventTime.map { ResumePoint(time: $0, id: reported.lastEventID) }
                if let stored, let i = leaving[name]?.firstIndex(where: { $0.epoch == reported.epoch }),
                    stored.time >= leaving[name]?[i].resume?.time ?? .min
                {
                    leaving[name]?[i].resume = stored
                }
                if until > kept, let shard = shards[name],
                    !(leaving[name] ?? []).contains(where: { $0.epoch == reported.epoch })
                {
                    // Its successor, if already known: an owner storing from exactly this cutover
                    // that no other hand-over precedes.
                    let taken = Set(handOvers(of: name, wallClock: wallClock).compactMap(\.successor))
                    let successor = shard.owners.first { $0.storesFrom == until && !taken.contains($0.epoch) }?.epoch
                    addHandOver(
                        Leaving(
                            workerID: hello.workerID, incarnation: hello.incarnation, epoch: reported.epoch,
                            until: until, successor: successor, resume: stored ?? shard.resumePoint), to: name,
                        at: wallClock,
                        into: &actions)
                    resolveClaims(name, replicas: shard.spec.replicas, wallClock: wallClock, into: &actions)
                }
                continue
            }
            guard let shard = shards[name], shard.rejected == nil else {
                actions.append(.send(workerID: hello.workerID, .revoke(term: term, shard: name, epoch: reported.epoch)))
                continue
            }
            noteLastEvent(name, time: reported.lastEventTime, id: reported.lastEventID)
            // Handed over while it was cut off (the message was lost with the connection): told again,
            // it stores up to the cutover its successor starts at.
            if let h = leaving[name]?.first(where: { $0.workerID == hello.workerID && $0.epoch == reported.epoch }) {
                if h.until > wallClock {
                    actions.append(
                        .send(
                            workerID: hello.workerID, .handOver(term: term, shard: name, epoch: h.epoch, until: h.until)
                        ))
                } else {
                    actions.append(.send(workerID: hello.workerID, .revoke(term: term, shard: name, epoch: h.epoch)))
                }
                continue
            }
            // Epochs issued before a restart are below nextEpoch only if we issued them; a higher one
            // means our persisted mark is behind: never issue it again.
            if reported.epoch >= nextEpoch { nextEpoch = reported.epoch + 1 }
            removeOwners(of: name, where: { $0.workerID == hello.workerID })
            // A move's new owner stores from its cutover only: it still needs the old owner until then.
            // A cutover further ahead than any move's lead is not ours.
            let storesFrom = reported.storesFrom
            if let storesFrom, storesFrom > wallClock + configuration.cutoverLead.nanosecondsClamped / 1000 {
                actions.append(.send(workerID: hello.workerID, .revoke(term: term, shard: name, epoch: reported.epoch)))
                continue
            }
            // Not yet confirmed by the exchange: it must go live within `liveDeadline` like any other.
            var owner = Owner(
                workerID: hello.workerID, epoch: reported.epoch, state: reported.live == false ? .assigned : .live,
                storesFrom: storesFrom)
            owner.startUnknown = hello.version < 2
            addOwner(owner, to: name)
            if storesFrom != nil { successorCheck[name, default: []] += [] }
            if let storesFrom,
                let i = leaving[name]?.firstIndex(where: {
                    $0.until == storesFrom && !hasOwner(name, epoch: $0.successor)
                })
            {
                leaving[name]?[i].successor = reported.epoch
            }
            resolveClaims(name, replicas: shard.spec.replicas, wallClock: wallClock, into: &actions)
        }
    }

    /// Hand-overs of `name` still storing.
    private func handOvers(of name: String, wallClock: Int64) -> [Leaving] {
        (leaving[name] ?? []).filter { $0.until > wallClock }
    }

    private func hasOwner(_ name: String, epoch: UInt64?) -> Bool {
        guard let epoch else { return false }
        return shards[name]?.owners.contains { $0.epoch == epoch } ?? false
    }

    /// Forgets the hand-overs matching `matches`, and checks their shards' successors.
    private mutating func dropHandOvers(where matches: (Leaving) -> Bool) {
        guard !leaving.isEmpty else { return }
        for (name, list) in leaving where list.contains(where: matches) {
            leaving[name] = list.filter { !matches($0) }.nilIfEmpty
            successorCheck[name, default: []] += list.filter(matches)
        }
    }

    /// Remembers a hand-over, within `maxHandOversPerShard`.
    private mutating func addHandOver(_ h: Leaving, to name: String, at wallClock: Int64, into actions: inout [Action])
    {
        var h = h
        h.since = wallClock
        var list = leaving[name] ?? []
        if list.count >= Self.maxHandOversPerShard, let i = list.indices.min(by: { list[$0].until < list[$1].until }) {
            actions.append(
                .log("hand-over forgotten: too many for one shard", ["shard": name, "worker": list[i].workerID]))
            list.remove(at: i)
        }
        list.append(h)
        leaving[name] = list
    }

    /// An owner told to store from a cutover with no hand-over storing before it (its old owner
    /// died, restarted or never re-reported), or whose old owner died less than a lease before the
    /// cutover (it may have stopped storing any time since its last beat), or — when a restarted
    /// coordinator's re-reports are in — whose recent cutover no old owner re-reported: an owner with
    /// a cutover does not backfill, so it is assigned again at a new epoch to store at once and
    /// backfill from where the old owner's rows were at risk (at the latest, the move's start).
    private mutating func replaceStrandedSuccessors(
        _ name: String, dropped: [Leaving], afterRecovery: Bool, now: Instant, wallClock: Int64,
        into actions: inout [Action]
    ) {
        guard let shard = shards[name] else { return }
        let preceded = Set(handOvers(of: name, wallClock: wallClock).compactMap(\.successor))
        let heardOf = Set((leaving[name] ?? []).compactMap(\.successor))
        let lease = configuration.leaseTTL.nanosecondsClamped / 1000
        let lead = configuration.cutoverLead.nanosecondsClamped / 1000
        for owner in shard.owners where owner.epoch != moves[name]?.to.epoch && !preceded.contains(owner.epoch) {
            let died = dropped.first { $0.successor == owner.epoch && $0.until > wallClock - lease }
            let from = owner.storesFrom ?? .min
            let stranded = from > wallClock
            let unheard = afterRecovery && from > wallClock - 2 * lease && !heardOf.contains(owner.epoch)
            guard stranded || unheard || died != nil else { continue }
            // A dead old owner: from where it last reported (never: from a lease before it was handed
            // over). Otherwise the old owner may have died unseen up to a lease before the move began
            // (a cutover's lead before the cutover), so from then, or the shard's resume point if older.
            let unseen = from == .min ? nil : ResumePoint(time: from - lead - lease, id: nil)
            let resume =
                died.map { $0.resume ?? ResumePoint(time: $0.since - lease, id: nil) }
                ?? [shard.resumePoint, unseen].compactMap { $0 }.min { $0.time < $1.time }
            removeOwners(of: name, where: { $0.epoch == owner.epoch })
            guard let w = workers[owner.workerID], hasBudget(w, name, now: now), let epoch = issueEpoch(into: &actions)
            else {
                // Placed again, backfilling from there, once an epoch is durable.
                actions.append(.send(workerID: owner.workerID, .revoke(term: term, shard: name, epoch: owner.epoch)))
                if let resume {
                    let earlier = shards[name]?.backfillFrom.map { $0.time < resume.time ? $0 : resume } ?? resume
                    shards[name]?.backfillFrom = earlier
                }
                continue
            }
            spendBudget(owner.workerID, name, now: now)
            addOwner(Owner(workerID: owner.workerID, epoch: epoch, state: .assigned, resumeFrom: resume), to: name)
            actions.append(
                .send(
                    workerID: owner.workerID,
                    .assign(Assignment(term: term, shard: name, epoch: epoch, cutoverAt: nil, resumeFrom: resume))))
            actions.append(
                .log(
                    "owner assigned again to backfill: its old owner may have stopped before the cutover",
                    ["shard": name, "worker": owner.workerID, "epoch": "\(epoch)"]))
        }
    }

    /// Hand-overs still storing whose successor is no longer an owner: each holds a replica slot
    /// until its cutover, and a new owner placed in that slot stores from there.
    private func orphanHandOvers(of name: String, wallClock: Int64) -> [Leaving] {
        handOvers(of: name, wallClock: wallClock).filter { !hasOwner(name, epoch: $0.successor) }
    }

    /// Where more claim a shard than its replicas, the highest epochs win and the rest stop. A claim
    /// is one replica slot: an owner with the hand-over it succeeds (the old owner stores up to the
    /// cutover, the new one from it), a move under way (both sides), or a hand-over whose successor
    /// is gone. A winner that stores only from a cutover and has nothing storing its slot before it
    /// keeps a loser as its predecessor: a hand-over ending at that cutover, else a live losing owner
    /// handed over to stop there, else the hand-over ending closest before it. The others are revoked.
    private mutating func resolveClaims(_ name: String, replicas: Int, wallClock: Int64, into actions: inout [Action]) {
        struct Claim {
            var epoch: UInt64
            var owners: [Owner]
            var handOver: Leaving?
        }
        let owners = shards[name]?.owners ?? []
        let move = moves[name]
        let storing = handOvers(of: name, wallClock: wallClock)
        var claims: [Claim] = []
        for o in owners where o.epoch != move?.from.epoch {
            let from = o.epoch == move?.to.epoch ? owners.filter { $0.epoch == move?.from.epoch } : []
            claims.append(
                Claim(epoch: o.epoch, owners: [o] + from, handOver: storing.first { $0.successor == o.epoch }))
        }
        claims += storing.filter { !hasOwner(name, epoch: $0.successor) }.map {
            Claim(epoch: $0.epoch, owners: [], handOver: $0)
        }
        guard claims.count > replicas else { return }
        claims.sort { $0.epoch > $1.epoch }
        var losers = Array(claims.dropFirst(replicas))
        // Predecessors for winners that would leave their slot unstored until their cutover.
        var handOverTo: [UInt64: (until: Int64, successor: UInt64)] = [:]  // loser epoch →
        // A winner not yet live that stores from a cutover (a restart mid-move): the move is rebuilt
        // with a storing loser as its old side, so it completes (hand-over) once the winner is live,
        // or is abandoned in the old owner's favour, as any move.
        var keptAsMoveSource: UInt64?
        if moves[name] == nil,
            let w = claims.prefix(replicas).first(where: { c in
                c.handOver == nil && c.owners.count == 1 && c.owners[0].state == .assigned
                    && (c.owners[0].storesFrom ?? .min) > wallClock
            }),
            let source = losers.first(where: { c in
                c.owners.count == 1 && c.handOver == nil && (c.owners[0].storesFrom ?? .min) <= wallClock
            })
        {
            let to = w.owners[0]
            moves[name] = Move(shard: name, from: source.owners[0], to: to, cutoverAt: to.storesFrom ?? wallClock)
            keptAsMoveSource = source.epoch
        }
        losers.removeAll { $0.epoch == keptAsMoveSource }
        for w in claims.prefix(replicas) where w.handOver == nil && w.owners.count == 1 {
            let owner = w.owners[0]
            // A version-1 owner may be waiting for a cutover as far as a move's lead ahead: its
            // predecessor is kept that long (an overlap, not a gap).
            let unknown = owner.startUnknown ? wallClock + configuration.cutoverLead.nanosecondsClamped / 1000 : nil
            guard owner.state == .live, let from = owner.storesFrom ?? unknown, from > wallClock else { continue }
            let free = losers.indices.filter { handOverTo[losers[$0].epoch] == nil }
            let storesNow: (Claim) -> Bool = { c in
                c.owners.count == 1 && c.handOver == nil && (c.owners[0].storesFrom ?? .min) <= wallClock
            }
            let exact = free.first { losers[$0].owners.isEmpty && losers[$0].handOver?.until == from }
            let live = free.first { storesNow(losers[$0]) }
            let before = free.filter { losers[$0].owners.isEmpty && (losers[$0].handOver?.until ?? .max) <= from }
                .max { (losers[$0].handOver?.until ?? 0) < (losers[$1].handOver?.until ?? 0) }
            if let i = exact ?? live ?? before {
                handOverTo[losers[i].epoch] = (min(from, losers[i].handOver?.until ?? from), owner.epoch)
                if exact == nil && live == nil {
                    // The best there is: between its end and the cutover nothing stores this slot.
                    actions.append(
                        .log(
                            "a replica slot is unstored until its cutover",
                            ["shard": name, "worker": owner.workerID, "epoch": "\(owner.epoch)"]))
                }
            }
        }
        var lost: Set<UInt64> = []
        for i in losers.indices {
            let loser = losers[i]
            if let pick = handOverTo[loser.epoch], let owner = loser.owners.first {
                // A live losing owner stops at the winner's cutover instead of now.
                removeOwners(of: name, where: { $0.epoch == owner.epoch })
                addHandOver(
                    Leaving(
                        workerID: owner.workerID, incarnation: workers[owner.workerID]?.hello.incarnation ?? 0,
                        epoch: owner.epoch, until: pick.until, successor: pick.successor,
                        resume: shards[name]?.resumePoint), to: name, at: wallClock, into: &actions)
                actions.append(
                    .send(
                        workerID: owner.workerID,
                        .handOver(term: term, shard: name, epoch: owner.epoch, until: pick.until)))
                continue
            }
            for owner in loser.owners {
                removeOwners(of: name, where: { $0.epoch == owner.epoch })
                actions.append(.send(workerID: owner.workerID, .revoke(term: term, shard: name, epoch: owner.epoch)))
            }
            if let h = loser.handOver, handOverTo[h.epoch] == nil {
                actions.append(.send(workerID: h.workerID, .revoke(term: term, shard: name, epoch: h.epoch)))
                lost.insert(h.epoch)
            }
            losers[i].owners = []
        }
        leaving[name] =
            leaving[name]?.compactMap { l in
                guard !lost.contains(l.epoch) else { return nil }
                var l = l
                if l.successor.map({ !hasOwner(name, epoch: $0) }) ?? true, let pick = handOverTo[l.epoch] {
                    l.successor = pick.successor
                }
                return l
            }.nilIfEmpty
    }

    /// Removes `id` from every shard's owners (and so from every move).
    private mutating func forgetOwnerships(of id: String, lost: Bool) {
        for name in ownedBy[id] ?? [] {
            removeOwners(of: name, lost: lost, where: { $0.workerID == id })
        }
    }

    /// The one way an owner is added: the shard's weight counts on the worker.
    private mutating func addOwner(_ owner: Owner, to name: String) {
        guard let weight = shards[name]?.spec.weight else { return }
        shards[name]?.owners.append(owner)
        workers[owner.workerID]?.load += weight
        ownedBy[owner.workerID, default: []].insert(name)
        if owner.state == .assigned {
            awaitingLive[owner.epoch] = (name, owner.workerID, lastNow.advanced(by: configuration.liveDeadline))
        }
        reindex(name)
    }

    /// Assigned owners past `liveDeadline`: revoked there, and handled as a transient failure.
    private mutating func expireAssignments(now: Instant, into actions: inout [Action]) {
        let overdue = awaitingLive.filter { $0.value.deadline <= now }.sorted { $0.key < $1.key }
        for (epoch, pending) in overdue {
            actions.append(.send(workerID: pending.workerID, .revoke(term: term, shard: pending.shard, epoch: epoch)))
            actions.append(
                .log(
                    "assignment not live in time",
                    [
                        "shard": pending.shard, "worker": pending.workerID, "epoch": "\(epoch)",
                        "deadline.seconds": "\(Int(configuration.liveDeadline.secondsDouble))",
                    ]))
            failed(
                pending.shard, on: pending.workerID, epoch: epoch, permanent: false, code: "live-timeout",
                reason: "not live within \(Int(configuration.liveDeadline.secondsDouble)) s of the assignment",
                now: now, into: &actions)
        }
    }

    /// The one way owners are removed: their weight stops counting on their workers, and a move one
    /// of them was a side of ends (the other side, if still an owner, keeps the shard).
    @discardableResult
    /// `lost`: the owners' processes died or failed the shard (not a rejoin or a claim resolved).
    private mutating func removeOwners(of name: String, lost: Bool = false, where matches: (Owner) -> Bool) -> [Owner] {
        guard let shard = shards[name] else { return [] }
        let removed = shard.owners.filter(matches)
        guard !removed.isEmpty else { return [] }
        shards[name]?.owners.removeAll(where: matches)
        for owner in removed {
            // Lost before it went live: its backfill may not have run, so the next owner's starts
            // where this one's would have (the older of the two).
            if lost, owner.state == .assigned, let resume = owner.resumeFrom {
                let earlier = shards[name]?.backfillFrom.map { $0.time < resume.time ? $0 : resume } ?? resume
                shards[name]?.backfillFrom = earlier
            }
            awaitingLive[owner.epoch] = nil
            workers[owner.workerID]?.load -= shard.spec.weight
            // A worker may own a shard once only (a rejoin or a second replica replaces, never adds).
            if shards[name]?.owners.contains(where: { $0.workerID == owner.workerID }) != true {
                ownedBy[owner.workerID]?.remove(name)
                if ownedBy[owner.workerID]?.isEmpty == true { ownedBy[owner.workerID] = nil }
            }
        }
        reindex(name)
        if let move = moves[name], removed.contains(where: { $0.epoch == move.from.epoch || $0.epoch == move.to.epoch })
        {
            moves[name] = nil
        }
        return removed
    }

    private mutating func expireLeases(now: Instant, into actions: inout [Action]) {
        for id in workers.compactMap({ $0.value.leaseUntil <= now ? $0.key : nil }).sorted() {
            // Its ownerships go; a move with it on either side is abandoned (without the old owner,
            // the shard is placed again from its resume point, with no cutover).
            abandonMoves(involving: id, into: &actions)
            forgetOwnerships(of: id, lost: true)
            // Its hand-overs too: a dead worker stores nothing, so its replacement must not wait for
            // a cutover (one cut off but storing overlaps, which at-least-once tolerates).
            dropHandOvers { $0.workerID == id }
            if let group = workers[id]?.hello.egressGroup { leaveGroup(group) }
            workers[id] = nil
            actions.append(.workerExpired(id))
            actions.append(.log("worker lease expired", ["worker": id]))
        }
    }

    /// Gives every shard short of its replicas an owner: the eligible worker with the lowest load per
    /// capacity that can still fit it and does not already run it. Shards are taken trades and candles
    /// first, then heaviest first, ties by name, so placement is deterministic.
    private mutating func place(now: Instant, wallClock: Int64, into actions: inout [Action]) {
        guard !unplaced.isEmpty else { return }
        var queue = PlacementQueue(workers.values.filter { $0.leaseUntil > now && !$0.cordoned })
        guard !queue.entries.isEmpty else { return }
        if orderStale {
            // Trades and candles first (their failover goal is the tightest, and a paced group places
            // them before books), then heaviest first, ties by name.
            placementOrder = unplaced.map { (Self.placementRank($0), shards[$0]?.spec.weight ?? 0, $0) }
                .sorted { a, b in a.0 != b.0 ? a.0 < b.0 : (a.1, b.2) > (b.1, a.2) }.map(\.2)
            orderStale = false
        } else if placementOrder.count > 2 * unplaced.count + 64 {
            placementOrder.removeAll { !unplaced.contains($0) }
        }
        // Per exchange, the lightest weight no worker had room or budget for this call: shards as
        // heavy wait for the next tick, so a burst costs one failed search per weight, not per shard.
        var blocked: [Substring: Int] = [:]
        for name in placementOrder where unplaced.contains(name) {
            guard let shard = shards[name], shard.retryAt.map({ now >= $0 }) ?? true else { continue }
            let exchange = shard.spec.shard.split(separator: "/").first ?? ""
            if let limit = blocked[exchange], shard.spec.weight >= limit { continue }
            // A worker handing the shard over to a successor holds a slot already: another replica goes
            // there only when no other worker can take it (one process would hold two slots until
            // the cutover).
            let handing = (leaving[name] ?? []).filter { $0.until > wallClock && hasOwner(name, epoch: $0.successor) }
                .map { Owner(workerID: $0.workerID, epoch: $0.epoch, state: .live) }
            while true {
                let owners = shards[shard.spec.shard]?.owners ?? []
                guard owners.count < shard.spec.replicas else { break }
                guard
                    let best = bestWorker(for: shard, excluding: owners + handing, in: queue, now: now)
                        ?? (handing.isEmpty ? nil : bestWorker(for: shard, excluding: owners, in: queue, now: now))
                else {
                    // Only a first replica blocks the exchange: a second may just lack a distinct worker.
                    if owners.isEmpty { blocked[exchange] = min(blocked[exchange] ?? .max, shard.spec.weight) }
                    break
                }
                // No durable epoch left: the rest is placed once the next block is persisted.
                guard let epoch = issueEpoch(into: &actions) else { return }
                spendBudget(best, shard.spec.shard, now: now)
                let cutover = takeOrphanSlot(name, for: best, epoch: epoch, owners: owners.count, wallClock: wallClock)
                let resume = shards[name]?.backfillFrom ?? shard.resumePoint
                shards[name]?.backfillFrom = nil
                addOwner(
                    Owner(
                        workerID: best, epoch: epoch, state: .assigned, storesFrom: cutover,
                        resumeFrom: cutover == nil ? resume : nil), to: shard.spec.shard)
                if let w = workers[best] { queue.update(w) }
                actions.append(
                    .send(
                        workerID: best,
                        .assign(
                            Assignment(
                                term: term, shard: shard.spec.shard, epoch: epoch, cutoverAt: cutover,
                                resumeFrom: resume))))
            }
        }
    }

    /// Where a new owner of `name` on `workerID` starts storing. A hand-over whose successor failed
    /// still holds a slot until its cutover: if the new owner is that same process, its data plane
    /// keeps running (the hand-over ends, no cutover); if every slot is held, it succeeds the hand-over
    /// ending first and stores from that cutover; otherwise it stores at once.
    private mutating func takeOrphanSlot(
        _ name: String, for workerID: String, epoch: UInt64, owners: Int, wallClock: Int64
    ) -> Int64? {
        let incarnation = workers[workerID]?.hello.incarnation
        let isSame: (Leaving) -> Bool = { $0.workerID == workerID && $0.incarnation == incarnation }
        if let same = handOvers(of: name, wallClock: wallClock).first(where: isSame) {
            // The same process stores on as this owner (its data plane keeps running). Where its
            // hand-over held a slot of its own (no successor), this is that slot and the hand-over
            // ends; where a successor waits for its cutover, the hand-over stays in the map until
            // then: the process covers both slots.
            if !hasOwner(name, epoch: same.successor) {
                leaving[name] = leaving[name]?.filter { !isSame($0) }.nilIfEmpty
                return nil
            }
            if owners + orphanHandOvers(of: name, wallClock: wallClock).count < (shards[name]?.spec.replicas ?? 1) {
                return nil
            }
        }
        let orphans = orphanHandOvers(of: name, wallClock: wallClock)
        let replicas = shards[name]?.spec.replicas ?? 1
        guard owners + orphans.count >= replicas, let first = orphans.min(by: { $0.until < $1.until }),
            let i = leaving[name]?.firstIndex(where: { $0.epoch == first.epoch })
        else { return nil }
        leaving[name]?[i].successor = epoch
        return first.until
    }

    /// `bestWorker(for:excluding:now:)` over a placement queue: the first worker in load order that
    /// can take the shard (one it keeps failing on only when no other can).
    private func bestWorker(
        for shard: Shard, excluding excluded: [Owner], in queue: PlacementQueue, now: Instant
    )
        -> String?
    {
        let weight = shard.spec.weight
        var fallback: String?
        for entry in queue.entries {
            guard entry.load + weight <= entry.capacity, !excluded.contains(where: { $0.workerID == entry.id }),
                let w = workers[entry.id], hasBudget(w, shard.spec.shard, now: now)
            else { continue }
            guard (shard.failedOn[entry.id] ?? 0) < configuration.failuresBeforeMove else {
                if fallback == nil { fallback = entry.id }
                continue
            }
            return entry.id
        }
        return fallback
    }

    /// Keeps a shard in `unplaced` exactly while it is desired, not rejected and short of replicas.
    private mutating func reindex(_ name: String) {
        if let shard = shards[name], shard.rejected == nil, shard.owners.count < shard.spec.replicas {
            if unplaced.insert(name).inserted { orderStale = true }
        } else {
            unplaced.remove(name)
        }
    }

    /// Where the indices disagree with the map (nil when they agree): for tests of the rules.
    public func indexProblem() -> String? {
        var owned: [String: Set<String>] = [:]
        var short: Set<String> = []
        for (name, shard) in shards {
            for owner in shard.owners { owned[owner.workerID, default: []].insert(name) }
            if shard.rejected == nil && shard.owners.count < shard.spec.replicas { short.insert(name) }
        }
        if owned != ownedBy { return "ownedBy \(ownedBy) but the map says \(owned)" }
        if short != unplaced { return "unplaced \(unplaced.sorted()) but the map says \(short.sorted())" }
        if !orderStale && !unplaced.isSubset(of: placementOrder) { return "placement order misses unplaced shards" }
        let assigned = shards.values.flatMap { $0.owners.filter { $0.state == .assigned }.map(\.epoch) }
        if Set(assigned) != Set(awaitingLive.keys) {
            return "awaitingLive \(awaitingLive.keys.sorted()) but the assigned owners are \(assigned.sorted())"
        }
        return nil
    }

    /// Asks for the next block of epochs when half of this one is used (or none is reserved, as after
    /// a take-over that found every shard re-reported), unless a reservation is already being written.
    private mutating func topUpEpochs(into actions: inout [Action]) {
        let remaining = reservedUpTo >= nextEpoch ? reservedUpTo - nextEpoch + 1 : 0
        if remaining <= configuration.epochBlock / 2 && !reservationPending {
            reservationPending = true
            actions.append(.persistEpochs(upTo: max(reservedUpTo, nextEpoch - 1) + configuration.epochBlock))
        }
    }

    /// The next epoch, if one is reserved; asks for the next block when half of this one is used, so
    /// no assignment waits on the write.
    private mutating func issueEpoch(into actions: inout [Action]) -> UInt64? {
        topUpEpochs(into: &actions)
        guard nextEpoch <= reservedUpTo else { return nil }
        defer { nextEpoch += 1 }
        return nextEpoch
    }
}

/// The eligible workers of one `place` call in the order placement prefers them (load per capacity,
/// then id): a search stops at the first that fits, and an assignment moves one entry.
struct PlacementQueue {
    struct Entry {
        var utilisation: Double
        var id: String
        var load: Int
        var capacity: Int

        init(_ w: CoordinatorCore.Worker) {
            id = w.hello.workerID
            load = w.load
            capacity = w.hello.capacity
            utilisation = Double(w.load) / Double(w.hello.capacity)
        }

        func precedes(_ other: Entry) -> Bool { (utilisation, id) < (other.utilisation, other.id) }
    }

    private(set) var entries: [Entry]

    init(_ workers: [CoordinatorCore.Worker]) {
        entries = workers.map(Entry.init).sorted { $0.precedes($1) }
    }

    /// `w`'s load changed: its entry moves to its new place (a worker not queued stays out).
    mutating func update(_ w: CoordinatorCore.Worker) {
        guard let i = entries.firstIndex(where: { $0.id == w.hello.workerID }) else { return }
        entries.remove(at: i)
        let entry = Entry(w)
        var lo = 0
        var hi = entries.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if entries[mid].precedes(entry) { lo = mid + 1 } else { hi = mid }
        }
        entries.insert(entry, at: lo)
    }
}

extension Array {
    fileprivate var nilIfEmpty: Self? { isEmpty ? nil : self }
}

/// The labels of a cluster event total: an exchange and a feed (candles without their timeframe).
public struct EventTotalsKey: Hashable, Sendable {
    public var exchange: String
    public var feed: String
    public init(exchange: String, feed: String) {
        self.exchange = exchange
        self.feed = feed
    }
}
