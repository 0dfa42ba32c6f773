import Foundation
import Glibc
import Locking
import Synchronization

/// Spawns children with posix_spawn and a clean slate: an empty signal mask (a Swift test process
/// blocks SIGTERM in every thread through libdispatch, and children inherit masks) and only fds 0–2
/// (via a tiny Python exec shim that closes the rest). Foundation's `Process` is not used: on Linux
/// it detects exit through a socket its children inherit, so a daemon started by a child (PostgreSQL
/// via pg_ctl) keeps the parent waiting forever.
final class SpawnedChild: Sendable {
    let pid: pid_t
    let stdoutFD: Int32
    let stderrFD: Int32
    private let exitStatus = Locked<Int32?>(nil)

    static let shim =
        "import os, signal, sys; signal.pthread_sigmask(signal.SIG_SETMASK, []); os.closerange(3, 65536); "
        + "d = os.environ.pop('COLLECTOR_SHIM_CHDIR', None); d and os.chdir(d); os.execvp(sys.argv[1], sys.argv[1:])"

    init(executable: String, arguments: [String], environment: [String: String], directory: String?) throws {
        var outPipe: [Int32] = [0, 0]
        var errPipe: [Int32] = [0, 0]
        guard pipe(&outPipe) == 0, pipe(&errPipe) == 0 else { throw ProcessFailure("pipe failed: errno \(errno)") }
        // Close-on-exec, so other children never inherit these ends (a leftover writer blocks EOF).
        for fd in outPipe + errPipe { _ = fcntl(fd, F_SETFD, FD_CLOEXEC) }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_adddup2(&actions, outPipe[1], 1)
        posix_spawn_file_actions_adddup2(&actions, errPipe[1], 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        var empty = sigset_t()
        sigemptyset(&empty)
        posix_spawnattr_setsigmask(&attributes, &empty)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for signal in [SIGPIPE, SIGTERM, SIGINT, SIGCHLD] { sigaddset(&defaults, signal) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        posix_spawnattr_setflags(&attributes, Int16(POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        let python = FileManager.default.isExecutableFile(atPath: "/usr/bin/python3") ? "/usr/bin/python3" : "python3"
        let argv = [python, "-c", Self.shim, executable] + arguments
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        if let directory { env["COLLECTOR_SHIM_CHDIR"] = directory }
        let envp = env.map { "\($0)=\($1)" }
        var pid: pid_t = 0
        let rc = withCStringArray(argv) { argvPointers in
            withCStringArray(envp) { envPointers in
                posix_spawnp(&pid, python, &actions, &attributes, argvPointers, envPointers)
            }
        }
        close(outPipe[1])
        close(errPipe[1])
        guard rc == 0 else {
            close(outPipe[0])
            close(errPipe[0])
            throw ProcessFailure("posix_spawn \(executable) failed: \(String(cString: strerror(rc)))")
        }
        self.pid = pid
        self.stdoutFD = outPipe[0]
        self.stderrFD = errPipe[0]
    }

    deinit {
        close(stdoutFD)
        close(stderrFD)
    }

    /// The exit status if the child has exited (reaps it once).
    func pollExit() -> Int32? {
        exitStatus.withLock { status in
            if let status { return status }
            var raw: Int32 = 0
            let rc = waitpid(pid, &raw, WNOHANG)
            guard rc == pid else { return nil }
            status = Self.decode(raw)
            return status
        }
    }

    /// Blocks until the child exits.
    func waitForExit() -> Int32 {
        while true {
            if let status = pollExit() { return status }
            usleep(2_000)
        }
    }

    private static func decode(_ raw: Int32) -> Int32 {
        // WIFEXITED/WEXITSTATUS and WTERMSIG, spelled out (the macros do not import).
        let signal = raw & 0x7F
        return signal == 0 ? (raw >> 8) & 0xFF : 128 + signal
    }

    /// Reads `fd` to EOF, calling `chunk` with each piece.
    static func drain(_ fd: Int32, _ chunk: (Data) -> Void) {
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = read(fd, &buffer, buffer.count)
            if n > 0 {
                chunk(Data(buffer[0..<n]))
            } else if n < 0 && errno == EINTR {
                continue
            } else {
                return
            }
        }
    }
}

private func withCStringArray<R>(_ strings: [String], _ body: (UnsafePointer<UnsafeMutablePointer<CChar>?>) -> R) -> R {
    var pointers: [UnsafeMutablePointer<CChar>?] = strings.map { strdup($0) }
    pointers.append(nil)
    defer { for p in pointers { free(p) } }
    return pointers.withUnsafeBufferPointer { body($0.baseAddress!) }
}

/// A helper process for integration tests (a Python peer, `openssl s_server`, curl…).
///
/// Output lines are collected; `waitForLine` waits for a readiness marker such as `LISTENING 4242`.
/// The process is stopped by `stop()` (and in `deinit`, so a failing test cannot leak it).
public final class ExternalProcess: Sendable {
    private final class Output: Sendable {
        let lines = Locked<[String]>([])
        let stderrText = Locked<String>("")
        let partial = Locked<String>("")
    }
    private let child: SpawnedChild
    private let output = Output()

    /// Starts `executable` with `arguments`; `environment` entries are added to the current one.
    public init(
        _ executable: String, _ arguments: [String], environment: [String: String] = [:],
        currentDirectory: String? = nil
    ) throws {
        let child = try SpawnedChild(
            executable: executable, arguments: arguments, environment: environment, directory: currentDirectory)
        self.child = child
        let output = self.output
        Thread {
            SpawnedChild.drain(child.stdoutFD) { data in
                let complete = output.partial.withLock { buffer -> [String] in
                    buffer += String(decoding: data, as: UTF8.self)
                    var parts = buffer.components(separatedBy: "\n")
                    buffer = parts.removeLast()
                    return parts
                }
                output.lines.withLock { $0.append(contentsOf: complete) }
            }
        }.start()
        Thread {
            SpawnedChild.drain(child.stderrFD) { data in
                output.stderrText.withLock { $0 += String(decoding: data, as: UTF8.self) }
            }
        }.start()
    }

    deinit { stop() }

    /// Lines printed to stdout so far.
    public var outputLines: [String] { output.lines.withLock { $0 } }

    /// Everything printed to stderr so far.
    public var errorOutput: String { output.stderrText.withLock { $0 } }

    /// Whether the process still runs.
    public var isRunning: Bool { child.pollExit() == nil }

    /// The process id.
    public var pid: Int32 { child.pid }

    /// Waits until a stdout line starts with `prefix` and returns it; throws after `timeout` or if the
    /// process exits first (with its stderr in the error).
    public func waitForLine(prefix: String, timeout: Duration = .seconds(20)) async throws -> String {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if let line = output.lines.withLock({ $0.first { $0.hasPrefix(prefix) } }) { return line }
            if let status = child.pollExit() {
                throw ProcessFailure("process exited (\(status)) before printing '\(prefix)': \(errorOutput)")
            }
            try await Task.sleep(for: .milliseconds(20))
        }
        throw ProcessFailure("timed out waiting for '\(prefix)'; stderr: \(errorOutput)")
    }

    /// Stops the process: SIGTERM, then SIGKILL after two seconds; reaps it. Waits at most 50 ms
    /// itself (it is called from `defer` in async tests, on the cooperative pool); a process slower
    /// to go is reaped by a thread of its own.
    public func stop() {
        guard child.pollExit() == nil else { return }
        kill(child.pid, SIGTERM)
        for _ in 0..<50 where child.pollExit() == nil { usleep(1_000) }
        guard child.pollExit() == nil else { return }
        let child = child
        Thread {
            for _ in 0..<200 where child.pollExit() == nil { usleep(10_000) }
            if child.pollExit() == nil { kill(child.pid, SIGKILL) }
            _ = child.waitForExit()
        }.start()
    }

    /// Sends `signal` to the process.
    public func send(signal: Int32) { kill(child.pid, signal) }

    /// Waits for the process to exit and returns its status, or nil after `timeout`.
    public func waitForExit(timeout: Duration) async -> Int32? {
        let clock = ContinuousClock()
        let deadline = clock.now.advanced(by: timeout)
        while clock.now < deadline {
            if let status = child.pollExit() { return status }
            try? await Task.sleep(for: .milliseconds(10))  // cancellation just ends the wait early
        }
        return child.pollExit()
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
            Thread {
                continuation.resume(with: Result { try runBlocking(executable, arguments, environment: environment) })
            }.start()
        }
    }

    private static func runBlocking(
        _ executable: String, _ arguments: [String], environment: [String: String]
    )
        throws -> (status: Int32, stdout: String, stderr: String)
    {
        let child = try SpawnedChild(
            executable: executable, arguments: arguments, environment: environment, directory: nil)
        let errText = Locked(Data())
        let done = DispatchSemaphore(value: 0)
        Thread {
            SpawnedChild.drain(child.stderrFD) { data in errText.withLock { $0.append(data) } }
            done.signal()
        }.start()
        var outData = Data()
        SpawnedChild.drain(child.stdoutFD) { outData.append($0) }
        done.wait()
        let status = child.waitForExit()
        return (
            status, String(decoding: outData, as: UTF8.self), String(decoding: errText.withLock { $0 }, as: UTF8.self)
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

    /// A fresh temporary directory under this test process's own root, which is removed when
    /// the process exits, so a full run leaves nothing behind in `/tmp`.
    public static func makeTemporaryDirectory(prefix: String = "collector-test") throws -> String {
        let path = temporaryRoot + "/\(prefix)-\(UUID().uuidString)"
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    /// `$TMPDIR/collector-tests-<pid>`; registered for removal at exit on first use.
    private static let temporaryRoot: String = {
        let root = NSTemporaryDirectory() + "collector-tests-\(getpid())"
        temporaryRootForExit.withLock { $0 = root }
        atexit {
            guard let root = TestEnvironment.temporaryRootForExit.withLock({ $0 }) else { return }
            do {
                try FileManager.default.removeItem(atPath: root)
            } catch {
                FileHandle.standardError.write(Data("note: could not remove \(root): \(error)\n".utf8))
            }
        }
        return root
    }()
    private static let temporaryRootForExit = Locked<String?>(nil)

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
