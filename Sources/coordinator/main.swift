// coordinator: the collector's process. `coordinator serve` runs the cluster's coordinator
// (ClusterCommand.swift); `coordinator serve --standalone` is the cluster with one in-process
// worker: the same coordinator on loopback, and a worker data plane (spool, backfill, sinks) fed by
// its assignments, behind the gateway API and metrics. The operator's commands are in
// OperatorCommand.swift.
import Cluster
import Collector
import Configuration
import ControlProtocol
import Dispatch
import Exchanges
import Foundation
import Gateway
import HTTP1Protocol
import MarketData
import Observability
import PostgresClient
import Runtime
import Synchronization

let version = "0.3.0-dev"

let usage = """
    usage: coordinator serve --standalone [options]    collect in this process
           coordinator serve [options]                 run the cluster's coordinator
           coordinator status|drain|cordon|uncordon|rebalance|move …   operate a running cluster
           coordinator data list | data export SYMBOL FEED …  what is stored (coordinator data --help)
           coordinator config check [options]          every setting, its value and source; nothing runs
           coordinator --version | --help

    --standalone collects OKX streams into PostgreSQL until SIGTERM/SIGINT, then flushes every batch
    and exits 0: the cluster with one in-process worker (its coordinator on loopback, its state in
    DATA_DIR). Without it the process is the cluster's coordinator: it listens for workers on
    CONTROL_PORT, places every subscribed stream on them and serves the API (GET /api/v1/cluster).

    options:
      --config FILE          TOML settings ([collector] [storage] [websocket] [exchanges.okx] [[markets]])
                                                                        env CONFIG_PATH
      --markets A,B          instruments (default BTC-USDT unless the file has [[markets]])  env MARKETS
      --timeframes 1m,1H     candle timeframes (default 1m)             env TIMEFRAMES
      --data-dir DIR         spool and dead letters (default ./data)    env DATA_DIR
      --log-level LEVEL      debug|info|notice|warning|error (default info)  env LOG_LEVEL
      --log-format FORMAT    text|json (default: text on a terminal, else JSON lines)  env LOG_FORMAT
      --http-port N          the API, /health, /ready, /metrics (default 8000)  env HTTP_PORT
      --http-addr ADDR       numeric address to listen on (default 127.0.0.1 unless API_TOKEN is set,
                             then 0.0.0.0)                              env HTTP_ADDR
      --control-port N       coordinator: the workers' port (default 7070)  env CONTROL_PORT
    environment:
      DATABASE_URL, or DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD     (standalone: required for now;
                                                                        coordinator: for data queries)
      CLUSTER_SECRET or CLUSTER_SECRET_FILE (coordinator: required, at least 16 bytes),
      LEASE_TTL seconds (default 5), HEARTBEAT_INTERVAL seconds (default 1),
      HANDSHAKES_PER_ADDRESS handshakes from one address once half the slots are busy (default 32; 0: none)
      OKX_WS_PUBLIC_URL, OKX_WS_BUSINESS_URL, OKX_REST_URL             (default: the real hosts on 443)
      BATCH_SIZE (default 1000), BATCH_TIMEOUT seconds (default 1), API_TOKEN / API_TOKEN_FILE,
      API_RATE_LIMIT (requests/s per client, default 50, 0 = off), WORKER_ID (default: host name),
      SHUTDOWN_DEADLINE seconds (default 25)
    exit codes: 0 clean shutdown, 1 start-up failure (a bad setting, a port in use, no database…)
    or a shutdown past its deadline, 3 the coordinator lock was lost or the coordinator was deposed
    (a standby takes over), 64 bad usage. Errors are one line on stderr: `coordinator: …` for usage,
    a log record (LOG_FORMAT) for everything after the settings are read.
    With a database configured the coordinator serves only while it holds the cluster's advisory
    lock; a second one waits as a hot standby.
    """

