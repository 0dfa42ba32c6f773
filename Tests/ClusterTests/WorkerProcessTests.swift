import ExchangeSimulator
import Foundation
import PostgresClient
import Runtime
import TestSupport
import Testing

/// Real processes on loopback: a `coordinator`, two `worker`s, the exchange simulator and
/// PostgreSQL. Streams subscribed through the coordinator's API are collected by the workers; a
/// worker sent SIGTERM is drained (its shards move make-before-break) and exits 0, and no fill is
/// missing from what was stored.
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

    @Test func workersCollectWhatIsAssignedAndASigtermDrainsOneWithNoMissingFill() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let loop = try EventLoop.start(name: "worker-process-test")
        var simConfig = SimulatorConfiguration()
        let symbols = (0..<6).map { "W\($0)-USDT" }
        simConfig.symbols = symbols
        simConfig.tradesPerBar = 20
        let simulator = try await ExchangeSimulator.start(configuration: simConfig, loop: loop)
        let controlPort = try await ClusterCoordinatorProcessTests.freePort()
        let coordinatorData = try TestEnvironment.makeTemporaryDirectory(prefix: "wp-coordinator")
        let coordinator = try ExternalProcess(
            Self.coordinatorBinary,
            ["serve", "--data-dir", coordinatorData, "--http-port", "0", "--control-port", "\(controlPort)"],
            environment: [
                "CLUSTER_SECRET": Self.secret, "LEASE_TTL": "2", "HEARTBEAT_INTERVAL": "0.2", "API_RATE_LIMIT": "0",
                "MARKETS": symbols[0], "DATABASE_URL": database.conninfo,
            ])
        defer { coordinator.stop() }
        try await ControlOverTCPTests.eventually("the coordinator is up") {
            Self.logFields(coordinator, "coordinating") != nil || !coordinator.isRunning
        }
        let http = try #require(Self.logFields(coordinator, "coordinating")?["http.port"])
        let base = "http://127.0.0.1:\(http)"
        let environment = [
            "CLUSTER_SECRET": Self.secret, "DATABASE_URL": database.conninfo,
            "OKX_WS_BUSINESS_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/business",
            "OKX_WS_PUBLIC_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/public",
            "OKX_REST_URL": "http://127.0.0.1:\(simulator.restPort)", "BATCH_TIMEOUT": "0.2",
            "SQL_DIR": TestEnvironment.repositoryRoot + "/sql/init", "SHUTDOWN_DEADLINE": "40",
            "LOG_LEVEL": ProcessInfo.processInfo.environment["WORKER_TEST_LOG"] != nil ? "debug" : "info",
        ]
        var workers: [String: ExternalProcess] = [:]
        for id in ["wa", "wb", "wc"] {
            let data = try TestEnvironment.makeTemporaryDirectory(prefix: "wp-\(id)")
            workers[id] = try ExternalProcess(
                Self.workerBinary,
                ["--coordinator", "127.0.0.1:\(controlPort)", "--id", id, "--http-port", "0", "--data-dir", data],
                environment: environment)
        }
        defer { for w in workers.values { w.stop() } }
        let answer = try await ClusterCoordinatorProcessTests.curl([
            "-X", "POST", base + "/api/v1/subscribe", "-H", "Content-Type: application/json",
            "-d", #"{"symbols": [\#(symbols.map { "\"\($0)\"" }.joined(separator: ","))], "feeds": ["trades"]}"#,
        ])
        #expect(answer.contains("okx/trades/W5-USDT"), "\(answer)")
        // Every stream live, on both workers.
        var owners: [String: String] = [:]
        try await ControlOverTCPTests.eventually("all seven streams live on three workers", timeout: .seconds(60)) {
            let shards = (await Self.json(base + "/api/v1/cluster"))["shards"] as? [[String: Any]] ?? []
            owners = [:]
            for s in shards where s["state"] as? String == "live" {
                owners[s["id"] as? String ?? ""] = (s["owners"] as? [String])?.first
            }
            return owners.count == 7 && Set(owners.values).count == 3
        }
        // The operator CLI against this cluster: the table, the JSON document, operations, exit codes.
        let cli = ["COORDINATOR_URL": base]
        let table = try await ExternalProcess.run(Self.coordinatorBinary, ["status"], environment: cli)
        #expect(table.status == 0, "\(table.stdout) \(table.stderr)")
        #expect(table.stdout.hasPrefix("WORKER") && table.stdout.contains("wa") && table.stdout.contains("wb"))
        #expect(table.stdout.contains("healthy"), "\(table.stdout)")
        let listed = try await ExternalProcess.run(Self.coordinatorBinary, ["status", "--shards"], environment: cli)
        #expect(listed.stdout.contains("okx/trades/W5-USDT") && listed.stdout.contains("SHARD"), "\(listed.stdout)")
        let json = try await ExternalProcess.run(Self.coordinatorBinary, ["status", "--json"], environment: cli)
        let document = try #require(try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any])
        #expect(document["healthy"] is Bool)
        for w in document["workers"] as? [[String: Any]] ?? [] {
            for key in ["id", "address", "state", "lease_expires_in_ms", "shards", "weight", "events_per_second"] {
                #expect(w.keys.contains(key), "worker field \(key)")
            }
        }
        for shard in document["shards"] as? [[String: Any]] ?? [] {
            for key in ["id", "exchange", "feed", "symbol", "owners", "epoch", "state", "last_event_age_ms"] {
                #expect(shard.keys.contains(key), "shard field \(key)")
            }
        }
        let unknown = try await ExternalProcess.run(Self.coordinatorBinary, ["drain", "nosuch"], environment: cli)
        #expect(unknown.status == 1 && unknown.stderr.contains("no worker nosuch"), "\(unknown.stderr)")
        let usage = try await ExternalProcess.run(Self.coordinatorBinary, ["move", "x"], environment: cli)
        #expect(usage.status == 64)
        #expect(
            try await ExternalProcess.run(Self.coordinatorBinary, ["rebalance", "pause"], environment: cli).status == 0)
        #expect(try await ExternalProcess.run(Self.coordinatorBinary, ["cordon", "wb"], environment: cli).status == 0)
        let shardOnA = try #require(owners.first { $0.value == "wa" }?.key)
        let toCordoned = try await ExternalProcess.run(
            Self.coordinatorBinary, ["move", shardOnA, "--to", "wb"], environment: cli)
        #expect(toCordoned.status == 1 && toCordoned.stderr.contains("cordoned"), "\(toCordoned.stderr)")
        #expect(
            try await ExternalProcess.run(Self.coordinatorBinary, ["uncordon", "wb"], environment: cli).status == 0)
        // Accepted once no hand-over of it is in flight (a refusal says so, and is retried).
        try await ControlOverTCPTests.eventually("the move accepted") {
            let moved = try? await ExternalProcess.run(
                Self.coordinatorBinary, ["move", shardOnA, "--to", "wb"], environment: cli)
            return moved?.status == 0
        }
        try await ControlOverTCPTests.eventually("the moved shard lives on wb") {
            let shards = (await Self.json(base + "/api/v1/cluster"))["shards"] as? [[String: Any]] ?? []
            return shards.contains { $0["id"] as? String == shardOnA && ($0["owners"] as? [String]) == ["wb"] }
        }
        #expect(
            try await ExternalProcess.run(Self.coordinatorBinary, ["rebalance", "resume"], environment: cli).status == 0
        )
        owners[shardOnA] = "wb"
        // kill -9 wc: once its lease expires its shards are placed on wa and wb, which backfill from
        // where wc's rows ended (checked below: no fill missing).
        let wc = try #require(workers["wc"])
        let onC = owners.filter { $0.value == "wc" }.map(\.key)
        #expect(!onC.isEmpty)
        wc.send(signal: SIGKILL)
        _ = await wc.waitForExit(timeout: .seconds(5))
        try await ControlOverTCPTests.eventually("wc's shards live elsewhere", timeout: .seconds(30)) {
            let shards = (await Self.json(base + "/api/v1/cluster"))["shards"] as? [[String: Any]] ?? []
            owners = [:]
            for s in shards where s["state"] as? String == "live" {
                owners[s["id"] as? String ?? ""] = (s["owners"] as? [String])?.first
            }
            return owners.count == 7 && !owners.values.contains("wc")
        }
        // The coordinator's /api/v1/status shows the gap ledger its workers wrote (the holes the new
        // owners backfilled, read from the database) beside each stream's owner.
        let gapReader = PGExecutor(conninfo: database.conninfo)
        defer { gapReader.disconnect() }
        var ledger: [[String?]] = []
        try await ControlOverTCPTests.eventually("a recovered hole in the ledger", timeout: .seconds(20)) {
            ledger =
                (try? await gapReader.run { c throws(PGError) in
                    try c.execute("SELECT symbol, feed FROM gaps WHERE recovered ORDER BY symbol").rows
                }) ?? []
            return !ledger.isEmpty
        }
        let gapSymbol = try #require(ledger.first?[0] ?? nil)
        let gapStream = "okx/\(ledger.first?[1] ?? "")/\(gapSymbol)"
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
        let wa = try #require(workers["wa"])
        let waPort = try #require(Self.logFields(wa, "worker started")?["http.port"])
        #expect(await Self.json("http://127.0.0.1:\(waPort)/health")["status"] as? String == "ok")
        try await ControlOverTCPTests.eventually("wa ready") {
            await Self.json("http://127.0.0.1:\(waPort)/ready")["ready"] as? Bool == true
        }
        let metrics = try await ClusterCoordinatorProcessTests.curl(["http://127.0.0.1:\(waPort)/metrics"])
        #expect(metrics.contains("collector_worker_connected 1"), "\(metrics.prefix(500))")
        #expect(metrics.contains("collector_worker_orphaned 0"))
        let executor = PGExecutor(conninfo: database.conninfo)
        defer { executor.disconnect() }
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
        try await ControlOverTCPTests.eventually("fills stored for every symbol", timeout: .seconds(30)) {
            let counts = (try? await tradeCounts()) ?? [:]
            return symbols.allSatisfy { (counts[$0]?.count ?? 0) >= 20 }
        }
        // SIGTERM wa: drained make-before-break, it exits 0; wb owns everything.
        let onA = owners.filter { $0.value == "wa" }.map(\.key)
        #expect(!onA.isEmpty)
        wa.send(signal: SIGTERM)
        let status = await wa.waitForExit(timeout: .seconds(45))
        #expect(status == 0, "exit \(String(describing: status)): \(wa.errorOutput.suffix(2000))")
        #expect(wa.errorOutput.contains(#""msg":"drained""#), "\(wa.errorOutput.suffix(1500))")
        #expect(coordinator.errorOutput.contains("worker leaving: draining it"))
        try await ControlOverTCPTests.eventually("everything live on wb", timeout: .seconds(30)) {
            let shards = (await Self.json(base + "/api/v1/cluster"))["shards"] as? [[String: Any]] ?? []
            return shards.count == 7
                && shards.allSatisfy { $0["state"] as? String == "live" && ($0["owners"] as? [String]) == ["wb"] }
        }
        if ProcessInfo.processInfo.environment["WORKER_TEST_LOG"] != nil {
            for (name, p) in [("coordinator", coordinator)] + workers.sorted(by: { $0.key < $1.key }) {
                for line in p.errorOutput.split(separator: "\n") {
                    print(name, line.prefix(300))
                }
            }
        }
        // The moved streams kept flowing, and no fill is missing from the first stored to the last.
        let before = try await tradeCounts()
        try await ControlOverTCPTests.eventually("the moved streams grow on wb", timeout: .seconds(30)) {
            let now = (try? await tradeCounts()) ?? [:]
            return onA.compactMap { $0.split(separator: "/").last.map(String.init) }.allSatisfy {
                (now[$0]?.count ?? 0) > (before[$0]?.count ?? 0) + 20
            }
        }
        let after = try await tradeCounts()
        for symbol in symbols {
            let c = try #require(after[symbol])
            let ids = try await executor.run { c throws(PGError) in
                try c.execute(
                    "SELECT trade_id::bigint, timestamp_exchange::text FROM trades WHERE symbol = $1 ORDER BY 1",
                    [symbol]
                ).rows
            }
            var holes: [String] = []
            for (a, b) in zip(ids, ids.dropFirst()) {
                if let x = Int64(a[0] ?? ""), let y = Int64(b[0] ?? ""), y != x + 1 {
                    holes.append("\(x)@\(a[1] ?? "")…\(y)@\(b[1] ?? "")")
                }
            }
            let ledger = try await executor.run { c throws(PGError) in
                try c.execute(
                    "SELECT cause, recovered::text, missing::text, reason, from_time::text FROM gaps WHERE symbol = $1",
                    [symbol]
                ).rows
            }
            #expect(
                c.count == c.span,
                "\(symbol): \(c.count) fills stored over an id span of \(c.span); holes \(holes.prefix(5)); ledger \(ledger)"
            )
        }
        // kill -9 the last worker: once its lease expires, status says so with exit code 2.
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
