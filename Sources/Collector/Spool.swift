import Foundation
public import MarketData
import Runtime
import Synchronization
import WireCore

/// The durability point when a sink is away (DESIGN.md §4): batches are written, fsynced, to
/// `<data>/spool/<sequence>.batch` (write to a temporary name, fsync, rename, fsync the directory)
/// and replayed oldest first. Bounded by `maxBytes`: a full spool refuses batches, which pushes back
/// up to the exchange sockets. It survives restarts: existing batch files are found at start-up.
/// Blocking file I/O runs on the caller's thread: call from the writer task's executor, never the loop.
public final class Spool: Sendable {
    public let directory: String
    public let maxBytes: Int
    private let state: Mutex<State>

    private struct State {
        var files: [(sequence: UInt64, bytes: Int)] = []
        var nextSequence: UInt64 = 1
        var totalBytes = 0
    }

    /// The spool is full.
    public struct FullError: Error, CustomStringConvertible {
        public var description: String { "spool full" }
    }

    /// Opens (or creates) the spool directory and indexes leftover batches.
    public init(directory: String, maxBytes: Int) throws {
        self.directory = directory
        self.maxBytes = maxBytes
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        var state = State()
        for name in try FileManager.default.contentsOfDirectory(atPath: directory) {
            if name.hasSuffix(".batch.tmp") {
                // A batch interrupted before its rename was never acknowledged to anyone.
                try? FileManager.default.removeItem(atPath: directory + "/" + name)
                continue
            }
            guard name.hasSuffix(".batch"), let sequence = UInt64(name.dropLast(6)) else { continue }
            // A file we cannot stat still gets replayed; it just does not count towards the bound.
            let attributes = try? FileManager.default.attributesOfItem(atPath: directory + "/" + name)
            let size = (attributes?[.size] as? Int) ?? 0
            state.files.append((sequence, size))
            state.totalBytes += size
            state.nextSequence = max(state.nextSequence, sequence + 1)
        }
        state.files.sort { $0.sequence < $1.sequence }
        self.state = Mutex(state)
    }

    /// Batches waiting.
    public var batchCount: Int { state.withLock { $0.files.count } }
    /// Bytes waiting.
    public var byteCount: Int { state.withLock { $0.totalBytes } }
    public var isEmpty: Bool { batchCount == 0 }

    /// Appends a batch durably; throws `FullError` when it would exceed `maxBytes`.
    public func append(_ candles: [Candle]) throws {
        let data = Self.encode(candles)
        let sequence = try state.withLock { s -> UInt64 in
            guard s.totalBytes + data.count <= maxBytes || s.files.isEmpty else { throw FullError() }
            defer { s.nextSequence += 1 }
            return s.nextSequence
        }
        try DurableFile.write(data, to: "\(directory)/\(String(format: "%020llu", sequence)).batch")
        state.withLock { s in
            s.files.append((sequence, data.count))
            s.totalBytes += data.count
        }
    }

    /// The oldest batch, without removing it.
    public func oldest() throws -> (sequence: UInt64, candles: [Candle])? {
        guard let first = state.withLock({ $0.files.first }) else { return nil }
        let path = "\(directory)/\(String(format: "%020llu", first.sequence)).batch"
        let data = try Data(contentsOf: URL(fileURLWithPath: path))
        return (first.sequence, try Self.decode(Array(data)))
    }

    /// Removes a replayed batch.
    public func remove(_ sequence: UInt64) throws {
        try DurableFile.remove("\(directory)/\(String(format: "%020llu", sequence)).batch")
        state.withLock { s in
            if let index = s.files.firstIndex(where: { $0.sequence == sequence }) {
                s.totalBytes -= s.files[index].bytes
                s.files.remove(at: index)
            }
        }
    }

    /// One candle per line: a JSON array of strings (the exchange's digits kept as text).
    static func encode(_ candles: [Candle]) -> [UInt8] {
        var out = ""
        for c in candles {
            let fields = [
                c.exchange.rawValue, c.symbol, c.timeframe.key, String(c.openTime), c.open.text, c.high.text,
                c.low.text, c.close.text, c.volume.text, c.quoteVolume.text, c.isConfirmed ? "1" : "0",
                String(c.timestampExchange), String(c.timestampCollector),
            ]
            out += "[" + fields.map(JSONText.quoted).joined(separator: ",") + "]\n"
        }
        return Array(out.utf8)
    }

    struct CorruptBatch: Error, CustomStringConvertible {
        var description: String
    }

    static func decode(_ bytes: [UInt8]) throws -> [Candle] {
        var candles: [Candle] = []
        for line in bytes.split(separator: 10) where !line.isEmpty {
            let fields: [String] = try Array(line).withUnsafeBytes { raw in
                var scanner = JSONScanner(raw)
                var out: [String] = []
                try scanner.readArray { _, s throws(JSONError) in out.append(try s.readString()) }
                return out
            }
            guard fields.count == 13, let exchange = ExchangeName(rawValue: fields[0]), let tf = Timeframe(fields[2]),
                let openTime = Int64(fields[3]), let o = DecimalText(fields[4]), let h = DecimalText(fields[5]),
                let l = DecimalText(fields[6]), let c = DecimalText(fields[7]), let v = DecimalText(fields[8]),
                let q = DecimalText(fields[9]), let tsE = Int64(fields[11]), let tsC = Int64(fields[12])
            else { throw CorruptBatch(description: "corrupt spool record") }
            candles.append(
                Candle(
                    exchange: exchange, symbol: fields[1], timeframe: tf, openTime: openTime, open: o, high: h, low: l,
                    close: c, volume: v, quoteVolume: q, isConfirmed: fields[10] == "1", timestampExchange: tsE,
                    timestampCollector: tsC))
        }
        return candles
    }
}
