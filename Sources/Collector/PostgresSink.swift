public import MarketData
public import PostgresClient
import Synchronization

/// The PostgreSQL sink (DESIGN.md §5): one monthly-partitioned table per data type, natural keys,
/// COPY for bulk writes, partitions on demand, and the per-stream watermark written in the same
/// transaction as the rows it describes.
///
/// | table | key | on conflict |
/// |---|---|---|
/// | `candles` | exchange, symbol, timeframe, open_time | upsert; a confirmed bar is never overwritten by an unconfirmed one |
/// | `trades` | exchange, symbol, trade_id | ignore |
/// | `book_messages` | exchange, symbol, depth, seq, action | ignore |
/// | `tickers` | exchange, symbol, timestamp_exchange | ignore |
/// | `gaps` (not partitioned) | exchange, symbol, feed, cause, from_time | update: the later record is the truth |
///
/// Rows of every type go in by COPY straight into the table inside a savepoint; a unique violation
/// (some rows already stored) rolls back to the savepoint and sends them through a staging table and
/// one `INSERT … ON CONFLICT`. One transaction per batch.
public final class PostgresSink: Sink {
    public let name = "postgres"
    /// Trade, book and ticker rows already stored when a batch brought them again (ignored on
    /// conflict): a spool replay after a crash, or an overlap between two writers of a stream (a
    /// move's cutover makes that overlap exact, so drains add none).
    public var duplicateRows: Int { duplicates.load(ordering: .relaxed) }
    private let duplicates = Atomic<Int>(0)
    public let executor: PGExecutor
    /// Bumped after each write, for read caches.
    public let versions: StreamVersions
    let cache = WriteCache()

    /// What the writer remembers between batches (touched only on the executor's queue).
    final class WriteCache: @unchecked Sendable {
        // @unchecked Sendable: only read and written inside `executor.run` bodies, which the
        // executor's serial queue runs one at a time.
        /// Partitions known to exist: "table|year*12+month".
        var partitions: Set<String> = []
        /// Candle keys stored unconfirmed: their next version must update, not insert.
        var unconfirmed: Set<CandleKey> = []
    }

    /// Bounds of the write cache. Forgetting is always safe: an unknown partition is ensured again
    /// (one cheap call), an unknown unconfirmed key goes through the COPY path and falls back to the
    /// upsert on its unique violation.
    enum Limits {
        /// 4 tables × 12 months × decades of backfill, with room.
        static let maxKnownPartitions = 4096
        /// About 100 bytes each: ~20 MB. Far above what live streams hold unconfirmed at once (one bar
        /// per candle stream); reached only when bars are left unconfirmed (restarts, backfill).
        static let maxUnconfirmedKeys = 200_000
    }

    public init(executor: PGExecutor, versions: StreamVersions = StreamVersions()) {
        self.executor = executor
        self.versions = versions
    }

    public func write(_ events: [MarketEvent]) async throws(SinkError) {
        guard !events.isEmpty else { return }
        var candles: [Candle] = []
        var trades: [Trade] = []
        var books: [BookMessage] = []
        var tickers: [Ticker] = []
        var gaps: [GapRecord] = []
        var partitions: [String: (table: String, time: Int64)] = [:]
        var marks: [StreamID: Watermark] = [:]
        for event in events {
            switch event {
            case .candle(let c): candles.append(c)
            case .trade(let t): trades.append(t)
            case .book(let b): books.append(b)
            case .ticker(let t): tickers.append(t)
            case .gap(let g): gaps.append(g)
            }
            guard event.dataType.isPartitioned else { continue }
            let table = event.dataType.tableName
            let time = event.partitionTime
            partitions["\(table)|\(Self.monthKey(time))"] = (table, time)
            if let mark = Watermark.of(event), marks[event.stream].map({ mark.isAfter($0) }) ?? true {
                marks[event.stream] = mark
            }
        }
        let touched = Set(events.map(\.stream))
        defer { versions.bump(touched) }  // after the commit (or a failure): readers re-query either way
        let batch = Batch(
            candles: Self.deduplicated(candles), trades: trades, books: books, tickers: tickers, gaps: gaps,
            partitions: partitions, watermarks: marks)
        let cache = self.cache
        do {
            let ignored = try await executor.run { connection throws(PGError) in
                try Self.write(batch, cache: cache, on: connection)
            }
            if ignored > 0 { duplicates.add(ignored, ordering: .relaxed) }
        } catch {
            throw Self.sinkError(error)
        }
    }

