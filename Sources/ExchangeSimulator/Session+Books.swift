import CollectorCore
import MarketData
import Runtime
import WireCore

/// The order-book channels the simulator serves, all on /ws/v5/public (PROTOCOLS.md §1.6). The
/// simulator's own names, independent of the collector's feed types.
enum BookChannel: String, Sendable, CaseIterable {
    /// 400 levels: a snapshot, then one update per model step, with seqId/prevSeqId and a checksum.
    case books
    /// The best 5 levels, whole, on every step that changes them.
    case books5
    /// The best level, on every step that changes it.
    case bboTbt = "bbo-tbt"
}

/// A fault `POST /control/book-fault` injects (one of each per request).
enum BookFault: String, Sendable {
    /// The next `books` update for the symbol carries a wrong checksum (its levels are right).
    case checksum
    /// The next `books` update for the symbol is not sent; the one after breaks the prevSeqId chain.
    case skipSeq = "skip-seq"
    /// The model's next step is a maintenance reset: its seqId is below its prevSeqId.
    case reset
}

/// One session's book channels for one symbol, sharing one cursor into the model so that, within
/// a step, bbo-tbt goes before books and books before books5 (PROTOCOLS.md §1.6).
struct BookFeed {
    /// The book after the last step this session handled.
    var state: BookState
    /// `books`, when subscribed.
    var books: BooksSubscription?
    var hasBooks5 = false
    var hasBBO = false

    var isEmpty: Bool { books == nil && !hasBooks5 && !hasBBO }
}

/// One session's `books` subscription of one symbol: the faults waiting for its next update, and
/// the book as its client holds it.
struct BooksSubscription {
    /// The pushed levels merged exactly as a client merges them, for the checksums: applying a
    /// step's few levels costs far less than building the top 25 afresh each step. Nil when
    /// checksums are 0.
    var mirror: OrderBook?
    var corruptsNextChecksum = false
    var skipsNextUpdate = false

    init(state: BookState, model: BookModel, checksumsAreZero: Bool) {
        guard !checksumsAreZero else { return }
        var book = OrderBook(maxDepth: BookModel.maxDepth)
        book.applySnapshot(bids: state.bids.map(model.bookLevel), asks: state.asks.map(model.bookLevel))
        mirror = book
    }
}

extension Session {
    enum BookLimits {
        /// Model steps pushed per symbol per feed tick: at most 20,000 steps a second of catching
        /// up (the model makes 10 a virtual second: 3,000 a real second at 200 ms bars), and one
        /// tick never holds the loop long.
        static let maxStepsPerTick: Int64 = 1_000
        /// XOR applied to a checksum the `checksum` fault corrupts: never equal to the right one.
        static let corruption: Int32 = 0x5A5A_5A5A
    }

    var hasBookFeeds: Bool { !bookFeeds.isEmpty }

    /// Subscribe or unsubscribe one book channel. A new `books` subscription gets the whole book
    /// as a snapshot right after its ack (unless `sendsBookSnapshot` is off); `books5` and
    /// `bbo-tbt` get the current top at once.
    func handleBookRequest(op: String, id: String?, channel: BookChannel, instrument: String, argJSON: String) {
        guard !isBusiness, simulator.configuration.symbols.contains(instrument) else {
            sendError(
                id: id, code: "60018",
                message:
                    "Subscribe failed, wrong URL or channel:\(channel.rawValue),instId:\(instrument) doesn't exist."
                    + simulator.configuration.unknownInstrumentHint(instrument))
            return
        }
        let idField = id.map { "\"id\":\(JSONText.quoted($0))," } ?? ""
        connection.send(text: "{\(idField)\"event\":\"\(op)\",\"arg\":\(argJSON),\"connId\":\"sim\(connectionID)\"}")
        let model = simulator.bookModel(instrument)
        if op != "subscribe" {
            guard var feed = bookFeeds[instrument] else { return }
            switch channel {
            case .books: feed.books = nil
            case .books5: feed.hasBooks5 = false
            case .bboTbt: feed.hasBBO = false
            }
            bookFeeds[instrument] = feed.isEmpty ? nil : feed
            return
        }
        var feed =
            bookFeeds[instrument]
            ?? BookFeed(
                state: simulator.bookState(instrument, step: model.step(at: simulator.virtualNow)), books: nil)
        switch channel {
        case .books:
            guard feed.books == nil else { break }
            let books = BooksSubscription(
                state: feed.state, model: model, checksumsAreZero: simulator.configuration.bookChecksumZero)
            feed.books = books
            if simulator.configuration.sendsBookSnapshot {
                connection.send(text: model.snapshotMessage(feed.state, checksum: books.mirror?.okxChecksum() ?? 0))
            }
        case .books5:
            guard !feed.hasBooks5 else { break }
            feed.hasBooks5 = true
            connection.send(text: model.books5Message(feed.state))
        case .bboTbt:
            guard !feed.hasBBO else { break }
            feed.hasBBO = true
            connection.send(text: model.bboMessage(feed.state))
        }
        bookFeeds[instrument] = feed
    }

