import Collector
import CollectorCore
import ExchangeSimulator
import Exchanges
import Foundation
import HTTP1Protocol
import MarketData
import Observability
import PostgresClient
import Runtime
import Synchronization
import TestSupport
import Testing

/// How a harness stores: the PostgreSQL sink (optionally through another address), test-double
/// sinks beside it, and the spool's bound.
struct StorageOptions {
    var sinkConninfo: String?
    var timeouts = PGTimeouts.standard
    var extraSinks: [any Sink] = []
    var spoolMaxBytes = 64 << 20
    var stallAfter: Duration = .seconds(5)
}

/// A collector wired to an in-process exchange simulator and a real PostgreSQL database.
struct Harness {
    let loop: EventLoop
    let simulator: ExchangeSimulator
    let engine: CollectorEngine
    let executor: PGExecutor
    let dataDirectory: String
    let versions: StreamVersions

    static func start(
        conninfo: String, barMilliseconds: Int = 100, startTime: Int64? = nil,
        symbols: [String] = ["BTC-USDT", "ETH-USDT"], metrics: MetricsRegistry? = nil, logger: Logger = .disabled,
        storage options: StorageOptions = StorageOptions(),
        configure: (inout CollectorConfiguration) -> Void = { _ in },
        simulator configureSimulator: (inout SimulatorConfiguration) -> Void = { _ in }
    ) async throws -> Harness {
        let loop = try EventLoop.start(name: "e2e")
        var simConfig = SimulatorConfiguration()
        simConfig.barMilliseconds = barMilliseconds
        simConfig.startTime = startTime
        simConfig.startPaused = startTime != nil
        simConfig.symbols = symbols
        configureSimulator(&simConfig)
        let simulator = try await ExchangeSimulator.start(configuration: simConfig, loop: loop)
        let executor = PGExecutor(conninfo: conninfo)
        let directory = try #require(SchemaMigrator.locateSQLDirectory(environment: [:]))
        try await SchemaMigrator.migrate(try SchemaMigrator.migrations(in: directory), executor: executor)
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "collector-data")
        var config = CollectorConfiguration()
        config.okx = .init(
            publicURL: "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/public",
            businessURL: "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/business",
            restURL: "http://127.0.0.1:\(simulator.restPort)")
        config.batchSize = 50
        config.batchTimeout = .milliseconds(50)
        config.reconnectBackoff = Backoff(initial: .milliseconds(50), maximum: .milliseconds(200))
        configure(&config)
        let deadLetters = try DeadLetters(directory: data + "/dead-letters")
        let versions = StreamVersions()
        // The sink may reach the database another way (through a fault proxy) than the harness's reads.
        let sinkExecutor =
            options.sinkConninfo.map { PGExecutor(conninfo: $0, label: "e2e.sink", timeouts: options.timeouts) }
            ?? executor
        let postgres = PostgresSink(executor: sinkExecutor, versions: versions)
        let sinks: [any Sink] = [postgres] + options.extraSinks
        let storage = try SinkDispatcher(
            spool: try Spool(directory: data + "/spool", maxBytes: options.spoolMaxBytes, sinks: sinks.map(\.name)),
            sinks: sinks, deadLetters: deadLetters, watermarkPath: data + "/watermarks.json",
            stallAfter: options.stallAfter, logger: logger)
        let engine = await CollectorEngine.start(
            configuration: config, loop: loop, storage: storage, deadLetters: deadLetters,
            metrics: metrics.map { CollectorMetrics(registry: $0) }, logger: logger)
        return Harness(
            loop: loop, simulator: simulator, engine: engine, executor: executor, dataDirectory: data,
            versions: versions)
    }

    /// Starts the simulator's clock (harnesses with a fixed start time begin paused).
    func resumeClock() async throws {
        let request = HTTPRequest(head: HTTPRequestHead(method: "POST", target: "/control/resume"))
        _ = try await HTTPClient.send(request, to: Endpoint(host: "127.0.0.1", port: simulator.restPort), loop: loop)
    }

    func stop() async {
        await engine.shutdown()
        await engine.storage.finish(timeout: .seconds(10))
        await simulator.shutdown()
        executor.disconnect()
        await loop.shutdown()
    }

    /// Confirmed rows for `symbol`, oldest first: (open time µs, open, high, low, close, volume, quote volume).
    func storedConfirmed(_ symbol: String) async throws -> [[String]] {
        try await executor.run { c throws(PGError) in
            try c.execute(
                """
                SELECT ((extract(epoch FROM open_time) * 1000)::bigint)::text, open::text, high::text, low::text,
                       close::text, volume::text, quote_volume::text
                FROM candles WHERE symbol = $1 AND timeframe = '1m' AND confirmed ORDER BY open_time
                """, [symbol]
            ).rows.map { $0.map { $0 ?? "" } }
        }
    }

    /// The simulator's REST view of the same bars (`[ts, o, h, l, c, vol, volCcy]`), oldest first.
    func simulatorBars(_ symbol: String, after: String, through: String) async throws -> [[String]] {
        let before = String((Int64(after) ?? 0) - 1)
        let newerThanLast = String((Int64(through) ?? 0) + 1)
        let request = HTTPRequest(
            head: HTTPRequestHead(
                method: "GET",
                target:
                    "/api/v5/market/history-candles?instId=\(symbol)&bar=1m&after=\(newerThanLast)&before=\(before)&limit=100"
            ))
        let response = try await HTTPClient.send(
            request, to: Endpoint(host: "127.0.0.1", port: simulator.restPort), loop: loop)
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        let rows = (object?["data"] as? [[String]]) ?? []
        return rows.reversed().map { Array($0.prefix(7)) }
    }

    /// Waits until at least `count` confirmed bars are stored with no hole between the first and the
    /// last (a backfill may still be running when the count is first reached).
    func waitUntilContiguous(
        _ symbol: String, atLeast count: Int, sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let contiguous: () async throws -> Bool = {
            let times = try await storedConfirmed(symbol).compactMap { Int64($0[0]) }
            guard times.count >= count, let first = times.first, let last = times.last else { return false }
            return (last - first) / 60_000 + 1 == Int64(times.count)
        }
        try await waitUntil(
            "\(count) contiguous bars of \(symbol)", timeout: .seconds(20), contiguous, sourceLocation: sourceLocation)
    }

    /// Waits until `condition` holds (polling storage), failing after `timeout`.
    func waitUntil(
        _ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool,
        sourceLocation: SourceLocation = #_sourceLocation
    ) async throws {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if try await condition() { return }
            try await Task.sleep(for: .milliseconds(50))
        }
        Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
        throw ProcessFailure("timed out waiting for \(what)")
    }
}

