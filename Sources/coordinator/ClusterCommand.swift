import Cluster
import Collector
import Configuration
import Coordination
import Crypto
import Dispatch
import Exchanges
import Foundation
import Gateway
import HTTP1Protocol
import MarketData
import Observability
import PostgresClient
import Runtime

/// What `coordinator serve` (cluster mode) needs from the command line.
struct ClusterCommand: Sendable {
    var settings: Settings
    var environment: [String: String]
    var log: Log
    var loop: EventLoop
    var pinned: [StreamID]
    var pinnedReplicas: [StreamID: Int]
    /// Where each pinned stream was pinned, for the API's 409.
    var pinnedOrigin: [StreamID: String]
    var apiToken: String?
    /// The HTTP port, bound before anything else starts; `slot` is what it serves.
    var http: HTTPServer
    var slot: HTTPHandlerSlot
    var version: String
    var shutdownSignals: ShutdownRequest
}

/// Runs the coordinator until SIGTERM/SIGINT, then exits.
func runClusterCoordinator(_ command: ClusterCommand) -> Never {
    let log = command.log
    let secret: [UInt8]
    do {
        secret = try ClusterSecret.load(from: command.environment)
    } catch {
        startupError(log, error.description)
    }
    let settings = command.settings
    let finished = DispatchSemaphore(value: 0)
    Task.detached {
        do {
            try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
        } catch {
            startupError(log, "cannot create the data directory", ["data.dir": settings.dataDirectory])
        }
        let (leadership, watchdog) = await becomeActive(command)
        let documents = await stateDocuments(command)
        let state = CoordinatorStateStore(documents.documents)
        let (beginning, subscriptions) = await begin(command, state: state, documents: documents)
        // Desired shards (pinned ones may ask for more replicas in the file), in the map before the
        // control port opens.
        let desired = subscriptions.all.flatMap { entry in
            ClusterPlane.desired(
                [entry.stream], replicas: max(entry.replicas, command.pinnedReplicas[entry.stream] ?? 1))
        }
        var control = controlSettings(settings)
        control.port = settings.controlPort
        control.service.maxPendingHandshakesPerAddress =
            settings.handshakesPerAddress > 0 ? settings.handshakesPerAddress : nil
        let server: ControlServer
        do {
            server = try await ControlServer.start(
                settings: control, secret: secret, state: state, beginning: beginning, loop: command.loop,
                logger: log.logger.with(["component": "control"]), desired: desired
            ) { reason in
                log.write("error", "deposed: stopping at once (the newer coordinator serves)", ["reason": reason])
                exit(3)
            }
        } catch {
            startupError(
                log, "cannot start the control listener",
                ["control.port": "\(settings.controlPort)", "error": "\(error)"])
        }
        // The gap ledger every worker writes, read for /api/v1/status where a database is configured.
        let ledger = PostgresConfiguration.conninfo(from: command.environment).map {
            PostgresSink(
                executor: PGExecutor(
                    conninfo: $0, label: "collector.api-gaps",
                    timeouts: PGTimeouts(operation: .milliseconds(Int64(settings.databaseTimeout * 1000)))))
        }
        let plane = ClusterPlane(server: server, ledger: ledger)
        let registry = MetricsRegistry()
        server.registerMetrics(in: registry)
        registry.registerStandardMetrics(version: command.version)
        // Data queries read PostgreSQL where one is configured; without it they answer 501.
        var reader: PostgresReader?
        if let conninfo = PostgresConfiguration.conninfo(from: command.environment) {
            let timeouts = PGTimeouts(operation: .milliseconds(Int64(settings.databaseTimeout * 1000)))
            reader = PostgresReader(
                executors: (0..<2).map { _ in
                    PGExecutor(conninfo: conninfo, label: "collector.api-postgres", timeouts: timeouts)
                }, versions: StreamVersions())
        }
        let api = GatewayAPI(
            plane: plane, subscriptions: subscriptions, reader: reader, apiToken: command.apiToken,
            registry: registry, requestsPerSecond: settings.apiRateLimit,
            logger: log.logger.with(["component": "api"]), pinnedOrigin: command.pinnedOrigin
        ) { (true, nil) }
        let http = command.http
        command.slot.serve { request in await api.handle(request) }
        log.write(
            "notice", "coordinating",
            [
                "version": command.version, "term": "\(server.term)", "control.port": "\(server.port)",
                "http.port": "\(http.port)", "streams": "\(subscriptions.all.count)",
                "lease.seconds": "\(settings.leaseTTL)", "heartbeat.seconds": "\(settings.heartbeatInterval)",
            ])
        await command.shutdownSignals.wait()
        watchdog?.cancel()
        log.write("notice", "shutting down the coordinator")
        await http.shutdown(deadline: .seconds(2))
        await server.shutdown()
        if case .database(let lock) = leadership { lock.release() }
        log.write("notice", "stopped")
        finished.signal()
    }
    finished.wait()
    command.loop.shutdown()
    exit(0)
}

