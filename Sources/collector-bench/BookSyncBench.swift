import CollectorCore
import Dispatch
import Exchanges
import Foundation
import MarketData

/// A deterministic OKX `books` stream for one symbol, generated before anything is timed: a
/// 400-level snapshot, then updates that change 1–4 sizes a side near the top, remove a level now
/// and then and put it back in the next update, each with the checksum of the book after it
/// (computed on a generator-side `OrderBook`, so the collector's must agree).
struct BookStreamGenerator {
    let symbol: String
    var book = OrderBook(maxDepth: 400)
    var rng: SeededRNG
    var sequence: Int64 = 1_000
    var time: Int64 = 1_700_000_000_000
    /// Ticks of 0.1 around 42000: bids from 419_999 down, asks from 420_000 up (400 each).
    let bestBid = 419_999
    var removed: (bid: Bool, tick: Int)?
    let checksumZero: Bool

    init(symbol: String, seed: UInt64, checksumZero: Bool = false) {
        self.symbol = symbol
        self.rng = SeededRNG(seed: seed)
        self.checksumZero = checksumZero
    }

    /// OKX writes prices without trailing zeros ("42000", "41999.9").
    static func price(_ tick: Int) -> String { tick % 10 == 0 ? "\(tick / 10)" : "\(tick / 10).\(tick % 10)" }

    mutating func size() -> String {
        let units = Int(rng.next() % 5_000_000) + 1
        return "\(units / 100_000_000).\(String(format: "%08d", units % 100_000_000))"
    }

