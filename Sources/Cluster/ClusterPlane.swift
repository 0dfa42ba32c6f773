public import Collector
import CollectorCore
import ControlProtocol
import Coordination
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
        await server.request(
            .subscribe(
                streams.map {
                    CoordinatorCore.DesiredShard(
                        shard: $0.description, replicas: replicas,
                        weight: CoordinatorCore.DesiredShard.defaultWeight(ofShard: $0.description))
                }))
        return [:]
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
        Array(Self.document(await server.snapshot()).utf8)
    }

    /// The documented `/api/v1/cluster` document (openapi.yaml `Cluster`), written directly: 50,000
    /// shards render in milliseconds.
    public static func document(_ snapshot: ClusterSnapshot) -> String {
        let core = snapshot.core
        var shardsPerWorker: [String: Int] = [:]
        var ratePerWorker: [String: Double] = [:]
        var healthy = true
        var shardsJSON: [String] = []
        shardsJSON.reserveCapacity(core.shards.count)
        for name in core.shards.keys.sorted() {
            guard let shard = core.shards[name] else { continue }
            for owner in shard.owners {
                shardsPerWorker[owner.workerID, default: 0] += 1
                if let rate = shard.measuredRate { ratePerWorker[owner.workerID, default: 0] += rate }
            }
            if shard.rejected == nil && shard.owners.isEmpty { healthy = false }
            let parts = name.split(separator: "/", maxSplits: 2).map(String.init)
            var o = "{\"id\":" + JSONText.quoted(name)
            o += ",\"exchange\":" + JSONText.quoted(parts.first ?? "")
            o += ",\"feed\":" + JSONText.quoted(parts.count > 1 ? parts[1] : "")
            o += ",\"symbol\":" + JSONText.quoted(parts.count > 2 ? parts[2] : "")
            o += ",\"owners\":[" + shard.owners.map { JSONText.quoted($0.workerID) }.joined(separator: ",") + "]"
            o += ",\"epoch\":" + (shard.owners.map(\.epoch).max().map { "\($0)" } ?? "null")
            o += ",\"replicas\":\(shard.spec.replicas),\"weight\":\(shard.spec.weight)"
            o += ",\"state\":" + JSONText.quoted(state(of: shard))
            o +=
                ",\"last_event_age_ms\":"
                + (shard.lastEventTime.map { "\(max(0, (snapshot.wallClock - $0) / 1000))" } ?? "null")
            if let rejected = shard.rejected {
                o +=
                    ",\"rejection\":{\"code\":" + JSONText.quoted(rejected.code) + ",\"message\":"
                    + JSONText.quoted(rejected.message) + "}"
            }
            shardsJSON.append(o + "}")
        }
        var workersJSON: [String] = []
        for id in core.workers.keys.sorted() {
            guard let w = core.workers[id] else { continue }
            let leaseMs = w.leaseUntil.duration(since: snapshot.now).millisecondsClamped
            if leaseMs <= 0 { healthy = false }
            let state = w.draining ? "draining" : w.cordoned ? "cordoned" : leaseMs > 0 ? "live" : "expired"
            var o = "{\"id\":" + JSONText.quoted(id)
            o += ",\"address\":" + JSONText.quoted(snapshot.addresses[id] ?? "")
            o += ",\"state\":" + JSONText.quoted(state)
            o += ",\"lease_expires_in_ms\":\(max(0, leaseMs))"
            o += ",\"shards\":\(shardsPerWorker[id] ?? 0),\"weight\":\(w.load),\"capacity\":\(w.hello.capacity)"
            o += ",\"egress_group\":" + JSONText.quoted(w.hello.egressGroup)
            o += ",\"incarnation\":\(w.hello.incarnation)"
            o += ",\"events_per_second\":" + (ratePerWorker[id].map { "\(($0 * 10).rounded() / 10)" } ?? "null")
            workersJSON.append(o + "}")
        }
        return "{\"mode\":\"cluster\",\"healthy\":\(healthy),\"term\":\(core.term),\"moves\":\(core.moves.count)"
            + ",\"workers\":[" + workersJSON.joined(separator: ",") + "],\"shards\":["
            + shardsJSON.joined(separator: ",") + "]}"
    }
}