    /// PostgreSQL commits each batch before `write` returns: nothing to flush.
    public func flush() async throws(SinkError) {}

    public func watermarks() async throws(SinkError) -> [StreamID: Watermark] {
        let rows: [[String?]]
        do {
            rows = try await executor.run { connection throws(PGError) in
                try connection.execute(
                    """
                    SELECT stream, (extract(epoch FROM event_time) * 1000000)::bigint::text, event_id
                    FROM stream_watermarks
                    """
                ).rows
            }
        } catch {
            throw Self.sinkError(error)
        }
        var out: [StreamID: Watermark] = [:]
        for row in rows {
            guard let text = row[0], let stream = StreamID(text), let time = row[1].flatMap({ Int64($0) }) else {
                continue  // a stream this version cannot name (a later version's feed): not ours to resume
            }
            out[stream] = Watermark(time: time, id: row[2])
        }
        return out
    }

    public func gapLedger(of streams: [StreamID], perStream: Int) async throws(SinkError) -> [StreamID: [Gap]] {
        guard !streams.isEmpty else { return [:] }
        let rows: [[String?]]
        do {
            rows = try await executor.run { connection throws(PGError) in
                try connection.execute(
                    """
                    SELECT exchange, feed, symbol, cause, \(Self.micros("from_time")), \(Self.micros("to_time")),
                           missing::text, recovered::text, reason
                    FROM (SELECT g.*, row_number() OVER (PARTITION BY exchange, symbol, feed ORDER BY from_time DESC) AS n
                          FROM gaps g
                          WHERE (exchange || '/' || feed || '/' || symbol) = ANY($1::text[])) newest
                    WHERE n <= $2::integer
                    ORDER BY exchange, symbol, feed, from_time
                    """, [Self.arrayLiteral(streams.map(\.description)), String(perStream)]
                ).rows
            }
        } catch {
            throw Self.sinkError(error)
        }
        var out: [StreamID: [Gap]] = [:]
        for row in rows {
            guard row.count == 9, let exchange = row[0], let feed = row[1], let symbol = row[2],
                let stream = StreamID("\(exchange)/\(feed)/\(symbol)"), let cause = row[3].flatMap(Gap.Cause.init),
                let from = row[4].flatMap({ Int64($0) }), let to = row[5].flatMap({ Int64($0) }),
                let missing = row[6].flatMap({ Int($0) })
            else { continue }  // a row this version cannot read (a later version's cause): not shown
            out[stream, default: []].append(
                Gap(
                    from: from, to: to, missing: missing, cause: cause, recovered: row[7] == "true",
                    reason: row[8] ?? ""))
        }
        return out
    }

    static func micros(_ column: String) -> String { "(extract(epoch FROM \(column)) * 1000000)::bigint::text" }

    /// Maps a libpq failure to its kind: the data itself refused is permanent, everything else transient.
    static func sinkError(_ error: PGError) -> SinkError {
        SinkError(error.isDataError ? .permanent : .transient, error.description)
    }

    // MARK: The transaction

    struct Batch: Sendable {
        var candles: [Candle]
        var trades: [Trade]
        var books: [BookMessage]
        var tickers: [Ticker]
        var gaps: [GapRecord]
        var partitions: [String: (table: String, time: Int64)]
        var watermarks: [StreamID: Watermark]
    }

