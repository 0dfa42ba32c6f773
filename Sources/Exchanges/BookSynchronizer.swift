import MarketData

/// How an exchange's book channel is checked (from the adapter, per stream).
public struct BookRules: Sendable, Equatable {
    /// How a message's sequence numbers chain.
    public enum Sequencing: Sendable, Equatable {
        /// Each update names the sequence it follows (`prevSeqId`, OKX §1.6): equal to the last one's
        /// `seqId`; an empty update with `seqId == prevSeqId` is a keepalive; `seqId < prevSeqId` (a
        /// maintenance reset) is accepted once in a row.
        case previousSequence
        /// Every message is a whole top-N book (OKX `books5`, `bbo-tbt`): nothing to chain.
        case wholeBooks
    }

    public enum Checksum: Sendable, Equatable {
        case none
        /// OKX's CRC-32 over the first 25 levels per side (`OrderBook.okxChecksum`).
        case okxCRC32
    }

    /// Levels kept per side (memory per book is bounded by it).
    public var maxDepth: Int
    public var sequencing: Sequencing
    public var checksum: Checksum

    public init(maxDepth: Int, sequencing: Sequencing, checksum: Checksum) {
        self.maxDepth = maxDepth
        self.sequencing = sequencing
        self.checksum = checksum
    }
}

/// One symbol's book kept in sync with the exchange (pure; the session owns one per book stream).
///
/// | input | synced | waiting for a snapshot |
/// |---|---|---|
/// | snapshot message | replaces the book | the book starts from it; buffered updates after it are applied |
/// | update, chain holds, checksum matches | applied and stored | buffered (bounded), a REST snapshot is asked for once |
/// | update, chain broken | resync: `sequence_break` gap opened, REST snapshot asked for | buffered |
/// | update, checksum mismatch | resync: `checksum` gap opened; the update is not stored | — |
/// | REST snapshot | — | `prevSeqId <= snapshot < seqId` finds the first buffered update; an older snapshot is asked again |
///
/// A book state known to be wrong is never stored: an update is emitted only once it chained and its
/// checksum (when the exchange sends one, non-zero) matched. Each synchronisation emits a snapshot
/// row, so stored rows rebuild the book from any snapshot onwards.
struct BookSynchronizer: Sendable {
    enum Output: Equatable, Sendable {
        /// A row to store.
        case row(BookMessage)
        /// A gap-ledger entry (opened, or updated when it closes).
        case gap(Gap)
        /// Fetch a snapshot from REST (answered by `snapshotFetched`).
        case fetchSnapshot
        /// A problem to show on the stream.
        case error(String)
        /// The book is synchronised (again).
        case synchronised
    }

    enum State: Equatable, Sendable {
        /// Nothing received yet on this subscription.
        case awaiting
        /// Waiting for a REST snapshot; updates are buffered meanwhile.
        case seeding
        case synced
    }

    let rules: BookRules
    /// Exchange-time interval (µs) between periodic snapshot rows; nil: none.
    let snapshotInterval: Int64?
    /// Updates buffered while seeding, at most.
    static let maxBuffered = 2_000

    private(set) var state = State.awaiting
    private(set) var book: OrderBook
    private(set) var lastSequence: Int64?
    /// Just seeded from REST at this sequence: the next update must satisfy `prev <= seeded < seq`.
    private var seededAt: Int64?
    /// The last message was a maintenance reset (`seqId < prevSeqId`); a second in a row is a break.
    private var afterReset = false
    private var buffer: [BookMessage] = []
    private var snapshotRequested = false
    /// Exchange time of the last message stored, and of the last snapshot row.
    private(set) var lastGoodTime: Int64?
    private var lastSnapshotRowTime: Int64?
    /// The gap opened by a resynchronisation or a reconnect, closed at the next synchronisation.
    private(set) var openGap: Gap?
    /// Rows are being stored (false outside the stream's window): the first one admitted is preceded
    /// by a snapshot row, so every owner's stretch of rows starts with a whole book.
    var isAdmitting = true

