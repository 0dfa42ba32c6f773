import Foundation

/// A private PostgreSQL server for tests that stop and restart it (cluster/pg.sh under the hood).
public struct TestPostgresServer: Sendable {
    public let directory: String
    public let port: Int
    /// Conninfo of its `collector` database.
    public let conninfo: String

    /// initdb + start on a free port.
    public static func start() async throws -> TestPostgresServer {
        let directory = "/tmp/collector-pg-" + UUID().uuidString.prefix(8)
        let port = Int.random(in: 20_000...29_999)
        let result = try await ExternalProcess.run(
            "/bin/bash", [TestEnvironment.repositoryRoot + "/cluster/pg.sh", "start", directory, String(port)])
        guard result.status == 0,
            let line = result.stdout.split(separator: "\n").first(where: { $0.contains("DATABASE_URL=") })
        else { throw ProcessFailure("pg.sh start failed: \(result.stderr)") }
        let url = String(line.split(separator: "=", maxSplits: 1)[1])
        return TestPostgresServer(directory: directory, port: port, conninfo: url)
    }

    /// Stops the server, keeping its data.
    public func pause() async throws { try await control("stop") }

    /// Starts it again.
    public func resume() async throws { try await control("start") }

    private func control(_ action: String) async throws {
        let result = try await ExternalProcess.run(
            "/bin/bash", [TestEnvironment.repositoryRoot + "/cluster/pg.sh", "ctl", directory, action])
        guard result.status == 0 else { throw ProcessFailure("pg.sh ctl \(action) failed: \(result.stderr)") }
    }

    /// Stops the server and deletes its data.
    public func destroy() async {
        // Best effort: the directory is under /tmp and the machine is thrown away after CI.
        _ = try? await ExternalProcess.run(
            "/bin/bash", [TestEnvironment.repositoryRoot + "/cluster/pg.sh", "stop", directory])
    }
}
