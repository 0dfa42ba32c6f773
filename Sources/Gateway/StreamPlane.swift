public import Collector
import Exchanges
import Foundation
public import MarketData
import Runtime

/// What runs the subscribed streams behind the API: the in-process engine (standalone) or the
/// cluster's coordinator, which places them on workers. The API validates and persists requests;
/// the plane runs them.
/// An operator's request to the cluster (`coordinator drain|cordon|uncordon|rebalance|move`).
public enum ClusterOperation: Sendable, Equatable {
    case drain(worker: String)
    case cordon(worker: String)
    case uncordon(worker: String)
    case pauseRebalance(Bool)
    case move(shard: String, to: String)
}

/// Why an operation was not applied: `notFound` names an unknown worker or shard.
public struct OperationRefusal: Error, Sendable, Equatable {
    public var notFound: Bool
    public var message: String
    public init(notFound: Bool, message: String) {
        self.notFound = notFound
        self.message = message
    }
}

public protocol StreamPlane: Sendable {
    /// Applies an operator's request, or says why not (nothing changed then).
    func operate(_ operation: ClusterOperation) async -> OperationRefusal?
    /// The stored gap ledger of `streams`, for planes whose statuses do not carry it (the cluster:
    /// the ledger is in the sinks, whichever worker wrote it). Throws when it cannot be read.
    func storedGaps(of streams: [StreamID]) async throws -> [StreamID: [Gap]]
    /// Starts collecting `streams`, each on `replicas` distinct workers where the plane has several;
    /// returns the streams refused, with why.
    @discardableResult
    func subscribe(_ streams: [StreamID], replicas: Int) async -> [StreamID: String]
    func unsubscribe(_ streams: [StreamID]) async
    /// Each stream's status, for `/api/v1/subscriptions` and `/api/v1/status/{symbol}`.
    func statuses() async -> [StreamStatus]
    /// Who runs each stream: worker id(s) and epoch, by stream.
    func owners() async -> [StreamID: [(worker: String, epoch: UInt64)]]
    /// The `GET /api/v1/cluster` document (JSON).
    func clusterDocument() async -> [UInt8]
}

/// The standalone plane: one process runs every stream itself, as its only worker, at epoch 1.
public struct StandalonePlane: StreamPlane {
    public let engine: CollectorEngine
    public let workerID: String

    public init(engine: CollectorEngine, workerID: String) {
        self.engine = engine
        self.workerID = workerID
    }

    public func subscribe(_ streams: [StreamID], replicas: Int) async -> [StreamID: String] {
        await engine.subscribe(streams)
    }

    public func unsubscribe(_ streams: [StreamID]) async { await engine.unsubscribe(streams) }

    public func statuses() async -> [StreamStatus] { engine.status.all() }

    /// The engine's statuses carry the ledger already.
    public func storedGaps(of streams: [StreamID]) async throws -> [StreamID: [Gap]] { [:] }

    public func operate(_ operation: ClusterOperation) async -> OperationRefusal? {
        OperationRefusal(
            notFound: false, message: "standalone mode has one in-process worker: there is no cluster to operate")
    }

    public func owners() async -> [StreamID: [(worker: String, epoch: UInt64)]] {
        Dictionary(uniqueKeysWithValues: engine.status.all().map { ($0.stream, [(workerID, UInt64(1))]) })
    }

    public func clusterDocument() async -> [UInt8] {
        let all = engine.status.all()
        let now = WallClock.microseconds()
        let shards: [[String: Any]] = all.map {
            [
                "id": $0.stream.description, "exchange": $0.stream.exchange.rawValue,
                "feed": $0.stream.feed.description, "symbol": $0.stream.symbol, "owners": [workerID],
                "epoch": 1, "state": $0.state.rawValue,
                "last_event_age_ms": $0.lastEventTime.map { max(0, (now - $0) / 1000) } ?? NSNull(),
            ]
        }
        let worker: [String: Any] = [
            "id": workerID, "address": "in-process", "state": "live", "shards": all.count, "weight": all.count,
            "lease_expires_in_ms": NSNull(), "events_per_second": NSNull(),
        ]
        let document: [String: Any] = [
            "mode": "standalone", "healthy": true, "term": 1, "workers": [worker], "shards": shards,
        ]
        // try?: every value is a JSON type, so serialization cannot fail.
        return Array(
            (try? JSONSerialization.data(withJSONObject: document, options: [.sortedKeys, .withoutEscapingSlashes]))
                ?? Data("{}".utf8))
    }
}
