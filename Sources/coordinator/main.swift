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
      --log-level LEVEL      debug|info|notice|warning (default info)   env LOG_LEVEL
      --http-port N          /health, /ready, /metrics (default 8000)  env HTTP_PORT
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
    exit codes: 0 clean shutdown, 1 start-up failure, 3 the coordinator lock was lost (a standby
    takes over), 64 bad usage.
    With a database configured the coordinator serves only while it holds the cluster's advisory
    lock; a second one waits as a hot standby.
    """

/// The process's logger: one JSON line per event on stderr (Observability's Logger).
struct Log: Sendable {
    let logger: Logger
    static let levels = ["debug": 0, "info": 1, "notice": 2, "warning": 3, "error": 4]
    init(minimum: Int) {
        let level: LogLevel = [.debug, .info, .notice, .warning, .error][min(max(minimum, 0), 4)]
        logger = Logger(label: "coordinator", handler: JSONLineLogHandler(), minimumLevel: level)
    }
    func write(_ level: String, _ message: String, _ fields: [String: String] = [:]) {
        logger.log(LogLevel(name: level) ?? .info, message, fields)
    }
}

func usageError(_ message: String) -> Never {
    FileHandle.standardError.write(Data("coordinator: \(message)\n\n\(usage)\n".utf8))
    exit(64)
}

func startupError(_ log: Log, _ message: String, _ fields: [String: String] = [:]) -> Never {
    log.write("error", message, fields)
    exit(1)
}

// MARK: Arguments → configuration → validate → run

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
if arguments.contains("--version") {
    print("coordinator \(version)")
    exit(0)
}
if let command = arguments.first, ["status", "drain", "cordon", "uncordon", "rebalance", "move"].contains(command) {
    runOperatorCommand(command, Array(arguments.dropFirst()), environment: ProcessInfo.processInfo.environment)
}
guard arguments.first == "serve" else {
    usageError("unknown or missing command: serve, status, drain, cordon, uncordon, rebalance or move")
}
arguments.removeFirst()
let environment = ProcessInfo.processInfo.environment
var standalone = false
var markets = environment["MARKETS"]
var timeframes = environment["TIMEFRAMES"] ?? "1m"
var configPath = environment["CONFIG_PATH"]
var flags: [String: String] = [:]
while !arguments.isEmpty {
    let flag = arguments.removeFirst()
    func value() -> String {
        guard !arguments.isEmpty else { usageError("\(flag) needs a value") }
        return arguments.removeFirst()
    }
    switch flag {
    case "--standalone": standalone = true
    case "--markets": markets = value()
    case "--timeframes": timeframes = value()
    case "--config": configPath = value()
    case "--data-dir", "--log-level", "--http-port", "--control-port": flags[String(flag.dropFirst(2))] = value()
    default: usageError("unknown option \(flag)")
    }
}

let settings: Settings
do {
    var file: (path: String, text: String)? = nil
    if let configPath {
        let text: String
        do {
            text = try String(contentsOfFile: configPath, encoding: .utf8)
        } catch {
            FileHandle.standardError.write(
                Data("coordinator: cannot read config file \(configPath): \(error.localizedDescription)\n".utf8))
            exit(1)
        }
        file = (configPath, text)
    }
    settings = try Settings.load(file: file, environment: environment, flags: flags)
} catch {
    FileHandle.standardError.write(Data("coordinator: \(error)\n".utf8))
    exit(1)
}
let log = Log(minimum: Log.levels[settings.logLevel] ?? 1)
let httpPort = settings.httpPort
let dataDirectory = settings.dataDirectory

// Pinned markets from the file, plus --markets/MARKETS (default BTC-USDT when neither is given).
var requestedStreams: [StreamID] = []
@MainActor func addStreams(exchange: String, symbols: [String], frames: [String]) {
    for frame in frames {
        guard let tf = Timeframe(frame) else {
            startupError(
                log, "invalid setting",
                ["setting": "timeframes", "value": frame, "expected": Timeframe.all.map(\.key).joined(separator: " ")])
        }
        guard let name = ExchangeName(rawValue: exchange) else {
            startupError(log, "invalid setting", ["setting": "exchange", "value": exchange])
        }
        for symbol in symbols {
            let stream = StreamID(exchange: name, feed: .candles(tf), symbol: symbol)
            if !requestedStreams.contains(stream) { requestedStreams.append(stream) }
        }
    }
}
for market in settings.markets {
    if market.feeds.contains("candles") {
        addStreams(exchange: market.exchange, symbols: market.symbols, frames: market.timeframes)
    }
    guard let name = ExchangeName(rawValue: market.exchange) else {
        startupError(log, "invalid setting", ["setting": "[[markets]] exchange", "value": market.exchange])
    }
    for feedName in market.feeds where feedName != "candles" {
        // Settings accepted only feed names that parse (`trades`, `book`, `book:<N>`, `ticker`).
        guard let feed = Feed(feedName) else {
            startupError(log, "invalid setting", ["setting": "[[markets]] feeds", "value": feedName])
        }
        for symbol in market.symbols {
            let stream = StreamID(exchange: name, feed: feed, symbol: symbol)
            if !requestedStreams.contains(stream) { requestedStreams.append(stream) }
        }
    }
}
if markets != nil || settings.markets.isEmpty {
    addStreams(
        exchange: "okx", symbols: (markets ?? "BTC-USDT").split(separator: ",").map(String.init),
        frames: timeframes.split(separator: ",").map(String.init))
}
// Every stream named must be collectable, or start-up stops: a setting is never accepted and ignored.
for stream in requestedStreams {
    let problem =
        stream.exchange == .okx
        ? OKXAdapter().validate(stream) : "\(stream.exchange) collection arrives in a later release"
    if let problem {
        startupError(
            log, "stream cannot be collected", ["setting": "[[markets]]", "stream": "\(stream)", "error": problem])
    }
}
let pinnedStreams = requestedStreams

// Secrets come from the environment or files, never from flags (DESIGN.md §7).
var apiToken = environment["API_TOKEN"].flatMap { $0.isEmpty ? nil : $0 }
if apiToken == nil, let file = environment["API_TOKEN_FILE"] {
    do {
        apiToken = try String(contentsOfFile: file, encoding: .utf8).trimmingCharacters(in: .whitespacesAndNewlines)
    } catch {
        startupError(log, "cannot read API_TOKEN_FILE", ["file": file, "error": error.localizedDescription])
    }
}
let token = apiToken
let workerID = environment["WORKER_ID"] ?? ProcessInfo.processInfo.hostName
var pinnedReplicas: [StreamID: Int] = [:]
for market in settings.markets where market.replicas > 1 {
    for stream in pinnedStreams
    where stream.exchange.rawValue == market.exchange && market.symbols.contains(stream.symbol) {
        pinnedReplicas[stream] = max(pinnedReplicas[stream] ?? 1, market.replicas)
    }
}

let shutdownSignals = ShutdownRequest()
let signalSources = shutdownSignals.install(program: "coordinator")

let loop: EventLoop
do {
    loop = try EventLoop.start(name: "collector")
} catch {
    startupError(log, "cannot start the event loop", ["error": "\(error)"])
}

let finished = DispatchSemaphore(value: 0)
if !standalone {
    runClusterCoordinator(
        ClusterCommand(
            settings: settings, environment: environment, log: log, loop: loop, pinned: pinnedStreams,
            pinnedReplicas: pinnedReplicas, apiToken: token, version: version, shutdownSignals: shutdownSignals))
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
    } + (flags["control-port"] != nil ? ["--control-port"] : [])
if !clusterOnly.isEmpty {
    log.write(
        "warning",
        "not used in standalone mode (its coordinator listens on loopback only, with a secret and a 60 s lease of its own)",
        ["settings": clusterOnly.joined(separator: ",")])
}
let dataDirectoryLock = lockDataDirectory(settings, log: log, holder: "collector")
let standaloneCommand = ClusterCommand(
    settings: settings, environment: environment, log: log, loop: loop, pinned: pinnedStreams,
    pinnedReplicas: [:], apiToken: token, version: version, shutdownSignals: shutdownSignals)
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
    if token == nil { log.write("warning", "API_TOKEN is not set: mutating API endpoints are open") }
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
        requestsPerSecond: settings.apiRateLimit, logger: log.logger.with(["component": "api"])
    ) {
        storage.readiness
    }
    let server: HTTPServer
    do {
        server = try await HTTPServer.start(configuration: HTTPServerConfiguration(port: httpPort), loop: loop) {
            request in await api.handle(request)
        }
    } catch {
        startupError(log, "cannot listen for HTTP", ["http.port": "\(httpPort)", "error": "\(error)"])
    }
    log.write("notice", "http listening", ["http.port": "\(server.port)"])
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