    init(rules: BookRules, snapshotInterval: Int64?) {
        self.rules = rules
        self.snapshotInterval = snapshotInterval
        self.book = OrderBook(maxDepth: rules.maxDepth)
    }

    /// The connection dropped (or the exchange refused the stream): the book is lost until a new
    /// snapshot; what came meanwhile is a gap, recorded when the book is synchronised again.
    mutating func connectionLost(cause: Gap.Cause = .reconnect, detail: String) {
        if let from = lastGoodTime, openGap == nil {
            openGap = Gap(from: from, to: from, missing: 0, cause: cause, reason: detail)
        }
        restart()
    }

    private mutating func restart() {
        state = .awaiting
        book = OrderBook(maxDepth: rules.maxDepth)
        lastSequence = nil
        seededAt = nil
        afterReset = false
        buffer = []
        snapshotRequested = false
    }

    mutating func receive(_ message: BookMessage, into out: inout [Output]) {
        if rules.sequencing == .wholeBooks || message.action == .snapshot {
            applySnapshot(message, fromREST: false, into: &out)
            return
        }
        switch state {
        case .awaiting:
            // No snapshot came first (OKX's announced change, §1.6 point 2): seed from REST.
            state = .seeding
            bufferUpdate(message)
            requestSnapshot(into: &out)
        case .seeding:
            bufferUpdate(message)
        case .synced:
            applyUpdate(message, into: &out)
        }
    }

    /// The REST reply: a snapshot (nil when the exchange's reply carries no sequence to seed from),
    /// or the error that ended the fetch.
    mutating func snapshotFetched(_ snapshot: BookMessage?, error: String?, into out: inout [Output]) {
        guard state == .seeding else { return }  // a WebSocket snapshot came first
        snapshotRequested = false
        guard let snapshot else {
            out.append(.error("book snapshot from REST failed: \(error ?? "the reply has no seqId")"))
            requestSnapshot(into: &out)
            return
        }
        if let first = buffer.first, let previous = first.previousSequence, snapshot.sequence < previous {
            // REST's cache is behind the stream (§1.6 point 2: retry while snapshot.seqId < prevSeqId).
            requestSnapshot(into: &out)
            return
        }
        applySnapshot(snapshot, fromREST: true, into: &out)
    }

    // MARK: Internals

    private mutating func requestSnapshot(into out: inout [Output]) {
        guard !snapshotRequested else { return }
        snapshotRequested = true
        out.append(.fetchSnapshot)
    }

    private mutating func bufferUpdate(_ message: BookMessage) {
        if buffer.count >= Self.maxBuffered { buffer.removeFirst(buffer.count - Self.maxBuffered + 1) }
        buffer.append(message)
    }

    private mutating func applySnapshot(_ message: BookMessage, fromREST: Bool, into out: inout [Output]) {
        book.applySnapshot(bids: message.bids, asks: message.asks)
        if !fromREST, let problem = checksumProblem(message) {
            resync(.checksum, problem, at: message.timestampExchange, into: &out)
            return
        }
        let wasSynced = state == .synced
        state = .synced
        lastSequence = message.sequence
        seededAt = fromREST ? message.sequence : nil
        afterReset = false
        var row = message
        row.bids = book.bids
        row.asks = book.asks
        if rules.sequencing == .previousSequence { row.previousSequence = nil }
        stored(row, snapshot: true, into: &out)
        if !wasSynced || fromREST { synchronised(at: message.timestampExchange, into: &out) }
        let pending = buffer
        buffer = []
        // Buffered updates the snapshot already holds are dropped; the rest must chain on from it.
        for update in pending where update.sequence > message.sequence {
            guard state == .synced else {
                bufferUpdate(update)  // resynchronising again: keep what came after
                continue
            }
            applyUpdate(update, into: &out)
        }
    }