    /// Returns the rows ignored as already stored.
    private static func write(_ batch: Batch, cache: WriteCache, on connection: PGConnection) throws(PGError) -> Int {
        var attempt = 0
        while true {
            attempt += 1
            if cache.partitions.count > Limits.maxKnownPartitions { cache.partitions.removeAll() }
            for (key, partition) in batch.partitions.sorted(by: { $0.key < $1.key })
            where !cache.partitions.contains(key) {
                try connection.execute(
                    "SELECT ensure_partition($1, $2::timestamptz)",
                    [partition.table, UTCCalendar.iso8601(microseconds: partition.time)])
                cache.partitions.insert(key)
            }
            do throws(PGError) {
                try connection.execute("BEGIN")
                try writeCandles(batch.candles, cache: cache, on: connection)
                var ignored = try insertOrIgnore(
                    batch.trades, table: "trades", columns: tradeColumns, on: connection, encode: tradeCopyText,
                    binary: batch.trades.allSatisfy { isBinaryEncodable($0) }
                        ? { tradeCopyBinary($0, isFirst: $1, isLast: $2) } : nil)
                ignored += try insertOrIgnore(
                    batch.books, table: "book_messages", columns: bookColumns, on: connection, encode: bookCopyText)
                ignored += try insertOrIgnore(
                    batch.tickers, table: "tickers", columns: tickerColumns, on: connection, encode: tickerCopyText)
                try writeGaps(batch.gaps, on: connection)
                try writeWatermarks(batch.watermarks, on: connection)
                try connection.execute("COMMIT")
                rememberUnconfirmed(batch.candles, cache: cache)
                return ignored
            } catch {
                _ = try? connection.execute("ROLLBACK")  // the transaction is already aborted; report the cause
                if attempt == 1 && error.sqlState == "23514" {
                    // "no partition of relation found for row": a partition vanished (retention, an
                    // operator); recreate it once.
                    cache.partitions.removeAll()
                    continue
                }
                if error.kind == .connection { cache.partitions.removeAll() }
                throw error
            }
        }
    }

