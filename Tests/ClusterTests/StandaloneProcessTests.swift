import ExchangeSimulator
import Foundation
import PostgresClient
import Runtime
import TestSupport
import Testing

/// `coordinator serve --standalone` is the cluster with one in-process worker (DESIGN.md §7): the
/// coordinator places every stream on that worker over the control protocol on loopback, with epochs
/// from its durable blocks; a restart continues at the next term with the saved subscriptions.
@Suite struct StandaloneProcessTests {
    @Test func standaloneRunsItsStreamsThroughTheClusterWithOneInProcessWorker() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let loop = try EventLoop.start(name: "standalone-test")
        var simConfig = SimulatorConfiguration()
        simConfig.symbols = ["BTC-USDT", "ETH-USDT"]
        let simulator = try await ExchangeSimulator.start(configuration: simConfig, loop: loop)
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "standalone")
        let environment = [
            "DATABASE_URL": database.conninfo, "MARKETS": "BTC-USDT", "WORKER_ID": "solo",
            "OKX_WS_BUSINESS_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/business",
            "OKX_WS_PUBLIC_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/public",
            "OKX_REST_URL": "http://127.0.0.1:\(simulator.restPort)", "BATCH_TIMEOUT": "0.2",
            "SQL_DIR": TestEnvironment.repositoryRoot + "/sql/init", "API_RATE_LIMIT": "0",
        ]
        func start() async throws -> (ExternalProcess, String) {
            let process = try ExternalProcess(
                WorkerProcessTests.coordinatorBinary,
                ["serve", "--standalone", "--http-port", "0", "--data-dir", data], environment: environment)
            var port: String?
            try await ControlOverTCPTests.eventually("listening") {
                port = WorkerProcessTests.logFields(process, "http listening")?["http.port"]
                return port != nil || !process.isRunning
            }
            let base = "http://127.0.0.1:\(try #require(port, "\(process.errorOutput.suffix(1500))"))"
            return (process, base)
        }
        let (first, base) = try await start()
        defer { first.stop() }
        // The pinned stream, placed by the in-process coordinator on its one worker, connected over
        // loopback.
        var document: [String: Any] = [:]
        try await ControlOverTCPTests.eventually("the pinned stream live on the in-process worker") {
            document = await WorkerProcessTests.json(base + "/api/v1/cluster")
            let shards = document["shards"] as? [[String: Any]] ?? []
            return shards.count == 1 && shards.allSatisfy { $0["state"] as? String == "live" }
        }
        #expect(document["mode"] as? String == "standalone" && document["term"] as? Int == 1)
        let workers = document["workers"] as? [[String: Any]] ?? []
        #expect(workers.count == 1 && workers.first?["id"] as? String == "solo", "\(workers)")
        #expect((workers.first?["address"] as? String)?.hasPrefix("127.0.0.1:") == true, "\(workers)")
        let text = try await ClusterCoordinatorProcessTests.curl([base + "/api/v1/cluster"])
        let problems = try await validateAgainstOpenAPI(text, schema: "Cluster")
        #expect(problems.isEmpty, "\(problems)")
        // A stream subscribed through the API goes the same way: placed, assigned at a new epoch, live.
        let answer = try await ClusterCoordinatorProcessTests.curl([
            "-X", "POST", base + "/api/v1/subscribe", "-H", "Content-Type: application/json", "-d",
            #"{"symbols": ["ETH-USDT"], "feeds": ["trades"]}"#,
        ])
        #expect(answer.contains("okx/trades/ETH-USDT"), "\(answer)")
        var epochs: [String: Int] = [:]
        try await ControlOverTCPTests.eventually("the subscribed stream live, storing") {
            let live = await WorkerProcessTests.live(base)
            epochs = live.mapValues(\.epoch)
            let status = await WorkerProcessTests.json(base + "/api/v1/status/ETH-USDT")
            let stream = (status["streams"] as? [[String: Any]] ?? []).first
            return live.count == 2 && live.values.allSatisfy { $0.owners == ["solo"] }
                && (stream?["messages"] as? Int ?? 0) > 0
        }
        #expect(Set(epochs.values).count == 2 && epochs.values.allSatisfy { $0 >= 1 }, "\(epochs)")
        // The cluster's series beside the data plane's, on one /metrics.
        let port = String(base.split(separator: ":").last ?? "")
        // (The shard gauges are counted once a second, the totals arrive with the next heartbeat.)
        try await ControlOverTCPTests.eventually("the cluster series on /metrics") {
            let live = await WorkerProcessTests.metric(port, #"collector_cluster_shards{state="live"}"#)
            let received = await WorkerProcessTests.metric(port, "collector_cluster_events_received_total") ?? 0
            return live == 2 && received > 0
        }
        #expect(await WorkerProcessTests.metric(port, "collector_events_stored_total") != nil)
        // The cluster's operations have nothing to act on with one worker: refused, nothing changed.
        let drain = try await ExternalProcess.run(
            WorkerProcessTests.coordinatorBinary, ["drain", "solo"], environment: ["COORDINATOR_URL": base])
        #expect(drain.status == 1 && drain.stderr.contains("one in-process worker"), "\(drain.stderr)")
        // A second collector on the same data directory does not start (before it opens the spool).
        let twin = try await ExternalProcess.run(
            WorkerProcessTests.coordinatorBinary,
            ["serve", "--standalone", "--http-port", "0", "--data-dir", data], environment: environment)
        #expect(twin.status == 1 && twin.stderr.contains("another collector is running"), "\(twin.stderr)")
        #expect(!twin.stderr.contains("schema ready"), "it stopped before opening anything")
        #expect(first.isRunning)
        first.send(signal: SIGTERM)
        #expect(await first.waitForExit(timeout: .seconds(20)) == 0, "\(first.errorOutput.suffix(1500))")
        // Restarted on the same directory: the next term, both streams back (the API's one from the
        // saved subscriptions), at epochs above everything the first run reserved.
        let (second, again) = try await start()
        defer { second.stop() }
        try await ControlOverTCPTests.eventually("both streams live again") {
            let live = await WorkerProcessTests.live(again)
            return live.count == 2 && live.values.allSatisfy { $0.epoch > epochs.values.max() ?? 0 }
        }
        #expect((await WorkerProcessTests.json(again + "/api/v1/cluster"))["term"] as? Int == 2)
        second.send(signal: SIGTERM)
        #expect(await second.waitForExit(timeout: .seconds(20)) == 0, "\(second.errorOutput.suffix(1500))")
        await simulator.shutdown()
        await loop.shutdown()
    }
}
