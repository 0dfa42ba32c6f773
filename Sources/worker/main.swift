// worker: runs the data plane for the shards the coordinator assigns (issue 11). It joins the
// coordinator at --coordinator/COORDINATOR_ADDR, collects what it is given into the configured sinks,
// keeps collecting while cut off (and says so on /ready and in a gauge), and on SIGTERM asks to be
// drained, waits for its shards to move away make-before-break, flushes and exits.
import Cluster
import Collector
import CollectorCore
import Configuration
import ControlProtocol
import Dispatch
import Foundation
import HTTP1Protocol
import Locking
import Observability
import PostgresClient
import Runtime
import Synchronization
import WireCore

let version = "0.3.0-dev"

let usage = """
    usage: worker --coordinator HOST:PORT [options]
           worker config check [options]     every setting, its value and source; nothing runs
           worker --version | --help

    Joins the cluster's coordinator and collects the shards it assigns into the configured sinks until
    SIGTERM/SIGINT; then it asks to be drained (its shards move to other workers make-before-break),
    flushes every batch and exits 0.

    options:
      --coordinator HOST:PORT the coordinator's control port              env COORDINATOR_ADDR
      --id ID                this worker's id (default: WORKER_ID, else the host name: the pod name)
      --config FILE          TOML settings ([collector] [storage] [websocket] [exchanges.okx])  env CONFIG_PATH
      --data-dir DIR         spool, dead letters, watermarks (default ./data)  env DATA_DIR
      --log-level LEVEL      debug|info|notice|warning|error (default info)  env LOG_LEVEL
      --log-format FORMAT    text|json (default: text on a terminal, else JSON lines)  env LOG_FORMAT
      --http-port N          /health, /ready, /metrics (default 8081)   env HTTP_PORT
      --http-addr ADDR       numeric address to listen on (default 0.0.0.0: read-only endpoints)  env HTTP_ADDR
    environment:
      DATABASE_URL, or DB_HOST DB_PORT DB_NAME DB_USER DB_PASSWORD     (required for now)
      CLUSTER_SECRET or CLUSTER_SECRET_FILE (required, at least 16 bytes), EGRESS_GROUP (default: the id;
      workers behind one egress address share each exchange's per-IP budgets), WORKER_CAPACITY (weight
      units, default 100000), OKX_WS_PUBLIC_URL, OKX_WS_BUSINESS_URL, OKX_REST_URL, BATCH_SIZE,
      BATCH_TIMEOUT, SHUTDOWN_DEADLINE seconds (default 25: the drain gets all but 8 of them)
    exit codes: 0 clean shutdown, 1 start-up failure (a bad setting, a port in use…) or a shutdown past
    its deadline, 64 bad usage. Usage errors are one line `worker: …` on stderr; everything after the
    settings are read is a log record (LOG_FORMAT).
    """

func usageError(_ message: String) -> Never {
    FileHandle.standardError.write(Data("worker: \(message) (see worker --help)\n".utf8))
    exit(64)
}

let levels: [String: LogLevel] = [
    "debug": .debug, "info": .info, "notice": .notice, "warning": .warning, "error": .error,
]

func startupError(_ logger: Logger, _ message: String, _ fields: [String: String] = [:]) -> Never {
    logger.error(message, fields)
    exit(1)
}

var arguments = Array(CommandLine.arguments.dropFirst())
if arguments.contains("--help") || arguments.contains("-h") {
    print(usage)
    exit(0)
}
if arguments.contains("--version") {
    print("worker \(version)")
    exit(0)
}
let environment = ProcessInfo.processInfo.environment
let checkOnly = arguments.first == "config"
if checkOnly {
    guard arguments.dropFirst().first == "check" else { usageError("config needs check") }
    arguments.removeFirst(2)
}
var coordinatorAddress = environment["COORDINATOR_ADDR"]
var workerID = environment["WORKER_ID"].flatMap { $0.isEmpty ? nil : $0 }
var configPath = environment["CONFIG_PATH"]
var flags: [String: String] = [:]
while !arguments.isEmpty {
    let flag = arguments.removeFirst()
    func value() -> String {
        guard let next = arguments.first, !next.hasPrefix("--") else { usageError("\(flag) needs a value") }
        return arguments.removeFirst()
    }
    switch flag {
    case "--coordinator": coordinatorAddress = value()
    case "--id": workerID = value()
    case "--config": configPath = value()
    case "--data-dir", "--log-level", "--log-format", "--http-port", "--http-addr":
        flags[String(flag.dropFirst(2))] = value()
    default: usageError("unknown option \(flag)")
    }
}
if checkOnly { runConfigCheck() }
guard let coordinatorAddress else { usageError("--coordinator HOST:PORT (or COORDINATOR_ADDR) is required") }
guard let colon = coordinatorAddress.lastIndex(of: ":"),
    let controlPort = Int(coordinatorAddress[coordinatorAddress.index(after: colon)...]),
    (1...65535).contains(controlPort),
    colon != coordinatorAddress.startIndex