/// The process's logger: one record per event on stderr, as text or JSON lines (`LOG_FORMAT`).
struct Log: Sendable {
    let logger: Logger
    static let levels = ["debug": 0, "info": 1, "notice": 2, "warning": 3, "error": 4]
    init(minimum: Int, format: String?) {
        let level: LogLevel = [.debug, .info, .notice, .warning, .error][min(max(minimum, 0), 4)]
        logger = Logger(label: "coordinator", handler: makeLogHandler(format: format), minimumLevel: level)
    }
    func write(_ level: String, _ message: String, _ fields: [String: String] = [:]) {
        logger.log(LogLevel(name: level) ?? .info, message, fields)
    }
}

/// `text`, `json`, or (nil) text when stderr is a terminal.
func makeLogHandler(format: String?) -> any LogHandler {
    LogFormat.resolve(format).handler
}

/// Bad usage: one line naming the problem and where the usage is, exit 64.
func usageError(_ message: String) -> Never {
    FileHandle.standardError.write(Data("coordinator: \(message) (see coordinator --help)\n".utf8))
    exit(64)
}

func startupError(_ log: Log, _ message: String, _ fields: [String: String] = [:]) -> Never {
    log.write("error", message, fields)
    exit(1)
}

// MARK: Arguments → configuration → validate → run

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.first == "--help" || arguments.first == "-h" || arguments.first == "help" {
    print(usage)
    exit(0)
}
if arguments.first == "--version" || arguments.first == "version" {
    print("coordinator \(version)")
    exit(0)
}
let environment = ProcessInfo.processInfo.environment
if let command = arguments.first, ["status", "drain", "cordon", "uncordon", "rebalance", "move"].contains(command) {
    runOperatorCommand(command, Array(arguments.dropFirst()), environment: environment)
}
if arguments.first == "data" {
    runDataCommand(Array(arguments.dropFirst()), environment: environment)
}
if arguments.first == "config" {
    runConfigCommand(Array(arguments.dropFirst()), environment: environment)
}
guard arguments.first == "serve" else {
    usageError(
        arguments.isEmpty
            ? "a command is needed: serve, status, drain, cordon, uncordon, rebalance, move, data or config"
            : "unknown command \(arguments[0]): serve, status, drain, cordon, uncordon, rebalance, move, data or config"
    )
}
if arguments.dropFirst().contains("--help") || arguments.dropFirst().contains("-h") {
    print(usage)
    exit(0)
}
let options = ServeOptions.parse(Array(arguments.dropFirst()), environment: environment)
let standalone = options.standalone
// Errors before the settings are read use the format the environment or flag asks for.
let bootLog = Log(
    minimum: 0,
    format: options.flags["log-format"]
        ?? environment["LOG_FORMAT"].flatMap { Settings.logFormats.contains($0) ? $0 : nil })
let loaded: LoadedSettings
do throws(LoadedSettings.Failure) {
    loaded = try LoadedSettings.load(options, environment: environment)
} catch {
    startupError(bootLog, error.message, error.fields)
}
let settings = loaded.settings
let log = Log(minimum: Log.levels[settings.logLevel] ?? 1, format: settings.logFormat)
let dataDirectory = settings.dataDirectory
let pinnedStreams = loaded.pinned

