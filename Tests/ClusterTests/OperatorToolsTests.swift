import ExchangeSimulator
import Foundation
import HTTP1Protocol
import Runtime
import TestSupport
import Testing

/// What a new operator meets (issue 12): `config check`, `data list|export`, the bind address, the
/// pinned stream's origin in a 409, a refused subscription listed as refused, the port bound before
/// anything starts, one usage-error format, and the README's API examples run against a collector.
@Suite struct OperatorToolsTests {
    static var coordinator: String { WorkerProcessTests.coordinatorBinary }

    @Test func configCheckNamesEverySettingsSourceAndHidesSecrets() async throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "config-check")
        let file = directory + "/collector.toml"
        try "[collector]\nhttp_port = 8123\n\n[[markets]]\nsymbols = [\"ETH-USDT\"]\nfeeds = [\"trades\"]\n".write(
            toFile: file, atomically: true, encoding: .utf8)
        let result = try await ExternalProcess.run(
            Self.coordinator, ["config", "check", "--standalone", "--config", file, "--log-level", "debug"],
            environment: ["BATCH_SIZE": "250", "DATABASE_URL": "postgresql://u:hunter2@db/x", "API_TOKEN": "s3cret"])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        func row(_ name: String) -> String? { lines.first { $0.hasPrefix(name + " ") } }
        #expect(row("collector.http_port")?.contains("\(file) line 2") == true, "\(result.stdout)")
        #expect(row("collector.log_level")?.contains("flag --log-level") == true, "\(result.stdout)")
        #expect(row("storage.batch_size")?.contains("environment BATCH_SIZE") == true, "\(result.stdout)")
        #expect(row("collector.data_dir")?.hasSuffix("default") == true, "\(result.stdout)")
        #expect(!result.stdout.contains("hunter2") && !result.stdout.contains("s3cret"), "\(result.stdout)")
        #expect(row("DATABASE_URL")?.contains(" set ") == true, "\(result.stdout)")
        // A token set: every address; the pinned stream with the file's line.
        #expect(row("(effective) http listen")?.contains("0.0.0.0:8123") == true, "\(result.stdout)")
        #expect(
            lines.contains { $0.contains("okx/trades/ETH-USDT") && $0.contains("\(file) line 4") }, "\(result.stdout)")
        // An invalid setting: exit 1, one line naming it; nothing started.
        let bad = try await ExternalProcess.run(
            Self.coordinator, ["config", "check", "--standalone"], environment: ["BATCH_SIZE": "many"])
        #expect(bad.status == 1, "\(bad.stdout)")
        #expect(
            bad.stderr.hasPrefix("coordinator: invalid setting") && bad.stderr.contains("BATCH_SIZE"), "\(bad.stderr)")
        #expect(bad.stderr.split(separator: "\n").count == 1, "\(bad.stderr)")
        // Without a token the API listens on loopback only.
        let open = try await ExternalProcess.run(Self.coordinator, ["config", "check", "--standalone"])
        #expect(open.stdout.contains("127.0.0.1:8000"), "\(open.stdout)")
    }

    @Test func everyExecutableAnswersHelpVersionAndBadUsageTheSameWay() async throws {
        for binary in [Self.coordinator, WorkerProcessTests.workerBinary] {
            let name = URL(fileURLWithPath: binary).lastPathComponent
            let help = try await ExternalProcess.run(binary, ["--help"])
            #expect(help.status == 0 && help.stdout.contains("usage:") && help.stdout.contains("exit codes"), "\(name)")
            let version = try await ExternalProcess.run(binary, ["--version"])
            #expect(version.status == 0 && version.stdout.hasPrefix("\(name) "), "\(name): \(version.stdout)")
        }
        for arguments in [
            ["frobnicate"], ["serve", "--nope"], ["serve", "--markets"], ["data", "explode"], ["config"],
        ] {
            let result = try await ExternalProcess.run(Self.coordinator, arguments)
            #expect(result.status == 64, "\(arguments): \(result.stderr)")
            #expect(result.stderr.hasPrefix("coordinator: "), "\(arguments): \(result.stderr)")
            #expect(result.stderr.split(separator: "\n").count == 1, "\(arguments): \(result.stderr)")
        }
        let dataHelp = try await ExternalProcess.run(Self.coordinator, ["data", "--help"])
        #expect(dataHelp.status == 0 && dataHelp.stdout.contains("data export SYMBOL FEED"))
    }

    @Test func aPortInUseStopsStartUpBeforeAnythingElse() async throws {
        let loop = try EventLoop.start(name: "port-in-use")
        let holder = try await HTTPServer.start(
            configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), loop: loop
        ) {
            _ in HTTPResponse(status: 200)
        }
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "port-in-use")
        let result = try await ExternalProcess.run(
            Self.coordinator, ["serve", "--standalone", "--http-port", "\(holder.port)", "--data-dir", data],
            environment: ["DATABASE_URL": "postgresql://nobody@127.0.0.1:1/none", "HTTP_ADDR": "127.0.0.1"])
        #expect(result.status == 1, "\(result.stderr)")
        #expect(result.stderr.contains("cannot listen for HTTP"), "\(result.stderr)")
        #expect(!result.stderr.contains("schema") && !result.stderr.contains("collecting"), "\(result.stderr)")
        await holder.shutdown(deadline: .milliseconds(100))
        await loop.shutdown()
    }

    /// One standalone collector against the simulator: the stored-data tools, the 404, the 409's
    /// origin, a refused subscription listed as refused, and every curl example of the README's API
    /// section run as written (its host replaced).
    @Test func theStoredDataToolsAndTheReadmeExamplesAgainstARunningCollector() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let loop = try EventLoop.start(name: "operator-tools")
        var simConfig = SimulatorConfiguration()
        simConfig.symbols = ["BTC-USDT", "ETH-USDT"]
        let simulator = try await ExchangeSimulator.start(configuration: simConfig, loop: loop)
        let data = try TestEnvironment.makeTemporaryDirectory(prefix: "operator-tools")
        let process = try ExternalProcess(
            Self.coordinator, ["serve", "--standalone", "--http-port", "0", "--data-dir", data],
            environment: [
                "DATABASE_URL": database.conninfo, "MARKETS": "BTC-USDT", "WORKER_ID": "solo",
                "OKX_WS_BUSINESS_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/business",
                "OKX_WS_PUBLIC_URL": "ws://127.0.0.1:\(simulator.webSocketPort)/ws/v5/public",
                "OKX_REST_URL": "http://127.0.0.1:\(simulator.restPort)", "BATCH_TIMEOUT": "0.2",
                "SQL_DIR": TestEnvironment.repositoryRoot + "/sql/init", "API_RATE_LIMIT": "0",
            ])
        defer { process.stop() }
        var listening: [String: String]?
        try await ControlOverTCPTests.eventually("listening") {
            listening = WorkerProcessTests.logFields(process, "http listening")
            return listening != nil || !process.isRunning
        }
        let fields = try #require(listening, "\(process.errorOutput.suffix(1500))")
        // No API_TOKEN: loopback only.
        #expect(fields["http.address"] == "127.0.0.1")
        let port = try #require(fields["http.port"])
        let base = "http://127.0.0.1:\(port)"
        let environment = ["COORDINATOR_URL": base]
        try await ControlOverTCPTests.eventually("candles stored", timeout: .seconds(30)) {
            let listed = try? await ExternalProcess.run(Self.coordinator, ["data", "list"], environment: environment)
            return listed?.stdout.contains("okx/candles:1m/BTC-USDT") == true
        }
        let listed = try await ExternalProcess.run(Self.coordinator, ["data", "list"], environment: environment)
        #expect(listed.status == 0 && listed.stdout.hasPrefix("STREAM"), "\(listed.stdout)\(listed.stderr)")
        let listing = try await ClusterCoordinatorProcessTests.curl([base + "/api/v1/data"])
        #expect(try await validateAgainstOpenAPI(listing, schema: "StoredStreams").isEmpty, "\(listing)")
        // Export: the CSV's rows are the stored ones, header first; JSON lines parse one by one.
        let csv = try await ExternalProcess.run(
            Self.coordinator, ["data", "export", "BTC-USDT", "1m", "--format", "csv"], environment: environment)
        #expect(csv.status == 0, "\(csv.stderr)")
        let csvLines = csv.stdout.split(separator: "\n")
        #expect(
            csvLines.first?.hasPrefix("close,confirmed,high,low,open,open_time") == true, "\(csv.stdout.prefix(300))")
        #expect(csvLines.count >= 2 && csv.stderr.contains("exported \(csvLines.count - 1) rows"), "\(csv.stderr)")
        let jsonl = try await ExternalProcess.run(
            Self.coordinator, ["data", "export", "BTC-USDT", "1m", "--format", "jsonl", "--start", "0"],
            environment: environment)
        let objects = jsonl.stdout.split(separator: "\n").compactMap {
            try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any]
        }
        #expect(objects.count >= csvLines.count - 1 && objects.allSatisfy { $0["open_time"] is String })
        // An unknown stream: 404, from the API and the CLI alike.
        let unknown = try await ExternalProcess.run(
            "/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", base + "/api/v1/data/NOPE-USDT/trades"])
        #expect(unknown.stdout == "404")
        let unknownExport = try await ExternalProcess.run(
            Self.coordinator, ["data", "export", "NOPE-USDT", "trades"], environment: environment)
        #expect(unknownExport.status == 1 && unknownExport.stderr.contains("HTTP 404"), "\(unknownExport.stderr)")
        // The pinned stream's 409 names where it was pinned.
        let delete = try await ClusterCoordinatorProcessTests.curl([
            "-X", "DELETE", base + "/api/v1/subscribe", "-H", "Content-Type: application/json", "-d",
            #"{"symbols": ["BTC-USDT"], "timeframes": ["1m"]}"#,
        ])
        #expect(delete.contains("the MARKETS environment variable"), "\(delete)")
        // A symbol the exchange refuses: listed as rejected, with the exchange's reason.
        _ = try await ClusterCoordinatorProcessTests.curl([
            "-X", "POST", base + "/api/v1/subscribe", "-H", "Content-Type: application/json", "-d",
            #"{"symbols": ["NOPE-USDT"], "feeds": ["trades"]}"#,
        ])
        try await ControlOverTCPTests.eventually("the refusal listed", timeout: .seconds(20)) {
            let list = await WorkerProcessTests.json(base + "/api/v1/subscriptions")
            let entry = (list["subscriptions"] as? [[String: Any]] ?? []).first {
                $0["stream"] as? String == "okx/trades/NOPE-USDT"
            }
            return entry?["state"] as? String == "rejected" && (entry?["error"] as? String)?.contains("60018") == true
        }
        // Every curl example of the README's API section, as written, against this collector.
        let examples = try Self.readmeCurlExamples()
        #expect(examples.count >= 8, "\(examples)")
        for example in examples {
            let expected = example.range(of: #"answers ([0-9]{3})"#, options: .regularExpression).map {
                String(example[$0].suffix(3))
            }
            let command = example.replacingOccurrences(of: "localhost:8000", with: "127.0.0.1:\(port)")
                .replacingOccurrences(of: "curl ", with: "curl -sS -o /dev/null -w '%{http_code}\\n' ")
            let run = try await ExternalProcess.run("/bin/bash", ["-c", command])
            let codes = run.stdout.split(separator: "\n")
            #expect(run.status == 0 && !codes.isEmpty, "\(example): \(run.stderr)")
            for code in codes {
                if let expected {
                    #expect(String(code) == expected, "\(example)")
                } else {
                    #expect(code.hasPrefix("2"), "\(example) answered \(code)")
                }
            }
        }
        process.send(signal: SIGTERM)
        #expect(await process.waitForExit(timeout: .seconds(20)) == 0, "\(process.errorOutput.suffix(1500))")
        await simulator.shutdown()
        await loop.shutdown()
    }

    /// The commands of the README's "### The API" code block (continuation lines joined).
    static func readmeCurlExamples() throws -> [String] {
        let readme = try String(contentsOfFile: TestEnvironment.repositoryRoot + "/README.md", encoding: .utf8)
        guard let section = readme.range(of: "### The API") else { return [] }
        let rest = readme[section.upperBound...]
        guard let open = rest.range(of: "```bash\n"), let close = rest[open.upperBound...].range(of: "```") else {
            return []
        }
        var commands: [String] = []
        var pending = ""
        for line in rest[open.upperBound..<close.lowerBound].split(separator: "\n") {
            pending += line
            if pending.hasSuffix("\\") {
                pending = String(pending.dropLast()) + " "
            } else {
                commands.append(pending)
                pending = ""
            }
        }
        return commands.filter { $0.hasPrefix("curl") }
    }
}