else { usageError("--coordinator must be HOST:PORT, got \(coordinatorAddress)") }
let coordinatorHost = String(coordinatorAddress[..<colon])

/// The settings from the file, environment and flags, or exit 1 naming the problem.
@MainActor func loadSettings() -> (Settings, (path: String, text: String)?) {
    var file: (path: String, text: String)? = nil
    if let configPath {
        do {
            file = (configPath, try String(contentsOfFile: configPath, encoding: .utf8))
        } catch {
            FileHandle.standardError.write(
                Data("worker: cannot read config file \(configPath): \(error.localizedDescription)\n".utf8))
            exit(1)
        }
    }
    var base = Settings()
    base.httpPort = 8081
    do {
        return (try Settings.load(file: file, environment: environment, flags: flags, base: base), file)
    } catch {
        FileHandle.standardError.write(Data("worker: invalid setting: \(error.message)\n".utf8))
        exit(1)
    }
}

/// `worker config check`: every setting with its value and source (secrets set/unset); exit 0.
@MainActor func runConfigCheck() -> Never {
    let (settings, file) = loadSettings()
    var rows = Settings.report(settings, file: file, environment: environment, flags: flags)
    rows += Settings.environmentReport(
        [
            (["COORDINATOR_ADDR"], false, "none (--coordinator)"), (["WORKER_ID"], false, "the host name"),
            (["DATABASE_URL"], true, "none"), (["DB_HOST"], false, "none"), (["DB_PASSWORD"], true, "none"),
            (["CLUSTER_SECRET", "CLUSTER_SECRET_FILE"], true, "none"), (["EGRESS_GROUP"], false, "the worker id"),
            (["WORKER_CAPACITY"], false, "100000"),
        ], environment: environment)
    rows.append(
        SettingReport(
            name: "(effective) http listen",
            value: "\(settings.effectiveHTTPAddress(mutatingAPI: false, tokenSet: false)):\(settings.httpPort)",
            source: settings.httpAddress != nil ? "http_addr" : "default (read-only endpoints)"))
    print(Settings.render(rows), terminator: "")
    print("configuration valid")
    exit(0)
}

let (settings, _) = loadSettings()
let id = workerID ?? ProcessInfo.processInfo.hostName
let logger = Logger(
    label: "worker", handler: LogFormat.resolve(settings.logFormat).handler,
    minimumLevel: levels[settings.logLevel] ?? .info
).with(["worker": id])
if !settings.markets.isEmpty {
    startupError(
        logger, "invalid setting",
        ["setting": "[[markets]]", "error": "a worker collects what the coordinator assigns: pin markets there"])
}
// The coordinator's settings, and the API's: said once, not silently ignored.
let coordinatorOnly = [
    "LEASE_TTL", "HEARTBEAT_INTERVAL", "CONTROL_PORT", "HANDSHAKES_PER_ADDRESS", "API_TOKEN", "API_TOKEN_FILE",
    "API_RATE_LIMIT", "MARKETS", "TIMEFRAMES",
].filter { environment[$0] != nil }
if !coordinatorOnly.isEmpty {
    logger.warning(
        "not used by a worker (leases come from the coordinator; the API is the coordinator's)",
        ["settings": coordinatorOnly.joined(separator: ",")])
}
let secret: [UInt8]
do {
    secret = try ClusterSecret.load(from: environment)
} catch {
    startupError(logger, "\(error)")
}
let egressGroup = environment["EGRESS_GROUP"].flatMap { $0.isEmpty ? nil : $0 }
var capacitySetting = 100_000
if let text = environment["WORKER_CAPACITY"] {
    guard let n = Int(text), n > 0 else {
        startupError(logger, "invalid setting", ["setting": "WORKER_CAPACITY", "value": text, "expected": "> 0"])
    }
    capacitySetting = n
}
let capacity = capacitySetting
guard let conninfo = PostgresConfiguration.conninfo(from: environment) else {
    startupError(logger, "no database configured: set DATABASE_URL (or DB_HOST, DB_NAME…)")
}

// The first signal starts the drain, a second exits at once.
let shutdownSignals = ShutdownRequest()
let signalSources = shutdownSignals.install(program: "worker")