    static func levelsJSON(_ levels: [BookLevel]) -> String {
        "[" + levels.map { #"[""# + $0.price.text + #"",""# + $0.size.text + #"","0","1"]"# }.joined(separator: ",")
            + "]"
    }

    mutating func snapshotFrame() -> [UInt8] {
        var bids: [BookLevel] = []
        var asks: [BookLevel] = []
        for i in 0..<400 {
            bids.append(BookLevel(price: DecimalText(Self.price(bestBid - i))!, size: DecimalText(size())!))
            asks.append(BookLevel(price: DecimalText(Self.price(bestBid + 1 + i))!, size: DecimalText(size())!))
        }
        book.applySnapshot(bids: bids, asks: asks)
        return frame(action: "snapshot", bids: bids, asks: asks, previous: -1)
    }

    mutating func updateFrame() -> [UInt8] {
        var bids: [BookLevel] = []
        var asks: [BookLevel] = []
        var touched = Set<Int>()
        if let gone = removed {
            // The level removed by the last update comes back.
            let level = BookLevel(price: DecimalText(Self.price(gone.tick))!, size: DecimalText(size())!)
            if gone.bid { bids.append(level) } else { asks.append(level) }
            touched.insert(gone.tick)
            removed = nil
        } else if rng.next() % 10 == 0 {
            let bid = rng.next() % 2 == 0
            let offset = Int(rng.next() % 40)
            let tick = bid ? bestBid - offset : bestBid + 1 + offset
            let level = BookLevel(price: DecimalText(Self.price(tick))!, size: "0")
            if bid { bids.append(level) } else { asks.append(level) }
            touched.insert(tick)
            removed = (bid, tick)
        }
        for side in 0..<2 {
            for _ in 0..<Int(1 + rng.next() % 4) {
                let offset = Int(rng.next() % 50)
                let tick = side == 0 ? bestBid - offset : bestBid + 1 + offset
                guard touched.insert(tick).inserted else { continue }
                let level = BookLevel(price: DecimalText(Self.price(tick))!, size: DecimalText(size())!)
                if side == 0 { bids.append(level) } else { asks.append(level) }
            }
        }
        book.applyUpdate(bids: bids, asks: asks)
        return frame(action: "update", bids: bids, asks: asks, previous: sequence)
    }

    private mutating func frame(action: String, bids: [BookLevel], asks: [BookLevel], previous: Int64) -> [UInt8] {
        let next = sequence + Int64(1 + rng.next() % 3)
        time += 100
        let checksum = checksumZero ? 0 : Int(book.okxChecksum())
        let text =
            #"{"arg":{"channel":"books","instId":""# + symbol + #""},"action":""# + action + #"","data":[{"asks":"#
            + Self.levelsJSON(asks) + #","bids":"# + Self.levelsJSON(bids) + #","ts":""# + "\(time)"
            + #"","checksum":"# + "\(checksum)" + #","prevSeqId":"# + "\(previous)" + #","seqId":"# + "\(next)" + "}]}"
        sequence = next
        return Array(text.utf8)
    }
}

/// `collector-bench book-sync`: OKX `books` updates parsed, sequenced, applied and checksum-verified
/// by the collector's session machine on one core (updates/s), and the memory 1,000 live 400-level
/// books take (RSS).
enum BookSyncBench {
    static func makeSession(_ symbols: [String]) -> ExchangeSession<OKXAdapter> {
        var configuration = SessionConfiguration()
        configuration.bookSnapshotInterval = nil
        var session = ExchangeSession(
            adapter: OKXAdapter(), url: "ws://bench/ws/v5/public", configuration: configuration, seed: 1)
        let now = Instant(nanoseconds: 1)
        var budget = TokenBucket(capacity: 3, refillPerSecond: 3)
        _ = session.add(symbols.map { StreamID(exchange: .okx, feed: .fullBook, symbol: $0) }, now: now)
        _ = session.timerFired(.connect, now: now, connectionBudget: &budget)
        _ = session.connected(now: now, wallClock: 0)
        var actions: [SessionAction] = []
        for symbol in symbols {
            feed(
                Array(#"{"event":"subscribe","arg":{"channel":"books","instId":""#.utf8) + Array(symbol.utf8)
                    + Array(#""}}"#.utf8), to: &session, actions: &actions)
        }
        return session
    }

    /// Feeds one frame; returns the book rows it stored, and stops the run on any resynchronisation
    /// (a generator bug: its checksums must match).
    @discardableResult
    static func feed(
        _ frame: [UInt8], to session: inout ExchangeSession<OKXAdapter>, actions: inout [SessionAction]
    )
        -> Int
    {
        actions.removeAll(keepingCapacity: true)
        frame.withUnsafeBytes {
            session.frame($0, isText: true, receivedAt: 0, now: Instant(nanoseconds: 2), into: &actions)
        }
        var rows = 0
        for action in actions {
            switch action {
            case .emit(.book): rows += 1
            case .fetchBookSnapshot, .recordGaps, .streamError, .deadLetter: fail("book went out of sync: \(action)")
            default: break
            }
        }
        return rows
    }

    static func updatesPerSecond(count: Int, checksumZero: Bool) -> Double {
        var generator = BookStreamGenerator(symbol: "BTC-USDT", seed: 42, checksumZero: checksumZero)
        let snapshot = generator.snapshotFrame()
        let frames = (0..<count).map { _ in generator.updateFrame() }
        var session = makeSession(["BTC-USDT"])
        var actions: [SessionAction] = []
        actions.reserveCapacity(8)
        feed(snapshot, to: &session, actions: &actions)
        let start = DispatchTime.now().uptimeNanoseconds
        let rows = feedAll(frames, to: &session, actions: &actions)
        let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
        guard rows == count else { fail("stored \(rows) of \(count) updates") }
        return Double(count) / seconds
    }

    /// The timed part (its own function, so a profiler can collect it alone).
    @inline(never)
    static func feedAll(
        _ frames: [[UInt8]], to session: inout ExchangeSession<OKXAdapter>, actions: inout [SessionAction]
    )
        -> Int
    {
        var rows = 0
        for frame in frames { rows += feed(frame, to: &session, actions: &actions) }
        return rows
    }

    static func residentMegabytes() -> Double {
        guard let status = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
            let line = status.split(separator: "\n").first(where: { $0.hasPrefix("VmRSS:") }),
            let kb = Double(line.split(separator: " ").dropFirst().first ?? "")
        else { fail("cannot read VmRSS from /proc/self/status") }
        return kb / 1024
    }

    /// 1,000 books on 5 connections of 200 (OKX's limit per connection here), each fed a 400-level
    /// snapshot and 100 updates; the frames are made per symbol and dropped once fed.
    static func residentPerBooks(_ books: Int) -> (total: Double, perBook: Double) {
        let before = residentMegabytes()
        let symbols = (0..<books).map { String(format: "S%04d-USDT", $0) }
        var sessions = stride(from: 0, to: books, by: 200).map {
            makeSession(Array(symbols[$0..<min($0 + 200, books)]))
        }
        var actions: [SessionAction] = []
        for (index, symbol) in symbols.enumerated() {
            var generator = BookStreamGenerator(symbol: symbol, seed: UInt64(index + 1))
            feed(generator.snapshotFrame(), to: &sessions[index / 200], actions: &actions)
            for _ in 0..<100 { feed(generator.updateFrame(), to: &sessions[index / 200], actions: &actions) }
        }
        actions = []
        let after = residentMegabytes()
        withExtendedLifetime(sessions) {}
        return (after - before, (after - before) / Double(books))
    }

    static func run(_ options: BenchOptions) {
        let count = options.int("messages", default: 1_000_000)
        let reps = options.int("reps", default: 3)
        let books = options.int("books", default: 1000)
        // Memory first, in a fresh heap.
        let (total, perBook) = residentPerBooks(books)
        var rates: [Double] = []
        var zeroRates: [Double] = []
        for _ in 0..<reps {
            rates.append(updatesPerSecond(count: count, checksumZero: false))
            zeroRates.append(updatesPerSecond(count: count, checksumZero: true))
        }
        let rate = rates.sorted()[rates.count / 2]
        let zero = zeroRates.sorted()[zeroRates.count / 2]
        print(
            "RESULT mode=book-sync messages=\(count) reps=\(reps) updates_per_sec=\(Int(rate)) "
                + "ns_per_update=\(Int(1e9 / rate)) checksum0_updates_per_sec=\(Int(zero)) books=\(books) "
                + "rss_mb_total=\(String(format: "%.1f", total)) rss_kb_per_book=\(String(format: "%.1f", perBook * 1024))"
        )
        print("GOAL updates_per_sec=\(Int(rate)) >= 300000 \(rate >= 300_000 ? "PASS" : "FAIL")")
        print("GOAL rss_mb_total=\(String(format: "%.1f", total)) <= 150 \(total <= 150 ? "PASS" : "FAIL")")
    }
}
