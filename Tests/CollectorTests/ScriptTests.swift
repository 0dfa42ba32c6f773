import Foundation
import Testing

/// The operator's shell scripts (issue 12): a benchmark never uses an inherited `DATABASE_URL`,
/// `cluster/run.sh` shows a failed build and refuses a bad `--seconds`, `cluster/pg.sh` and every
/// benchmark answer `--help` and usage errors cleanly, and `api_data.sh` says wrk is missing.
/// Every case runs `/bin/bash` on a script in a way that ends before any build, server or network
/// (a dry run, a stand-in `swift`, a usage path), so none needs PostgreSQL and each takes milliseconds.
@Suite struct ScriptTests {
    /// The package root, found from this file's path (Tests/CollectorTests/ScriptTests.swift).
    static let root: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// A database the user cares about, inherited by every benchmark a test runs.
    static let precious = "postgresql://user@127.0.0.1:1/precious"

    /// The benchmarks that need PostgreSQL and the port of the server each starts for itself.
    static let databaseBenchmarks = ["pg_upsert.sh", "pg_trades.sh", "api_data.sh", "book_rss.sh"]
    static let databasePorts = [55499, 55497, 55496, 55498]

    @Test(arguments: zip(databaseBenchmarks, databasePorts))
    func aBenchmarkIgnoresAnInheritedDatabaseURL(script: String, port: Int) async throws {
        let run = try await Self.bash(
            "cluster/bench/" + script, environment: ["DATABASE_URL": Self.precious, "BENCH_DRY_RUN": "1"])
        #expect(run.status == 0, "\(run.stderr)")
        let url = try #require(Self.plannedDatabase(run.stdout), "\(run.stdout)")
        #expect(url != Self.precious && !url.contains("precious"), "\(url)")
        #expect(url == "postgresql://collector:collector@127.0.0.1:\(port)/collector")
        #expect(!run.stderr.contains("building"), "a dry run builds nothing: \(run.stderr)")
    }

    @Test func everyBenchmarkUsesItsOwnDatabaseOnItsOwnPortOrNone() async throws {
        let scripts = try Self.benchmarkScripts()
        var owners: [String: String] = [:]  // URL → the benchmark that plans it
        for script in scripts {
            let run = try await Self.bash(
                "cluster/bench/" + script, environment: ["DATABASE_URL": Self.precious, "BENCH_DRY_RUN": "1"])
            #expect(run.status == 0, "\(script): \(run.stderr)")
            let url = try #require(Self.plannedDatabase(run.stdout), "\(script) printed: \(run.stdout)")
            if url == "none" { continue }
            #expect(url.hasPrefix("postgresql://collector:collector@127.0.0.1:"), "\(script): \(url)")
            #expect(owners[url] == nil, "\(script) and \(owners[url] ?? "") share \(url)")
            owners[url] = script
        }
        #expect(Set(owners.values) == Set(Self.databaseBenchmarks), "\(owners)")
    }

    @Test func everyBenchmarkAnswersHelpAndRefusesAnUnknownOption() async throws {
        let scripts = try Self.benchmarkScripts()
        #expect(scripts.count >= 12, "\(scripts)")
        for script in scripts {
            let help = try await Self.bash("cluster/bench/" + script, ["--help"])
            #expect(help.status == 0, "\(script): \(help.stderr)")
            #expect(help.stdout.contains("cluster/bench/" + script), "\(script) --help: \(help.stdout)")
            #expect(!help.stdout.hasPrefix("#") && help.stderr.isEmpty, "\(script): \(help.stdout)\(help.stderr)")
            let wrong = try await Self.bash("cluster/bench/" + script, ["--frobnicate"])
            #expect(wrong.status == 64, "\(script): \(wrong.stderr)")
            #expect(wrong.stderr.hasPrefix("\(script): unknown option '--frobnicate'"), "\(wrong.stderr)")
        }
    }

