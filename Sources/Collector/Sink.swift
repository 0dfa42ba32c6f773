public import MarketData

/// Why a sink did not store a batch (DESIGN.md §4 "errors by kind").
///
/// | kind | meaning | what the dispatcher does |
/// |---|---|---|
/// | `transient` | connection lost, timeout, server shutting down | keeps the batch in the spool, retries with backoff |
/// | `permanent` | the sink refuses the data itself (a data or constraint error) | splits the batch to find the events it refuses, dead-letters those with the reason, stores the rest |
public struct SinkError: Error, Sendable, Equatable, CustomStringConvertible {
    public enum Kind: String, Sendable, Equatable {
        case transient, permanent
    }
    public var kind: Kind
    /// Safe to log and to show to operators: no conninfo, no row values.
    public var message: String

    public init(_ kind: Kind, _ message: String) {
        self.kind = kind
        self.message = message
    }

    public var description: String { "\(kind) sink error: \(message)" }
}

/// Where events end up: PostgreSQL today, Parquet files (and S3 behind them) later. The engine and
/// the spool depend on this interface only.
///
/// Contract: `write` returns once the events are durable in this sink (PostgreSQL: committed; a file
/// sink: fsynced) and is idempotent on the natural keys, because after a crash or a retry the same
/// events are written again (collection is at-least-once, DESIGN.md §3). Calls for one sink never
/// overlap: the dispatcher runs one delivery task per sink.
public protocol Sink: AnyObject, Sendable {
    /// A stable name: the spool cursor's file name and the `sink` metric label (`postgres`).
    var name: String { get }
    /// Makes `events` durable; throws `SinkError` by kind.
    func write(_ events: [MarketEvent]) async throws(SinkError)
    /// Makes everything accepted so far durable (a file sink closes its open files); called at shutdown.
    func flush() async throws(SinkError)
    /// The newest stored event of every stream this sink knows, read at start-up without scanning data.
    func watermarks() async throws(SinkError) -> [StreamID: Watermark]
    /// The newest `perStream` gap-ledger entries of each of `streams` this sink holds, oldest first
    /// (a restarted collector shows the ledger it wrote before). Default: none kept.
    func gapLedger(of streams: [StreamID], perStream: Int) async throws(SinkError) -> [StreamID: [Gap]]
}

extension Sink {
    public func gapLedger(of streams: [StreamID], perStream: Int) async throws(SinkError) -> [StreamID: [Gap]] {
        [:]
    }
}
