import Collector
import Dispatch
import Foundation
import MarketData
import PostgresClient

/// What the PostgreSQL benchmark modes share: schema and partitions made before the clock starts,
/// batched writes through `PostgresSink`, and the blocking bridge from `main` to async code.
enum PGBench {
    /// Runs `body` on a detached task and waits for it; a thrown error ends the process (exit 64).
    static func blocking<T: Sendable>(_ body: @escaping @Sendable () async throws -> T) -> T {
        let done = DispatchSemaphore(value: 0)
        let box = OutcomeBox<T>()
        Task.detached {
            do {
                box.outcome = .success(try await body())
            } catch {
                box.outcome = .failure("\(error)")
            }
            done.signal()
        }
        done.wait()
        switch box.outcome {
        case .success(let value): return value
        case .failure(let message): fail(message)
        case nil: fail("benchmark task ended without a result")
        }
    }

    /// Applies the migrations and creates the month partitions of `table` from `first` to `last`
    /// (µs), so that neither our writer nor `psql \copy` creates one while it is timed.
    static func prepare(_ executor: PGExecutor, table: String, first: Int64, last: Int64) async throws {
        guard let directory = SchemaMigrator.locateSQLDirectory(environment: ProcessInfo.processInfo.environment)
        else { fail("sql/init not found") }
        try await SchemaMigrator.migrate(try SchemaMigrator.migrations(in: directory), executor: executor)
        let months = monthStarts(from: first, to: last)
        try await executor.run { c throws(PGError) in
            for month in months {
                try c.execute(
                    "SELECT ensure_partition($1, $2::timestamptz)",
                    [table, UTCCalendar.iso8601(microseconds: month)])
            }
        }
    }

    /// 00:00 UTC on the first of every month from `first`'s to `last`'s (µs).
    static func monthStarts(from first: Int64, to last: Int64) -> [Int64] {
        var (year, month, _) = UTCCalendar.date(ofMicroseconds: first)
        let end = UTCCalendar.date(ofMicroseconds: last)
        var out: [Int64] = []
        while (year, month) <= (end.year, end.month) {
            out.append(UTCCalendar.microseconds(year: year, month: month, day: 1))
            (year, month) = month == 12 ? (year + 1, 1) : (year, month + 1)
        }
        return out
    }

    /// Empties `table` (keeping its partitions).
    static func truncate(_ executor: PGExecutor, table: String) async throws {
        try await executor.run { c throws(PGError) in _ = try c.execute("TRUNCATE \(table)") }
    }

    /// Rows in `table`.
    static func count(_ executor: PGExecutor, table: String) async throws -> Int {
        let text = try await executor.run { c throws(PGError) in try c.execute("SELECT count(*) FROM \(table)").scalar }
        return Int(text ?? "0") ?? 0
    }

    /// Writes `events` through one `PostgresSink`, `batch` events per `write` (one transaction
    /// each), as the dispatcher does; returns the seconds it took. The batches are cut before the
    /// clock starts: building the input is the caller's work, not the sink's.
    static func timedWrites(_ events: [MarketEvent], batch: Int, executor: PGExecutor) async throws -> Double {
        let batches = stride(from: 0, to: events.count, by: batch).map {
            Array(events[$0..<min($0 + batch, events.count)])
        }
        let sink = PostgresSink(executor: executor)
        let start = DispatchTime.now().uptimeNanoseconds
        // COLLECTOR_BENCH_PROGRESS=1: seconds per tenth of the batches on stderr (where a run slows down).
        let progress = ProcessInfo.processInfo.environment["COLLECTOR_BENCH_PROGRESS"] != nil
        var mark = start
        for (i, events) in batches.enumerated() {
            try await sink.write(events)
            if progress && (i + 1) % max(1, batches.count / 10) == 0 {
                let now = DispatchTime.now().uptimeNanoseconds
                FileHandle.standardError.write(
                    Data(String(format: "PROGRESS batches=%d seconds=%.3f\n", i + 1, Double(now - mark) / 1e9).utf8))
                mark = now
            }
        }
        return Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
    }

    /// The backlog a sink meets after an outage: `events` appended to a fresh spool in `batch`-event
    /// batches (fsynced, untimed), then timed while a `SinkDispatcher` with one `PostgresSink` drains
    /// it from disk, joining batches up to its `maxEventsPerWrite` per transaction. Returns the seconds.
    static func timedBacklogDrain(
        _ events: [MarketEvent], batch: Int, maxEventsPerWrite: Int, executor: PGExecutor
    ) async throws -> Double {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent(
            "collector-bench-spool-\(ProcessInfo.processInfo.processIdentifier)-\(DispatchTime.now().uptimeNanoseconds)"
        ).path
        defer {
            do {
                try FileManager.default.removeItem(atPath: directory)
            } catch {
                FileHandle.standardError.write(Data("NOTE cannot remove \(directory): \(error)\n".utf8))
            }
        }
        let spool = try Spool(directory: directory + "/spool", maxBytes: Int.max, sinks: ["postgres"])
        for start in stride(from: 0, to: events.count, by: batch) {
            try spool.append(Array(events[start..<min(start + batch, events.count)]))
        }
        let dispatcher = try SinkDispatcher(
            spool: spool, sinks: [PostgresSink(executor: executor)],
            deadLetters: try DeadLetters(directory: directory + "/dead"), maxEventsPerWrite: maxEventsPerWrite)
        let start = DispatchTime.now().uptimeNanoseconds
        dispatcher.start()
        guard await dispatcher.waitUntilDrained(timeout: .seconds(3600)) else { fail("the spool did not drain") }
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        guard await dispatcher.finish(timeout: .seconds(10)) else { fail("the dispatcher did not finish") }
        if let problem = dispatcher.sinkStates.first(where: { $0.deadLettered > 0 || $0.permanentErrors > 0 }) {
            fail("the sink refused events: \(problem)")
        }
        return seconds
    }

    /// Writes `bytes` to `path`, or exits.
    static func writeFile(_ bytes: [UInt8], to path: String) {
        guard FileManager.default.createFile(atPath: path, contents: Data(bytes)) else { fail("cannot write \(path)") }
    }
}

/// The result of `PGBench.blocking`'s task.
enum Outcome<T> {
    case success(T)
    case failure(String)
}

final class OutcomeBox<T>: @unchecked Sendable {
    // @unchecked Sendable: written once by the task before it signals the semaphore, read after the wait.
    var outcome: Outcome<T>?
}
