import Foundation
import Locking
public import MarketData
import Runtime
import Synchronization

/// The durability point of the data plane (DESIGN.md §4): every batch is written, fsynced, to
/// `<data>/spool/<sequence>.batch` (temporary name, fsync, rename, fsync the directory) before it is
/// acknowledged, and kept until every configured sink has made it durable. Each sink has its own
/// cursor (`<data>/spool/cursors/<sink>`, the last sequence it has stored), so a slow or absent
/// sink never loses data and never holds back the others — until the spool's bound is reached:
/// then `append` refuses batches, which pushes back up to the exchange sockets.
///
/// Survives restarts: batch files and cursors are found at start-up; a sink with no cursor file
/// (a new sink, or a spool left by the candle-only version) starts at the oldest batch.
/// Blocking file I/O runs on the caller's thread: call from one serial file-I/O queue (the
/// dispatcher's), never the event loop; appends and advances must not run concurrently, so that
/// sequences land on disk in order.
public final class Spool: Sendable {
    public let directory: String
    public let maxBytes: Int
    /// The sinks that must store each batch before it is removed.
    public let sinkNames: [String]
    private let state: Locked<State>

    private struct State {
        var files: [(sequence: UInt64, bytes: Int)] = []
        var nextSequence: UInt64 = 1
        var totalBytes = 0
        /// Last sequence each sink has stored.
        var cursors: [String: UInt64] = [:]
    }

    /// The spool is full: the caller holds the batch and waits for space.
    public struct FullError: Error, CustomStringConvertible {
        public var description: String { "spool full" }
    }

    /// A batch file that cannot be read back (corrupt, or a newer format); it stays on disk.
    public struct UnreadableBatch: Error, CustomStringConvertible {
        public var sequence: UInt64
        public var reason: String
        public var description: String { "spool batch \(sequence) unreadable: \(reason)" }
    }