    /// COPY `rows` straight into `table` inside a savepoint; when some already exist (unique
    /// violation), roll back to it and insert through a staging table, ignoring conflicts. Returns
    /// how many rows were ignored.
    @discardableResult
    static func insertOrIgnore<Row>(
        _ rows: [Row], table: String, columns: String, on connection: PGConnection,
        encode: (ArraySlice<Row>) -> [UInt8],
        binary: ((ArraySlice<Row>, _ isFirst: Bool, _ isLast: Bool) -> [UInt8])? = nil
    ) throws(PGError) -> Int {
        guard !rows.isEmpty else { return 0 }
        try connection.execute("SAVEPOINT fresh_rows")
        do throws(PGError) {
            if let binary {
                // The binary format spares the server its text parsing (numeric_in, the time parser).
                var index = 0
                _ = try connection.copyIn("COPY \(table) (\(columns)) FROM STDIN (FORMAT binary)") { buffer in
                    guard index < rows.count else { return false }
                    let end = min(index + copySliceRows, rows.count)
                    buffer = binary(rows[index..<end], index == 0, end == rows.count)
                    index = end
                    return true
                }
            } else {
                try copySlices(rows, into: "COPY \(table) (\(columns)) FROM STDIN", on: connection, encode: encode)
            }
            try connection.execute("RELEASE SAVEPOINT fresh_rows")
            return 0
        } catch {
            guard error.sqlState == "23505" else { throw error }
            try connection.execute("ROLLBACK TO SAVEPOINT fresh_rows")
        }
        try connection.execute(
            "CREATE TEMP TABLE IF NOT EXISTS \(table)_staging (LIKE \(table) INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
        try copySlices(rows, into: "COPY \(table)_staging (\(columns)) FROM STDIN", on: connection, encode: encode)
        let inserted = try connection.execute(
            "INSERT INTO \(table) (\(columns)) SELECT \(columns) FROM \(table)_staging ON CONFLICT DO NOTHING"
        ).affectedRows
        try connection.execute("TRUNCATE \(table)_staging")
        return rows.count - inserted
    }

    /// Rows per COPY slice: large enough to amortise the call, small enough to overlap with the server.
    static let copySliceRows = 500

    /// Streams `rows` encoded in slices, so PostgreSQL parses one slice while the next is encoded.
    @discardableResult
    static func copySlices<Row>(
        _ rows: [Row], into copySQL: String, on connection: PGConnection, encode: (ArraySlice<Row>) -> [UInt8]
    ) throws(PGError) -> Int {
        var index = 0
        return try connection.copyIn(copySQL) { buffer in
            guard index < rows.count else { return false }
            let end = min(index + copySliceRows, rows.count)
            buffer = encode(rows[index..<end])
            index = end
            return true
        }
    }

    /// Upserts gap-ledger entries: a later record of a gap (same stream, cause and start) replaces the
    /// earlier one's end, count, recovery and reason.
    static func writeGaps(_ records: [GapRecord], on connection: PGConnection) throws(PGError) {
        guard !records.isEmpty else { return }
        // One row per key (a statement may not update one row twice): the last record wins.
        var latest: [String: GapRecord] = [:]
        var order: [String] = []
        for record in records {
            let key = "\(record.stream)|\(record.gap.cause.rawValue)|\(record.gap.from)"
            if latest.updateValue(record, forKey: key) == nil { order.append(key) }
        }
        let rows = order.compactMap { latest[$0] }
        func column(_ value: (GapRecord) -> String) -> String { arrayLiteral(rows.map(value)) }
        try connection.execute(
            """
            INSERT INTO gaps AS g (exchange, symbol, feed, cause, from_time, to_time, missing, recovered, reason,
                                   recorded_at)
            SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[],
                                 $6::timestamptz[], $7::bigint[], $8::boolean[], $9::text[], $10::timestamptz[])
            ON CONFLICT (exchange, symbol, feed, cause, from_time) DO UPDATE SET
                to_time = EXCLUDED.to_time, missing = EXCLUDED.missing, recovered = EXCLUDED.recovered,
                reason = EXCLUDED.reason, recorded_at = EXCLUDED.recorded_at
            WHERE EXCLUDED.recorded_at >= g.recorded_at
            """,
            [
                column { $0.stream.exchange.rawValue }, column { $0.stream.symbol },
                column { $0.stream.feed.description }, column { $0.gap.cause.rawValue },
                column { UTCCalendar.iso8601(microseconds: $0.gap.from) },
                column { UTCCalendar.iso8601(microseconds: $0.gap.to) }, column { String($0.gap.missing) },
                column { $0.gap.recovered ? "true" : "false" }, column { $0.gap.reason },
                column { UTCCalendar.iso8601(microseconds: $0.recordedAt) },
            ])
    }

    /// Moves each stream's watermark forward (never back), in the batch's transaction.
    private static func writeWatermarks(_ marks: [StreamID: Watermark], on connection: PGConnection) throws(PGError) {
        guard !marks.isEmpty else { return }
        let sorted = marks.sorted { $0.key < $1.key }
        try connection.execute(
            """
            INSERT INTO stream_watermarks AS w (stream, event_time, event_id)
            SELECT * FROM unnest($1::text[], $2::timestamptz[], $3::text[])
            ON CONFLICT (stream) DO UPDATE SET
                event_time = EXCLUDED.event_time, event_id = EXCLUDED.event_id, updated_at = now()
            WHERE EXCLUDED.event_time > w.event_time
               OR (EXCLUDED.event_time = w.event_time
                   AND (length(coalesce(EXCLUDED.event_id, '')), coalesce(EXCLUDED.event_id, ''))
                     > (length(coalesce(w.event_id, '')), coalesce(w.event_id, '')))
            """,
            [
                arrayLiteral(sorted.map { $0.key.description }),
                arrayLiteral(sorted.map { UTCCalendar.iso8601(microseconds: $0.value.time) }),
                arrayLiteral(sorted.map { $0.value.id }),
            ])
    }

    /// A PostgreSQL array literal of quoted elements (`NULL` for nil).
    static func arrayLiteral(_ values: [String?]) -> String {
        var out = "{"
        for (i, value) in values.enumerated() {
            if i > 0 { out += "," }
            guard let value else {
                out += "NULL"
                continue
            }
            out += "\""
            for ch in value.unicodeScalars {
                if ch == "\"" || ch == "\\" { out += "\\" }
                out.unicodeScalars.append(ch)
            }
            out += "\""
        }
        return out + "}"
    }

    /// `year * 12 + month - 1` of a µs time (UTC).
    static func monthKey(_ t: Int64) -> Int {
        let d = UTCCalendar.date(ofMicroseconds: t)
        return d.year * 12 + d.month - 1
    }
}
