import Cluster
import ControlProtocol
import Foundation
import Observability
import Runtime
import TestSupport
import Testing

/// The `coordinator` binary in cluster mode, black-box: it refuses to start without a usable
/// secret, places a subscription on a worker that joins over TCP, reports it in
/// `GET /api/v1/cluster` and `/metrics`, and exits 0 on SIGTERM.
@Suite struct ClusterCoordinatorProcessTests {
    static var binary: String { TestEnvironment.repositoryRoot + "/.build/debug/coordinator" }

    @Test func withoutAUsableSecretTheCoordinatorDoesNotStart() async throws {
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "coordinator-secret")
        let missing = try await ExternalProcess.run(
            Self.binary, ["serve", "--data-dir", data], environment: ["CLUSTER_SECRET": "", "HTTP_PORT": "0"])
        #expect(missing.status == 1)
        #expect(missing.stderr.contains("CLUSTER_SECRET"), "\(missing.stderr)")
        let short = try await ExternalProcess.run(
            Self.binary, ["serve", "--data-dir", data], environment: ["CLUSTER_SECRET": "short", "HTTP_PORT": "0"])
        #expect(short.status == 1)
        #expect(short.stderr.contains("at least 16"), "\(short.stderr)")
        #expect(!short.stderr.contains("\"short\""), "the secret itself is not logged")
    }

    /// A port free right now (bound to 0, read back, released).
    static func freePort() async throws -> Int {
        let loop = try EventLoop.start(name: "free-port")
        let port: Int = try await withCheckedThrowingContinuation { continuation in
            loop.execute {
                do {
                    let listener = try TCPListener(host: "127.0.0.1", port: 0, loop: loop) { _ in }
                    let port = listener.port
                    listener.close()
                    continuation.resume(returning: port)
                } catch {
                    continuation.resume(throwing: error)
                }
            }
        }
        await loop.shutdown()
        return port
    }

    static func curl(_ arguments: [String]) async throws -> String {
        let result = try await ExternalProcess.run("/usr/bin/curl", ["-s", "--max-time", "5"] + arguments)
        return result.stdout
    }

    @Test func aJoinedWorkerRunsTheSubscriptionAndTheMapShowsIt() async throws {
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "coordinator-cluster")
        let controlPort = try await Self.freePort()
        let secret = "process-test-secret-0123456789"
        let process = try ExternalProcess(
            Self.binary, ["serve", "--data-dir", data, "--http-port", "0", "--control-port", "\(controlPort)"],
            environment: [
                "CLUSTER_SECRET": secret, "LEASE_TTL": "2", "HEARTBEAT_INTERVAL": "0.2", "API_RATE_LIMIT": "0",
                "MARKETS": "BTC-USDT",
            ])
        defer { process.stop() }
        try await ControlOverTCPTests.eventually("the coordinator is up") {
            process.errorOutput.contains(#""msg":"coordinating""#) || !process.isRunning
        }
        let line = try #require(
            process.errorOutput.split(separator: "\n").first { $0.contains(#""msg":"coordinating""#) },
            "\(process.errorOutput.suffix(1500))")
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        let http = try #require(fields["http.port"])
        #expect(fields["term"] == "1")
        // A subscription with two replicas, then a worker joins.
        let answer = try await Self.curl([
            "-X", "POST", "http://127.0.0.1:\(http)/api/v1/subscribe", "-H", "Content-Type: application/json",
            "-d", #"{"symbols": ["ETH-USDT"], "feeds": ["trades"], "replicas": 2}"#,
        ])
        #expect(answer.contains("okx/trades/ETH-USDT"), "\(answer)")
        let loop = try EventLoop.start(name: "process-worker")
        let box = ControlOverTCPTests.ClientBox()
        let worker = await ControlClient.start(
            endpoint: Endpoint(host: "127.0.0.1", port: controlPort),
            configuration: WorkerSession.Configuration(workerID: "w1", incarnation: 1, capacity: 100),
            secret: Array(secret.utf8), loop: loop, logger: .disabled
        ) { action in
            box.started(action)
        }
        box.attach(worker, on: loop)
        var document: [String: Any] = [:]
        try await ControlOverTCPTests.eventually("both streams live on w1") {
            let text = (try? await Self.curl(["http://127.0.0.1:\(http)/api/v1/cluster"])) ?? ""
            document = (try? JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]) ?? [:]
            let shards = document["shards"] as? [[String: Any]] ?? []
            return shards.count == 2 && shards.allSatisfy { $0["state"] as? String == "live" }
        }
        let shards = document["shards"] as? [[String: Any]] ?? []
        let eth = shards.first { $0["id"] as? String == "okx/trades/ETH-USDT" }
        #expect(eth?["owners"] as? [String] == ["w1"], "one worker: one of the two replicas")
        #expect(eth?["replicas"] as? Int == 2)
        let workers = document["workers"] as? [[String: Any]] ?? []
        #expect(workers.first?["id"] as? String == "w1")
        #expect((workers.first?["address"] as? String)?.hasPrefix("127.0.0.1") == true)
        #expect(document["mode"] as? String == "cluster" && document["term"] as? Int == 1)
        // The gauges follow within a tick.
        try await ControlOverTCPTests.eventually("the gauges show it") {
            let metrics = (try? await Self.curl(["http://127.0.0.1:\(http)/metrics"])) ?? ""
            return metrics.contains(#"collector_cluster_shards{state="live"} 2"#)
                && metrics.contains(#"collector_cluster_workers{state="live"} 1"#)
                && metrics.contains("collector_cluster_term 1")
        }
        await worker.stop()
        await loop.shutdown()
        process.send(signal: SIGTERM)
        let status = await process.waitForExit(timeout: .seconds(10))
        #expect(status == 0, "exit \(String(describing: status)): \(process.errorOutput.suffix(1500))")
        #expect(!process.errorOutput.contains(secret), "the secret is never logged")
    }
}
