import Collector
import CollectorCore
import Exchanges
import Foundation
import HTTP1Protocol
import Locking
import MarketData
import PostgresClient
import Runtime
import Synchronization
import TestSupport
import Testing
import WebSocketProtocol

/// A sink standing in for a second store (a Parquet sink arrives later): keeps what it is given in
/// memory and can be switched down, when every write fails as a lost connection would.
final class SwitchableSink: Sink {
    let name: String
    private let state = Locked<(isDown: Bool, batches: [[MarketEvent]])>((false, []))

    init(name: String = "double", isDown: Bool = false) {
        self.name = name
        state.withLock { $0.isDown = isDown }
    }

    func setDown(_ down: Bool) { state.withLock { $0.isDown = down } }
    var batches: [[MarketEvent]] { state.withLock { $0.batches } }

    func write(_ events: [MarketEvent]) async throws(SinkError) {
        let down = state.withLock { s -> Bool in
            if !s.isDown { s.batches.append(events) }
            return s.isDown
        }
        if down { throw SinkError(.transient, "test double is down") }
    }

    func flush() async throws(SinkError) {}
    func watermarks() async throws(SinkError) -> [StreamID: Watermark] { [:] }
}

/// The same conninfo URL with another port (for routing the sink through a fault proxy).
func replacingPort(in url: String, with port: Int) throws -> String {
    guard let at = url.lastIndex(of: "@"), let colon = url[at...].firstIndex(of: ":"),
        let slash = url[colon...].firstIndex(of: "/")
    else { throw ProcessFailure("cannot find the port in \(url)") }
    return String(url[...colon]) + String(port) + String(url[slash...])
}

func trade(_ id: Int, at t: Int64, symbol: String = "BTC-USDT", tradeID: String? = nil) -> MarketEvent {
    .trade(
        Trade(
            exchange: .okx, symbol: symbol, tradeID: tradeID ?? String(id), price: "42219.9", size: "0.5",
            side: id % 2 == 0 ? .buy : .sell, timestampExchange: t + Int64(id), timestampCollector: t + Int64(id) + 7))
}

