public import CollectorCore
public import MarketData

/// What a stream is doing (the status API shows the raw value).
public enum StreamPhase: String, Sendable, Hashable {
    case pending, connecting, subscribing, live, reconnecting, rejected, stopped
}

/// The timers one session arms; scheduling one that is armed replaces it.
public enum SessionTimer: Hashable, Sendable, CaseIterable {
    /// Connect when due (after backoff, or when the connection budget has a token).
    case connect
    /// The periodic silence check: ping, or recycle a stale connection.
    case keepalive
    /// The subscribe budget has refilled: send the subscriptions it held back.
    case subscribe
    /// Refused streams are due to be asked for again.
    case refusedRetry
    /// No-acknowledgement exchanges: streams subscribed without a first message are due to be refused.
    case acknowledgement
}

/// A frame the session wants sent.
public enum OutgoingFrame: Hashable, Sendable {
    case text(String)
    case binary([UInt8])
    /// A WebSocket ping control frame.
    case ping
    /// A text frame that carries a fresh authentication token between `prefix` and `suffix`
    /// (Coinbase's JWT). The driver signs it as it sends (a token draws randomness and reads a key,
    /// so it is never made in pure code); without a signer the connection fails permanently.
    case textWithToken(prefix: String, suffix: String)
}

/// Drop a stream's events outside `[from, until)` (µs, by event time: a candle's open time, else the
/// exchange's timestamp). The cluster's make-before-break cutover: the old owner stops at the cutover
/// instant and the new one starts there, so each event is stored by exactly one of them.
public struct EventWindow: Hashable, Sendable {
    public var from: Int64?
    public var until: Int64?
    public init(from: Int64? = nil, until: Int64? = nil) {
        self.from = from
        self.until = until
    }
    public func admits(_ time: Int64) -> Bool {
        if let from, time < from { return false }
        if let until, time >= until { return false }
        return true
    }
}

/// Process-wide counters a session bumps.
public enum SessionCounter: Hashable, Sendable {
    case reconnect, parseError, unhandled
}

/// What a session asks its driver to do. Values only: tests compare transcripts with `==`.
public enum SessionAction: Hashable, Sendable {
    /// Open a WebSocket connection to `url`.
    case connect(url: String)
    case send(OutgoingFrame)
    /// Start the close handshake. `reportClosed`: the driver reports `closed` when it is done (a
    /// recycle); otherwise the session has given the connection up (stop, no streams left) and the
    /// driver detaches it, ignoring its late close report.
    case close(code: UInt16, reason: String, reportClosed: Bool)
    case scheduleTimer(SessionTimer, at: Instant)
    case cancelTimer(SessionTimer)
    /// Market data for the engine's batches.
    case emit(MarketEvent)
    /// Fetch the bars strictly between `after` and `before` (open times, µs) from REST; report the
    /// outcome with `backfillFinished`.
    case backfill(StreamID, after: Int64, before: Int64)
    /// Fetch the fills with trade ids strictly between `after` and `before` from REST (the hole lies
    /// between the exchange times `from` and `to`); report with `tradeBackfillFinished`.
    case backfillTrades(StreamID, after: Int64, before: Int64, from: Int64, to: Int64)
    /// Gap-ledger entries of the stream (new, or an update of one with the same cause and start).
    case recordGaps(StreamID, [Gap])
    /// Fetch the stream's whole book from REST; report with `bookSnapshotFetched`.
    case fetchBookSnapshot(StreamID)
    /// Bars REST supplied after a gap.
    case backfilled(StreamID, bars: Int)
    /// The stream's phase changed; `detail` (when present) is the latest error to show.
    case phase(StreamID, StreamPhase, detail: String?)
    /// An event of the stream reached its window's `until` (a hand-over's cutover): everything before
    /// it has been emitted.
    case windowPassed(StreamID, until: Int64)
    /// A full-depth book is synchronised (true) or resynchronising (false): until it is, a cluster
    /// worker does not report the shard live.
    case bookSynchronised(StreamID, Bool)
    /// The exchange (or a permanent connection failure) refused the stream.
    case refused(StreamID, code: String, message: String)
    /// The stream reconnected (its reconnect count).
    case reconnected(StreamID)
    /// An error to count and show on the stream.
    case streamError(StreamID, String)
    /// A frame or event that cannot be used, with the reason (the dead-letter file).
    case deadLetter(raw: String, reason: String)
    case log(SessionLogLevel, String, [String: String])
    case count(SessionCounter)
}

/// What a level means (README "Logs"): `error` data is lost or an operator must act; `warning`
/// degraded but healing itself; `notice` recovered, or a lifecycle step; `info` routine detail.
public enum SessionLogLevel: Hashable, Sendable {
    case debug, info, notice, warning, error
}

/// How a session behaves (DESIGN.md §4, §7).
public struct SessionConfiguration: Sendable, Equatable {
    /// Send the adapter's ping after this much silence (nil: the adapter's own rule).
    public var pingAfter: Duration?
    /// Recycle a connection silent this long (`message_timeout`).
    public var staleAfter: Duration = .seconds(30)
    /// How often silence is checked.
    public var keepaliveCheckInterval: Duration = .seconds(1)
    /// Malformed frames in a row that trip the circuit breaker.
    public var parseErrorLimit = 10
    /// Transient failures: capped, jittered, forever.
    public var reconnectBackoff = Backoff(initial: .milliseconds(500), maximum: .seconds(30))
    /// A refused stream (or a permanently failing connection) is asked for again at most this often.
    public var refusedRetryInterval: Duration = .seconds(300)
    /// A book stream stores its whole book as a snapshot row this often (exchange time), besides at
    /// every synchronisation, so a window is rebuilt from stored rows without replaying from the
    /// start; nil: only at synchronisations (`book_snapshot_interval`).
    public var bookSnapshotInterval: Duration? = .seconds(600)

    public init() {}
}

/// Refusal codes the session itself gives (the others are the exchange's).
public enum SessionRefusal {
    /// Every stream's code when the connection failed for good (TLS verification): this
    /// connection's failure, not the exchange's answer about the stream.
    public static let connectionFailureCode = "connection"
}
