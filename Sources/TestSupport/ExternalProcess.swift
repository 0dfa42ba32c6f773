import Foundation
import Synchronization

/// A helper process for integration tests (a Python peer, `openssl s_server`, curl…).
///
/// Output lines are collected; `waitForLine` waits for a readiness marker such as `LISTENING 4242`.
/// The process is terminated by `stop()` (and in `deinit`, so a failing test cannot leak it).
public final class ExternalProcess: Sendable {
    private final class Output: Sendable {
        let lines = Mutex<[String]>([])
        let stderrText = Mutex<String>("")
        let partial = Mutex<String>("")
    }
    private let process: Process
    private let output = Output()

    /// Starts `executable` with `arguments`; `environment` entries are added to the current one.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        currentDirectory: String? = nil
    ) throws {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        if let currentDirectory { process.currentDirectoryURL = URL(fileURLWithPath: currentDirectory) }
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        self.process = process
        let output = self.output
        out.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else { return }
            let complete = output.partial.withLock { buffer -> [String] in
                buffer += String(decoding: data, as: UTF8.self)
                var parts = buffer.components(separatedBy: "\n")
                buffer = parts.removeLast()
                return parts
            }
            output.lines.withLock { $0.append(contentsOf: complete) }
        }
        err.fileHandleForReading.readabilityHandler = { handle in
            let data = handle.availableData
            guard !data.isEmpty else { return }
            output.stderrText.withLock { $0 += String(decoding: data, as: UTF8.self) }
        }
        try process.run()
    }

    deinit { stop() }

    /// Lines printed to stdout so far.
    public var outputLines: [String] { output.lines.withLock { $0 } }

    /// Everything printed to stderr so far.
    public var errorOutput: String { output.stderrText.withLock { $0 } }

    /// Whether the process still runs.
    public var isRunning: Bool { process.isRunning }

    /// Waits until a stdout line starts with `prefix` and returns it; throws after `timeout` or if the
    /// process exits first (with its stderr in the error).
    public func waitForLine(prefix: String, timeout: Duration = .seconds(20)) async throws -> String {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if let line = output.lines.withLock({ $0.first { $0.hasPrefix(prefix) } }) { return line }
            if !process.isRunning {
                throw ProcessFailure(
                    "process exited (\(process.terminationStatus)) before printing '\(prefix)': \(errorOutput)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ProcessFailure("timed out waiting for '\(prefix)'; stderr: \(errorOutput)")
    }

    /// Stops the process and waits for it: SIGTERM, then SIGKILL after one second.
    ///
    /// Children of a Swift test process inherit a signal mask that blocks SIGTERM (libdispatch's
    /// signal thread), so a peer that does not unblock it itself would never see the SIGTERM.
    public func stop() {
        guard process.isRunning else { return }
        process.terminate()
        for _ in 0..<100 where process.isRunning { usleep(10_000) }
        if process.isRunning { kill(process.processIdentifier, SIGKILL) }
        process.waitUntilExit()
    }

    /// Sends `signal` to the process.
    public func send(signal: Int32) { kill(process.processIdentifier, signal) }

    /// Waits for the process to exit and returns its status, or nil after `timeout`.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if !process.isRunning { return process.terminationStatus }
            try? await Task.sleep(for: .milliseconds(10))  // cancellation just ends the wait early
        }
        return process.isRunning ? nil : process.terminationStatus
    }

    /// Runs a command to completion and returns its exit status, stdout and stderr.
    ///
    /// The wait happens on a Dispatch thread, never on the cooperative pool: a test that blocked
    /// the pool's few threads would starve the very server tasks it is talking to.
    public static func run(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:]
    )
        async throws -> (status: Int32, stdout: String, stderr: String)
    {
        try await withCheckedThrowingContinuation { continuation in
            DispatchQueue.global().async {
                continuation.resume(
                    with: Result { try runBlocking(executable, arguments, environment: environment) })
            }
        }
    }

    private static func runBlocking(
        _ executable: String, _ arguments: [String], environment: [String: String]
    )
        throws -> (status: Int32, stdout: String, stderr: String)
    {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: executable)
        process.arguments = arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        process.environment = env
        let out = Pipe()
        let err = Pipe()
        process.standardOutput = out
        process.standardError = err
        process.standardInput = FileHandle.nullDevice
        try process.run()
        // Read both pipes fully before waiting, so a chatty child cannot block on a full pipe.
        let errBox = Output()
        let errHandle = err.fileHandleForReading
        let done = DispatchSemaphore(value: 0)
        Thread {
            let data = errHandle.readDataToEndOfFile()
            errBox.stderrText.withLock { $0 = String(decoding: data, as: UTF8.self) }
            done.signal()
        }.start()
        let outData = out.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        done.wait()
        return (
            process.terminationStatus, String(decoding: outData, as: UTF8.self),
            errBox.stderrText.withLock { $0 }
        )
    }
}

/// A helper process did not behave.
public struct ProcessFailure: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}

/// Paths and tools for integration tests.
public enum TestEnvironment {
    /// The repository root (found from this file's path).
    public static let repositoryRoot: String = {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }()

    /// The Python interpreter with the test peers' packages: `COLLECTOR_PYTHON`, else the repo's
    /// `.venv`, else `python3` (tests then fail with the import error, never skip).
    public static var python: String {
        if let env = ProcessInfo.processInfo.environment["COLLECTOR_PYTHON"], !env.isEmpty { return env }
        let venv = repositoryRoot + "/.venv/bin/python3"
        if FileManager.default.isExecutableFile(atPath: venv) { return venv }
        return "/usr/bin/python3"
    }

    /// Path of a file under `Tests/Peers/`.
    public static func peerScript(_ name: String) -> String { repositoryRoot + "/Tests/Peers/" + name }

    /// A fresh temporary directory (readable by other users, for servers running as `postgres`).
    public static func makeTemporaryDirectory(prefix: String = "collector-test") throws -> String {
        let path = NSTemporaryDirectory() + "\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// Finds an executable on PATH (or common system locations).
    public static func which(_ name: String) -> String? {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin"
        for dir in path.split(separator: ":") + ["/usr/bin", "/usr/sbin", "/bin"] {
            let candidate = "\(dir)/\(name)"
            if FileManager.default.isExecutableFile(atPath: candidate) { return candidate }
        }
        return nil
    }
}