let loop: EventLoop
do {
    loop = try EventLoop.start(name: "worker")
} catch {
    startupError(logger, "cannot start the event loop", ["error": "\(error)"])
}

// The HTTP port is bound before anything else: one in use stops start-up at once. Until the data
// plane runs, /health answers 200 and the rest 503 with the reason.
let httpAddress = settings.effectiveHTTPAddress(mutatingAPI: false, tokenSet: false)
let waiting = Locked<String>("starting the data plane")
let slot = HTTPHandlerSlot(reason: "starting")
slot.serve { request in
    let path = request.head.target.split(separator: "?", maxSplits: 1).first ?? ""
    if path == "/health" {
        return HTTPResponse(status: 200, contentType: "application/json", body: Array(#"{"status":"ok"}"#.utf8))
    }
    let reason = JSONText.quoted(waiting.withLock { $0 })
    return HTTPResponse(
        status: 503, contentType: "application/json", body: Array(#"{"ready":false,"reason":\#(reason)}"#.utf8),
        headers: ["Retry-After": "1"])
}
let server: HTTPServer
do {
    server = try HTTPServer.startBlocking(
        configuration: HTTPServerConfiguration(host: httpAddress, port: settings.httpPort), loop: loop,
        handler: slot.handle)
} catch {
    startupError(
        logger, "cannot listen for HTTP (HTTP_ADDR/HTTP_PORT)",
        ["http.address": httpAddress, "http.port": "\(settings.httpPort)", "error": "\(error)"])
}
logger.notice("http listening", ["http.address": httpAddress, "http.port": "\(server.port)"])

/// The data plane, started once the database can be prepared. Liveness does not wait for it: until
/// then HTTP_PORT answers /health 200 and /ready 503 with the reason, and the start is retried
/// every 2 s. A wrong setting or data directory still stops start-up.
func startDataPlane() async -> (DataPlane, Bool) {
    var loggedUnavailable = false
    while true {
        do throws(DataPlane.StartError) {
            let data = try await DataPlane.start(
                settings: settings, environment: environment, conninfo: conninfo, loop: loop, logger: logger)
            return (data, loggedUnavailable)
        } catch {
            guard error.databaseUnavailable else { startupError(logger, error.message, error.fields) }
            waiting.withLock { $0 = "the database is unavailable: \(error.fields["error"] ?? error.message)" }
            if !loggedUnavailable {
                logger.error(
                    "cannot prepare the database: retrying every 2 s (/health answers, /ready is false)",
                    error.fields)
                loggedUnavailable = true
            }
        }
        if shutdownSignals.isRaised {
            logger.notice("stopped before the data plane started")
            exit(0)
        }
        do { try await Task.sleep(for: .seconds(2)) } catch { exit(0) }
    }
}

let finished = DispatchSemaphore(value: 0)
let exitStatus = Atomic<Int32>(0)
Task.detached {
    let (data, waited) = await startDataPlane()
    if waited { logger.notice("the database is reachable: the data plane started") }
    let plane = WorkerPlane(
        engine: data.engine, storage: data.storage, logger: logger.with(["component": "worker-plane"]))
    var session = WorkerSession.Configuration(
        workerID: id, incarnation: UInt64(max(1, WallClock.microseconds())), capacity: capacity,
        egressGroup: egressGroup)
    session.handshakeTimeout = .seconds(5)
    let client = await ControlClient.start(
        endpoint: Endpoint(host: coordinatorHost, port: controlPort), configuration: session, secret: secret,
        loop: loop, logger: logger.with(["component": "control"]), dataPlane: { plane.sessionAction($0) })
    await plane.start(client: client)

    let registry = data.registry
    registry.registerStandardMetrics(version: version)
    let connected = registry.gauge(
        "collector_worker_connected", help: "1 while the worker holds a session with the coordinator")
    let orphaned = registry.gauge(
        "collector_worker_orphaned", help: "1 while the worker runs shards without a lease (cut off)")
    let shards = registry.gauge("collector_worker_shards", help: "Shards the worker's data plane runs")
    let term = registry.gauge("collector_worker_coordinator_term", help: "The term of the coordinator it follows")
    let readiness = Locked<(Bool, String?)>((false, "not joined to the coordinator yet"))
    let draining = Locked(false)
    let gauges = Task {
        while !Task.isCancelled {
            let status = await client.status()
            let running = await plane.epochs.count
            connected.set(status.established ? 1 : 0)
            orphaned.set(status.orphaned ? 1 : 0)
            shards.set(Double(running))
            term.set(Double(status.term ?? 0))
            let storage = data.storage.readiness
            let ready: (Bool, String?) =
                draining.withLock({ $0 })
                ? (false, "draining: shutting down")
                : !status.established
                    ? (false, "not connected to the coordinator")
                    : status.orphaned
                        ? (false, "cut off: running shards without a lease") : (storage.isReady, storage.reason)
            readiness.withLock { $0 = ready }
            do { try await Task.sleep(for: .milliseconds(250)) } catch { return }  // cancelled: stopping
        }
    }
    slot.serve { request in
        let path = request.head.target.split(separator: "?", maxSplits: 1).first.map(String.init) ?? ""
        guard request.head.method == "GET" || request.head.method == "HEAD" else {
            return HTTPResponse(
                status: 405, contentType: "application/json", body: Array(#"{"error":"GET only"}"#.utf8))
        }
        switch path {
        case "/health":
            // Liveness: the process and its loop answer; never the coordinator or the database.
            return HTTPResponse(status: 200, contentType: "application/json", body: Array(#"{"status":"ok"}"#.utf8))
        case "/ready":
            let (ready, reason) = readiness.withLock { $0 }
            let body = ready ? #"{"ready":true}"# : #"{"ready":false,"reason":\#(JSONText.quoted(reason ?? ""))}"#
            return HTTPResponse(status: ready ? 200 : 503, contentType: "application/json", body: Array(body.utf8))
        case "/metrics":
            return HTTPResponse(
                status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                body: Array(registry.render().utf8))
        default:
            return HTTPResponse(
                status: 404, contentType: "application/json", body: Array(#"{"error":"not found"}"#.utf8))
        }
    }
    logger.notice(
        "worker started",
        [
            "version": version, "coordinator": coordinatorAddress, "http.port": "\(server.port)",
            "egress.group": egressGroup ?? id, "capacity": "\(capacity)",
            "sinks": data.storage.sinks.map(\.name).joined(separator: ","),
        ])

    await shutdownSignals.wait()
    let deadline = settings.shutdownDeadline
    let started = ContinuousClock.now
    DispatchQueue.global().asyncAfter(deadline: .now() + deadline) { @Sendable in
        logger.error("shutdown deadline passed; exiting", ["deadline.seconds": "\(deadline)"])
        exit(1)
    }
    // Drain: the coordinator moves every shard away make-before-break; this process stores each up
    // to its cutover. Cut off, it keeps collecting and waits for the session to come back (which
    // says `leaving` again). Given up at the drain deadline; the rest of it is for the flush.
    let drainBudget = Duration.milliseconds(Int64(max(0, deadline - 8) * 1000))
    logger.notice("draining", ["shards": "\(await plane.epochs.count)", "drain.seconds": "\(max(0, deadline - 8))"])
    draining.withLock { $0 = true }
    client.report(.leave(reason: "shutting down"))
    var warnedCutOff = false
    while ContinuousClock.now - started < drainBudget {
        let status = await client.status()
        let running = await plane.epochs.count
        if running == 0 { break }
        if !status.established && !warnedCutOff {
            logger.warning(
                "not connected to the coordinator: collecting on until it is back to drain",
                ["shards": "\(running)"])
            warnedCutOff = true
        }
        do { try await Task.sleep(for: .milliseconds(200)) } catch { break }
    }
    let left = await plane.epochs.count
    logger.notice(left == 0 ? "drained" : "drain incomplete: flushing what runs", ["shards.left": "\(left)"])
    gauges.cancel()
    await client.stop()
    plane.stop()
    await server.shutdown(deadline: .seconds(1))
    let remaining = Double(deadline) - (ContinuousClock.now - started).secondsDouble
    let drained = await data.finish(timeout: .milliseconds(Int64(max(1, remaining - 2) * 1000)))
    logger.notice(
        "stopped",
        [
            "events.acknowledged": "\(data.engine.acknowledgedEvents)",
            "events.stored": data.storage.sinkStates.map { "\($0.name)=\($0.storedEvents)" }.joined(separator: ","),
            "spool.batches": "\(data.storage.spool.batchCount)", "spool.drained": "\(drained)",
            "rows.duplicate": data.storage.sinks.compactMap { $0 as? PostgresSink }.map {
                "\($0.name)=\($0.duplicateRows)"
            }
            .joined(separator: ","),
        ])
    exitStatus.store(0, ordering: .relaxed)
    finished.signal()
}
finished.wait()
loop.shutdown()
exit(exitStatus.load(ordering: .relaxed))