    @Test func apiDataSaysWrkIsMissingBeforeBuildingAnything() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        // A PATH with what the script needs before its check, and no wrk.
        for tool in ["bash", "dirname", "basename", "cat", "sed", "awk", "mktemp", "tail", "rm", "realpath"] {
            if let path = Self.which(tool) {
                try FileManager.default.createSymbolicLink(atPath: directory + "/" + tool, withDestinationPath: path)
            }
        }
        let run = try await Self.bash("cluster/bench/api_data.sh", environment: ["PATH": directory])
        #expect(run.status == 1, "\(run.stderr)")
        #expect(
            run.stderr.contains(
                "api_data.sh: wrk is not installed (cluster/setup.sh installs it, or apt-get install wrk)"),
            "\(run.stderr)")
        #expect(!run.stderr.contains("building"), "\(run.stderr)")
    }

    @Test func runShowsAFailedBuildAndExitsNonZero() async throws {
        let directory = try Self.temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let swift = directory + "/swift"
        try "#!/bin/sh\necho \"error: boom ($*)\"\nexit 1\n".write(toFile: swift, atomically: true, encoding: .utf8)
        try FileManager.default.setAttributes([.posixPermissions: 0o755], ofItemAtPath: swift)
        let run = try await Self.bash("cluster/run.sh", environment: ["SWIFT": swift, "SKIP_SETUP": "1"])
        #expect(run.status == 1, "\(run.stdout)\(run.stderr)")
        #expect(run.stderr.contains("run.sh: building (release)…"), "\(run.stderr)")
        #expect(run.stderr.contains("error: boom (build -c release"), "the build's own output: \(run.stderr)")
        #expect(run.stderr.contains("--product coordinator"), "\(run.stderr)")
        #expect(run.stderr.contains("run.sh: the build failed"), "\(run.stderr)")
        #expect(!run.stderr.contains("starting PostgreSQL"), "\(run.stderr)")
    }

    @Test(arguments: [["--seconds"], ["--seconds", "soon"], ["--live", "--seconds"], ["--seconds=-1"]])
    func runRefusesSecondsWithoutANumber(arguments: [String]) async throws {
        let run = try await Self.bash("cluster/run.sh", arguments)
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stderr == "run.sh: --seconds needs a number of seconds\n")
        #expect(run.stdout.isEmpty, "\(run.stdout)")
    }

    @Test func runHelpPrintsItsUsage() async throws {
        let run = try await Self.bash("cluster/run.sh", ["--help"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("cluster/run.sh --seconds N"), "\(run.stdout)")
        #expect(run.stderr.isEmpty, "\(run.stderr)")
    }

    @Test(arguments: [[], ["frobnicate"]])
    func pgWithoutAKnownCommandPrintsItsUsageAndExits64(arguments: [String]) async throws {
        let run = try await Self.bash("cluster/pg.sh", arguments)
        #expect(run.status == 64, "\(run.stderr)")
        #expect(run.stdout.isEmpty, "\(run.stdout)")
        #expect(run.stderr.hasPrefix("pg.sh: "), "\(run.stderr)")
        #expect(run.stderr.contains("\n  cluster/pg.sh start [DIR] [PORT]"), "\(run.stderr)")
        #expect(!run.stderr.contains("unbound variable") && !run.stderr.contains(": line "), "\(run.stderr)")
    }

    @Test func pgHelpPrintsItsUsage() async throws {
        let run = try await Self.bash("cluster/pg.sh", ["--help"])
        #expect(run.status == 0, "\(run.stderr)")
        #expect(run.stdout.contains("cluster/pg.sh stop  [DIR]"), "\(run.stdout)")
        #expect(run.stderr.isEmpty, "\(run.stderr)")
    }

    @Test func everyClusterScriptParses() async throws {
        let fileManager = FileManager.default
        var scripts: [String] = []
        for folder in ["cluster", "cluster/bench"] {
            let names = try fileManager.contentsOfDirectory(atPath: Self.root + "/" + folder)
            scripts += names.filter { $0.hasSuffix(".sh") }.map { folder + "/" + $0 }
        }
        #expect(scripts.count >= 17, "\(scripts)")
        for script in scripts.sorted() {
            let run = try await Self.bash("-n", [script])
            #expect(run.status == 0, "bash -n \(script): \(run.stderr)")
        }
    }

    // MARK: - Running a script

    struct Outcome: Sendable {
        var status: Int32
        var stdout: String
        var stderr: String
    }

    /// Runs `/bin/bash FIRST ARGUMENTS` in the package root and waits (on a thread of its own, not the
    /// cooperative pool) for it to exit, at most a minute. `environment` entries replace inherited
    /// ones. SWIFT names `/bin/false` unless a test sets it, so a script that wrongly got as far as a
    /// build fails at once instead of building for minutes; TMPDIR is a directory deleted afterwards.
    static func bash(
        _ first: String, _ arguments: [String] = [], environment: [String: String] = [:]
    ) async throws -> Outcome {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        var merged = ProcessInfo.processInfo.environment
        merged["SWIFT"] = "/bin/false"
        merged["TMPDIR"] = directory
        merged["BENCH_DRY_RUN"] = nil
        for (name, value) in environment { merged[name] = value }
        let finalEnvironment = merged
        return try await withCheckedThrowingContinuation { continuation in
            Thread {
                continuation.resume(
                    with: Result {
                        try runBlocking([first] + arguments, environment: finalEnvironment, directory: directory)
                    })
            }
            .start()
        }
    }

    private static func runBlocking(
        _ arguments: [String], environment: [String: String], directory: String
    ) throws -> Outcome {
        let outPath = directory + "/.stdout"
        let errPath = directory + "/.stderr"
        // Files, not pipes: no reader thread is needed and a chatty script cannot fill a pipe and stall.
        guard FileManager.default.createFile(atPath: outPath, contents: nil),
            FileManager.default.createFile(atPath: errPath, contents: nil)
        else { throw ScriptFailure(description: "cannot create \(outPath)") }
        let out = try FileHandle(forWritingTo: URL(fileURLWithPath: outPath))
        let err = try FileHandle(forWritingTo: URL(fileURLWithPath: errPath))
        defer {
            try? out.close()
            try? err.close()
        }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/bin/bash")
        process.arguments = arguments
        process.currentDirectoryURL = URL(fileURLWithPath: root)
        process.environment = environment
        process.standardInput = FileHandle.nullDevice
        process.standardOutput = out
        process.standardError = err
        let exited = DispatchSemaphore(value: 0)
        process.terminationHandler = { _ in exited.signal() }
        try process.run()
        if exited.wait(timeout: .now() + 60) == .timedOut {
            process.terminate()
            _ = exited.wait(timeout: .now() + 5)
            throw ScriptFailure(description: "bash \(arguments.joined(separator: " ")) did not finish within 60 s")
        }
        return Outcome(
            status: process.terminationStatus,
            stdout: (try? String(contentsOfFile: outPath, encoding: .utf8)) ?? "",
            stderr: (try? String(contentsOfFile: errPath, encoding: .utf8)) ?? "")
    }

    struct ScriptFailure: Error, CustomStringConvertible {
        var description: String
    }

    /// The URL of a dry run's `database URL` line (or "none").
    static func plannedDatabase(_ stdout: String) -> String? {
        stdout.split(separator: "\n").first { $0.hasPrefix("database ") }.map { String($0.dropFirst(9)) }
    }

    /// The benchmark scripts (cluster/bench/*.sh but the sourced common.sh), sorted.
    static func benchmarkScripts() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: root + "/cluster/bench")
            .filter { $0.hasSuffix(".sh") && $0 != "common.sh" }.sorted()
    }

    static func temporaryDirectory() throws -> String {
        let path = NSTemporaryDirectory() + "script-tests-" + UUID().uuidString
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// An executable's path on PATH (or in the usual system folders).
    static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for folder in path.split(separator: ":").map(String.init) + ["/usr/bin", "/bin"] {
            let candidate = folder + "/" + name
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
