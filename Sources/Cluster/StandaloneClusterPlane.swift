public import Collector
public import Gateway
public import MarketData

/// Standalone mode's plane (DESIGN.md §7): the cluster with one in-process worker. Subscriptions go
/// to the in-process coordinator, which places them on the worker over the same control protocol
/// (loopback) as any other; what the API shows of a stream comes from that worker's engine (its
/// statuses carry messages, errors, reconnects and the gap ledger), and from the shard map for a
/// stream not yet running there.
public struct StandaloneClusterPlane: StreamPlane {
    public let cluster: ClusterPlane
    /// The in-process worker's engine, as the standalone view of it.
    public let local: StandalonePlane

    public init(cluster: ClusterPlane, local: StandalonePlane) {
        self.cluster = cluster
        self.local = local
    }

    public func subscribe(_ streams: [StreamID], replicas: Int) async -> [StreamID: String] {
        // One worker: more replicas than one could never be placed.
        await cluster.subscribe(streams, replicas: 1)
    }

    public func unsubscribe(_ streams: [StreamID]) async { await cluster.unsubscribe(streams) }

    public func statuses() async -> [StreamStatus] {
        let running = Dictionary(
            await local.statuses().map { ($0.stream, $0) }, uniquingKeysWith: { first, _ in first })
        return await cluster.statuses().map { running[$0.stream] ?? $0 }
    }

    /// The engine's statuses carry the ledger.
    public func storedGaps(of streams: [StreamID]) async throws -> [StreamID: [Gap]] { [:] }

    public func operate(_ operation: ClusterOperation) async -> OperationRefusal? {
        await local.operate(operation)
    }

    public func owners() async -> [StreamID: [(worker: String, epoch: UInt64)]] { await cluster.owners() }

    public func clusterDocument() async -> [UInt8] { await cluster.clusterDocument() }
}
