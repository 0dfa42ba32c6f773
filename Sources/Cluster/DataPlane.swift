public import Collector
public import Configuration
import Exchanges
import Foundation
public import Observability
public import PostgresClient
public import Runtime

/// The collecting half of a process, built the same way for `serve --standalone` and for `worker`:
/// the schema migrated, the sinks with their spool and dead letters, retention, the metrics
/// registry and the collector engine. What it collects is decided by its owner (the saved
/// subscriptions standalone; the coordinator's assignments on a worker).
public struct DataPlane: Sendable {
    public let engine: CollectorEngine
    public let storage: SinkDispatcher
    public let deadLetters: DeadLetters
    public let registry: MetricsRegistry
    public let versions: StreamVersions
    /// The executor the sinks write through (disconnected by `finish`).
    public let executor: PGExecutor
    public let conninfo: String
    public let timeouts: PGTimeouts
    private let retention: Task<Void, Never>?

    /// Why the data plane could not start: a message and the fields that say where.
    public struct StartError: Error, Sendable {
        public var message: String
        public var fields: [String: String]
        /// The database could not be reached or prepared (it may come back: a retry may succeed),
        /// as opposed to a setting or a data directory that is wrong.
        public var databaseUnavailable = false
    }

    /// The engine's settings from `settings` (endpoints, batching, timeouts).
    public static func engineConfiguration(_ settings: Settings) -> CollectorConfiguration {
        var configuration = CollectorConfiguration()
        configuration.okx = OKXAdapter.Endpoints(
            publicURL: settings.okxPublicURL, businessURL: settings.okxBusinessURL, restURL: settings.okxRESTURL)
        configuration.batchSize = settings.batchSize
        configuration.batchTimeout = .milliseconds(Int64(settings.batchTimeout * 1000))
        configuration.staleAfter = .milliseconds(Int64(settings.messageTimeout * 1000))
        configuration.bookSnapshotInterval =
            settings.bookSnapshotInterval > 0 ? .milliseconds(Int64(settings.bookSnapshotInterval * 1000)) : nil
        configuration.connectTimeout = .milliseconds(Int64(settings.connectTimeout * 1000))
        return configuration
    }

    public static func start(
        settings: Settings, environment: [String: String], conninfo: String, loop: EventLoop, logger: Logger
    ) async throws(StartError) -> DataPlane {
        let timeouts = PGTimeouts(operation: .milliseconds(Int64(settings.databaseTimeout * 1000)))
        let executor = PGExecutor(conninfo: conninfo, timeouts: timeouts)
        guard let sqlDirectory = SchemaMigrator.locateSQLDirectory(environment: environment) else {
            throw StartError(message: "sql/init not found (set SQL_DIR)", fields: [:])
        }
        do {
            let applied = try await SchemaMigrator.migrate(
                try SchemaMigrator.migrations(in: sqlDirectory), executor: executor)
            logger.notice("schema ready", ["migrations.applied": applied.joined(separator: ",")])
        } catch {
            throw StartError(
                message: "cannot prepare the database", fields: ["error": "\(error)"], databaseUnavailable: true)
        }
        let versions = StreamVersions()
        let postgres = PostgresSink(executor: executor, versions: versions)
        // `[storage] sinks` names only sinks this build has (checked by Settings): PostgreSQL today.
        let sinks: [any Sink] = settings.sinks.compactMap { $0 == postgres.name ? postgres : nil }
        let dataDir = settings.dataDirectory
        let storage: SinkDispatcher
        let deadLetters: DeadLetters
        do {
            deadLetters = try DeadLetters(
                directory: dataDir + "/dead-letters", logger: logger.with(["component": "dead-letters"]))
            storage = try SinkDispatcher(
                spool: try Spool(
                    directory: dataDir + "/spool", maxBytes: settings.spoolMaxBytes, sinks: sinks.map(\.name)),
                sinks: sinks, deadLetters: deadLetters, watermarkPath: dataDir + "/watermarks.json",
                logger: logger.with(["component": "storage"]))
        } catch {
            throw StartError(
                message: "cannot open the data directory", fields: ["data.dir": dataDir, "error": "\(error)"])
        }
        var retention: Task<Void, Never>?
        if !settings.retentionDays.isEmpty {
            let maintenance = PGExecutor(conninfo: conninfo, label: "collector.retention", timeouts: timeouts)
            let policy = RetentionPolicy(days: settings.retentionDays)
            retention = Task {
                // Daily, starting now: partitions past their type's age are dropped (one process at a time).
                while !Task.isCancelled {
                    do {
                        let dropped = try await policy.apply(executor: maintenance, now: WallClock.microseconds())
                        if !dropped.isEmpty {
                            logger.notice(
                                "retention dropped partitions", ["partitions": dropped.joined(separator: ",")])
                        }
                    } catch {
                        logger.error("retention failed", ["error": "\(error)"])
                    }
                    do { try await Task.sleep(for: .seconds(86_400)) } catch { return }  // cancelled: stopping
                }
            }
        }
        let registry = MetricsRegistry()
        let engine = await CollectorEngine.start(
            configuration: engineConfiguration(settings), loop: loop, storage: storage, deadLetters: deadLetters,
            metrics: CollectorMetrics(registry: registry), logger: logger.with(["component": "collector"]))
        engine.registerMetrics(in: registry)
        return DataPlane(
            engine: engine, storage: storage, deadLetters: deadLetters, registry: registry, versions: versions,
            executor: executor, conninfo: conninfo, timeouts: timeouts, retention: retention)
    }

    /// Stops collecting and flushes what is buffered within `timeout` (what is not stored stays in
    /// the spool); returns whether the spool drained.
    public func finish(timeout: Duration) async -> Bool {
        retention?.cancel()
        await engine.shutdown()
        let drained = await storage.finish(timeout: timeout)
        executor.disconnect()
        return drained
    }
}
