public import Collector
import CollectorCore
import ControlProtocol
public import Coordination
import Exchanges
public import Gateway
import Locking
public import MarketData
import Synchronization
import WireCore

/// The cluster's stream plane behind the API: subscriptions become desired shards the coordinator
/// places on workers; statuses, owners and `GET /api/v1/cluster` come from the live shard map.
public struct ClusterPlane: StreamPlane {
    public let server: ControlServer
    /// Keeps what `GET /api/v1/cluster` can reuse from one request to the next (see `DocumentRenderer`).
    private let renderer = DocumentRenderer()

    /// Where the gap ledger is read (the coordinator's database, when it has one).
    private let ledger: (any Sink)?

    /// The document's `mode`: `cluster`, or `standalone` for the cluster with one in-process worker.
    public let mode: String

    public init(server: ControlServer, ledger: (any Sink)? = nil, mode: String = "cluster") {
        self.server = server
        self.ledger = ledger
        self.mode = mode
    }

    public func storedGaps(of streams: [StreamID]) async throws -> [StreamID: [Gap]] {
        guard let ledger else { return [:] }
        return try await ledger.gapLedger(of: streams, perStream: StreamStatus.maxGaps)
    }

    public func subscribe(_ streams: [StreamID], replicas: Int) async -> [StreamID: String] {
        let refused = Set(await server.subscribe(Self.desired(streams, replicas: replicas)))
        var out: [StreamID: String] = [:]
        for stream in streams where refused.contains(stream.description) {
            out[stream] = "the cluster map holds its maximum of shards"
        }
        return out
    }

    /// The shards the map wants for `streams`, at their default weights.
    public static func desired(_ streams: [StreamID], replicas: Int) -> [CoordinatorCore.DesiredShard] {
        streams.map {
            CoordinatorCore.DesiredShard(
                shard: $0.description, replicas: replicas,
                weight: CoordinatorCore.DesiredShard.defaultWeight(ofShard: $0.description))
        }
    }

    public func operate(_ operation: ClusterOperation) async -> OperationRefusal? {
        let event: CoordinatorCore.Event
        switch operation {
        case .drain(let id): event = .drain(workerID: id)
        case .cordon(let id): event = .cordon(workerID: id)
        case .uncordon(let id): event = .uncordon(workerID: id)
        case .pauseRebalance(let paused): event = .pauseRebalance(paused)
        case .move(let shard, let to): event = .move(shard: shard, to: to)
        }
        guard let reason = await server.command(event) else { return nil }
        return OperationRefusal(
            notFound: reason.hasPrefix("no worker") || reason.hasPrefix("no shard"), message: reason)
    }

    public func unsubscribe(_ streams: [StreamID]) async {
        await server.request(.unsubscribe(streams.map(\.description)))
    }

    public func statuses() async -> [StreamStatus] {
        let snapshot = await server.snapshot()
        return snapshot.core.shards.values.compactMap { shard in
            guard let stream = StreamID(shard.spec.shard) else { return nil }
            var status = StreamStatus(stream: stream)
            status.state = Self.phase(of: shard)
            status.lastEventTime = shard.lastEventTime
            status.messages = Int(clamping: shard.eventsTotal)
            status.rejection = shard.rejected
            return status
        }.sorted { $0.stream < $1.stream }
    }

    public func owners() async -> [StreamID: [(worker: String, epoch: UInt64)]] {
        let snapshot = await server.snapshot()
        var out: [StreamID: [(worker: String, epoch: UInt64)]] = [:]
        for shard in snapshot.core.shards.values {
            guard let stream = StreamID(shard.spec.shard) else { continue }
            out[stream] = shard.owners.map { ($0.workerID, $0.epoch) }
        }
        return out
    }

    static func phase(of shard: CoordinatorCore.Shard) -> StreamPhase {
        if shard.rejected != nil { return .rejected }
        if shard.owners.contains(where: { $0.state == .live }) { return .live }
        return shard.owners.isEmpty ? .pending : .subscribing
    }

    public func clusterDocument() async -> [UInt8] {
        var view = await server.clusterView()
        view.mode = mode
        return renderer.documentBytes(view)
    }

    /// `documentBytes` as text (tests read it).
    public static func document(_ snapshot: ClusterSnapshot) -> String {
        String(decoding: documentBytes(snapshot), as: UTF8.self)
    }