@Suite struct SinkFaultTests {
    @Test func postgresBlackholedTheSpoolTakesOverReadyTurnsFalseAndNothingIsLost() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let upstream = try #require(URLComponents(string: database.conninfo))
        let proxy = try ExternalProcess(
            TestEnvironment.python,
            [TestEnvironment.peerScript("tcp_proxy.py"), upstream.host ?? "127.0.0.1", String(upstream.port ?? 5432)])
        defer { proxy.stop() }
        let port = try #require(Int(try await proxy.waitForLine(prefix: "LISTENING ").dropFirst(10)))
        var options = StorageOptions()
        options.sinkConninfo = try replacingPort(in: database.conninfo, with: port)
        options.timeouts = PGTimeouts(connectSeconds: 2, operation: .seconds(2))
        options.stallAfter = .seconds(1)
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"], storage: options)
        await harness.engine.subscribe([StreamID("okx/candles:1m/BTC-USDT")!])
        try await harness.waitUntil("3 bars through the proxy") {
            try await harness.storedConfirmed("BTC-USDT").count >= 3
        }
        // Ready before the fault (a write on a loaded machine may pass the 1 s stall bound for a moment).
        try await harness.waitUntil("ready before the fault") { harness.engine.storage.readiness.isReady }
        proxy.send(signal: SIGUSR1)  // packets dropped, sockets open: nothing refuses, nothing answers
        try await harness.waitUntil("/ready to turn false") { !harness.engine.storage.readiness.isReady }
        let reason = harness.engine.storage.readiness.reason ?? ""
        #expect(reason.contains("sink postgres unavailable"), "\(reason)")
        // The spool has taken over: batches are still acknowledged while nothing reaches the database.
        let acknowledged = harness.engine.acknowledgedEvents
        try await harness.waitUntil("batches acknowledged into the spool during the blackhole") {
            harness.engine.acknowledgedEvents >= acknowledged + 200
                && harness.engine.storage.spool.backlog(of: "postgres") >= 4
        }
        // The stuck write was given up at its deadline (a timeout, counted), not left hanging.
        try await harness.waitUntil("the timed-out write to be counted") {
            (harness.engine.storage.sinkStates.first?.transientErrors ?? 0) >= 1
        }
        proxy.send(signal: SIGUSR2)
        #expect(await harness.engine.storage.waitUntilDrained(timeout: .seconds(60)))
        try await harness.waitUntil("/ready again") { harness.engine.storage.readiness.isReady }
        try await harness.waitUntilContiguous("BTC-USDT", atLeast: 12)
        await harness.engine.shutdown()
        await harness.engine.storage.finish(timeout: .seconds(30))
        try await expectStoredMatchesSimulator(harness, "BTC-USDT")
        await harness.stop()
    }

    @Test func aFullSpoolPausesTheSocketsWithoutRecyclingThemAndLosesNothing() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let double = SwitchableSink(isDown: true)
        var options = StorageOptions()
        options.extraSinks = [double]
        options.spoolMaxBytes = 16 << 10  // about two batches: the spool fills within a second
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"], storage: options) {
            config in
            config.writerQueueBatches = 2
            config.staleAfter = .milliseconds(600)
            config.pingAfter = .milliseconds(200)
            config.keepaliveCheckInterval = .milliseconds(25)
        }
        let stream = StreamID("okx/candles:1m/BTC-USDT")!
        await harness.engine.subscribe([stream])
        // Paused reads while the spool is full (a slow fsync alone may pause them briefly first).
        try await harness.waitUntil("reads to pause behind the full spool") {
            harness.engine.isReadingPaused && harness.engine.storage.readiness.reason?.contains("spool full") == true
        }
        let reconnects = harness.engine.status.status(stream)?.reconnects
        // Paused for three stale timeouts: our own pause is not the exchange's silence.
        try await Task.sleep(for: .milliseconds(1800))  // the span being tested, not a wait for a condition
        #expect(harness.engine.status.status(stream)?.reconnects == reconnects)
        #expect(harness.engine.isReadingPaused)
        double.setDown(false)
        try await harness.waitUntil("reads to resume") { !harness.engine.isReadingPaused }
        try await harness.waitUntilContiguous("BTC-USDT", atLeast: 15)
        await harness.engine.shutdown()
        #expect(await harness.engine.storage.finish(timeout: .seconds(30)))
        try await expectStoredMatchesSimulator(harness, "BTC-USDT")
        // The second sink got everything PostgreSQL got, in order.
        let doubled = double.batches.flatMap { $0 }.compactMap { event -> Int64? in
            if case .candle(let c) = event, c.isConfirmed { return c.openTime }
            return nil
        }
        let stored = try await harness.storedConfirmed("BTC-USDT").compactMap { Int64($0[0]) }.map { $0 * 1000 }
        #expect(Set(doubled) == Set(stored))
        await harness.stop()
    }

    @Test func aPoisonBatchIsDeadLetteredAndEverythingBehindItIsStored() async throws {
        try await withMigratedDatabase { executor, _ in
            let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "poison")
            let letters = try DeadLetters(directory: directory + "/dead-letters")
            let postgres = PostgresSink(executor: executor)
            let storage = try SinkDispatcher(
                spool: try Spool(directory: directory + "/spool", maxBytes: 1 << 20), sinks: [postgres],
                deadLetters: letters)
            let observed = Locked<[GapRecord]>([])
            storage.observeRecordedGaps { records in observed.withLock { $0 += records } }
            storage.start()
            let t = UTCCalendar.microseconds(year: 2025, month: 8, day: 1)
            // PostgreSQL refuses a NUL byte in text for good (SQLSTATE 22021): a permanent error.
            let poisoned = (6...15).map { trade($0, at: t, tradeID: $0 == 11 ? "11\u{0}x" : nil) }
            await storage.append((1...5).map { trade($0, at: t) })
            await storage.append(poisoned)
            await storage.append((16...20).map { trade($0, at: t) })
            #expect(await storage.waitUntilDrained(timeout: .seconds(30)))
            let ids = try await executor.run { c throws(PGError) in
                try c.execute("SELECT trade_id FROM trades ORDER BY timestamp_exchange").rows.compactMap { $0[0] }
            }
            #expect(ids == (1...20).filter { $0 != 11 }.map(String.init))
            let state = try #require(storage.sinkStates.first)
            #expect(state.deadLettered == 1 && state.permanentErrors >= 1 && state.storedEvents == 19)
            #expect(storage.readiness.isReady)
            // The refusal is a `sink` gap: told to the observer (the engine's status and metrics) and
            // written to the ledger of the sink that refused it.
            let told = observed.withLock { $0 }
            #expect(told.count == 1 && told.first?.gap.cause == .sink && told.first?.gap.missing == 1, "\(told)")
            let ledger = try await executor.run { c throws(PGError) in
                try c.execute("SELECT cause, missing::text FROM gaps").rows.map { $0.map { $0 ?? "" } }
            }
            #expect(ledger == [["sink", "1"]])
            await storage.finish(timeout: .seconds(5))
            await letters.flush()
            let file = try String(contentsOfFile: directory + "/dead-letters/2025-08-01.jsonl", encoding: .utf8)
            let lines = file.split(separator: "\n")
            #expect(lines.count == 1)
            let record = try #require(
                try JSONSerialization.jsonObject(with: Data((lines.first ?? "").utf8)) as? [String: String])
            #expect(record["source"] == "sink:postgres")
            #expect(record["reason"]?.contains("refused by postgres") == true)
            #expect(record["reason"]?.contains("22021") == true, "\(record)")
            #expect(record["raw"]?.hasPrefix(#"["t","okx","BTC-USDT","11\u0000x""#) == true, "\(record)")
        }
    }

    @Test func twoSinksWhereOneIsDownTheOtherKeepsStoringAndBothEndComplete() async throws {
        try await withMigratedDatabase { executor, _ in
            let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "two-sinks")
            let postgres = PostgresSink(executor: executor)
            let double = SwitchableSink(isDown: true)
            let storage = try SinkDispatcher(
                spool: try Spool(directory: directory + "/spool", maxBytes: 1 << 20, sinks: ["postgres", "double"]),
                sinks: [postgres, double], deadLetters: try DeadLetters(directory: directory + "/dead"))
            storage.start()
            let t = UTCCalendar.microseconds(year: 2025, month: 9, day: 1)
            let batches = (0..<6).map { b in (0..<10).map { trade(b * 10 + $0, at: t) } }
            for batch in batches { await storage.append(batch) }
            func storedRows() async throws -> Int {
                try await executor.run { c throws(PGError) in
                    Int(try c.execute("SELECT count(*) FROM trades").scalar ?? "") ?? -1
                }
            }
            // PostgreSQL keeps storing while the other sink is down; the spool holds the rest for it.
            let clock = ContinuousClock()
            let deadline = clock.now.advanced(by: .seconds(20))
            while try await storedRows() < 60, clock.now < deadline {
                try await Task.sleep(for: .milliseconds(20))  // polling the database, not a timing assumption
            }
            #expect(try await storedRows() == 60)
            #expect(storage.spool.backlog(of: "double") == 6 && storage.spool.backlog(of: "postgres") == 0)
            #expect(storage.spool.batchCount == 6)
            #expect(storage.readiness.reason?.contains("sink double unavailable") == true)
            double.setDown(false)
            #expect(await storage.waitUntilDrained(timeout: .seconds(30)))
            // Every event, in order (the backlog may arrive joined into fewer, larger writes).
            #expect(double.batches.flatMap { $0 } == batches.flatMap { $0 })
            #expect(storage.spool.isEmpty && storage.readiness.isReady)
            await storage.finish(timeout: .seconds(5))
        }
    }

    @Test func watermarksSurviveARestartAndNeverGoBack() async throws {
        try await withMigratedDatabase { executor, _ in
            let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "marks")
            let t = UTCCalendar.microseconds(year: 2025, month: 10, day: 1)
            let btc = StreamID("okx/trades/BTC-USDT")!
            do {
                let storage = try SinkDispatcher(
                    spool: try Spool(directory: directory + "/spool", maxBytes: 1 << 20),
                    sinks: [PostgresSink(executor: executor)],
                    deadLetters: try DeadLetters(directory: directory + "/d"),
                    watermarkPath: directory + "/watermarks.json")
                storage.start()
                await storage.append([trade(7, at: t), trade(9, at: t), trade(8, at: t)])
                await storage.append([trade(3, at: t)])  // older: the watermark stays at trade 9
                #expect(await storage.waitUntilDrained(timeout: .seconds(20)))
                #expect(storage.storedWatermark(btc) == Watermark(time: t + 9, id: "9"))
                await storage.finish(timeout: .seconds(5))
            }
            // A new process reads it back from the file, without touching the tables.
            let reopened = try SinkDispatcher(
                spool: try Spool(directory: directory + "/spool", maxBytes: 1 << 20),
                sinks: [PostgresSink(executor: executor)], deadLetters: try DeadLetters(directory: directory + "/d"),
                watermarkPath: directory + "/watermarks.json")
            #expect(reopened.storedWatermark(btc) == Watermark(time: t + 9, id: "9"))
            // With a fresh data directory the database's watermark table answers.
            let fresh = try TestEnvironment.makeTemporaryDirectory(prefix: "marks-fresh")
            let fromDatabase = try SinkDispatcher(
                spool: try Spool(directory: fresh + "/spool", maxBytes: 1 << 20),
                sinks: [PostgresSink(executor: executor)], deadLetters: try DeadLetters(directory: fresh + "/d"),
                watermarkPath: fresh + "/watermarks.json")
            #expect(fromDatabase.storedWatermark(btc) == nil)
            #expect(await fromDatabase.watermarks()[btc] == Watermark(time: t + 9, id: "9"))
        }
    }

    @Test func retentionDropsExactlyThePartitionsPastTheAge() async throws {
        try await withMigratedDatabase { executor, _ in
            try await executor.run { c throws(PGError) in
                for month in 1...6 {
                    for table in ["trades", "candles"] {
                        _ = try c.execute(
                            "SELECT ensure_partition($1, $2::timestamptz)", [table, "2024-0\(month)-15T00:00:00Z"])
                    }
                }
            }
            // 2024-06-15 minus 60 days is 2024-04-16: January, February and March end before it; April does not.
            let now = UTCCalendar.microseconds(year: 2024, month: 6, day: 15)
            let dropped = try await RetentionPolicy(days: ["trades": 60]).apply(executor: executor, now: now)
            #expect(dropped == ["trades_2024_01", "trades_2024_02", "trades_2024_03"])
            let left = try await executor.run { c throws(PGError) in
                try c.execute(
                    """
                    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent IN ('trades'::regclass, 'candles'::regclass) AND c.relname LIKE '%2024%'
                    ORDER BY 1
                    """
                ).rows.compactMap { $0[0] }
            }
            #expect(left == (1...6).map { "candles_2024_0\($0)" } + (4...6).map { "trades_2024_0\($0)" })
            // A late row for a dropped month gets its partition back instead of failing.
            try await PostgresSink(executor: executor).write([
                trade(1, at: UTCCalendar.microseconds(year: 2024, month: 2, day: 2))
            ])
            #expect(try await RetentionPolicy(days: [DataType: Int]()).apply(executor: executor, now: now).isEmpty)
        }
    }

    @Test func retentionNamesOnlyWholeMonthsOlderThanTheCutoff() {
        let names = ["trades_2023_12", "trades_2024_01", "trades_2024_02", "trades_staging", "trades_2024_13"]
        let cutoff = UTCCalendar.microseconds(year: 2024, month: 2, day: 1)
        #expect(
            RetentionPolicy.expired(names, table: "trades", cutoff: cutoff) == ["trades_2023_12", "trades_2024_01"])
        #expect(RetentionPolicy.expired(names, table: "trades", cutoff: cutoff - 1) == ["trades_2023_12"])
    }
}