    private mutating func applyUpdate(_ message: BookMessage, into out: inout [Output]) {
        guard let last = lastSequence, let previous = message.previousSequence else {
            // No sequence sent (pushes before OKX added `seqId`): nothing to chain, the checksum checks it.
            applyChecked(message, into: &out)
            return
        }
        if let seeded = seededAt {
            // The first update after a REST seed: it must straddle the snapshot.
            if message.sequence <= seeded { return }  // already in the snapshot
            guard previous <= seeded else {
                resync(
                    .sequenceBreak, "first update after the snapshot \(seeded) follows \(previous)",
                    at: message.timestampExchange, into: &out)
                return
            }
            seededAt = nil
        } else if previous != last {
            resync(
                .sequenceBreak, "update follows \(previous), the last one was \(last)", at: message.timestampExchange,
                into: &out)
            return
        } else if message.sequence < previous {
            // A maintenance reset is allowed once; normal sequencing resumes afterwards.
            guard !afterReset else {
                resync(
                    .sequenceBreak, "a second sequence reset in a row (\(previous) → \(message.sequence))",
                    at: message.timestampExchange, into: &out)
                return
            }
            afterReset = true
        } else {
            afterReset = false
        }
        applyChecked(message, into: &out)
    }

    /// Applies an update that chained; stored unless its checksum disagrees.
    private mutating func applyChecked(_ message: BookMessage, into out: inout [Output]) {
        book.applyUpdate(bids: message.bids, asks: message.asks)
        if let problem = checksumProblem(message) {
            resync(.checksum, problem, at: message.timestampExchange, into: &out)
            return
        }
        lastSequence = message.sequence
        stored(message, snapshot: false, into: &out)
        if let interval = snapshotInterval, let last = lastSnapshotRowTime,
            message.timestampExchange - last >= interval
        {
            stored(snapshotRow(at: message), snapshot: true, into: &out)
        }
    }

    /// The whole current book as a snapshot row at `message`'s sequence and time.
    private func snapshotRow(at message: BookMessage) -> BookMessage {
        var row = message
        row.action = .snapshot
        row.previousSequence = nil
        row.bids = book.bids
        row.asks = book.asks
        return row
    }

    private mutating func stored(_ row: BookMessage, snapshot: Bool, into out: inout [Output]) {
        lastGoodTime = row.timestampExchange
        guard isAdmitting else {
            lastSnapshotRowTime = nil  // the first row admitted later is preceded by a snapshot
            return
        }
        if !snapshot && lastSnapshotRowTime == nil {
            out.append(.row(snapshotRow(at: row)))
            lastSnapshotRowTime = row.timestampExchange
        }
        out.append(.row(row))
        if snapshot { lastSnapshotRowTime = row.timestampExchange }
    }

    private mutating func synchronised(at time: Int64, into out: inout [Output]) {
        if var gap = openGap {
            gap.to = max(gap.from, time)
            out.append(.gap(gap))
            openGap = nil
        }
        out.append(.synchronised)
    }

    /// The checksum the exchange sent disagrees with the book (nil when it matches or none was sent).
    private func checksumProblem(_ message: BookMessage) -> String? {
        guard let expected = message.checksum else { return nil }
        switch rules.checksum {
        case .none:
            return nil
        case .okxCRC32:
            let actual = Int64(book.okxChecksum())
            // OKX sends the signed value; accept its unsigned spelling too.
            guard actual != expected && actual != expected - (1 << 32) else { return nil }
            return "checksum \(expected) from the exchange, \(actual) computed at seqId \(message.sequence)"
        }
    }

    /// The book is wrong or incomplete: drop it, record the gap, and seed again from REST.
    private mutating func resync(_ cause: Gap.Cause, _ detail: String, at time: Int64, into out: inout [Output]) {
        let from = lastGoodTime ?? time
        if openGap == nil {
            let gap = Gap(from: from, to: max(from, time), missing: 0, cause: cause, reason: detail)
            openGap = gap
            out.append(.gap(gap))
        }
        out.append(.error("book resynchronising: \(detail)"))
        restart()
        state = .seeding
        requestSnapshot(into: &out)
    }
}
