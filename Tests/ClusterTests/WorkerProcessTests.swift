import ExchangeSimulator
import Foundation
import PostgresClient
import Runtime
import TestSupport
import Testing

/// Real processes on loopback: an active `coordinator` and its standby, three `worker`s, the
/// exchange simulator (in real time: event times are the wall clock's, so a move's cutover falls
/// among them as it would live) and PostgreSQL. Thirty streams subscribed through the API are
/// collected, balanced; the operator CLI works against the cluster; the active coordinator killed,
/// the standby takes over without moving a shard while the workers, orphaned meanwhile, keep
/// collecting; a worker killed, its shards are backfilled elsewhere; a worker rejoins and takes
/// shards; the CLI drains it and SIGTERM drains another, with no row stored twice during those
/// moves; and no fill is missing from the first stored to the last.
@Suite(.serialized) struct WorkerProcessTests {
    static var coordinatorBinary: String { TestEnvironment.repositoryRoot + "/.build/debug/coordinator" }
    static var workerBinary: String { TestEnvironment.repositoryRoot + "/.build/debug/worker" }
    static let secret = "worker-process-test-secret-0123456789"

    /// The JSON fields of the first log line with `msg`.
    static func logFields(_ process: ExternalProcess, _ msg: String) -> [String: String]? {
        let line = process.errorOutput.split(separator: "\n").first { $0.contains(#""msg":"\#(msg)""#) }
        return line.flatMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] }
    }

