public import Exchanges
import Locking
public import MarketData
import Synchronization

/// What a stream is doing, for the status API and tests.
public struct StreamStatus: Sendable, Equatable {
    public typealias State = StreamPhase
    public var stream: StreamID
    public var state: State = .pending
    /// Collector time (µs) of the last event.
    public var lastEventTime: Int64?
    /// Open time (µs) of the newest candle seen.
    public var lastCandleOpenTime: Int64?
    /// Open time (µs) of the newest confirmed candle seen or stored.
    public var lastConfirmedOpenTime: Int64?
    public var messages = 0
    public var errors = 0
    public var lastError: String?
    /// The exchange's code and message when it refused the subscription.
    public var rejection: (code: String, message: String)?
    public var backfilledBars = 0
    /// The newest known gaps, at most `maxGaps` (older ones are counted in `olderGaps`).
    public private(set) var gaps: [Gap] = []
    /// Gaps dropped from `gaps` by its bound (their bars stay counted in the gap metric).
    public private(set) var olderGaps = 0
    public var reconnects = 0
    /// A full-depth book: synchronised now (seeded, and every update since in sequence). False for
    /// every other feed, and for a book not (or no longer) synchronised.
    public var bookSynchronised = false
    /// The latest window end (a hand-over's cutover) an event of the stream has reached.
    public var passedUntil: Int64?

    /// Gaps kept per stream: a stream that keeps losing bars must not grow memory without bound.
    public static let maxGaps = 256

    /// Records `new` gaps, keeping the newest `maxGaps`; an entry with the cause and start of one
    /// already kept replaces it (a gap that closed or was recovered). Returns the new ones.
    @discardableResult
    public mutating func addGaps(_ new: [Gap]) -> [Gap] {
        var added: [Gap] = []
        for gap in new {
            if let i = gaps.lastIndex(where: { $0.cause == gap.cause && $0.from == gap.from }) {
                gaps[i] = gap
            } else {
                gaps.append(gap)
                added.append(gap)
            }
        }
        defer { trim() }
        return added
    }

    private mutating func trim() {
        if gaps.count > Self.maxGaps {
            let excess = gaps.count - Self.maxGaps
            gaps.removeFirst(excess)
            olderGaps += excess
        }
    }

    public init(stream: StreamID) { self.stream = stream }

    public static func == (lhs: StreamStatus, rhs: StreamStatus) -> Bool {
        lhs.stream == rhs.stream && lhs.state == rhs.state && lhs.lastEventTime == rhs.lastEventTime
            && lhs.messages == rhs.messages && lhs.errors == rhs.errors && lhs.gaps == rhs.gaps
            && lhs.rejection?.code == rhs.rejection?.code && lhs.lastError == rhs.lastError
    }
}

/// Thread-safe table of stream statuses (written on the event loop, read by the API).
public final class StatusRegistry: Sendable {
    private let table = Locked<[StreamID: StreamStatus]>([:])

    public init() {}

    /// Mutates the status of `stream` (created if missing).
    public func update(_ stream: StreamID, _ body: (inout StreamStatus) -> Void) {
        table.withLock { table in
            var status = table[stream] ?? StreamStatus(stream: stream)
            body(&status)
            table[stream] = status
        }
    }

    /// Removes a stream.
    public func remove(_ stream: StreamID) { table.withLock { _ = $0.removeValue(forKey: stream) } }

    /// The status of one stream.
    public func status(_ stream: StreamID) -> StreamStatus? { table.withLock { $0[stream] } }

    /// Every status, sorted by stream.
    public func all() -> [StreamStatus] { table.withLock { Array($0.values) }.sorted { $0.stream < $1.stream } }
}
