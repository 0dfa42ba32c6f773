public import MarketData
public import PostgresClient

/// Drops month partitions older than a configured age, per data type (`[storage.retention]`;
/// default: keep forever). A partition goes once all of it is past the age: its month *ends* at or
/// before `now - age`. Runs under the schema-maintenance advisory lock, so one process does it.
/// A late row for a dropped month (an old backfill) gets its partition back on demand.
public struct RetentionPolicy: Sendable, Equatable {
    /// Age in days per data type; types not listed are kept forever.
    public var days: [DataType: Int]

    public init(days: [DataType: Int]) { self.days = days }

    /// From settings keyed by feed kind (`candles`, `trades`, `book`, `ticker`); unknown keys are ignored
    /// here because the settings reader refuses them.
    public init(days: [String: Int]) {
        var out: [DataType: Int] = [:]
        for (key, value) in days {
            if let type = DataType(rawValue: key) { out[type] = value }
        }
        self.days = out
    }

    /// The partitions of `table` (named `<table>_YYYY_MM`) wholly older than `cutoff` (µs).
    package static func expired(_ names: [String], table: String, cutoff: Int64) -> [String] {
        names.filter { name in
            guard name.hasPrefix(table + "_") else { return false }
            let suffix = name.dropFirst(table.count + 1).split(separator: "_")
            guard suffix.count == 2, let year = Int(suffix[0]), let month = Int(suffix[1]), (1...12).contains(month),
                suffix[0].count == 4, suffix[1].count == 2
            else { return false }
            let end =
                month == 12
                ? UTCCalendar.microseconds(year: year + 1, month: 1, day: 1)
                : UTCCalendar.microseconds(year: year, month: month + 1, day: 1)
            return end <= cutoff
        }.sorted()
    }

    /// Drops every expired partition; returns their names.
    @discardableResult
    public func apply(executor: PGExecutor, now: Int64) async throws(PGError) -> [String] {
        guard !days.isEmpty else { return [] }
        let policy = days
        return try await executor.run { connection throws(PGError) in
            try connection.execute("SELECT pg_advisory_lock($1)", [String(SchemaMigrator.lockKey)])
            // try?: if unlocking fails the connection is gone, and the lock ended with its session.
            defer { _ = try? connection.execute("SELECT pg_advisory_unlock($1)", [String(SchemaMigrator.lockKey)]) }
            var dropped: [String] = []
            for (type, age) in policy.sorted(by: { $0.key.rawValue < $1.key.rawValue }) {
                let table = type.tableName
                let names = try connection.execute(
                    """
                    SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
                    WHERE i.inhparent = $1::regclass
                    """, [table]
                ).rows.compactMap { $0[0] }
                let cutoff = now - Int64(age) * 86_400_000_000
                for name in Self.expired(names, table: table, cutoff: cutoff) {
                    // The name comes from pg_class and matched <table>_YYYY_MM: safe to quote as an identifier.
                    try connection.execute("DROP TABLE IF EXISTS \"\(name)\"")
                    dropped.append(name)
                }
            }
            return dropped
        }
    }
}
