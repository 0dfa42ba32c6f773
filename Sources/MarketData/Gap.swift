/// One entry of a stream's gap ledger: a stretch of the stream known to have been missed, why, and
/// whether it was made whole afterwards (REST backfill). Books and tickers cannot be backfilled, so
/// their gaps stay unrecovered.
public struct Gap: Sendable, Equatable, Hashable {
    /// Why data went missing.
    public enum Cause: String, Sendable, Hashable, CaseIterable {
        /// The connection dropped (or the process restarted) and the stream lost what came meanwhile.
        case reconnect
        /// A book's sequence numbers broke: updates were missed.
        case sequenceBreak = "sequence_break"
        /// A book's checksum did not match: the local book was wrong and was resynchronised.
        case checksum
        /// The exchange refused the subscription (or the connection failed for good) for a while.
        case refused
        /// A sink refused the events (dead-lettered).
        case sink
    }

    /// Exchange times (µs): the first missing bar (candles) or the last event seen before the gap,
    /// and the last missing bar or the first event after it; inclusive.
    public var from: Int64
    public var to: Int64
    /// Units missing where they can be counted (bars, fills); 0 when unknown (books, tickers).
    public var missing: Int
    public var cause: Cause
    /// REST supplied everything that was missing.
    public var recovered: Bool
    /// A human-readable detail (the REST error, the sequence numbers).
    public var reason: String

    public init(from: Int64, to: Int64, missing: Int, cause: Cause, recovered: Bool = false, reason: String) {
        self.from = from
        self.to = to
        self.missing = missing
        self.cause = cause
        self.recovered = recovered
        self.reason = reason
    }
}

/// A gap-ledger entry of one stream as the sinks store it (PostgreSQL `gaps`, keyed by stream,
/// cause and `from`; a later record with the same key updates `to`, `missing` and `recovered`).
public struct GapRecord: Sendable, Equatable, Hashable {
    public var stream: StreamID
    public var gap: Gap
    /// When the collector recorded it (µs since the epoch).
    public var recordedAt: Int64

    public init(stream: StreamID, gap: Gap, recordedAt: Int64) {
        self.stream = stream
        self.gap = gap
        self.recordedAt = recordedAt
    }
}