    /// The document of a snapshot, by a renderer of its own (nothing kept from earlier renders).
    public static func documentBytes(_ snapshot: ClusterSnapshot) -> [UInt8] {
        DocumentRenderer().documentBytes(ClusterView(snapshot))
    }
}

extension ClusterPlane {
    /// Writes the documented `/api/v1/cluster` document (openapi.yaml `Cluster`) straight into bytes:
    /// workers by id, then shards by id, each with what its view row says.
    ///
    /// Freshness: a document is the map as the loop had it when its view was read (at the request):
    /// nothing in it comes from an earlier request. Between renders the renderer keeps only what
    /// depends on the set of shard ids alone (their sorted order, and each shard's
    /// `{"id":…,"exchange":…,"feed":…,"symbol":…` text); each render checks that against its view's
    /// ids, one comparison per shard, and builds it again when the set changed. That costs a sort and
    /// about 100 bytes per shard (50,000 shards: 4.7 MB, kept between renders); one kept copy at most,
    /// replaced whenever the set of shards changes, so it is bounded by the map's `maxShards`.
    ///
    /// | 1,000 workers, 50,000 shards (9.4 MB document), `collector-bench cluster-document` | render |
    /// |---|---|
    /// | the set of shards is the last render's (the steady state) | 25–37 ms |
    /// | it changed, or a new renderer (sort and id texts again) | 70–100 ms |
    /// | the first renderer (sorting, splitting and quoting every id each time) | 120–200 ms |
    ///
    /// Thread-safe: renders may run at once (one of them keeps its layout for the next).
    public final class DocumentRenderer: Sendable {
        private let kept = Locked<Layout?>(nil)

        public init() {}

        /// The document of `view`. O(shards + workers log workers), plus O(shards log shards) when
        /// the set of shard ids differs from the last render's.
        public func documentBytes(_ view: ClusterView) -> [UInt8] {
            let last = kept.withLock { $0.take() }
            let layout = last.flatMap { $0.matches(view.shards) ? $0 : nil } ?? Layout(view.shards)
            let bytes = Self.render(view, layout)
            kept.withLock { $0 = layout }
            return bytes
        }

        /// What depends only on the shard ids of a view, in document order.
        struct Layout: Sendable {
            /// The ids in the view's order (what a later view must repeat for this layout to apply).
            let ids: [String]
            /// View positions, by id ascending (the document's order).
            let order: [Int]
            /// Each shard's head, `{"id":…,"exchange":…,"feed":…,"symbol":…,"owners":[`, in document
            /// order; the `j`-th ends at `headEnds[j]`.
            let heads: [UInt8]
            let headEnds: [Int]

            init(_ shards: [ClusterView.Shard]) {
                let ids = shards.map(\.id)
                let order = ids.indices.sorted { ids[$0] < ids[$1] }
                var heads = DocumentBytes(reservingCapacity: ids.count * 100)
                var headEnds: [Int] = []
                headEnds.reserveCapacity(ids.count)
                for i in order {
                    Self.writeHead(of: ids[i], into: &heads)
                    headEnds.append(heads.bytes.count)
                }
                self.ids = ids
                self.order = order
                self.heads = heads.bytes
                self.headEnds = headEnds
            }

            /// `{"id":…,"exchange":…,"feed":…,"symbol":…,"owners":[`: the id's parts before the first
            /// and second `/`, and the rest.
            private static func writeHead(of id: String, into heads: inout DocumentBytes) {
                var id = id
                let wrote = id.withUTF8 { utf8 in
                    guard utf8.allSatisfy({ $0 < 0x80 }) else { return false }
                    // ASCII: a `/` byte is a `/` character, so these are the parts `split` finds
                    // (empty ones skipped; after the second, the rest is one part).
                    let slash = UInt8(ascii: "/")
                    var parts: [Range<Int>] = []
                    var start = 0
                    for (k, byte) in utf8.enumerated() where byte == slash && parts.count < 2 {
                        if k > start { parts.append(start..<k) }
                        start = k + 1
                    }
                    if start < utf8.count { parts.append(start..<utf8.count) }
                    func part(_ n: Int) -> UnsafeBufferPointer<UInt8> {
                        n < parts.count
                            ? UnsafeBufferPointer(rebasing: utf8[parts[n]]) : UnsafeBufferPointer(start: nil, count: 0)
                    }
                    heads.raw("{\"id\":")
                    heads.quoted(utf8)
                    heads.raw(",\"exchange\":")
                    heads.quoted(part(0))
                    heads.raw(",\"feed\":")
                    heads.quoted(part(1))
                    heads.raw(",\"symbol\":")
                    heads.quoted(part(2))
                    heads.raw(",\"owners\":[")
                    return true
                }
                guard !wrote else { return }
                let parts = id.split(separator: "/", maxSplits: 2)
                heads.raw("{\"id\":")
                heads.quoted(id)
                heads.raw(",\"exchange\":")
                heads.quoted(parts.first.map(String.init) ?? "")
                heads.raw(",\"feed\":")
                heads.quoted(parts.count > 1 ? String(parts[1]) : "")
                heads.raw(",\"symbol\":")
                heads.quoted(parts.count > 2 ? String(parts[2]) : "")
                heads.raw(",\"owners\":[")
            }