/// Checks stored bars are contiguous and equal, field for field, to what the simulator serves.
func expectStoredMatchesSimulator(_ harness: Harness, _ symbol: String) async throws {
    let stored = try await harness.storedConfirmed(symbol)
    guard let first = stored.first?[0], let last = stored.last?[0] else {
        Issue.record("nothing stored for \(symbol)")
        return
    }
    _ = (first, last)
    // The simulator's REST pages hold 100 bars: compare in windows of at most that.
    var expected: [[String]] = []
    for start in stride(from: 0, to: stored.count, by: 100) {
        let window = stored[start..<min(start + 100, stored.count)]
        expected += try await harness.simulatorBars(
            symbol, after: window.first?[0] ?? "", through: window.last?[0] ?? "")
    }
    #expect(stored.count == expected.count, "\(symbol): stored \(stored.count) bars, simulator has \(expected.count)")
    // PostgreSQL's numeric text keeps the simulator's digits, so rows compare as text.
    #expect(stored == expected)
}

@Suite(.serialized) struct EndToEndTests {
    @Test func candlesFlowIntoMonthlyPartitionsWithExactValuesAndConfirmTransitions() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        // Virtual time starts four minutes before February: the bars cross a partition boundary.
        let start = UTCCalendar.microseconds(year: 2024, month: 1, day: 31) + 86_160_000_000
        let harness = try await Harness.start(conninfo: database.conninfo, startTime: start)
        let refused = await harness.engine.subscribe([
            StreamID("okx/candles:1m/BTC-USDT")!, StreamID("okx/candles:1m/ETH-USDT")!,
        ])
        #expect(refused.isEmpty)
        try await harness.waitUntil("the subscriptions to go live") {
            harness.engine.status.all().allSatisfy { $0.state == .live }
        }
        try await harness.resumeClock()
        // See an unconfirmed row become confirmed.
        var sawUnconfirmed: String?
        try await harness.waitUntil("an unconfirmed BTC bar") {
            let row = try await harness.executor.run { c throws(PGError) in
                try c.execute(
                    "SELECT (extract(epoch FROM open_time) * 1000)::bigint::text FROM candles WHERE NOT confirmed AND symbol = 'BTC-USDT' LIMIT 1"
                ).scalar
            }
            sawUnconfirmed = row
            return row != nil
        }
        try await harness.waitUntil("10 confirmed bars per symbol") {
            let btc = try await harness.storedConfirmed("BTC-USDT").count
            let eth = try await harness.storedConfirmed("ETH-USDT").count
            return btc >= 10 && eth >= 10
        }
        await harness.engine.shutdown()
        if let t = sawUnconfirmed {
            let confirmed = try await harness.executor.run { c throws(PGError) in
                try c.execute(
                    "SELECT confirmed::text FROM candles WHERE symbol = 'BTC-USDT' AND open_time = to_timestamp($1::bigint / 1000.0)",
                    [t]
                ).scalar
            }
            #expect(confirmed == "true", "bar \(t) went from unconfirmed to confirmed")
        }
        try await expectStoredMatchesSimulator(harness, "BTC-USDT")
        try await expectStoredMatchesSimulator(harness, "ETH-USDT")
        let partitions = try await harness.executor.run { c throws(PGError) in
            try c.execute(
                """
                SELECT tableoid::regclass::text, min(open_time AT TIME ZONE 'UTC')::text FROM candles
                GROUP BY 1 ORDER BY 1
                """
            ).rows
        }
        #expect(partitions.map { $0[0] } == ["candles_2024_01", "candles_2024_02"])
        #expect(partitions.first?[1] == "2024-01-31 23:56:00")
        await harness.stop()
    }

    /// A shutdown while a REST backfill runs waits for it (bounded), so the hole it fills is stored:
    /// the live bars after the hole are already stored, so a lost reply would be a hole that no
    /// watermark reveals at the next start.
    @Test func shutdownWhileABackfillRunsStoresTheBackfilledBars() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"])
        let rest = Endpoint(host: "127.0.0.1", port: harness.simulator.restPort)
        func control(_ target: String) async throws {
            _ = try await HTTPClient.send(
                HTTPRequest(head: HTTPRequestHead(method: "POST", target: target)), to: rest, loop: harness.loop)
        }
        await harness.engine.subscribe([StreamID("okx/candles:1m/BTC-USDT")!])
        try await harness.waitUntil("3 confirmed bars") { try await harness.storedConfirmed("BTC-USDT").count >= 3 }
        try await control("/control/rest-delay?ms=1500")
        try await control("/control/disconnect?pause_ms=500")
        try await harness.waitUntil("a backfill running") { harness.engine.runningBackfills > 0 }
        await harness.engine.shutdown()
        #expect(harness.engine.runningBackfills == 0, "shutdown waited for the backfill")
        #expect(await harness.engine.storage.finish(timeout: .seconds(30)))
        try await control("/control/rest-delay?ms=0")
        let stored = try await harness.storedConfirmed("BTC-USDT").map { Int64($0[0])! }
        let expected = stride(from: stored.first!, through: stored.last!, by: 60_000).map { $0 }
        #expect(stored == expected, "no hole: the backfill's bars were stored")
        #expect(harness.engine.status.status(StreamID("okx/candles:1m/BTC-USDT")!)?.backfilledBars ?? 0 > 0)
        await harness.stop()
    }

    /// A backfill still running when the shutdown wait ends is abandoned, and its hole is recorded
    /// as gaps (never lost without a trace).
    @Test func aBackfillAbandonedAtShutdownIsRecordedAsGaps() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"]) { config in
            config.backfillShutdownWait = .milliseconds(200)
        }
        let rest = Endpoint(host: "127.0.0.1", port: harness.simulator.restPort)
        func control(_ target: String) async throws {
            _ = try await HTTPClient.send(
                HTTPRequest(head: HTTPRequestHead(method: "POST", target: target)), to: rest, loop: harness.loop)
        }
        let stream = StreamID("okx/candles:1m/BTC-USDT")!
        await harness.engine.subscribe([stream])
        try await harness.waitUntil("3 confirmed bars") { try await harness.storedConfirmed("BTC-USDT").count >= 3 }
        try await control("/control/rest-delay?ms=5000")
        try await control("/control/disconnect?pause_ms=500")
        try await harness.waitUntil("a backfill running") { harness.engine.runningBackfills > 0 }
        await harness.engine.shutdown()
        #expect(harness.engine.runningBackfills == 0)
        let gaps = harness.engine.status.status(stream)?.gaps ?? []
        #expect(!gaps.isEmpty && gaps.allSatisfy { $0.reason == "shutdown before the REST backfill finished" })
        #expect(await harness.engine.storage.finish(timeout: .seconds(30)))
        try await control("/control/rest-delay?ms=0")
        await harness.stop()
    }

    @Test func droppedConnectionIsBackfilledFromREST() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"])
        await harness.engine.subscribe([StreamID("okx/candles:1m/BTC-USDT")!])
        try await harness.waitUntil("3 confirmed bars") { try await harness.storedConfirmed("BTC-USDT").count >= 3 }
        // Cut the connection and refuse reconnects for ~8 bars.
        let cut = HTTPRequest(head: HTTPRequestHead(method: "POST", target: "/control/disconnect?pause_ms=800"))
        _ = try await HTTPClient.send(
            cut, to: Endpoint(host: "127.0.0.1", port: harness.simulator.restPort), loop: harness.loop)
        try await harness.waitUntilContiguous("BTC-USDT", atLeast: 16)
        await harness.engine.shutdown()
        let stored = try await harness.storedConfirmed("BTC-USDT").map { Int64($0[0])! }
        // The simulator's WebSocket never delivered the bars of the outage…
        let emittedRequest = HTTPRequest(
            head: HTTPRequestHead(method: "GET", target: "/control/emitted?instId=BTC-USDT&bar=1m"))
        let emittedResponse = try await HTTPClient.send(
            emittedRequest, to: Endpoint(host: "127.0.0.1", port: harness.simulator.restPort), loop: harness.loop)
        let emitted = Set(
            ((try JSONSerialization.jsonObject(with: Data(emittedResponse.body)) as? [String: Any])?["confirmed"]
                as? [Int64]) ?? [])
        let range = stored.first!...stored.last!
        let expected = stride(from: range.lowerBound, through: range.upperBound, by: 60_000).map { $0 }
        let missedByWebSocket = expected.filter { !emitted.contains($0) }
        #expect(missedByWebSocket.count >= 4, "the outage should have hidden bars from the WebSocket")
        // …yet storage has every bar, no hole.
        #expect(stored == expected)
        let status = try #require(harness.engine.status.status(StreamID("okx/candles:1m/BTC-USDT")!))
        #expect(status.backfilledBars >= missedByWebSocket.count)
        // The hole is in the ledger, marked recovered.
        #expect(!status.gaps.isEmpty && status.gaps.allSatisfy(\.recovered), "\(status.gaps)")
        #expect(status.reconnects >= 1)
        try await expectStoredMatchesSimulator(harness, "BTC-USDT")
        await harness.stop()
    }

    @Test func rejectedSubscriptionShowsTheErrorWhileOthersFlow() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let logs = InMemoryLogHandler()
        let harness = try await Harness.start(
            conninfo: database.conninfo, symbols: ["BTC-USDT"], logger: Logger(label: "test", handler: logs))
        let bad = StreamID("okx/candles:1m/NOPE-USDT")!
        await harness.engine.subscribe([StreamID("okx/candles:1m/BTC-USDT")!, bad])
        try await harness.waitUntil("the refusal") { harness.engine.status.status(bad)?.state == .rejected }
        try await harness.waitUntil("BTC bars") { try await harness.storedConfirmed("BTC-USDT").count >= 3 }
        let status = try #require(harness.engine.status.status(bad))
        #expect(status.rejection?.code == "60018")
        #expect(status.rejection?.message.contains("NOPE-USDT") == true)
        #expect(status.messages == 0)
        let refusal = logs.all.first { $0.message == "subscription refused" }
        // A refusal is degraded service that heals (retried at most every 5 minutes): a warning, logged once.
        #expect(refusal?.level == .warning)
        #expect(logs.all.filter { $0.message == "subscription refused" }.count == 1)
        #expect(
            refusal?.metadata["stream"] == "okx/candles:1m/NOPE-USDT" && refusal?.metadata["exchange.code"] == "60018")
        #expect(refusal?.metadata["ws.venue"] == "okx")
        await harness.stop()
    }
}