    /// Opens (or creates) the spool directory, indexes leftover batches and reads the cursors.
    public init(directory: String, maxBytes: Int, sinks: [String] = ["postgres"]) throws {
        precondition(!sinks.isEmpty, "a spool needs at least one sink")
        self.directory = directory
        self.maxBytes = maxBytes
        self.sinkNames = sinks
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory + "/cursors", withIntermediateDirectories: true)
        var state = State()
        for name in try fm.contentsOfDirectory(atPath: directory) {
            if name.hasSuffix(".batch.tmp") {
                // A batch interrupted before its rename was never acknowledged to anyone.
                try fm.removeItem(atPath: directory + "/" + name)
                continue
            }
            guard name.hasSuffix(".batch"), let sequence = UInt64(name.dropLast(6)) else { continue }
            let attributes = try fm.attributesOfItem(atPath: directory + "/" + name)
            let size = (attributes[.size] as? Int) ?? 0
            state.files.append((sequence, size))
            state.totalBytes += size
            state.nextSequence = max(state.nextSequence, sequence + 1)
        }
        state.files.sort { $0.sequence < $1.sequence }
        let oldest = state.files.first?.sequence ?? state.nextSequence
        for sink in sinks {
            let path = "\(directory)/cursors/\(sink)"
            // try?: an absent or unreadable cursor starts at the oldest batch: batches are written again
            // (idempotent), never skipped.
            if let text = try? String(contentsOfFile: path, encoding: .utf8),
                let value = UInt64(text.trimmingCharacters(in: .whitespacesAndNewlines))
            {
                state.cursors[sink] = value
                state.nextSequence = max(state.nextSequence, value + 1)
            } else {
                state.cursors[sink] = oldest - 1
            }
        }
        self.state = Locked(state)
        try collect()
    }

    /// Batches waiting for at least one sink.
    public var batchCount: Int { state.withLock { $0.files.count } }
    /// Bytes waiting.
    public var byteCount: Int { state.withLock { $0.totalBytes } }
    public var isEmpty: Bool { batchCount == 0 }

    /// Batches `sink` has not stored yet.
    public func backlog(of sink: String) -> Int {
        state.withLock { s in
            let cursor = s.cursors[sink] ?? 0
            return s.files.reduce(0) { $0 + ($1.sequence > cursor ? 1 : 0) }
        }
    }

    /// Appends a batch durably and returns its sequence; throws `FullError` when it would exceed
    /// `maxBytes` (an empty spool always takes one batch, so a batch larger than the bound still moves).
    @discardableResult
    public func append(_ events: [MarketEvent]) throws -> UInt64 {
        let data = SpoolFormat.encode(events)
        let sequence = try state.withLock { s -> UInt64 in
            guard s.totalBytes + data.count <= maxBytes || s.files.isEmpty else { throw FullError() }
            defer { s.nextSequence += 1 }
            // Reserve the bytes now, so concurrent appends cannot overshoot the bound together.
            s.totalBytes += data.count
            return s.nextSequence
        }
        do {
            try DurableFile.write(data, to: path(sequence))
        } catch {
            state.withLock { $0.totalBytes -= data.count }
            throw error
        }
        state.withLock { s in
            let index = s.files.firstIndex { $0.sequence > sequence } ?? s.files.endIndex
            s.files.insert((sequence, data.count), at: index)
        }
        return sequence
    }

    /// The oldest batch `sink` has not stored yet, or nil.
    public func next(for sink: String) -> UInt64? {
        state.withLock { s in
            let cursor = s.cursors[sink] ?? 0
            return s.files.first { $0.sequence > cursor }?.sequence
        }
    }

    /// Up to `limit` batches `sink` has not stored yet (after `after`, when given), oldest first.
    public func pending(for sink: String, after: UInt64? = nil, limit: Int) -> [UInt64] {
        state.withLock { s in
            let cursor = max(s.cursors[sink] ?? 0, after ?? 0)
            var out: [UInt64] = []
            for file in s.files where file.sequence > cursor {
                out.append(file.sequence)
                if out.count >= limit { break }
            }
            return out
        }
    }

    /// Reads one batch back.
    public func read(_ sequence: UInt64) throws -> [MarketEvent] {
        let data = try Data(contentsOf: URL(fileURLWithPath: path(sequence)))
        do {
            return try SpoolFormat.decode(Array(data))
        } catch {
            throw UnreadableBatch(sequence: sequence, reason: error.description)
        }
    }

    /// Records that `sink` has stored every batch up to `sequence`, then removes the batches every
    /// sink has stored.
    ///
    /// Neither the cursor nor the removal is fsynced: after a crash a cursor may come back older and
    /// a removed batch may reappear, and both only mean batches are written again (sinks are
    /// idempotent; collection is at-least-once). Sequences stay ordered relative to every cursor
    /// because new ones start above the highest cursor and file found. Only `append` must be durable.
    public func advance(_ sink: String, to sequence: UInt64) throws {
        // In memory first: a cursor file that cannot be written must not make the sink store the same
        // batch again and again (after a restart it is written again once: idempotent).
        state.withLock { s in s.cursors[sink] = max(s.cursors[sink] ?? 0, sequence) }
        try DurableFile.write(Array("\(sequence)\n".utf8), to: "\(directory)/cursors/\(sink)", sync: false)
        try collect()
    }

    /// Moves an unreadable batch to `<spool>/unreadable/` (kept for an operator, out of the way of
    /// the batches behind it) and forgets it.
    public func quarantine(_ sequence: UInt64) throws {
        let fm = FileManager.default
        try fm.createDirectory(atPath: directory + "/unreadable", withIntermediateDirectories: true)
        try fm.moveItem(atPath: path(sequence), toPath: "\(directory)/unreadable/\(fileName(sequence))")
        DurableFile.syncDirectory(of: path(sequence))
        forget(sequence)
    }

    /// Removes the batch files every sink has stored.
    private func collect() throws {
        let done = state.withLock { s -> [UInt64] in
            let floor = s.cursors.values.min() ?? 0
            return s.files.prefix { $0.sequence <= floor }.map(\.sequence)
        }
        for sequence in done {
            try DurableFile.remove(path(sequence), sync: false)
            forget(sequence)
        }
    }

    private func forget(_ sequence: UInt64) {
        state.withLock { s in
            if let index = s.files.firstIndex(where: { $0.sequence == sequence }) {
                s.totalBytes -= s.files[index].bytes
                s.files.remove(at: index)
            }
        }
    }

    private func fileName(_ sequence: UInt64) -> String { String(format: "%020llu", sequence) + ".batch" }
    private func path(_ sequence: UInt64) -> String { directory + "/" + fileName(sequence) }
}
