import Locking
public import MarketData
import Synchronization

/// A per-stream write counter: bumped after every committed write of a stream's candles, so readers
/// can cache query results and know when they went stale (read the version before querying).
public final class StreamVersions: Sendable {
    private let versions = Locked<[StreamID: UInt64]>([:])

    public init() {}

    /// The current version of `stream` (0 before any write).
    public func version(of stream: StreamID) -> UInt64 { versions.withLock { $0[stream] ?? 0 } }

    /// Marks `streams` as changed.
    public func bump(_ streams: Set<StreamID>) {
        guard !streams.isEmpty else { return }
        versions.withLock { table in
            for stream in streams { table[stream, default: 0] &+= 1 }
        }
    }
}
