import Foundation
import PostgresClient

/// A fresh database per test on the server named by `COLLECTOR_PG_URL` (cluster/test.sh starts
/// one and sets it). Tests fail, never skip, when it is missing.
public struct TestDatabase: Sendable {
    /// Conninfo of the new database.
    public let conninfo: String
    public let name: String
    private let adminURL: String

    /// Creates `test_<random>`; call `drop()` when done. The blocking libpq calls (CREATE DATABASE
    /// copies a template and syncs it) run on a thread of their own: a test that held one of the
    /// cooperative pool's few threads for them would starve the servers other tests talk to.
    public static func create() async throws -> TestDatabase {
        try await withCheckedThrowingContinuation { continuation in
            Thread { continuation.resume(with: Result { try createBlocking() }) }.start()
        }
    }

    private static func createBlocking() throws -> TestDatabase {
        guard let admin = ProcessInfo.processInfo.environment["COLLECTOR_PG_URL"], !admin.isEmpty else {
            throw ProcessFailure(
                "COLLECTOR_PG_URL is not set: run the tests through cluster/test.sh, or `eval $(cluster/pg.sh start)` "
                    + "and export COLLECTOR_PG_URL=$DATABASE_URL")
        }
        let name = "test_" + UUID().uuidString.replacingOccurrences(of: "-", with: "").lowercased().prefix(16)
        let connection = try PGConnection(conninfo: admin)
        try connection.execute("CREATE DATABASE \(name)")
        let base = admin.split(separator: "?", maxSplits: 1)
        var prefix = String(base[0])
        if let slash = prefix.lastIndex(of: "/"), prefix[..<slash].hasSuffix("//") == false {
            prefix = String(prefix[..<slash])
        }
        let query = base.count > 1 ? "?" + base[1] : ""
        return TestDatabase(conninfo: "\(prefix)/\(name)\(query)", name: String(name), adminURL: admin)
    }

    private init(conninfo: String, name: String, adminURL: String) {
        self.conninfo = conninfo
        self.name = name
        self.adminURL = adminURL
    }

    /// Drops the database (terminating leftover sessions) on a thread of its own, not waited for:
    /// it is called from `defer` in async tests, which must not block a cooperative thread.
    public func drop() {
        let adminURL = adminURL
        let name = name
        Thread {
            // Best effort: a leftover test database is harmless and the server is thrown away after the run.
            guard let connection = try? PGConnection(conninfo: adminURL) else { return }
            _ = try? connection.execute("DROP DATABASE IF EXISTS \(name) WITH (FORCE)")
        }.start()
    }

    /// The repository's migrations.
    public static func migrations() throws -> [String] {
        try FileManager.default.contentsOfDirectory(atPath: TestEnvironment.repositoryRoot + "/sql/init").sorted()
    }
}