            /// Whether `shards` has these ids in this order (then the same set: ids are unique).
            /// Ids the map still holds are the same strings, so most comparisons are identity checks.
            func matches(_ shards: [ClusterView.Shard]) -> Bool {
                guard shards.count == ids.count else { return false }
                for i in shards.indices where shards[i].id != ids[i] { return false }
                return true
            }
        }

        /// Two passes in document order: the first counts each worker's shards and rates and finds
        /// the owners' workers (the workers come first in the document), the second writes.
        private static func render(_ view: ClusterView, _ layout: Layout) -> [UInt8] {
            let workers = view.workers.sorted { $0.id < $1.id }
            var position: [String: Int] = [:]
            position.reserveCapacity(workers.count)
            for (p, w) in workers.enumerated() { position[w.id] = p }
            var shardCounts = [Int](repeating: 0, count: workers.count)
            var rates = [Double?](repeating: nil, count: workers.count)
            // Each owner's worker position in document order (-1: not a leased worker).
            var ownerPositions: [Int] = []
            ownerPositions.reserveCapacity(view.shards.count)
            var healthy = true
            for i in layout.order {
                let shard = view.shards[i]
                if shard.rejected == nil && shard.owners.isEmpty { healthy = false }
                for owner in shard.owners {
                    guard let p = position[owner.workerID] else {
                        ownerPositions.append(-1)
                        continue
                    }
                    ownerPositions.append(p)
                    shardCounts[p] += 1
                    // Summed in document order, as the rates always were (the same rounding).
                    if let rate = shard.measuredRate { rates[p] = (rates[p] ?? 0) + rate }
                }
            }
            var leases: [Int64] = []
            leases.reserveCapacity(workers.count)
            for w in workers {
                let leaseMs = w.leaseUntil.duration(since: view.now).millisecondsClamped
                if leaseMs <= 0 { healthy = false }
                leases.append(leaseMs)
            }

            var out = DocumentBytes(
                reservingCapacity: 200 + workers.count * 300 + layout.heads.count + view.shards.count * 110)
            out.raw("{\"mode\":")
            out.quoted(view.mode)
            out.raw(",\"healthy\":")
            out.raw(healthy ? "true" : "false")
            out.raw(",\"term\":")
            out.int(view.term)
            out.raw(",\"moves\":")
            out.int(Int64(view.moves))
            out.raw(view.rebalancePaused ? ",\"rebalance_paused\":true" : ",\"rebalance_paused\":false")
            out.raw(",\"workers\":[")
            var quotedIDs: [[UInt8]] = []
            quotedIDs.reserveCapacity(workers.count)
            for (p, w) in workers.enumerated() {
                let leaseMs = leases[p]
                if p > 0 { out.raw(",") }
                out.raw("{\"id\":")
                let start = out.bytes.count
                out.quoted(w.id)
                quotedIDs.append(Array(out.bytes[start...]))
                out.raw(",\"address\":")
                out.quoted(w.address)
                out.raw(",\"state\":")
                out.raw(
                    w.draining ? "\"draining\"" : w.cordoned ? "\"cordoned\"" : leaseMs > 0 ? "\"live\"" : "\"expired\""
                )
                out.raw(",\"lease_expires_in_ms\":")
                out.int(max(0, leaseMs))
                out.raw(",\"shards\":")
                out.int(Int64(shardCounts[p]))
                out.raw(",\"weight\":")
                out.int(Int64(w.load))
                out.raw(",\"capacity\":")
                out.int(Int64(w.capacity))
                out.raw(",\"egress_group\":")
                out.quoted(w.egressGroup)
                out.raw(",\"incarnation\":")
                out.int(w.incarnation)
                out.raw(",\"events_per_second\":")
                out.text(rates[p].map { "\(($0 * 10).rounded() / 10)" } ?? "null")
                out.raw("}")
            }
            out.raw("],\"shards\":[")
            layout.heads.withUnsafeBufferPointer { heads in
                var headStart = 0
                var nextOwner = 0
                for (j, i) in layout.order.enumerated() {
                    let shard = view.shards[i]
                    if j > 0 { out.raw(",") }
                    out.append(UnsafeBufferPointer(rebasing: heads[headStart..<layout.headEnds[j]]))
                    headStart = layout.headEnds[j]
                    var epoch: UInt64?
                    for (k, owner) in shard.owners.enumerated() {
                        if k > 0 { out.raw(",") }
                        let p = ownerPositions[nextOwner]
                        nextOwner += 1
                        if p >= 0 { out.append(quotedIDs[p]) } else { out.quoted(owner.workerID) }
                        epoch = max(epoch ?? 0, owner.epoch)
                    }
                    out.raw("],\"epoch\":")
                    if let epoch { out.int(epoch) } else { out.raw("null") }
                    out.raw(",\"replicas\":")
                    out.int(Int64(shard.replicas))
                    out.raw(",\"weight\":")
                    out.int(Int64(shard.weight))
                    out.raw(",\"state\":")
                    if shard.rejected != nil {
                        out.raw("\"rejected\"")
                    } else if shard.owners.contains(where: { $0.state == .live }) {
                        out.raw("\"live\"")
                    } else {
                        out.raw(shard.owners.isEmpty ? "\"unowned\"" : "\"assigned\"")
                    }
                    out.raw(",\"last_event_age_ms\":")
                    if let time = shard.lastEventTime {
                        out.int(max(0, (view.wallClock - time) / 1000))
                    } else {
                        out.raw("null")
                    }
                    if let rejected = shard.rejected {
                        out.raw(",\"rejection\":{\"code\":")
                        out.quoted(rejected.code)
                        out.raw(",\"message\":")
                        out.quoted(rejected.message)
                        out.raw("}")
                    }
                    out.raw("}")
                }
            }
            out.raw("]}")
            return out.bytes
        }
    }
}

