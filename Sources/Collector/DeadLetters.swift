import Foundation
import Locking
public import MarketData
public import Observability
import Synchronization
import WireCore

/// Messages and events that cannot be stored, kept with their raw text and the reason (DESIGN.md §4):
/// `<data>/dead-letters/<YYYY-MM-DD>.jsonl`, one JSON object per line
/// (`time`, `exchange`, `source` — `parser` or `sink:<name>` —, `reason`, `raw`). Writes happen on a
/// private queue, never on the event loop; the day's file stays open between records.
///
/// Bounded: at most `maxBytes` in the directory and `Limits.maxPending` records waiting to be
/// written. Past either bound a record is not written: it is counted (`droppedCount`, the metric
/// `collector_dead_letters_dropped_total`) and logged, never dropped silently.
public final class DeadLetters: Sendable {
    public let directory: String
    public let maxBytes: Int
    private let queue = DispatchQueue(label: "collector.dead-letters")
    private let written = Atomic<Int>(0)
    private let dropped = Atomic<Int>(0)
    private let pending = Atomic<Int>(0)
    private let pendingBytes = Atomic<Int>(0)
    private let file: Locked<OpenFile>
    private let logger: Logger

    enum Limits {
        /// Records queued for the writer at most (a flood of malformed frames must not grow memory).
        static let maxPending = 10_000
        /// Bytes queued for the writer at most (records can be up to `maxRawBytes` each).
        static let maxPendingBytes = 64 << 20
        /// Raw text kept per record: the largest WebSocket message we accept, with room.
        static let maxRawBytes = 2 << 20
    }

    /// The open day file and the directory's size (touched on `queue` only, behind the mutex).
    private struct OpenFile: @unchecked Sendable {
        // @unchecked Sendable: the FileHandle is used only on `queue`, inside the mutex.
        var day = ""
        var handle: FileHandle?
        var bytes = 0
        var lastError: String?
    }

    public init(directory: String, maxBytes: Int = 1 << 30, logger: Logger = .disabled) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        self.logger = logger
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var total = 0
        for name in try fm.contentsOfDirectory(atPath: directory) where name.hasSuffix(".jsonl") {
            total += (try fm.attributesOfItem(atPath: directory + "/" + name)[.size] as? Int) ?? 0
        }
        file = Locked(OpenFile(bytes: total))
    }

    deinit {
        file.withLock { f in
            // try?: closing a file we only appended to cannot lose data already written.
            try? f.handle?.close()
        }
    }

    /// Records written since start.
    public var count: Int { written.load(ordering: .relaxed) }
    /// Records refused by a bound since start.
    public var droppedCount: Int { dropped.load(ordering: .relaxed) }
    /// The last write error, if any.
    public var lastError: String? { file.withLock { $0.lastError } }

    /// Records `raw` (as received, or a sink-refused event in spool format) with `reason`.
    public func record(exchange: ExchangeName, raw: String, reason: String, at time: Int64, source: String = "parser") {
        guard pending.add(1, ordering: .relaxed).newValue <= Limits.maxPending else {
            pending.subtract(1, ordering: .relaxed)
            drop("too many dead letters waiting to be written")
            return
        }
        var kept = raw
        if kept.utf8.count > Limits.maxRawBytes {
            kept = String(decoding: raw.utf8.prefix(Limits.maxRawBytes), as: UTF8.self) + "…(truncated)"
        }
        let stamp = UTCCalendar.iso8601(microseconds: time)
        let line =
            "{\"time\":\(JSONText.quoted(stamp)),\"exchange\":\"\(exchange)\",\"source\":\(JSONText.quoted(source)),\"reason\":\(JSONText.quoted(reason)),\"raw\":\(JSONText.quoted(kept))}\n"
        let day = String(stamp.prefix(10))
        let size = line.utf8.count
        guard pendingBytes.add(size, ordering: .relaxed).newValue <= Limits.maxPendingBytes else {
            pendingBytes.subtract(size, ordering: .relaxed)
            pending.subtract(1, ordering: .relaxed)
            drop("too many dead-letter bytes waiting to be written")
            return
        }
        queue.async { [self] in
            defer {
                pending.subtract(1, ordering: .relaxed)
                pendingBytes.subtract(size, ordering: .relaxed)
            }
            let data = Data(line.utf8)
            let outcome = file.withLock { f -> String? in
                guard f.bytes + data.count <= maxBytes else { return "dead-letter directory full (\(maxBytes) bytes)" }
                do {
                    if f.day != day || f.handle == nil {
                        try f.handle?.close()
                        let path = "\(directory)/\(day).jsonl"
                        if !FileManager.default.fileExists(atPath: path) {
                            guard FileManager.default.createFile(atPath: path, contents: nil) else {
                                throw CocoaError(.fileWriteUnknown)
                            }
                        }
                        guard let handle = FileHandle(forWritingAtPath: path) else {
                            throw CocoaError(.fileWriteNoPermission)
                        }
                        try handle.seekToEnd()
                        f.handle = handle
                        f.day = day
                    }
                    try f.handle?.write(contentsOf: data)
                    f.bytes += data.count
                    return nil
                } catch {
                    f.lastError = "\(error)"
                    f.handle = nil
                    return "cannot write the dead-letter file: \(error)"
                }
            }
            if let outcome {
                drop(outcome)
            } else {
                written.add(1, ordering: .relaxed)
            }
        }
    }

    private func drop(_ why: String) {
        let n = dropped.add(1, ordering: .relaxed).newValue
        // Log the first refusal and then every 1,000th, so a flood cannot flood the log too.
        if n == 1 || n % 1000 == 0 { logger.error("dead letter not written", ["error": why, "dropped": "\(n)"]) }
    }

    /// Waits until queued records are on disk, without holding a cooperative thread meanwhile.
    public func flush() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            queue.async {
                self.syncToDisk()
                continuation.resume()
            }
        }
    }

    /// Waits until queued records are on disk (synchronous callers: tests, start-up).
    public func flush() {
        queue.sync { syncToDisk() }
    }

    /// The fsync of the file. On `queue` only.
    private func syncToDisk() {
        file.withLock { f in
            do {
                try f.handle?.synchronize()
            } catch {
                f.lastError = "\(error)"
                logger.error("cannot fsync the dead-letter file", ["error": "\(error)"])
            }
        }
    }
}