// Secrets come from the environment or files, never from flags (DESIGN.md §7).
var apiToken = environment["API_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
if apiToken == nil, let file = environment["API_TOKEN_FILE"] {
    do {
        apiToken = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    } catch {
        startupError(log, "cannot read API_TOKEN_FILE", ["file": file, "error": error.localizedDescription])
    }
}
// An empty token would accept an empty bearer: refused, never treated as a token.
if apiToken?.isEmpty == true {
    startupError(
        log, "API_TOKEN_FILE is empty: put the token in it, or unset it", ["file": environment["API_TOKEN_FILE"] ?? ""])
}
let token = apiToken
let workerID = environment["WORKER_ID"] ?? ProcessInfo.processInfo.hostName

let shutdownSignals = ShutdownRequest()
let signalSources = shutdownSignals.install(program: "coordinator")

let loop: EventLoop
do {
    loop = try EventLoop.start(name: "collector")
} catch {
    startupError(log, "cannot start the event loop", ["error": "\(error)"])
}

// The HTTP port is bound first: one in use stops start-up before migrations or exchange connections.
// Until the API serves, /health answers 200 and the rest 503.
let httpAddress = settings.effectiveHTTPAddress(mutatingAPI: true, tokenSet: token != nil)
let slot = HTTPHandlerSlot(reason: "starting")
let httpServer: HTTPServer
do {
    httpServer = try HTTPServer.startBlocking(
        configuration: HTTPServerConfiguration(host: httpAddress, port: settings.httpPort), loop: loop,
        handler: slot.handle)
} catch {
    startupError(
        log, "cannot listen for HTTP (HTTP_ADDR/HTTP_PORT)",
        ["http.address": httpAddress, "http.port": "\(settings.httpPort)", "error": "\(error)"])
}
log.write("notice", "http listening", ["http.address": httpAddress, "http.port": "\(httpServer.port)"])
if token == nil {
    if ["127.0.0.1", "::1"].contains(httpAddress) || httpAddress.hasPrefix("127.") {
        log.write(
            "notice", "API_TOKEN is not set: the API listens on loopback only (set HTTP_ADDR to choose)",
            ["http.address": httpAddress])
    } else {
        log.write(
            "warning",
            "API_TOKEN is not set and HTTP_ADDR is not loopback: mutating API endpoints are open to the network",
            ["http.address": httpAddress])
    }
}

let finished = DispatchSemaphore(value: 0)
if !standalone {
    runClusterCoordinator(
        ClusterCommand(
            settings: settings, environment: environment, log: log, loop: loop, pinned: pinnedStreams,
            pinnedReplicas: loaded.pinnedReplicas, pinnedOrigin: loaded.pinnedOrigin, apiToken: token,
            http: httpServer, slot: slot, version: version, shutdownSignals: shutdownSignals))
}
guard let conninfo = PostgresConfiguration.conninfo(from: environment) else {
    startupError(
        log, "no database configured: set DATABASE_URL (or DB_HOST, DB_NAME…); cluster/run.sh starts a throw-away one")
}
// What only a cluster's coordinator uses: said once, not silently ignored.
let clusterOnly =
    [
        "CONTROL_PORT", "CLUSTER_SECRET", "CLUSTER_SECRET_FILE", "HANDSHAKES_PER_ADDRESS", "LEASE_TTL",
        "HEARTBEAT_INTERVAL",
    ].filter {
        environment[$0] != nil
    } + (options.flags["control-port"] != nil ? ["--control-port"] : [])
if !clusterOnly.isEmpty {
    log.write(
        "warning",
        "not used in standalone mode (its coordinator listens on loopback only, with a secret and a 60 s lease of its own)",
        ["settings": clusterOnly.joined(separator: ",")])
}
let dataDirectoryLock = lockDataDirectory(settings, log: log, holder: "collector")
let standaloneCommand = ClusterCommand(
    settings: settings, environment: environment, log: log, loop: loop, pinned: pinnedStreams,
    pinnedReplicas: [:], pinnedOrigin: loaded.pinnedOrigin, apiToken: token, http: httpServer, slot: slot,
    version: version, shutdownSignals: shutdownSignals)
Task.detached {
    let plane: DataPlane
    do throws(DataPlane.StartError) {
        plane = try await DataPlane.start(
            settings: settings, environment: environment, conninfo: conninfo, loop: loop, logger: log.logger)
    } catch {
        startupError(log, error.message, error.fields)
    }
    let (engine, storage, registry, versions) = (plane.engine, plane.storage, plane.registry, plane.versions)
    let databaseTimeouts = plane.timeouts
    // The coordinator, in this process: it places every subscribed stream on the one worker below.
    let coordinator = await StandaloneCoordinator.start(standaloneCommand, lock: dataDirectoryLock)
    let subscriptions = coordinator.subscriptions
    coordinator.server.registerMetrics(in: registry)
    registry.registerStandardMetrics(version: version)
    // The worker: assignments from the coordinator over loopback, applied to this data plane.
    let workerPlane = WorkerPlane(
        engine: engine, storage: storage, logger: log.logger.with(["component": "worker-plane"]))
    var session = WorkerSession.Configuration(
        workerID: workerID, incarnation: UInt64(max(1, WallClock.microseconds())), capacity: Int(Int32.max),
        egressGroup: nil)
    session.handshakeTimeout = .seconds(5)
    let client = await ControlClient.start(
        endpoint: Endpoint(host: "127.0.0.1", port: coordinator.server.port), configuration: session,
        secret: coordinator.secret, loop: loop, logger: log.logger.with(["component": "control"]),
        dataPlane: { workerPlane.sessionAction($0) })
    await workerPlane.start(client: client)
    let streams = subscriptions.all.map(\.stream)
    log.write(
        "notice", "collecting",
        [
            "streams": streams.map(\.description).joined(separator: ","), "version": version,
            "spool.max_bytes": "\(storage.spool.maxBytes)", "database.timeout_seconds": "\(settings.databaseTimeout)",
            "shutdown.deadline_seconds": "\(settings.shutdownDeadline)",
            "sinks": storage.sinks.map(\.name).joined(separator: ","), "worker": workerID,
        ])
    let api = GatewayAPI(
        plane: StandaloneClusterPlane(
            cluster: ClusterPlane(server: coordinator.server, mode: "standalone"),
            local: StandalonePlane(engine: engine, workerID: workerID)),
        subscriptions: subscriptions,
        reader: PostgresReader(
            executors: (0..<4).map { _ in
                PGExecutor(conninfo: conninfo, label: "collector.api-postgres", timeouts: databaseTimeouts)
            }, versions: versions),
        apiToken: token, registry: registry,
        requestsPerSecond: settings.apiRateLimit, logger: log.logger.with(["component": "api"]),
        pinnedOrigin: loaded.pinnedOrigin
    ) {
        storage.readiness
    }
    slot.serve { request in await api.handle(request) }
    let server = httpServer
    // Periodic status line per stream.
    let reporter = Task {
        while !Task.isCancelled {
            try? await Task.sleep(for: .seconds(10))  // reporting cadence, cancelled at shutdown
            for status in engine.status.all() {
                log.write(
                    "info", "stream status",
                    [
                        "stream": "\(status.stream)", "state": status.state.rawValue, "messages": "\(status.messages)",
                        "gaps": "\(status.gaps.count)", "backfilled": "\(status.backfilledBars)",
                        "error": status.lastError ?? "",
                    ])
            }
        }
    }
    await shutdownSignals.wait()
    log.write("notice", "shutting down: flushing batches")
    // A shutdown that cannot finish (database and disk both unavailable) must not hang the pod:
    // past the deadline we exit non-zero; the spool keeps whatever was acknowledged.
    let deadline = settings.shutdownDeadline
    DispatchQueue.global().asyncAfter(deadline: .now() + deadline) { @Sendable in
        log.write("error", "shutdown deadline passed; exiting", ["deadline.seconds": "\(deadline)"])
        exit(1)
    }
    reporter.cancel()
    await server.shutdown(deadline: .seconds(2))
    // The one worker stops where it is (there is no other to drain to): its data plane flushes below.
    await client.stop()
    workerPlane.stop()
    await coordinator.server.shutdown()
    // Leave a margin of the deadline for the last flush; what is not stored stays in the spool.
    let drained = await plane.finish(timeout: .milliseconds(Int64(max(1, deadline - 3) * 1000)))
    log.write(
        "notice", "stopped",
        [
            "events.acknowledged": "\(engine.acknowledgedEvents)",
            "events.stored": "\(storage.sinkStates.map { "\($0.name)=\($0.storedEvents)" }.joined(separator: ","))",
            "spool.batches": "\(storage.spool.batchCount)", "spool.drained": "\(drained)",
        ])
    finished.signal()
}
finished.wait()
loop.shutdown()
exit(0)
