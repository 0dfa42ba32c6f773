public import Collector
import CollectorCore
import ControlProtocol
public import Coordination
import Exchanges
public import Gateway
public import MarketData
import WireCore

/// The cluster's stream plane behind the API: subscriptions become desired shards the coordinator
/// places on workers; statuses, owners and `GET /api/v1/cluster` come from the live shard map.
public struct ClusterPlane: StreamPlane {
    public let server: ControlServer

    public init(server: ControlServer) { self.server = server }

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

    static func state(of shard: CoordinatorCore.Shard) -> String {
        if shard.rejected != nil { return "rejected" }
        if shard.owners.contains(where: { $0.state == .live }) { return "live" }
        return shard.owners.isEmpty ? "unowned" : "assigned"
    }

    public func clusterDocument() async -> [UInt8] {
        Self.documentBytes(await server.snapshot())
    }

    /// `documentBytes` as text (tests read it).
    public static func document(_ snapshot: ClusterSnapshot) -> String {
        String(decoding: documentBytes(snapshot), as: UTF8.self)
    }

    /// The documented `/api/v1/cluster` document (openapi.yaml `Cluster`), written straight into
    /// bytes: 50,000 shards (about 10 MB) render in a fraction of a second (cluster_scale.sh).
    public static func documentBytes(_ snapshot: ClusterSnapshot) -> [UInt8] {
        let core = snapshot.core
        var shardsPerWorker: [String: Int] = [:]
        var ratePerWorker: [String: Double] = [:]
        var healthy = true
        var shardsJSON = JSONBytes(reservingCapacity: core.shards.count * 200)
        for (index, name) in core.shards.keys.sorted().enumerated() {
            guard let shard = core.shards[name] else { continue }
            for owner in shard.owners {
                shardsPerWorker[owner.workerID, default: 0] += 1
                if let rate = shard.measuredRate { ratePerWorker[owner.workerID, default: 0] += rate }
            }
            if shard.rejected == nil && shard.owners.isEmpty { healthy = false }
            let parts = name.split(separator: "/", maxSplits: 2)
            if index > 0 { shardsJSON.raw(",") }
            shardsJSON.raw("{\"id\":")
            shardsJSON.quoted(name)
            shardsJSON.raw(",\"exchange\":")
            shardsJSON.quoted(parts.first.map(String.init) ?? "")
            shardsJSON.raw(",\"feed\":")
            shardsJSON.quoted(parts.count > 1 ? String(parts[1]) : "")
            shardsJSON.raw(",\"symbol\":")
            shardsJSON.quoted(parts.count > 2 ? String(parts[2]) : "")
            shardsJSON.raw(",\"owners\":[")
            for (i, owner) in shard.owners.enumerated() {
                if i > 0 { shardsJSON.raw(",") }
                shardsJSON.quoted(owner.workerID)
            }
            shardsJSON.raw("],\"epoch\":")
            if let epoch = shard.owners.map(\.epoch).max() { shardsJSON.int(epoch) } else { shardsJSON.raw("null") }
            shardsJSON.raw(",\"replicas\":")
            shardsJSON.int(shard.spec.replicas)
            shardsJSON.raw(",\"weight\":")
            shardsJSON.int(shard.spec.weight)
            shardsJSON.raw(",\"state\":")
            shardsJSON.quoted(state(of: shard))
            shardsJSON.raw(",\"last_event_age_ms\":")
            if let time = shard.lastEventTime {
                shardsJSON.int(max(0, (snapshot.wallClock - time) / 1000))
            } else {
                shardsJSON.raw("null")
            }
            if let rejected = shard.rejected {
                shardsJSON.raw(",\"rejection\":{\"code\":")
                shardsJSON.quoted(rejected.code)
                shardsJSON.raw(",\"message\":")
                shardsJSON.quoted(rejected.message)
                shardsJSON.raw("}")
            }
            shardsJSON.raw("}")
        }
        var out = JSONBytes(reservingCapacity: shardsJSON.bytes.count + core.workers.count * 300 + 200)
        out.raw("{\"mode\":\"cluster\",\"healthy\":")
        // Health also needs every lease: the workers are written first into their own buffer.
        var workersJSON = JSONBytes(reservingCapacity: core.workers.count * 300)
        for (index, id) in core.workers.keys.sorted().enumerated() {
            guard let w = core.workers[id] else { continue }
            let leaseMs = w.leaseUntil.duration(since: snapshot.now).millisecondsClamped
            if leaseMs <= 0 { healthy = false }
            let state = w.draining ? "draining" : w.cordoned ? "cordoned" : leaseMs > 0 ? "live" : "expired"
            if index > 0 { workersJSON.raw(",") }
            workersJSON.raw("{\"id\":")
            workersJSON.quoted(id)
            workersJSON.raw(",\"address\":")
            workersJSON.quoted(snapshot.addresses[id] ?? "")
            workersJSON.raw(",\"state\":")
            workersJSON.quoted(state)
            workersJSON.raw(",\"lease_expires_in_ms\":")
            workersJSON.int(max(0, leaseMs))
            workersJSON.raw(",\"shards\":")
            workersJSON.int(shardsPerWorker[id] ?? 0)
            workersJSON.raw(",\"weight\":")
            workersJSON.int(w.load)
            workersJSON.raw(",\"capacity\":")
            workersJSON.int(w.hello.capacity)
            workersJSON.raw(",\"egress_group\":")
            workersJSON.quoted(w.hello.egressGroup)
            workersJSON.raw(",\"incarnation\":")
            workersJSON.int(w.hello.incarnation)
            workersJSON.raw(",\"events_per_second\":")
            workersJSON.raw(ratePerWorker[id].map { "\(($0 * 10).rounded() / 10)" } ?? "null")
            workersJSON.raw("}")
        }
        out.bool(healthy)
        out.raw(",\"term\":")
        out.int(core.term)
        out.raw(",\"moves\":")
        out.int(core.moves.count)
        out.raw(",\"workers\":[")
        out.append(workersJSON)
        out.raw("],\"shards\":[")
        out.append(shardsJSON)
        out.raw("]}")
        return out.bytes
    }
}