    static func json(_ url: String) async -> [String: Any] {
        let text = (try? await ClusterCoordinatorProcessTests.curl([url])) ?? ""
        return (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
    }

    static func shards(_ base: String) async -> [[String: Any]] {
        (await json(base + "/api/v1/cluster"))["shards"] as? [[String: Any]] ?? []
    }

    /// Each live shard's owners and epoch.
    static func live(_ base: String) async -> [String: (owners: [String], epoch: Int)] {
        var out: [String: (owners: [String], epoch: Int)] = [:]
        for s in await shards(base) where s["state"] as? String == "live" {
            out[s["id"] as? String ?? ""] = (s["owners"] as? [String] ?? [], s["epoch"] as? Int ?? 0)
        }
        return out
    }

    /// The sum of a metric's samples on `port` (nil when not exposed or unreachable).
    static func metric(_ port: String, _ name: String) async -> Double? {
        let text = (try? await ClusterCoordinatorProcessTests.curl(["http://127.0.0.1:\(port)/metrics"])) ?? ""
        let values = text.split(separator: "\n").filter { $0.hasPrefix(name + " ") || $0.hasPrefix(name + "{") }
            .compactMap { $0.split(separator: " ").last.flatMap { Double($0) } }
        return values.isEmpty ? nil : values.reduce(0, +)
    }

    /// `coordinator move SHARD --to WORKER`, retried while refused (a hand-over of it in flight says
    /// so), then waited on until the shard lives on `worker` alone with no move in flight.
    static func move(_ shard: String, to worker: String, base: String, cli: [String: String]) async throws {
        var refusal = ""
        do {
            try await ControlOverTCPTests.eventually("the move of \(shard) to \(worker) accepted") {
                let moved = try? await ExternalProcess.run(
                    Self.coordinatorBinary, ["move", shard, "--to", worker], environment: cli)
                refusal = moved?.stderr ?? "no reply"
                return moved?.status == 0
            }
        } catch {
            Issue.record("the move of \(shard) to \(worker): \(refusal)")
            throw error
        }
        try await ControlOverTCPTests.eventually("\(shard) lives on \(worker), no move in flight") {
            let document = await Self.json(base + "/api/v1/cluster")
            let shards = document["shards"] as? [[String: Any]] ?? []
            return document["moves"] as? Int == 0
                && shards.contains { $0["id"] as? String == shard && ($0["owners"] as? [String]) == [worker] }
                && shards.allSatisfy { $0["state"] as? String == "live" }
        }
    }

    @Test func aClusterCollectsThirtyStreamsThroughFailuresDrainsAndATakeOver() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let loop = try EventLoop.start(name: "worker-process-test")
        var simConfig = SimulatorConfiguration()
        let symbols = (0..<10).map { "W\($0)-USDT" }
        simConfig.symbols = symbols
        simConfig.barMilliseconds = 60_000  // real time
        simConfig.updatesPerBar = 60
        simConfig.tradesPerBar = 600  // ten fills a second per symbol
        let simulator = try await ExchangeSimulator.start(configuration: simConfig, loop: loop)
        let controlPort = try await ClusterCoordinatorProcessTests.freePort()
        let httpA = try await ClusterCoordinatorProcessTests.freePort()
        let httpB = try await ClusterCoordinatorProcessTests.freePort()
        // Two coordinators on one control port (a standby opens it only once active), each with a
        // data directory of its own: the state the standby continues from is the database's.
        func coordinator(http: Int) throws -> ExternalProcess {
            try ExternalProcess(
                Self.coordinatorBinary,
                [
                    "serve", "--data-dir", try TestEnvironment.makeTemporaryDirectory(prefix: "wp-coordinator"),
                    "--http-port", "\(http)", "--control-port", "\(controlPort)",
                ],
                environment: [
                    "CLUSTER_SECRET": Self.secret, "LEASE_TTL": "2", "HEARTBEAT_INTERVAL": "0.2", "API_RATE_LIMIT": "0",
                    "MARKETS": symbols[0], "DATABASE_URL": database.conninfo,
                ])
        }
        let active = try coordinator(http: httpA)
        defer { active.stop() }
        try await ControlOverTCPTests.eventually("the coordinator is up") {
            Self.logFields(active, "coordinating") != nil || !active.isRunning
        }
        let standby = try coordinator(http: httpB)
        defer { standby.stop() }
        try await ControlOverTCPTests.eventually("the second coordinator stands by") {
            standby.errorOutput.contains("standby: another coordinator holds the lock") || !standby.isRunning
        }
        var base = "http://127.0.0.1:\(httpA)"
        let environment = [
            "CLUSTER_SECRET": Self.secret, "DATABASE_URL": database.conninfo,
            "OKX_WS_BUSINESS_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/business",
            "OKX_WS_PUBLIC_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/public",
            "OKX_REST_URL": "http://127.0.0.1:\(simulator.restPort)", "BATCH_TIMEOUT": "0.2",
            "SQL_DIR": TestEnvironment.repositoryRoot + "/sql/init", "SHUTDOWN_DEADLINE": "40",
            "LOG_LEVEL": ProcessInfo.processInfo.environment["WORKER_TEST_LOG"] != nil ? "debug" : "info",
        ]
        var workers: [String: ExternalProcess] = [:]
        var workerData: [String: String] = [:]
        func startWorker(_ id: String) throws {
            let data = try workerData[id] ?? TestEnvironment.makeTemporaryDirectory(prefix: "wp-\(id)")
            workerData[id] = data
            workers[id] = try ExternalProcess(
                Self.workerBinary,
                ["--coordinator", "127.0.0.1:\(controlPort)", "--id", id, "--http-port", "0", "--data-dir", data],
                environment: environment)
        }
        for id in ["wa", "wb", "wc"] { try startWorker(id) }
        defer { for w in workers.values { w.stop() } }
        func httpPort(_ id: String) throws -> String {
            try #require(workers[id].flatMap { Self.logFields($0, "worker started")?["http.port"] })
        }
        let answer = try await ClusterCoordinatorProcessTests.curl([
            "-X", "POST", base + "/api/v1/subscribe", "-H", "Content-Type: application/json",
            "-d",
            #"{"symbols": [\#(symbols.map { "\"\($0)\"" }.joined(separator: ","))], "feeds": ["trades", "ticker"], "timeframes": ["1m"]}"#,
        ])
        #expect(answer.contains("okx/trades/W9-USDT"), "\(answer)")
        // Thirty streams (the pinned W0 candles among them), all live, spread over three workers.
        var owners: [String: String] = [:]
        try await ControlOverTCPTests.eventually("thirty streams live on three workers", timeout: .seconds(60)) {
            owners = (await Self.live(base)).compactMapValues(\.owners.first)
            return owners.count == 30 && Set(owners.values).count == 3
        }
        try await ControlOverTCPTests.eventually("balanced", timeout: .seconds(30)) {
            let document = await Self.json(base + "/api/v1/cluster")
            let weights = (document["workers"] as? [[String: Any]] ?? []).compactMap { $0["weight"] as? Int }
            let heaviest = (document["shards"] as? [[String: Any]] ?? []).compactMap { $0["weight"] as? Int }.max() ?? 0
            guard weights.count == 3, document["moves"] as? Int == 0 else { return false }
            let mean = Double(weights.reduce(0, +)) / 3
            // Within ±10 % of the mean, or one shard of it where shards are coarser than that.
            return weights.allSatisfy { abs(Double($0) - mean) <= max(0.1 * mean, Double(heaviest)) }
        }
        // The operator CLI against this cluster: the table, the JSON document, operations, exit codes.
        var cli = ["COORDINATOR_URL": base]
        let table = try await ExternalProcess.run(Self.coordinatorBinary, ["status"], environment: cli)
        #expect(table.status == 0, "\(table.stdout) \(table.stderr)")
        #expect(table.stdout.hasPrefix("WORKER") && table.stdout.contains("wa") && table.stdout.contains("wb"))
        #expect(table.stdout.contains("30 shards (0 unowned)") && table.stdout.contains("healthy"), "\(table.stdout)")
        let listed = try await ExternalProcess.run(Self.coordinatorBinary, ["status", "--shards"], environment: cli)
        #expect(listed.stdout.contains("okx/trades/W5-USDT") && listed.stdout.contains("SHARD"), "\(listed.stdout)")
        let json = try await ExternalProcess.run(Self.coordinatorBinary, ["status", "--json"], environment: cli)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(document["healthy"] as? Bool == true)
        #expect((document["workers"] as? [Any])?.count == 3 && (document["shards"] as? [Any])?.count == 30)
        // The documented schema (openapi.yaml `Cluster`), checked by an independent validator.
        let problems = try await validateAgainstOpenAPI(json.stdout, schema: "Cluster")
        #expect(problems.isEmpty, "\(problems)")
        for w in document["workers"] as? [[String: Any]] ?? [] {
            for key in ["id", "address", "state", "lease_expires_in_ms", "shards", "weight", "events_per_second"] {
                #expect(w.keys.contains(key), "worker field \(key)")
            }
        }
        let unknown = try await ExternalProcess.run(Self.coordinatorBinary, ["drain", "nosuch"], environment: cli)
        #expect(unknown.status == 1 && unknown.stderr.contains("no worker nosuch"), "\(unknown.stderr)")
        let usage = try await ExternalProcess.run(Self.coordinatorBinary, ["move", "x"], environment: cli)
        #expect(usage.status == 64)
        #expect(
            try await ExternalProcess.run(Self.coordinatorBinary, ["rebalance", "pause"], environment: cli).status == 0)
        let pausedTable = try await ExternalProcess.run(Self.coordinatorBinary, ["status"], environment: cli)
        #expect(pausedTable.stdout.contains("rebalancing PAUSED"), "\(pausedTable.stdout)")
        #expect(try await ExternalProcess.run(Self.coordinatorBinary, ["cordon", "wb"], environment: cli).status == 0)
        // (Chosen now: rebalancing is paused, so no balancing move takes it to wb meanwhile.)
        let shardToB = try #require(
            (await Self.live(base)).first { $0.value.owners != ["wb"] && $0.key.contains("/trades/") }?.key)
        let toCordoned = try await ExternalProcess.run(
            Self.coordinatorBinary, ["move", shardToB, "--to", "wb"], environment: cli)
        #expect(toCordoned.status == 1 && toCordoned.stderr.contains("cordoned"), "\(toCordoned.stderr)")
        #expect(
            try await ExternalProcess.run(Self.coordinatorBinary, ["uncordon", "wb"], environment: cli).status == 0)
        try await Self.move(shardToB, to: "wb", base: base, cli: cli)
        // kill -9 the active coordinator (rebalancing still paused: nothing moves on its own). The
        // workers, cut off, keep collecting and say so; the standby takes over at term 2 and every
        // shard keeps its owner and epoch.
        let before = await Self.live(base)
        #expect(before.count == 30)
        let waPort = try httpPort("wa")
        active.send(signal: SIGKILL)
        _ = await active.waitForExit(timeout: .seconds(5))
        var sawOrphaned = false
        var sawNotReady = false
        var sawAliveCutOff = false
        try await ControlOverTCPTests.eventually("the standby takes over", timeout: .seconds(20)) {
            if await Self.metric(waPort, "collector_worker_orphaned") == 1 { sawOrphaned = true }
            if await Self.json("http://127.0.0.1:\(waPort)/ready")["ready"] as? Bool == false {
                sawNotReady = true
                // Liveness does not hang on the coordinator: /health answers while cut off.
                if await Self.json("http://127.0.0.1:\(waPort)/health")["status"] as? String == "ok" {
                    sawAliveCutOff = true
                }
            }
            return Self.logFields(standby, "coordinating") != nil
        }
        #expect(sawOrphaned, "the orphaned gauge never showed the cut-off")
        #expect(sawNotReady, "/ready never said false while cut off")
        #expect(sawAliveCutOff, "/health did not answer ok while cut off")
        #expect(Self.logFields(standby, "coordinating")?["term"] == "2")
        base = "http://127.0.0.1:\(httpB)"
        cli = ["COORDINATOR_URL": base]
        try await ControlOverTCPTests.eventually("every shard back with its owner and epoch", timeout: .seconds(20)) {
            let now = await Self.live(base)
            return now.count == 30
                && now.allSatisfy {
                    before[$0.key]?.owners == $0.value.owners && before[$0.key]?.epoch == $0.value.epoch
                }
        }
        #expect((await Self.json(base + "/api/v1/cluster"))["rebalance_paused"] as? Bool == true)
        try await ControlOverTCPTests.eventually("wa ready again") {
            await Self.json("http://127.0.0.1:\(waPort)/ready")["ready"] as? Bool == true
        }
        #expect(await Self.metric(waPort, "collector_worker_orphaned") == 0)
        #expect(await Self.metric(waPort, "collector_worker_connected") == 1)
        #expect(
            try await ExternalProcess.run(Self.coordinatorBinary, ["rebalance", "resume"], environment: cli).status == 0
        )
        // kill -9 wc: once its lease expires its shards are placed on wa and wb, which backfill from
        // where wc's rows ended (checked below: no fill missing).
        let executor = PGExecutor(conninfo: database.conninfo)
        defer { executor.disconnect() }
        // wc must own a trades shard for the kill to leave a hole in the trades ledger: if the
        // balancer gave it none, the CLI moves one there first.
        var onC = (await Self.live(base)).filter { $0.value.owners == ["wc"] && $0.key.contains("/trades/") }
        if onC.isEmpty {
            let current = await Self.live(base)
            let shard = try #require(current.first { $0.key.contains("/trades/") && $0.value.owners != ["wc"] }?.key)
            let requested = Date().timeIntervalSince1970
            try await Self.move(shard, to: "wc", base: base, cli: cli)
            // Killed before its cutover (10 s after the move), wc would leave no hole: the old owner
            // stores up to it and wc's replacement from it. So wait until wc stores past it.
            let symbol = String(shard.split(separator: "/").last ?? "")
            try await ControlOverTCPTests.eventually("wc stores past the cutover", timeout: .seconds(20)) {
                let rows = try? await executor.run { c throws(PGError) in
                    try c.execute(
                        "SELECT max(timestamp_exchange) > to_timestamp($1) FROM trades WHERE symbol = $2",
                        ["\(requested + 11)", symbol]
                    ).rows
                }
                return rows?.first?.first == "t"
            }
            onC = (await Self.live(base)).filter { $0.value.owners == ["wc"] && $0.key.contains("/trades/") }
        }
        let wcTradesSymbols = Set(onC.keys.compactMap { $0.split(separator: "/").last.map(String.init) })
        #expect(!wcTradesSymbols.isEmpty)
        // The coordinator's cluster total of received fills, summed from heartbeats: it must not go back
        // when wc dies and a new incarnation of it starts counting from zero.
        let tradesTotal = #"collector_cluster_events_received_total{exchange="okx",feed="trades"}"#
        let storedBeforeKill: Double = try #require(await Self.metric("\(httpB)", tradesTotal))
        #expect(storedBeforeKill > 0)
        let wc = try #require(workers["wc"])
        wc.send(signal: SIGKILL)
        _ = await wc.waitForExit(timeout: .seconds(5))
        try await ControlOverTCPTests.eventually("wc's shards live elsewhere", timeout: .seconds(30)) {
            owners = (await Self.live(base)).compactMapValues(\.owners.first)
            return owners.count == 30 && !owners.values.contains("wc")
        }
        // The coordinator's /api/v1/status shows the gap ledger its workers wrote (the holes the new
        // owners backfilled, read from the database) beside each stream's owner.
        var ledger: [[String?]] = []
        do {
            try await ControlOverTCPTests.eventually("every hole recovered in the ledger", timeout: .seconds(30)) {
                ledger =
                    (try? await executor.run { c throws(PGError) in
                        try c.execute(
                            "SELECT symbol, feed, recovered::text, cause, reason FROM gaps WHERE feed = 'trades' ORDER BY symbol"
                        ).rows
                    }) ?? []
                ledger = ledger.filter { wcTradesSymbols.contains($0[0] ?? "") }
                // (A stream with no fill between the kill and its new owner's first lost nothing.)
                return !ledger.isEmpty && ledger.allSatisfy { $0[2] == "true" }
            }
        } catch {
            Issue.record("the ledger of wc's trades streams \(wcTradesSymbols.sorted()): \(ledger)")
            for (name, p) in [("standby", standby)] + workers.sorted(by: { $0.key < $1.key }) {
                for line in p.errorOutput.split(separator: "\n")
                where wcTradesSymbols.contains(where: { line.contains("trades/\($0)") }) {
                    print(name, line.prefix(400))
                }
            }
            throw error
        }
        let gapSymbol = try #require(ledger.first?[0] ?? nil)
        let gapStream = "okx/trades/\(gapSymbol)"
        let statusDocument = await Self.json(base + "/api/v1/status/\(gapSymbol)")
        let entry = (statusDocument["streams"] as? [[String: Any]] ?? []).first {
            $0["stream"] as? String == gapStream
        }
        let gaps = entry?["gaps"] as? [[String: Any]] ?? []
        #expect(
            gaps.contains { $0["recovered"] as? Bool == true && $0["cause"] as? String == "reconnect" },
            "\(statusDocument)")
        let owner = (entry?["owners"] as? [[String: Any]])?.first?["worker"] as? String
        #expect(owner != nil && owner != "wc", "\(statusDocument)")
        // wc comes back (a new incarnation): the balancer moves shards to it, make-before-break.
        try startWorker("wc")
        try await ControlOverTCPTests.eventually("wc takes shards, no move in flight", timeout: .seconds(60)) {
            let document = await Self.json(base + "/api/v1/cluster")
            let shards = document["shards"] as? [[String: Any]] ?? []
            return document["moves"] as? Int == 0 && shards.allSatisfy { $0["state"] as? String == "live" }
                && shards.contains { ($0["owners"] as? [String]) == ["wc"] }
        }
        try await ControlOverTCPTests.eventually("the cluster total grows on past wc's restart") {
            (await Self.metric("\(httpB)", tradesTotal) ?? 0) > storedBeforeKill
        }
        // From here on every change of owner is a move with a cutover: no row may be stored twice.
        let wbPort = try httpPort("wb")
        let wcPort = try httpPort("wc")
        var duplicates: [String: Double] = [:]
        for (id, port) in [("wa", waPort), ("wb", wbPort), ("wc", wcPort)] {
            let value: Double? = await Self.metric(port, "collector_sink_duplicate_rows_total")
            let required: Double = try #require(value, "\(id) exposes collector_sink_duplicate_rows_total")
            duplicates[id] = required
        }
        // The CLI drains wc: its shards move to wa and wb.
        let drain = try await ExternalProcess.run(Self.coordinatorBinary, ["drain", "wc"], environment: cli)
        #expect(drain.status == 0, "\(drain.stderr)")
        try await ControlOverTCPTests.eventually("wc drained", timeout: .seconds(40)) {
            let shards = await Self.shards(base)
            return shards.count == 30
                && shards.allSatisfy { $0["state"] as? String == "live" && ($0["owners"] as? [String])?.count == 1 }
                && !shards.contains { ($0["owners"] as? [String])?.contains("wc") == true }
        }
        #expect(await Self.metric(wcPort, "collector_sink_duplicate_rows_total") == duplicates["wc"])
        // SIGTERM wa: drained make-before-break (wc is draining: everything goes to wb), it exits 0.
        let wa = try #require(workers["wa"])
        let onA = (await Self.live(base)).filter { $0.value.owners == ["wa"] }.map(\.key)
        #expect(!onA.isEmpty)
        wa.send(signal: SIGTERM)
        let status = await wa.waitForExit(timeout: .seconds(45))
        #expect(status == 0, "exit \(String(describing: status)): \(wa.errorOutput.suffix(2000))")
        #expect(wa.errorOutput.contains(#""msg":"drained""#), "\(wa.errorOutput.suffix(1500))")
        #expect(standby.errorOutput.contains("worker leaving: draining it"))
        let stopped = Self.logFields(wa, "stopped")
        #expect(stopped?["rows.duplicate"] == "postgres=\(Int(duplicates["wa"] ?? -1))", "\(stopped ?? [:])")
        try await ControlOverTCPTests.eventually("everything live on wb", timeout: .seconds(30)) {
            let shards = await Self.shards(base)
            return shards.count == 30
                && shards.allSatisfy { $0["state"] as? String == "live" && ($0["owners"] as? [String]) == ["wb"] }
        }
        // The coordinator's and a worker's /metrics, read by prometheus_client.
        for port in ["\(httpB)", wbPort] {
            let text = try await ClusterCoordinatorProcessTests.curl(["http://127.0.0.1:\(port)/metrics"])
            let (families, problems) = try await parseWithPrometheusClient(text)
            #expect(problems.isEmpty, "\(port): \(problems)")
            if port == "\(httpB)" {
                let family = families["collector_cluster_events_received"] as? [String: Any]
                #expect(family?["type"] as? String == "counter", "\(families.keys.sorted())")
                let samples = family?["samples"] as? [String: Double] ?? [:]
                let trades = samples[#"collector_cluster_events_received_total{"exchange": "okx", "feed": "trades"}"#]
                #expect((trades ?? 0) > storedBeforeKill, "\(samples)")
            } else {
                #expect(families["collector_worker_shards"] != nil, "\(families.keys.sorted())")
            }
        }
        if ProcessInfo.processInfo.environment["WORKER_TEST_LOG"] != nil {
            for (name, p) in [("active", active), ("standby", standby)] + workers.sorted(by: { $0.key < $1.key }) {
                for line in p.errorOutput.split(separator: "\n") {
                    print(name, line.prefix(300))
                }
            }
        }
        func tradeCounts() async throws -> [String: (count: Int, span: Int)] {
            let rows = try await executor.run { c throws(PGError) in
                try c.execute(
                    "SELECT symbol, count(*), max(trade_id::bigint) - min(trade_id::bigint) + 1 FROM trades GROUP BY symbol"
                ).rows
            }
            var out: [String: (count: Int, span: Int)] = [:]
            for r in rows { out[r[0] ?? ""] = (Int(r[1] ?? "") ?? 0, Int(r[2] ?? "") ?? 0) }
            return out
        }
        // The moved streams kept flowing, and no fill is missing from the first stored to the last.
        let counted = try await tradeCounts()
        try await ControlOverTCPTests.eventually("the moved streams grow on wb", timeout: .seconds(30)) {
            let now = (try? await tradeCounts()) ?? [:]
            return onA.filter { $0.contains("/trades/") }.compactMap { $0.split(separator: "/").last.map(String.init) }
                .allSatisfy { (now[$0]?.count ?? 0) > (counted[$0]?.count ?? 0) + 20 }
        }
        #expect(
            await Self.metric(wbPort, "collector_sink_duplicate_rows_total") == duplicates["wb"],
            "rows stored twice during the moves")
        let after = try await tradeCounts()
        // Every stream's fills, from the first stored to the last, are the simulator's own record of
        // the fills it made (its oracle), field for field: none missing, none altered.
        for symbol in symbols {
            let c = try #require(after[symbol])
            let stored = try await executor.run { c throws(PGError) in
                try c.execute(
                    """
                    SELECT trade_id, price::text, size::text, side,
                           (extract(epoch FROM timestamp_exchange) * 1000)::bigint::text
                    FROM trades WHERE exchange = 'okx' AND symbol = $1 ORDER BY trade_id::bigint
                    """, [symbol]
                ).rows.map { $0.map { $0 ?? "" } }
            }
            let first = try #require(stored.first?[0])
            let last = try #require(stored.last?[0])
            let text = try await ClusterCoordinatorProcessTests.curl([
                "http://127.0.0.1:\(simulator.restPort)/control/trades?instId=\(symbol)&from=\(first)&to=\(last)"
            ])
            let oracle = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any])
            #expect(oracle["truncated"] as? Bool == false)
            let expected = ((oracle["trades"] as? [[String: Any]]) ?? []).map { t in
                ["tradeId", "px", "sz", "side", "ts"].map { t[$0] as? String ?? "" }
            }
            let missing = Set(expected.map { $0[0] }).subtracting(stored.map { $0[0] })
            if stored != expected {
                let gaps = try await executor.run { c throws(PGError) in
                    try c.execute(
                        "SELECT cause, recovered::text, missing::text, reason, from_time::text FROM gaps WHERE symbol = $1",
                        [symbol]
                    ).rows
                }
                Issue.record(
                    "\(symbol): \(stored.count) fills stored, the oracle made \(expected.count) from \(first) to \(last); missing \(missing.sorted().prefix(5)); ledger \(gaps)"
                )
            }
            #expect(c.count == c.span)
        }
        // kill -9 the last worker with shards: once its lease expires, status says so with exit code 2.
        let wb = try #require(workers["wb"])
        wb.send(signal: SIGKILL)
        _ = await wb.waitForExit(timeout: .seconds(5))
        try await ControlOverTCPTests.eventually("status reports the unowned shards", timeout: .seconds(15)) {
            let r = try? await ExternalProcess.run(Self.coordinatorBinary, ["status"], environment: cli)
            return r?.status == 2 && r?.stdout.contains("NOT healthy") == true
        }
        await simulator.shutdown()
        await loop.shutdown()
    }
}