/// Where the coordinator's state lives: with a database, its `coordinator_state` table (the schema
/// migrated first; a document it lacks is imported from `DATA_DIR`), so a standby on another host
/// continues from it; without one, files in `DATA_DIR`.
func stateDocuments(_ command: ClusterCommand) async -> StateDocumentQueue {
    let settings = command.settings
    let files = FileStateDocuments(directory: settings.dataDirectory)
    guard let conninfo = PostgresConfiguration.conninfo(from: command.environment) else {
        return StateDocumentQueue(files, label: "coordinator.documents")
    }
    let timeouts = PGTimeouts(operation: .milliseconds(Int64(settings.databaseTimeout * 1000)))
    guard let directory = SchemaMigrator.locateSQLDirectory(environment: command.environment) else {
        startupError(command.log, "sql/init not found (set SQL_DIR)")
    }
    do {
        let executor = PGExecutor(conninfo: conninfo, label: "collector.coordinator-schema", timeouts: timeouts)
        let applied = try await SchemaMigrator.migrate(try SchemaMigrator.migrations(in: directory), executor: executor)
        executor.disconnect()
        command.log.write("notice", "schema ready", ["migrations.applied": applied.joined(separator: ",")])
    } catch {
        startupError(command.log, "cannot prepare the database", ["error": "\(error)"])
    }
    return StateDocumentQueue(
        PostgresStateDocuments(conninfo: conninfo, timeouts: timeouts, importing: files), label: "coordinator.documents"
    )
}

/// Waits until this process is the active coordinator: the holder of the database's advisory lock
/// (polling as a standby while another holds it), or, without a database, of `DATA_DIR`'s lock file
/// (a second process on the same directory does not start). A signal while waiting exits 0.
func becomeActive(_ command: ClusterCommand) async -> (CoordinatorLeadership, Task<Void, Never>?) {
    let log = command.log
    let settings = command.settings
    guard let conninfo = PostgresConfiguration.conninfo(from: command.environment) else {
        let lock = lockDataDirectory(settings, log: log, holder: "coordinator")
        log.write("notice", "active coordinator", ["lock": "file", "lock.file": lock.path])
        return (.file(lock), nil)
    }
    let lock = PostgresLeadership(conninfo: conninfo, lease: .milliseconds(Int64(settings.leaseTTL * 1000)))
    var standing = false
    if !lock.userKeepalives.isEmpty {
        log.write(
            "warning", "DATABASE_URL sets its own keepalives: losing the lock within a lease depends on them",
            ["parameters": lock.userKeepalives.joined(separator: ",")])
    }
    // While standing by, HTTP_PORT answers /health (alive) and 503 to everything else (`/ready`
    // included: traffic goes to the active one), until this process becomes active.
    while true {
        do {
            if try await lock.tryAcquire() { break }
            if !standing {
                log.write("notice", "standby: another coordinator holds the lock; waiting to take over")
                standing = true
                command.slot.unavailable("standby coordinator", role: "standby")
            }
        } catch {
            log.write("warning", "cannot reach the database for the coordinator lock", ["error": "\(error)"])
        }
        if command.shutdownSignals.isRaised {
            log.write("notice", "stopped while standing by")
            exit(0)
        }
        do { try await Task.sleep(for: .milliseconds(Int64(settings.leaseTTL * 200))) } catch { exit(0) }
    }
    // From now on the hold is re-checked every half lease, each check given half a lease: lost (the
    // database unreachable, or the session gone), this process stops at once (exit 3).
    let interval = Duration.milliseconds(Int64(settings.leaseTTL * 500))
    let watchdog = Task {
        while !Task.isCancelled {
            do { try await Task.sleep(for: interval) } catch { return }  // cancelled: stopping
            guard await lock.stillHeld() else {
                log.write(
                    "error", "lost the coordinator lock: stopping at once (a standby takes over)",
                    ["check.ms": "\(Int(settings.leaseTTL * 500))"])
                exit(3)
            }
        }
    }
    // A former coordinator whose session the server dropped may still serve for up to a lease (its
    // last check passed just before, and its next one needs that long to fail): wait it out, so two
    // never serve at once.
    log.write(
        "notice", "took the coordinator lock: serving after one lease", ["lease.seconds": "\(settings.leaseTTL)"])
    do { try await Task.sleep(for: .milliseconds(Int64(settings.leaseTTL * 1000))) } catch { exit(0) }
    log.write("notice", "active coordinator", ["lock": "database", "took.over": "\(standing)"])
    return (.database(lock), watchdog)
}