/// JSON text appended to bytes: literals, numbers, byte runs written earlier, and quoted strings.
/// A string that needs no escape is copied as it is; any other is quoted by `JSONBytes` (RFC 8259
/// §7), so every document has one escaping rule.
private struct DocumentBytes {
    private(set) var bytes: [UInt8] = []

    init(reservingCapacity capacity: Int) { bytes.reserveCapacity(capacity) }

    /// Structure or text known to need no escaping.
    mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Text already in JSON form (a number rendered elsewhere).
    mutating func text(_ text: String) { bytes.append(contentsOf: text.utf8) }

    mutating func append(_ run: UnsafeBufferPointer<UInt8>) { bytes.append(contentsOf: run) }

    mutating func append(_ run: [UInt8]) { bytes.append(contentsOf: run) }

    mutating func quoted(_ string: String) {
        var string = string
        string.withUTF8 { quoted($0) }
    }

    /// `utf8` (valid UTF-8) as a JSON string.
    mutating func quoted(_ utf8: UnsafeBufferPointer<UInt8>) {
        // RFC 8259 §7: only the quote, the backslash and controls below 0x20 are escaped.
        guard utf8.contains(where: { $0 == UInt8(ascii: "\"") || $0 == UInt8(ascii: "\\") || $0 < 0x20 }) else {
            bytes.append(UInt8(ascii: "\""))
            bytes.append(contentsOf: utf8)
            bytes.append(UInt8(ascii: "\""))
            return
        }
        var text = JSONBytes(reservingCapacity: utf8.count + 8)
        text.quoted(String(decoding: utf8, as: UTF8.self))
        bytes.append(contentsOf: text.bytes)
    }

    mutating func int(_ value: Int64) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        int(value.magnitude)
    }

    /// Decimal digits, as `JSONBytes.int` writes them.
    mutating func int(_ value: UInt64) {
        guard value >= 10 else {
            bytes.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: value))
            return
        }
        // UInt64.max has 20 digits.
        withUnsafeTemporaryAllocation(of: UInt8.self, capacity: 20) { digits in
            var v = value
            var start = digits.count
            while v > 0 {
                start -= 1
                digits[start] = UInt8(ascii: "0") + UInt8(truncatingIfNeeded: v % 10)
                v /= 10
            }
            bytes.append(contentsOf: UnsafeBufferPointer(rebasing: digits[start...]))
        }
    }
}
