import Foundation
public import PostgresClient

/// Applies `sql/init/NN_name.sql` files in order, each once, recorded in `schema_version`, then
/// creates candle partitions ahead. Exactly one process does it at a time: everything runs under
/// `pg_advisory_lock` (DESIGN.md §5).
public enum SchemaMigrator {
    /// The advisory-lock key for schema maintenance ("collectr" as ASCII, so it is recognisable).
    public static let lockKey: Int64 = 0x636F_6C6C_6563_7472

    /// One migration file.
    public struct Migration: Sendable, Equatable {
        public var version: Int
        public var name: String
        public var sql: String
    }

    /// A migration directory problem, naming the file.
    public struct MigrationError: Error, Sendable, CustomStringConvertible {
        public var description: String
    }

    /// Finds the SQL directory: `explicit`, `$SQL_DIR`, `./sql/init`, next to the executable
    /// (`../share/collector/sql/init`), `/usr/share/collector/sql/init`, then the source tree.
    public static func locateSQLDirectory(explicit: String? = nil, environment: [String: String]) -> String? {
        var candidates: [String] = []
        if let explicit { candidates.append(explicit) }
        if let env = environment["SQL_DIR"], !env.isEmpty { candidates.append(env) }
        candidates.append(FileManager.default.currentDirectoryPath + "/sql/init")
        let executable = URL(fileURLWithPath: CommandLine.arguments.first ?? "").deletingLastPathComponent()
        candidates.append(executable.appendingPathComponent("../share/collector/sql/init").standardized.path)
        candidates.append("/usr/share/collector/sql/init")
        var source = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { source.deleteLastPathComponent() }
        candidates.append(source.appendingPathComponent("sql/init").path)
        return candidates.first { FileManager.default.fileExists(atPath: $0 + "/02_schema.sql") }
    }

    /// Reads `NN_name.sql` files, ordered by NN.
    public static func migrations(in directory: String) throws -> [Migration] {
        let files = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".sql") }
        var result: [Migration] = []
        for file in files {
            let stem = file.dropLast(4)
            guard let underscore = stem.firstIndex(of: "_"), let version = Int(stem[..<underscore]) else {
                throw MigrationError(description: "migration file \(file) is not named NN_name.sql")
            }
            let sql = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
            result.append(Migration(version: version, name: String(stem), sql: sql))
        }
        result.sort { $0.version < $1.version }
        for (a, b) in zip(result, result.dropFirst()) where a.version == b.version {
            throw MigrationError(description: "two migrations with version \(a.version): \(a.name), \(b.name)")
        }
        return result
    }

    /// Applies pending migrations and creates partitions from one month back to `monthsAhead` ahead.
    /// Returns the names of the migrations applied now.
    @discardableResult
    public static func migrate(
        _ migrations: [Migration], executor: PGExecutor, monthsAhead: Int = 2
    ) async throws(PGError)
        -> [String]
    {
        try await executor.run { connection throws(PGError) in
            try connection.execute("SELECT pg_advisory_lock($1)", [String(lockKey)])
            // try?: if unlocking fails the connection is gone, and the lock ended with its session.
            defer { _ = try? connection.execute("SELECT pg_advisory_unlock($1)", [String(lockKey)]) }
            try connection.execute(
                """
                CREATE TABLE IF NOT EXISTS schema_version (
                    version integer PRIMARY KEY, name text NOT NULL, applied_at timestamptz NOT NULL DEFAULT now())
                """)
            let done = Set(
                try connection.execute("SELECT version FROM schema_version").rows.compactMap { $0[0].flatMap(Int.init) }
            )
            var applied: [String] = []
            for migration in migrations where !done.contains(migration.version) {
                try connection.execute("BEGIN")
                do throws(PGError) {
                    try connection.execute(migration.sql)
                    try connection.execute(
                        "INSERT INTO schema_version (version, name) VALUES ($1, $2)",
                        [String(migration.version), migration.name])
                    try connection.execute("COMMIT")
                } catch {
                    _ = try? connection.execute("ROLLBACK")  // the original error is the one to report
                    throw PGError(
                        kind: error.kind, sqlState: error.sqlState, severity: error.severity,
                        message: "migration \(migration.name): \(error.message)")
                }
                applied.append(migration.name)
            }
            try connection.execute("SELECT ensure_partitions_ahead(1, $1)", [String(monthsAhead)])
            return applied
        }
    }
}
