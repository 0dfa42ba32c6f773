import Foundation
import TestSupport
import Testing

/// exchange-sim and collector-bench follow the same conventions as coordinator and worker: `--help`
/// listing everything, `--version`, one-line usage errors with exit 64; exchange-sim prints its
/// symbols, the env lines to eval, and names what it has when it refuses an instrument.
@Suite struct ToolCLITests {
    static let simulator = TestEnvironment.repositoryRoot + "/.build/debug/exchange-sim"
    static let bench = TestEnvironment.repositoryRoot + "/.build/debug/collector-bench"

    @Test func helpVersionAndBadUsage() async throws {
        let help = try await ExternalProcess.run(Self.bench, ["--help"])
        #expect(help.status == 0)
        for mode in [
            "ws-sender", "ws-receive", "parse-okx", "ws-parse", "parse-trades", "pg-upsert", "pg-trades", "book-sync",
            "failover", "cluster-load", "cluster-document",
        ] {
            #expect(help.stdout.contains("  \(mode) "), "\(mode) missing from collector-bench --help")
        }
        for (binary, name) in [(Self.bench, "collector-bench"), (Self.simulator, "exchange-sim")] {
            let version = try await ExternalProcess.run(binary, ["--version"])
            #expect(version.status == 0 && version.stdout == "\(name) 0.3.0-dev\n", "\(version.stdout)")
            let bad = try await ExternalProcess.run(binary, name == "exchange-sim" ? ["--bogus"] : ["bogus"])
            #expect(bad.status == 64, "\(name)")
            #expect(
                bad.stderr.hasPrefix("\(name): ") && bad.stderr.hasSuffix("(see \(name) --help)\n"), "\(bad.stderr)")
            #expect(bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        }
        let coordinator = TestEnvironment.repositoryRoot + "/.build/debug/coordinator"
        let statusHelp = try await ExternalProcess.run(coordinator, ["drain", "--help"])
        #expect(statusHelp.status == 0 && statusHelp.stdout.contains("coordinator move SHARD --to WORKER"))
        let drain = try await ExternalProcess.run(coordinator, ["drain"])
        #expect(drain.status == 64, "\(drain.stderr)")
        #expect(
            drain.stderr == "coordinator: drain needs one worker id (see coordinator drain --help)\n", "\(drain.stderr)"
        )
        let simHelp = try await ExternalProcess.run(Self.simulator, ["--help"])
        #expect(simHelp.status == 0 && simHelp.stdout.contains("--print-env") && simHelp.stdout.contains("SOL-USDT"))
        let missing = try await ExternalProcess.run(Self.simulator, ["--bar-ms"])
        #expect(missing.status == 64 && missing.stderr.contains("--bar-ms needs a value"), "\(missing.stderr)")
    }

    /// `cluster/sim.sh start` prints export lines whose URLs answer, with SOL-USDT among the
    /// default symbols; an unknown instrument's 60018 names it and `--symbols`.
    @Test func simShPrintsEnvLinesThatWork() async throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "sim-sh")
        let script = TestEnvironment.repositoryRoot + "/cluster/sim.sh"
        let started = try await ExternalProcess.run(
            "/bin/bash", [script, "start", directory], environment: ["SIM_BIN": Self.simulator])
        #expect(started.status == 0, "\(started.stderr)")
        defer { _ = try? FileManager.default.removeItem(atPath: directory) }
        var exports: [String: String] = [:]
        for line in started.stdout.split(separator: "\n") {
            #expect(line.hasPrefix("export "), "\(line)")
            let pair = line.dropFirst("export ".count).split(separator: "=", maxSplits: 1)
            if pair.count == 2 { exports[String(pair[0])] = String(pair[1]) }
        }
        #expect(started.stderr.contains("SOL-USDT"), "\(started.stderr)")
        let rest = try #require(exports["OKX_REST_URL"])
        #expect(exports["OKX_WS_BUSINESS_URL"]?.hasSuffix("/ws/v5/business") == true)
        #expect(exports["OKX_WS_PUBLIC_URL"]?.hasSuffix("/ws/v5/public") == true)
        #expect(exports["EXCHANGE_SIM_PID"] != nil)
        let candles = try await ExternalProcess.run(
            "/usr/bin/curl", ["-s", "--max-time", "5", rest + "/api/v5/market/candles?instId=SOL-USDT&bar=1m&limit=1"])
        #expect(candles.stdout.hasPrefix(#"{"code":"0""#), "\(candles.stdout)")
        // The refusal, over the WebSocket, with an independent client.
        let ws = try #require(exports["OKX_WS_BUSINESS_URL"])
        let probe = """
            import asyncio, json, sys, websockets
            async def main():
                async with websockets.connect(sys.argv[1]) as c:
                    await c.send(json.dumps({"op": "subscribe", "args": [{"channel": "candle1m", "instId": "NOPE-USDT"}]}))
                    print(await asyncio.wait_for(c.recv(), 5))
            asyncio.run(main())
            """
        let refused = try await ExternalProcess.run(TestEnvironment.python, ["-c", probe, ws])
        #expect(refused.stdout.contains(#""code":"60018""#), "\(refused.stdout)\(refused.stderr)")
        #expect(refused.stdout.contains("NOPE-USDT") && refused.stdout.contains("--symbols"), "\(refused.stdout)")
        let stopped = try await ExternalProcess.run("/bin/bash", [script, "stop", directory])
        #expect(stopped.status == 0)
        let usage = try await ExternalProcess.run("/bin/bash", [script])
        #expect(usage.status == 64 && usage.stderr.contains("start or stop"), "\(usage.stderr)")
    }
}