@Suite struct PostgresOutageTests {
    @Test func postgresStoppedAndRestartedMidStreamLosesNoCandle() async throws {
        let server = try await TestPostgresServer.start()
        let harness = try await Harness.start(conninfo: server.conninfo)
        await harness.engine.subscribe([StreamID("okx/candles:1m/BTC-USDT")!, StreamID("okx/candles:1m/ETH-USDT")!])
        try await harness.waitUntil("3 bars before the outage") {
            try await harness.storedConfirmed("BTC-USDT").count >= 3
        }
        try await server.pause()
        try await harness.waitUntil("the sink to be reported down") { !harness.engine.storage.readiness.isReady }
        try await harness.waitUntil("several batches held in the spool") {
            harness.engine.storage.spool.backlog(of: "postgres") >= 5
        }
        try await server.resume()
        let drained = await harness.engine.storage.waitUntilDrained(timeout: .seconds(30))
        #expect(drained)
        try await harness.waitUntilContiguous("BTC-USDT", atLeast: 20)
        await harness.engine.shutdown()
        #expect(harness.engine.storage.readiness.isReady)
        try await expectStoredMatchesSimulator(harness, "BTC-USDT")
        try await expectStoredMatchesSimulator(harness, "ETH-USDT")
        await harness.stop()
        await server.destroy()
    }
}

