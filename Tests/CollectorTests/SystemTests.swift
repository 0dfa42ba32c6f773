import Collector
import ExchangeSimulator
import Foundation
import MarketData
import PostgresClient
import Runtime
import TestSupport
import Testing

/// Black-box tests of the `coordinator` binary (built by `swift build --build-tests`).
@Suite struct CoordinatorProcessTests {
    static var binary: String { TestEnvironment.repositoryRoot + "/.build/debug/coordinator" }

    @Test func sigtermUnderLoadFlushesEveryAcknowledgedEventAndExitsZero() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let loop = try EventLoop.start(name: "system-test")
        var simConfig = SimulatorConfiguration()
        simConfig.barMilliseconds = 40
        simConfig.symbols = (0..<40).map { "SYM\($0)-USDT" }
        simConfig.updatesPerBar = 8
        let simulator = try await ExchangeSimulator.start(configuration: simConfig, loop: loop)
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "coordinator")
        // Settings from the file are used, not accepted and replaced (the spool bound once was).
        let config = data + "/collector.toml"
        try "[storage]\nspool_max_bytes = 3145728\ndatabase_timeout = 7\n[collector]\nshutdown_deadline = 20\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let process = try ExternalProcess(
            Self.binary,
            [
                "serve", "--standalone", "--http-port", "0", "--data-dir", data, "--timeframes", "1m,3m", "--config",
                config,
            ],
            environment: [
                "DATABASE_URL": database.conninfo, "MARKETS": simConfig.symbols.joined(separator: ","),
                "OKX_WS_BUSINESS_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/business",
                "OKX_WS_PUBLIC_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/public",
                "OKX_REST_URL": "http://127.0.0.1:\(simulator.restPort)", "BATCH_TIMEOUT": "0.2", "BATCH_SIZE": "500",
                "SQL_DIR": TestEnvironment.repositoryRoot + "/sql/init",
            ])
        let executor = PGExecutor(conninfo: database.conninfo)
        defer { executor.disconnect() }
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: .seconds(30))
        var rows = 0
        while clock.now < deadline && rows < 500 {
            try await Task.sleep(for: .milliseconds(100))
            #expect(process.isRunning, "coordinator exited early: \(process.errorOutput)")
            if !process.isRunning { break }
            // try?: the schema may not exist yet in the first moments.
            rows =
                (try? await executor.run { c throws(PGError) in try c.execute("SELECT count(*) FROM candles").scalar })
                .flatMap { $0 }.flatMap { Int($0) } ?? 0
        }
        #expect(rows >= 500, "collected only \(rows) rows")
        let collecting = process.errorOutput.split(separator: "\n").first { $0.contains(#""msg":"collecting""#) }
        let settings = try #require(
            try collecting.flatMap { try JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: String] })
        #expect(settings["spool.max_bytes"] == "3145728" && settings["database.timeout_seconds"] == "7.0")
        #expect(settings["shutdown.deadline_seconds"] == "20.0")
        process.send(signal: SIGTERM)
        // Within the configured shutdown deadline (20 s; past it the process exits 1), plus a margin.
        let status = await process.waitForExit(timeout: .seconds(25))
        #expect(status == 0, "exit status \(String(describing: status)): \(process.errorOutput.suffix(2000))")
        let stopped = process.errorOutput.split(separator: "\n").last { $0.contains(#""msg":"stopped""#) }
        let line = try #require(stopped, "no 'stopped' log line: \(process.errorOutput.suffix(1500))")
        let fields = try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: String])
        let acknowledged = Int(fields["events.acknowledged"] ?? "") ?? -1
        #expect(acknowledged > 0)
        #expect(
            fields["events.stored"] == "postgres=\(acknowledged)", "every acknowledged event stored: \(fields)")
        #expect(fields["spool.batches"] == "0")
        await simulator.shutdown()
        await loop.shutdown()
    }

    @Test func badSettingsStopStartUpWithAMessageAndExitCode() async throws {
        let result = try await ExternalProcess.run(
            Self.binary, ["serve", "--standalone"], environment: ["BATCH_SIZE": "lots"])
        #expect(result.status == 1)
        #expect(result.stderr.contains("BATCH_SIZE: expected an integer from 1 to 100000, got 'lots'"))
        let deadline = try await ExternalProcess.run(
            Self.binary, ["serve", "--standalone"], environment: ["SHUTDOWN_DEADLINE": "soon"])
        #expect(deadline.status == 1 && deadline.stderr.contains("SHUTDOWN_DEADLINE"), "\(deadline.stderr)")
        // A feed the exchange does not offer stops start-up by name instead of being dropped.
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "bad-config")
        try "[[markets]]\nsymbols = [\"BTC-USDT\"]\nfeeds = [\"candles\", \"book:50\"]\n".write(
            toFile: directory + "/c.toml", atomically: true, encoding: .utf8)
        let feeds = try await ExternalProcess.run(
            Self.binary, ["serve", "--standalone", "--config", directory + "/c.toml"],
            environment: ["DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none"])
        #expect(feeds.status == 1, "\(feeds.stderr)")
        #expect(feeds.stderr.contains("stream cannot be collected") && feeds.stderr.contains("okx/book:50/BTC-USDT"))
        // Unreadable files name the file and the reason.
        let missing = try await ExternalProcess.run(
            Self.binary, ["serve", "--standalone", "--config", directory + "/absent.toml"])
        #expect(
            missing.status == 1 && missing.stderr.contains("cannot read the config file")
                && missing.stderr.contains("absent.toml"), "\(missing.stderr)")
        let token = try await ExternalProcess.run(
            Self.binary, ["serve", "--standalone"],
            environment: [
                "API_TOKEN_FILE": directory + "/no-token", "DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none",
            ])
        #expect(token.status == 1 && token.stderr.contains("cannot read API_TOKEN_FILE"), "\(token.stderr)")
        #expect(token.stderr.contains("\"error\":"), "\(token.stderr)")
        let usage = try await ExternalProcess.run(Self.binary, ["serve", "--bogus"])
        #expect(usage.status == 64)
        let version = try await ExternalProcess.run(Self.binary, ["--version"])
        #expect(version.status == 0 && version.stdout.hasPrefix("coordinator "))
    }
}
