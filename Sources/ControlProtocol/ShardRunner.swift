import CollectorCore

/// The worker's data-plane bookkeeping between its `WorkerSession` and the collector engine, as one
/// pure machine (issue 11): what the session starts and stops (with a move's cutover and a hand-over's
/// end) becomes subscribe, window and unsubscribe requests for the engine; what the engine reports
/// about each stream (confirmed, events stored, refused) becomes the session's `shardLive`, `stored`
/// and `shardFailed` inputs, once per epoch. Shards are named as in the cluster (`okx/trades/BTC-USDT`).
///
/// A hand-over keeps the stream subscribed until its rows reach the cutover (`until`): events from
/// then on belong to the successor, so the window closes there, and the subscription ends once an
/// event at or past the cutover has come through (every earlier one has, then: a slow exchange or a
/// loaded worker delays the end, never loses a row), or, for a stream with nothing past it yet (a
/// bar still open, a quiet instrument), once the wall clock is `settle` past it.
public struct ShardRunner: Sendable {
    /// What the engine says about one stream, observed at once for every running shard.
    public struct Observed: Hashable, Sendable {
        public var shard: String
        /// Subscribed and confirmed by the exchange (books: synchronised).
        public var live: Bool
        /// Events stored since the stream started (cumulative; deltas are reported).
        public var stored: Int64
        public var lastEventTime: Int64?
        public var lastEventID: String?
        /// The exchange refused it for good: its code and message.
        public var rejection: (code: String, message: String)?
        /// Whether another worker would get the same refusal (the exchange's answer about the
        /// stream), or not (this worker's connection failed for good, e.g. TLS verification).
        public var rejectionIsPermanent = true
        /// A backfill of a hole is still running: the stored watermark is the live stream's, past the
        /// hole, so it is not reported (a successor resuming there would skip rows never stored);
        /// the last report stands, at first the assignment's resume point.
        public var fillingHole = false
        /// The latest closing window's end an event of the stream reached (see the type's note).
        public var passedUntil: Int64?

        public init(
            shard: String, live: Bool, stored: Int64, lastEventTime: Int64? = nil, lastEventID: String? = nil,
            rejection: (code: String, message: String)? = nil, fillingHole: Bool = false, passedUntil: Int64? = nil
        ) {
            self.passedUntil = passedUntil
            self.shard = shard
            self.live = live
            self.stored = stored
            self.lastEventTime = lastEventTime
            self.lastEventID = lastEventID
            self.rejection = rejection
            self.fillingHole = fillingHole
        }

        public static func == (a: Observed, b: Observed) -> Bool {
            a.shard == b.shard && a.live == b.live && a.stored == b.stored && a.lastEventTime == b.lastEventTime
                && a.lastEventID == b.lastEventID && a.rejection?.code == b.rejection?.code
                && a.rejection?.message == b.rejection?.message && a.fillingHole == b.fillingHole
        }
        public func hash(into h: inout Hasher) { h.combine(shard) }
    }

    public enum Input: Sendable {
        /// What the session decided (`.start`, `.stop`; other actions are ignored).
        case session(WorkerSession.Action)
        /// The engine's view of the running streams.
        case observed([Observed])
        /// Time passed (hand-overs whose cutover has settled end).
        case tick
    }

    public enum Action: Sendable {
        /// Subscribe (if not already) and keep events in `[from, until)` only (nil: unbounded);
        /// backfill from `resumeFrom` when given.
        case run(shard: String, from: Int64?, until: Int64?, resumeFrom: ResumePoint?)
        /// Keep only events before `until` (a hand-over's cutover).
        case closeWindow(shard: String, until: Int64)
        case unsubscribe(shard: String)
        /// For the session.
        case report(WorkerSession.Input)
    }

    struct Running: Sendable {
        var epoch: UInt64
        var until: Int64?
        var reportedLive = false
        /// The engine's cumulative count at the last observation; `nil` until the first one (the
        /// engine's counters may predate this epoch: a stream still subscribed, or resubscribed).
        var stored: Int64?
        var lastEventTime: Int64?
        /// An event reached the hand-over's cutover: the stream may end.
        var passedUntil = false
    }

    /// How long past a hand-over's cutover the subscription stays when no event has reached it.
    public let settle: Duration
    /// Bound on shards run at once (the session's capacity bounds what the coordinator assigns).
    public let maxShards: Int
    private var running: [String: Running] = [:]

    public init(settle: Duration = .seconds(5), maxShards: Int = 100_000) {
        self.settle = settle
        self.maxShards = maxShards
    }

    /// The shards the engine runs now, by epoch.
    public var epochs: [String: UInt64] { running.mapValues(\.epoch) }

    /// `wallClock`: µs since the epoch, the clock cutovers are in.
    public mutating func handle(_ input: Input, wallClock: Int64) -> [Action] {
        var actions: [Action] = []
        switch input {
        case .session(.start(let a)):
            if running[a.shard] == nil && running.count >= maxShards {
                actions.append(
                    .report(
                        .shardFailed(
                            shard: a.shard, epoch: a.epoch, permanent: false, code: "capacity",
                            reason: "this worker already runs \(maxShards) shards")))
                break
            }
            // A stream still subscribed (a hand-over taken back, or a newer epoch of what runs, which
            // the session starts without stopping the old one) keeps its subscription: only the
            // window changes, and the engine's count is read again as a baseline.
            running[a.shard] = Running(epoch: a.epoch)
            actions.append(.run(shard: a.shard, from: a.cutoverAt, until: nil, resumeFrom: a.resumeFrom))
        case .session(.stop(let shard, let epoch, let until)):
            guard running[shard]?.epoch == epoch else { break }
            if let until, until > wallClock {
                running[shard]?.until = until
                running[shard]?.passedUntil = false
                actions.append(.closeWindow(shard: shard, until: until))
            } else {
                running[shard] = nil
                actions.append(.unsubscribe(shard: shard))
            }
        case .session:
            break
        case .observed(let list):
            for o in list {
                guard var r = running[o.shard] else { continue }
                if let rejection = o.rejection {
                    running[o.shard] = nil
                    actions.append(.unsubscribe(shard: o.shard))
                    actions.append(
                        .report(
                            .shardFailed(
                                shard: o.shard, epoch: r.epoch, permanent: o.rejectionIsPermanent,
                                code: rejection.code,
                                reason: rejection.message)))
                    continue
                }
                if o.live && !r.reportedLive && r.until == nil {
                    r.reportedLive = true
                    actions.append(.report(.shardLive(shard: o.shard, epoch: r.epoch)))
                }
                if let until = r.until, let passed = o.passedUntil, passed >= until { r.passedUntil = true }
                let delta = r.stored.map { max(0, o.stored - $0) } ?? 0
                r.stored = max(r.stored ?? o.stored, o.stored)
                let time = o.fillingHole ? nil : o.lastEventTime
                if delta > 0 || (time ?? .min) > (r.lastEventTime ?? .min) {
                    r.lastEventTime = max(r.lastEventTime ?? .min, time ?? .min)
                    actions.append(
                        .report(
                            .stored(
                                shard: o.shard, epoch: r.epoch, events: delta, lastEventTime: time,
                                lastEventID: time == nil ? nil : o.lastEventID)))
                }
                running[o.shard] = r
            }
        case .tick:
            let settled = wallClock - settle.nanosecondsClamped / 1000
            for (shard, r) in running.sorted(by: { $0.key < $1.key }) {
                guard let until = r.until, until <= wallClock, r.passedUntil || until <= settled else { continue }
                running[shard] = nil
                actions.append(.unsubscribe(shard: shard))
            }
        }
        return actions
    }
}