    /// Arms `fault` for this session's `books` subscription of `symbol`; false when there is none.
    func armBookFault(_ fault: BookFault, symbol: String) -> Bool {
        guard var books = bookFeeds[symbol]?.books else { return false }
        switch fault {
        case .checksum: books.corruptsNextChecksum = true
        case .skipSeq: books.skipsNextUpdate = true
        case .reset: return false
        }
        bookFeeds[symbol]?.books = books
        return true
    }

    /// Pushes every model step since the last tick, in order and none skipped, up to
    /// `maxStepsPerTick` per symbol; a client that does not read (the connection is not writable)
    /// gets nothing more until it does, and its cursor waits for it.
    func bookTick(virtualNow: Int64) {
        guard connection.isOpen, floodRemaining == 0, !simulator.isSilent, connection.isWritable else { return }
        var pushed = false
        for symbol in Array(bookFeeds.keys) {
            // Taken out while it changes, so its books are not copied (copy on write); force-unwrap:
            // `symbol` is a key, and only this iteration takes it.
            var feed = bookFeeds.removeValue(forKey: symbol)!
            let model = simulator.bookModel(symbol)
            let end = min(model.step(at: virtualNow), feed.state.step + BookLimits.maxStepsPerTick)
            while feed.state.step < end && connection.isWritable {
                let bboBefore = feed.hasBBO ? top(feed.state, 1) : nil
                let books5Before = feed.hasBooks5 ? top(feed.state, 5) : nil
                let step = model.advance(&feed.state)
                if let bboBefore, top(feed.state, 1) != bboBefore {
                    connection.send(text: model.bboMessage(feed.state))
                }
                if var books = feed.books {
                    feed.books = nil  // one owner of the mirror while it changes
                    pushUpdate(step, &books, feed.state, model)
                    feed.books = books
                }
                if let books5Before, top(feed.state, 5) != books5Before {
                    connection.send(text: model.books5Message(feed.state))
                }
                pushed = true
            }
            bookFeeds[symbol] = feed
        }
        if pushed { lastActivity = simulator.loop.now().nanoseconds }
    }

    /// Sends one step as a `books` update (or, under a fault, a wrong checksum or nothing). The
    /// checksum is 0 in OKX's 2026 mode (PROTOCOLS.md §1.6 point 1).
    private func pushUpdate(_ step: BookStep, _ books: inout BooksSubscription, _ state: BookState, _ model: BookModel)
    {
        books.mirror?.applyUpdate(bids: step.bids.map(model.bookLevel), asks: step.asks.map(model.bookLevel))
        // Faults wait for a step that changes the seqId, so the one they touch is visible.
        if books.skipsNextUpdate && !step.isKeepalive {
            books.skipsNextUpdate = false
            return
        }
        var value = books.mirror?.okxChecksum() ?? 0
        if books.corruptsNextChecksum && !step.isKeepalive {
            books.corruptsNextChecksum = false
            // Wrong whatever the mode: the true checksum (computed afresh when checksums are 0) garbled.
            value = (books.mirror == nil ? model.checksum(state) : value) ^ BookLimits.corruption
        }
        connection.send(text: model.updateMessage(step, checksum: value))
    }

    /// The best `depth` levels per side.
    private func top(_ state: BookState, _ depth: Int) -> [ModelLevel] {
        Array(state.bids.prefix(depth)) + Array(state.asks.prefix(depth))
    }

    /// Flood mode for benchmarks: `books` updates for the first symbol subscribed, step after step
    /// as fast as the client reads, running ahead of the virtual clock (a reset asked for meanwhile
    /// lands on a step already flooded, so the flooded session never sees it; books5 and bbo-tbt
    /// of the symbol pause until the clock catches up). False when no `books` subscription exists.
    func floodBooks() -> Bool {
        guard let symbol = bookFeeds.first(where: { $0.value.books != nil })?.key,
            var feed = bookFeeds.removeValue(forKey: symbol), var books = feed.books
        else { return false }
        feed.books = nil  // one owner of the mirror while it changes
        let model = simulator.bookModel(symbol)
        while floodRemaining > 0 && connection.isWritable {
            let step = model.advance(&feed.state)
            pushUpdate(step, &books, feed.state, model)
            floodRemaining -= 1
        }
        feed.books = books
        bookFeeds[symbol] = feed
        return true
    }
}
