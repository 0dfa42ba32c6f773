import Foundation
import TestSupport
import Testing

/// A worker whose database is down when it starts: alive (`/health` 200) and saying why it is not
/// ready, retrying; once the database answers (a proxy to it starts on the address it was given),
/// its data plane starts.
@Suite struct WorkerStartTests {
    @Test func aWorkerStartedWithoutItsDatabaseIsAliveNotReadyAndStartsWhenItComes() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let upstream = try #require(URLComponents(string: database.conninfo))
        let dbPort = try await ClusterCoordinatorProcessTests.freePort()
        var unreachable = upstream
        unreachable.port = dbPort
        let controlPort = try await ClusterCoordinatorProcessTests.freePort()  // no coordinator there
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "worker-nodb")
        let worker = try ExternalProcess(
            WorkerProcessTests.workerBinary,
            ["--coordinator", "127.0.0.1:\(controlPort)", "--id", "w-nodb", "--http-port", "0", "--data-dir", data],
            environment: [
                "CLUSTER_SECRET": WorkerProcessTests.secret, "DATABASE_URL": try #require(unreachable.string),
                "SQL_DIR": TestEnvironment.repositoryRoot + "/sql/init", "DATABASE_TIMEOUT": "2",
            ])
        defer { worker.stop() }
        var port: String?
        try await ControlOverTCPTests.eventually("waiting for the database, listening") {
            port = WorkerProcessTests.logFields(worker, "http listening")?["http.port"]
            return port != nil || !worker.isRunning
        }
        let base = "http://127.0.0.1:\(try #require(port, "\(worker.errorOutput.suffix(1500))"))"
        #expect(await WorkerProcessTests.json(base + "/health")["status"] as? String == "ok")
        let ready = await WorkerProcessTests.json(base + "/ready")
        #expect(ready["ready"] as? Bool == false, "\(ready)")
        #expect((ready["reason"] as? String)?.contains("database is unavailable") == true, "\(ready)")
        #expect(worker.errorOutput.contains("cannot prepare the database: retrying"))
        // The database appears at the address the worker was given.
        let proxy = try ExternalProcess(
            TestEnvironment.python,
            [
                TestEnvironment.peerScript("tcp_proxy.py"), upstream.host ?? "127.0.0.1", String(upstream.port ?? 5432),
                String(dbPort),
            ])
        defer { proxy.stop() }
        _ = try await proxy.waitForLine(prefix: "LISTENING ")
        try await ControlOverTCPTests.eventually("the data plane started", timeout: .seconds(20)) {
            WorkerProcessTests.logFields(worker, "worker started") != nil || !worker.isRunning
        }
        #expect(worker.errorOutput.contains("the database is reachable: the data plane started"))
        // The same port, bound once before anything else.
        let started = try #require(WorkerProcessTests.logFields(worker, "worker started")?["http.port"])
        #expect(started == port)
        #expect(await WorkerProcessTests.json("http://127.0.0.1:\(started)/health")["status"] as? String == "ok")
        // Not joined to a coordinator (none listens): still not ready, for that reason now.
        let notJoined = await WorkerProcessTests.json("http://127.0.0.1:\(started)/ready")
        #expect(notJoined["ready"] as? Bool == false && notJoined["reason"] as? String != ready["reason"] as? String)
        worker.send(signal: SIGTERM)
        #expect(await worker.waitForExit(timeout: .seconds(30)) == 0, "\(worker.errorOutput.suffix(1500))")
    }
}