/// Standalone mode's coordinator (DESIGN.md §7: the cluster with one in-process worker). The same
/// core, service and control protocol as `coordinator serve`, with what only one process needs:
/// the control port on loopback (port 0), a secret drawn for this process alone, its state in
/// `DATA_DIR` behind the directory's lock file, no recovery hold (no other worker can hold shards),
/// a 60 s lease and one replica of everything.
struct StandaloneCoordinator: Sendable {
    /// The in-process worker's lease.
    static let lease = Duration.seconds(60)

    let server: ControlServer
    let subscriptions: SubscriptionRegistry
    let secret: [UInt8]
    let lock: FileLock

    static func start(_ command: ClusterCommand, lock: FileLock) async -> StandaloneCoordinator {
        let log = command.log
        let settings = command.settings
        let documents = StateDocumentQueue(
            FileStateDocuments(directory: settings.dataDirectory), label: "coordinator.documents")
        let state = CoordinatorStateStore(documents.documents)
        var (beginning, subscriptions) = await begin(command, state: state, documents: documents)
        beginning.recovering = false
        var control = controlSettings(settings)
        control.host = "127.0.0.1"
        control.port = 0
        // The one worker is in this process: nothing can cut it off, but a busy event loop (it
        // shares the exchange connections') can delay beats; a long lease keeps it from losing,
        // and re-subscribing, every stream over that.
        control.service.core.leaseTTL = Self.lease
        control.service.core.heartbeatInterval = .seconds(1)
        let secret = SecureRandom.bytes(32)
        let server: ControlServer
        do {
            server = try await ControlServer.start(
                settings: control, secret: secret, state: state, beginning: beginning, loop: command.loop,
                logger: log.logger.with(["component": "control"]),
                desired: ClusterPlane.desired(subscriptions.all.map(\.stream), replicas: 1)
            ) { reason in
                log.write("error", "the coordinator state was written by another process: stopping", ["reason": reason])
                exit(3)
            }
        } catch {
            startupError(log, "cannot start the in-process control listener", ["error": "\(error)"])
        }
        return StandaloneCoordinator(server: server, subscriptions: subscriptions, secret: secret, lock: lock)
    }
}

/// The term this process starts (its state read, the next term written) and the saved
/// subscriptions, or a start-up error naming the state's location.
func begin(
    _ command: ClusterCommand, state: CoordinatorStateStore, documents: StateDocumentQueue
) async -> (CoordinatorStateStore.Beginning, SubscriptionRegistry) {
    let log = command.log
    let beginning: CoordinatorStateStore.Beginning
    do {
        beginning = try await state.begin()
    } catch {
        startupError(log, "cannot read or write the coordinator state", ["state": state.location, "error": "\(error)"])
    }
    do {
        let subscriptions = try await SubscriptionRegistry.open(
            documents: documents, term: beginning.term, pinned: command.pinned)
        return (beginning, subscriptions)
    } catch {
        startupError(
            log, "cannot read the saved subscriptions", ["state": documents.documents.location, "error": "\(error)"])
    }
}

/// The control server's lease, heartbeat and pacing settings from `settings` (the listener's
/// address is the caller's).
func controlSettings(_ settings: Settings) -> ControlServer.Settings {
    var control = ControlServer.Settings()
    control.service.core.leaseTTL = .milliseconds(Int64(settings.leaseTTL * 1000))
    control.service.core.heartbeatInterval = .milliseconds(Int64(settings.heartbeatInterval * 1000))
    // Each exchange's per-IP budgets pace what one egress group is handed per second.
    control.service.core.assignmentPaceByExchange = AssignmentPacing.all
    return control
}

/// `DATA_DIR/coordinator.lock` (the directory made first), or a start-up error naming the other
/// `holder` ("coordinator", "collector") when another process holds it. Standalone takes it before
/// anything in the directory is opened: a second process must not touch the live spool.
func lockDataDirectory(_ settings: Settings, log: Log, holder: String) -> FileLock {
    let path = settings.dataDirectory + "/coordinator.lock"
    do {
        try FileManager.default.createDirectory(atPath: settings.dataDirectory, withIntermediateDirectories: true)
        guard let held = try FileLock.tryLock(path) else {
            startupError(log, "another \(holder) is running with this data directory", ["lock.file": path])
        }
        return held
    } catch {
        startupError(log, "cannot lock the data directory", ["lock.file": path, "error": "\(error)"])
    }
}