@Suite struct ExchangeLimitTests {
    @Test func webSocketLimitsComeFromTheExchangeAdapter() {
        let okx = OKXAdapter()
        // OKX's largest real message is a ~100 KiB books snapshot: 1 MiB, not a 16 MiB default for all.
        #expect(okx.limits.maxMessageBytes == 1 << 20)
        let configuration = ExchangeWebSocket.configuration(for: okx, connectTimeout: .seconds(3))
        #expect(configuration.connection.maxMessageBytes == okx.limits.maxMessageBytes)
        #expect(configuration.connection.maxFrameBytes == okx.limits.maxMessageBytes)
        #expect(configuration.connectTimeout == .seconds(3))
    }

    @Test func aStreamKeepsOnlyItsNewestGaps() {
        var status = StreamStatus(stream: StreamID("okx/candles:1m/BTC-USDT")!)
        let gaps = (0..<300).map { Gap(from: Int64($0), to: Int64($0), missing: 1, cause: .reconnect, reason: "r") }
        status.addGaps(Array(gaps[..<200]))
        status.addGaps(Array(gaps[200...]))
        #expect(status.gaps.count == StreamStatus.maxGaps)
        #expect(status.gaps.first?.from == Int64(300 - StreamStatus.maxGaps) && status.gaps.last?.from == 299)
        #expect(status.olderGaps == 300 - StreamStatus.maxGaps)
    }
}
