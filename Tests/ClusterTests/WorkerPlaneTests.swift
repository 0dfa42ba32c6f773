import Cluster
import Collector
import Configuration
import ControlProtocol
import ExchangeSimulator
import Exchanges
import Foundation
import Observability
import PostgresClient
import Runtime
import TestSupport
import Testing

/// The worker's data plane against the exchange simulator and PostgreSQL: what the session starts
/// reaches the engine with its window and resume point.
@Suite struct WorkerPlaneTests {
    /// A move's new owner waits for its cutover, subscribed; its old owner dies, and it is told to
    /// store at once from the old owner's last row: it must backfill from there, not only store
    /// from now on.
    @Test func aWaitingSuccessorToldToStoreNowBackfillsFromTheResumePoint() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let loop = try EventLoop.start(name: "worker-plane-test")
        var simConfig = SimulatorConfiguration()
        let symbol = "WP-USDT"
        simConfig.symbols = [symbol]
        simConfig.tradesPerBar = 20
        let simulator = try await ExchangeSimulator.start(configuration: simConfig, loop: loop)
        let rest = "http://127.0.0.1:\(simulator.restPort)"
        var settings = Settings()
        settings.dataDirectory = try TestEnvironment.makeTemporaryDirectory(prefix: "worker-plane")
        settings.okxPublicURL = "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/public"
        settings.okxBusinessURL = "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/business"
        settings.okxRESTURL = rest
        settings.batchTimeout = 0.2
        let data = try await DataPlane.start(
            settings: settings, environment: ["SQL_DIR": TestEnvironment.repositoryRoot + "/sql/init"],
            conninfo: database.conninfo, loop: loop, logger: .disabled)
        let plane = WorkerPlane(engine: data.engine, storage: data.storage, logger: .disabled)
        await plane.start(client: nil, pollInterval: .milliseconds(100))
        let shard = "okx/trades/\(symbol)"
        // A resume point 300 fills back, with that fill's own time.
        let head = await WorkerProcessTests.json("\(rest)/control/trades?instId=\(symbol)&from=1&to=1")
        let last = try #require(Int64(head["lastTradeId"] as? String ?? ""))
        let resumeID = last - 300
        let row = await WorkerProcessTests.json(
            "\(rest)/control/trades?instId=\(symbol)&from=\(resumeID)&to=\(resumeID)")
        let fill = try #require((row["trades"] as? [[String: Any]])?.first)
        let resumeTime = try #require(Int64(fill["ts"] as? String ?? "")) * 1000
        // The successor: subscribed, storing only from a cutover far ahead (the simulator's clock
        // runs 300 times faster than the wall's).
        plane.sessionAction(
            .start(Assignment(term: 1, shard: shard, epoch: 1, cutoverAt: Int64.max / 4)))
        try await ControlOverTCPTests.eventually("the stream flows") {
            data.engine.status.all().first?.state == .live
        }
        // Fills pushed to this subscription meanwhile are outside the window.
        try await ControlOverTCPTests.eventually("fills pushed while waiting for the cutover") {
            (await WorkerProcessTests.json("\(rest)/control/emitted-trades?instId=\(symbol)")["count"] as? Int ?? 0)
                > 20
        }
        let executor = PGExecutor(conninfo: database.conninfo)
        defer { executor.disconnect() }
        func stored() async throws -> (count: Int, low: Int64, high: Int64) {
            let r = try await executor.run { c throws(PGError) in
                try c.execute("SELECT count(*), min(trade_id::bigint), max(trade_id::bigint) FROM trades").rows
            }
            return (Int(r.first?[0] ?? "") ?? 0, Int64(r.first?[1] ?? "") ?? 0, Int64(r.first?[2] ?? "") ?? 0)
        }
        let early = try await stored()
        #expect(
            early.count == 0,
            "nothing stored before the cutover: \(early), resume \(resumeID), \(String(describing: data.engine.status.all().first))"
        )
        // Re-assigned at a newer epoch to store now, backfilling from the old owner's last row.
        plane.sessionAction(
            .start(
                Assignment(
                    term: 1, shard: shard, epoch: 2, resumeFrom: ResumePoint(time: resumeTime, id: "\(resumeID)"))))
        let deadline = ContinuousClock.now + .seconds(30)
        while ContinuousClock.now < deadline {
            let s = (try? await stored()) ?? (count: 0, low: 0, high: 0)
            if s.count > 300 && s.low <= resumeID + 1 && Int64(s.count) == s.high - s.low + 1 { break }
            try await Task.sleep(for: .milliseconds(200))
        }
        let status = data.engine.status.all().first
        #expect(await plane.epochs == [shard: 2])
        let s = try await stored()
        #expect(
            s.count > 300 && s.low <= resumeID + 1 && Int64(s.count) == s.high - s.low + 1,
            "stored \(s) (resume id \(resumeID)); status \(String(describing: status))")
        plane.stop()
        _ = await data.finish(timeout: .seconds(10))
        await simulator.shutdown()
        await loop.shutdown()
    }
}