@Suite struct ServiceUpgradeNoticeTests {
    @Test func okx64008NoticeMakesTheCollectorReconnectWithoutAHole() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"])
        let stream = StreamID("okx/candles:1m/BTC-USDT")!
        await harness.engine.subscribe([stream])
        try await harness.waitUntil("3 bars") { try await harness.storedConfirmed("BTC-USDT").count >= 3 }
        #expect(harness.engine.status.status(stream)?.reconnects == 0)
        let notice = HTTPRequest(head: HTTPRequestHead(method: "POST", target: "/control/notice"))
        _ = try await HTTPClient.send(
            notice, to: Endpoint(host: "127.0.0.1", port: harness.simulator.restPort), loop: harness.loop)
        try await harness.waitUntil("a reconnect after the notice") {
            (harness.engine.status.status(stream)?.reconnects ?? 0) >= 1
                && harness.engine.status.status(stream)?.state == .live
        }
        let before = try await harness.storedConfirmed("BTC-USDT").count
        try await harness.waitUntilContiguous("BTC-USDT", atLeast: before + 3)
        await harness.engine.shutdown()
        // Compare a settled store: everything acknowledged (including backfills that were running at
        // shutdown) has reached PostgreSQL.
        #expect(await harness.engine.storage.finish(timeout: .seconds(30)))
        let stored = try await harness.storedConfirmed("BTC-USDT").map { Int64($0[0])! }
        let expected = stride(from: stored.first!, through: stored.last!, by: 60_000).map { $0 }
        #expect(stored == expected)
        // A hole the early reconnect left, if any, was made whole from REST.
        #expect(harness.engine.status.status(stream)?.gaps.allSatisfy(\.recovered) == true)
        await harness.stop()
    }
}

