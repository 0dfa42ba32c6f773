import ExchangeSimulator
import Foundation
import Runtime
import TestSupport
import Testing

/// One active coordinator and a hot standby on one PostgreSQL: the standby waits on the advisory
/// lock, takes over (a new term) when the active one is killed, the worker re-registers, and no
/// shard whose worker stayed alive is moved.
@Suite(.serialized) struct StandbyCoordinatorTests {
    @Test func killingTheActiveCoordinatorHandsTheClusterToTheStandbyWithoutMovingAShard() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let loop = try EventLoop.start(name: "standby-test")
        var simConfig = SimulatorConfiguration()
        simConfig.symbols = ["SB0-USDT", "SB1-USDT", "SB2-USDT"]
        simConfig.tradesPerBar = 20
        let simulator = try await ExchangeSimulator.start(configuration: simConfig, loop: loop)
        let controlPort = try await ClusterCoordinatorProcessTests.freePort()
        let httpPort = try await ClusterCoordinatorProcessTests.freePort()
        let standbyHTTP = try await ClusterCoordinatorProcessTests.freePort()
        let secret = WorkerProcessTests.secret
        // Both on the same control port: a standby opens it only once active. (Their HTTP ports
        // differ, as two pods' addresses would: a standby answers /health there.) Each has a data
        // directory of its own, as two pods would: the state a standby continues from is the
        // database's.
        func coordinator(http: Int) throws -> ExternalProcess {
            let data = try TestEnvironment.makeTemporaryDirectory(prefix: "standby")
            return try ExternalProcess(
                WorkerProcessTests.coordinatorBinary,
                ["serve", "--data-dir", data, "--http-port", "\(http)", "--control-port", "\(controlPort)"],
                environment: [
                    "CLUSTER_SECRET": secret, "LEASE_TTL": "2", "HEARTBEAT_INTERVAL": "0.2", "API_RATE_LIMIT": "0",
                    "MARKETS": "SB0-USDT", "DATABASE_URL": database.conninfo,
                ])
        }
        let first = try coordinator(http: httpPort)
        defer { first.stop() }
        try await ControlOverTCPTests.eventually("the first is active") {
            WorkerProcessTests.logFields(first, "coordinating") != nil || !first.isRunning
        }
        let second = try coordinator(http: standbyHTTP)
        defer { second.stop() }
        try await ControlOverTCPTests.eventually("the second stands by") {
            second.errorOutput.contains("standby: another coordinator holds the lock") || !second.isRunning
        }
        #expect(second.isRunning)
        #expect(WorkerProcessTests.logFields(second, "coordinating") == nil, "a standby serves nothing")
        try await ControlOverTCPTests.eventually("the standby answers /health") {
            await WorkerProcessTests.json("http://127.0.0.1:\(standbyHTTP)/health")["role"] as? String == "standby"
        }
        let notReady = try await ExternalProcess.run(
            "/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:\(standbyHTTP)/ready"])
        #expect(notReady.stdout == "503")
        let base = "http://127.0.0.1:\(httpPort)"
        let workerData = try TestEnvironment.makeTemporaryDirectory(prefix: "standby-worker")
        let worker = try ExternalProcess(
            WorkerProcessTests.workerBinary,
            ["--coordinator", "127.0.0.1:\(controlPort)", "--id", "w1", "--http-port", "0", "--data-dir", workerData],
            environment: [
                "CLUSTER_SECRET": secret, "DATABASE_URL": database.conninfo,
                "OKX_WS_BUSINESS_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/business",
                "OKX_WS_PUBLIC_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/public",
                "OKX_REST_URL": "http://127.0.0.1:\(simulator.restPort)",
                "SQL_DIR": TestEnvironment.repositoryRoot + "/sql/init",
            ])
        defer { worker.stop() }
        _ = try await ClusterCoordinatorProcessTests.curl([
            "-X", "POST", base + "/api/v1/subscribe", "-H", "Content-Type: application/json",
            "-d", #"{"symbols": ["SB1-USDT", "SB2-USDT"], "feeds": ["trades"]}"#,
        ])
        var epochs: [String: Int] = [:]
        func liveEpochs(_ base: String) async -> [String: Int] {
            let shards = (await WorkerProcessTests.json(base + "/api/v1/cluster"))["shards"] as? [[String: Any]] ?? []
            var out: [String: Int] = [:]
            for s in shards where s["state"] as? String == "live" && (s["owners"] as? [String]) == ["w1"] {
                out[s["id"] as? String ?? ""] = s["epoch"] as? Int
            }
            return out
        }
        try await ControlOverTCPTests.eventually("three streams live on w1", timeout: .seconds(30)) {
            epochs = await liveEpochs(base)
            return epochs.count == 3
        }
        let paused = try await ClusterCoordinatorProcessTests.curl([
            "-X", "POST", base + "/api/v1/cluster/rebalance/pause",
        ])
        #expect(paused.contains(#""accepted":true"#), "\(paused)")
        first.send(signal: SIGKILL)
        _ = await first.waitForExit(timeout: .seconds(5))
        try await ControlOverTCPTests.eventually("the standby takes over", timeout: .seconds(15)) {
            WorkerProcessTests.logFields(second, "coordinating") != nil
        }
        #expect(WorkerProcessTests.logFields(second, "coordinating")?["term"] == "2")
        #expect(second.errorOutput.contains(#""took.over":"true""#))
        #expect(second.errorOutput.contains("took the coordinator lock: serving after one lease"))
        let takenOver = "http://127.0.0.1:\(standbyHTTP)"  // the API is the new active one's
        try await ControlOverTCPTests.eventually("the worker re-registers, nothing moved", timeout: .seconds(20)) {
            await liveEpochs(takenOver) == epochs
        }
        let document = await WorkerProcessTests.json(takenOver + "/api/v1/cluster")
        #expect(document["term"] as? Int == 2)
        // The operator's pause is part of the state the standby read from the database.
        #expect(document["rebalance_paused"] as? Bool == true)
        #expect(second.errorOutput.contains(#""rebalance.paused":"true""#))
        second.send(signal: SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(10)) == 0)
        await simulator.shutdown()
        await loop.shutdown()
    }

    /// The active coordinator's database connection blackholed (a TCP proxy that drops every byte):
    /// its lock check fails within half a lease and it stops serving (exit 3); once its session is
    /// gone the standby, on a healthy connection, takes over.
    @Test func aCoordinatorCutOffFromTheDatabaseStopsAndTheStandbyTakesOver() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let upstream = try #require(URLComponents(string: database.conninfo))
        let proxy = try ExternalProcess(
            TestEnvironment.python,
            [TestEnvironment.peerScript("tcp_proxy.py"), upstream.host ?? "127.0.0.1", String(upstream.port ?? 5432)])
        defer { proxy.stop() }
        let proxyPort = try #require(Int(try await proxy.waitForLine(prefix: "LISTENING ").dropFirst(10)))
        var viaProxy = try #require(URLComponents(string: database.conninfo))
        viaProxy.port = proxyPort
        let proxied = try #require(viaProxy.string)
        let controlPort = try await ClusterCoordinatorProcessTests.freePort()
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "blackhole")
        // Each its own HTTP port: the port is bound before the lock is tried (one in use stops start-up).
        func coordinator(_ url: String) async throws -> ExternalProcess {
            let httpPort = try await ClusterCoordinatorProcessTests.freePort()
            return try ExternalProcess(
                WorkerProcessTests.coordinatorBinary,
                ["serve", "--data-dir", data, "--http-port", "\(httpPort)", "--control-port", "\(controlPort)"],
                environment: [
                    "CLUSTER_SECRET": WorkerProcessTests.secret, "LEASE_TTL": "2", "MARKETS": "BTC-USDT",
                    "DATABASE_URL": url,
                ])
        }
        let first = try await coordinator(proxied)
        defer { first.stop() }
        try await ControlOverTCPTests.eventually("the first is active") {
            WorkerProcessTests.logFields(first, "coordinating") != nil || !first.isRunning
        }
        let second = try await coordinator(database.conninfo)
        defer { second.stop() }
        try await ControlOverTCPTests.eventually("the second stands by") {
            second.errorOutput.contains("standby: another coordinator holds the lock") || !second.isRunning
        }
        let cut = ContinuousClock.now
        proxy.send(signal: SIGHUP)
        let status = await first.waitForExit(timeout: .seconds(6))
        let stopped = ContinuousClock.now - cut
        #expect(status == 3, "exit \(String(describing: status)) after \(stopped): \(first.errorOutput.suffix(800))")
        #expect(first.errorOutput.contains("lost the coordinator lock"))
        // The design bound is one lease (a check every half lease, each given half a lease), to the
        // moment the check fails and serving stops; the process's exit after it gets 1 s more.
        #expect(stopped < .seconds(3), "stopped serving after \(stopped)")
        print("blackholed coordinator stopped serving after \(stopped) (lease 2 s)")
        try await ControlOverTCPTests.eventually("the standby takes over", timeout: .seconds(15)) {
            WorkerProcessTests.logFields(second, "coordinating") != nil
        }
        #expect(WorkerProcessTests.logFields(second, "coordinating")?["term"] == "2")
    }

    /// Without a database, the data directory's lock file keeps a second coordinator from starting.
    @Test func withoutADatabaseASecondCoordinatorOnTheSameDirectoryDoesNotStart() async throws {
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "file-lock")
        let environment = ["CLUSTER_SECRET": WorkerProcessTests.secret, "MARKETS": "BTC-USDT"]
        let port = try await ClusterCoordinatorProcessTests.freePort()
        let first = try ExternalProcess(
            WorkerProcessTests.coordinatorBinary,
            ["serve", "--data-dir", data, "--http-port", "0", "--control-port", "\(port)"],
            environment: environment)
        defer { first.stop() }
        try await ControlOverTCPTests.eventually("the first is active") {
            WorkerProcessTests.logFields(first, "coordinating") != nil || !first.isRunning
        }
        let second = try await ExternalProcess.run(
            WorkerProcessTests.coordinatorBinary,
            ["serve", "--data-dir", data, "--http-port", "0", "--control-port", "\(port)"],
            environment: environment)
        #expect(second.status == 1)
        #expect(second.stderr.contains("another coordinator is running with this data directory"), "\(second.stderr)")
    }
}