@Suite struct KeepaliveTests {
    func control(_ harness: Harness, _ target: String) async throws -> [String: Any] {
        let response = try await HTTPClient.send(
            HTTPRequest(
                head: HTTPRequestHead(method: target.hasPrefix("/control/status") ? "GET" : "POST", target: target)),
            to: Endpoint(host: "127.0.0.1", port: harness.simulator.restPort), loop: harness.loop)
        return (try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:]
    }

    @Test func textPingAfterSilenceKeepsTheConnectionAndAStaleOneIsRecycled() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"]) { config in
            config.pingAfter = .milliseconds(150)
            // Generous: parallel test suites can starve the loop for a second on two cores.
            config.staleAfter = .milliseconds(3000)
            config.keepaliveCheckInterval = .milliseconds(25)
        }
        let stream = StreamID("okx/candles:1m/BTC-USDT")!
        await harness.engine.subscribe([stream])
        try await harness.waitUntil("2 bars") { try await harness.storedConfirmed("BTC-USDT").count >= 2 }
        // Silent but answering pings: the collector pings (OKX text "ping") and keeps the connection.
        _ = try await control(harness, "/control/silence?ms=1000&pong=1")
        try await harness.waitUntil("a ping during the silence") {
            (try await control(harness, "/control/status")["pings"] as? Int ?? 0) >= 1
        }
        try await harness.waitUntil("data again") { try await harness.storedConfirmed("BTC-USDT").count >= 6 }
        #expect(harness.engine.status.status(stream)?.reconnects == 0)
        // Silent and not answering: past the stale timeout the connection is recycled.
        _ = try await control(harness, "/control/silence?ms=8000&pong=0")
        try await harness.waitUntil("a recycled connection") {
            (harness.engine.status.status(stream)?.reconnects ?? 0) >= 1
        }
        #expect(harness.engine.status.status(stream)?.lastError?.contains("no data for") == true)
        await harness.stop()
    }
}
