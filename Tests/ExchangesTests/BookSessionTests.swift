import CollectorCore
import Exchanges
import Foundation
import MarketData
import TestSupport
import Testing

/// Streams for book transcripts: `bk(1)` is `okx/book/S1-USDT`.
func bk(_ i: Int) -> StreamID { StreamID("okx/book/S\(i)-USDT")! }

/// Book sequencing, resynchronisation and the §1.6 rules (PROTOCOLS.md), as session transcripts on a
/// simulated clock: `book <stream> snap|upd <seq> <prev> <ms> <bids> <asks>` frames in, rows, gaps
/// and REST snapshot requests out.
@Suite struct BookSessionTests {
    private func harness(interval: Duration? = nil) -> SessionHarness {
        SessionHarness { $0.bookSnapshotInterval = interval }
    }

    private func live(_ streams: [StreamID], interval: Duration? = nil) -> SessionHarness {
        var h = harness(interval: interval)
        h.open(streams)
        for stream in streams { h.frame("ok \(stream)") }
        return h
    }

    private func snapshot(_ stream: StreamID, seq: Int64, ms: Int64, bids: String, asks: String) -> BookMessage {
        BookMessage(
            exchange: .okx, symbol: stream.symbol, sequence: seq, previousSequence: nil, action: .snapshot,
            bids: ScriptedAdapter.levels(bids)!, asks: ScriptedAdapter.levels(asks)!,
            timestampExchange: ScriptedAdapter.base + ms * 1000, timestampCollector: 0)
    }

    @Test func theDocsSequenceIsStoredWholeKeepaliveAndResetIncluded() {
        var h = live([bk(1)])
        // The docs' example (§1.6): snapshot(prev=-1, seq=10) → (10→15) → (15→15 keepalive) → (15→3 reset) → (3→5).
        let frames = [
            "snap 10 -1 0 100:1,99:2 101:1,102:3", "upd 15 10 100 100:0,98:4 101:5", "upd 15 15 200 - -",
            "upd 3 15 300 97:1 -", "upd 5 3 400 - 103:1",
        ]
        var actions: [SessionAction] = []
        for f in frames { actions += h.frame("book \(bk(1)) \(f)") }
        #expect(actions.books.map(\.sequence) == [10, 15, 15, 3, 5])
        #expect(actions.books.map(\.action) == [.snapshot, .update, .update, .update, .update])
        #expect(actions.gaps.isEmpty && actions.snapshotFetches.isEmpty)
        // The snapshot row is the merged book (best first), not the message's own order.
        #expect(actions.books[0].bids.map(\.price.text) == ["100", "99"])
        #expect(!actions.contains { if case .streamError = $0 { true } else { false } })
    }

    @Test func aSequenceBreakResynchronisesThatSymbolAloneFromREST() {
        var h = live([bk(1), bk(2)])
        h.frame("book \(bk(1)) snap 10 -1 0 100:1 101:1")
        h.frame("book \(bk(2)) snap 20 -1 0 50:1 51:1")
        h.frame("book \(bk(1)) upd 11 10 100 100:2 -")
        // 12 never came: 13 follows 12.
        let broken = h.frame("book \(bk(1)) upd 13 12 200 100:3 -")
        #expect(broken.books.isEmpty, "the update after the break is not stored")
        #expect(broken.snapshotFetches == [bk(1)])
        #expect(
            broken.gaps == [
                Gap(
                    from: ScriptedAdapter.base + 100_000, to: ScriptedAdapter.base + 200_000, missing: 0,
                    cause: .sequenceBreak, reason: "update follows 12, the last one was 11")
            ])
        #expect(broken.closes == 0 && !broken.contains { if case .connect = $0 { true } else { false } })
        // The other symbol is untouched.
        #expect(h.frame("book \(bk(2)) upd 21 20 250 50:2 -").books.map(\.sequence) == [21])
        // Updates of the resynchronising symbol are buffered meanwhile, not stored, not asked for again.
        let buffered = h.frame("book \(bk(1)) upd 14 13 300 100:4 -") + h.frame("book \(bk(1)) upd 16 14 400 99:1 -")
        #expect(buffered.books.isEmpty && buffered.snapshotFetches.isEmpty)
        // REST answers at seq 14: 16 (prev 14 ≤ 14 < 16) is the first applied.
        let seeded = h.bookSnapshotFetched(bk(1), snapshot(bk(1), seq: 14, ms: 350, bids: "100:4", asks: "101:1"))
        #expect(seeded.books.map(\.sequence) == [14, 16])
        #expect(seeded.books.map(\.action) == [.snapshot, .update])
        #expect(seeded.books[0].previousSequence == nil)
        #expect(seeded.gaps.count == 1 && seeded.gaps[0].to == ScriptedAdapter.base + 350_000)
        #expect(seeded.gaps[0].from == ScriptedAdapter.base + 100_000 && !seeded.gaps[0].recovered)
        #expect(h.frame("book \(bk(1)) upd 17 16 500 - 101:2").books.map(\.sequence) == [17])
    }

    /// The session says when a book is synchronised and when it is not: the acknowledgement alone
    /// does not (a worker reports a book shard live only once it is synchronised).
    @Test func synchronisedIsSaidOnTheSeedAndTakenBackOnABreak() {
        func synced(_ actions: [SessionAction]) -> [Bool] {
            actions.compactMap { if case .bookSynchronised(bk(1), let value) = $0 { value } else { nil } }
        }
        var h = harness()
        h.open([bk(1)])
        #expect(synced(h.frame("ok \(bk(1))")).isEmpty, "acknowledged, not yet synchronised")
        #expect(synced(h.frame("book \(bk(1)) snap 10 -1 0 100:1 101:1")) == [true])
        #expect(synced(h.frame("book \(bk(1)) upd 11 10 100 100:2 -")).isEmpty, "said once")
        #expect(synced(h.frame("book \(bk(1)) upd 13 12 200 100:3 -")) == [false], "a break")
        let seeded = h.bookSnapshotFetched(bk(1), snapshot(bk(1), seq: 14, ms: 350, bids: "100:4", asks: "101:1"))
        #expect(synced(seeded) == [true])
    }

    @Test func aSecondResetInARowIsABreak() {
        var h = live([bk(1)])
        h.frame("book \(bk(1)) snap 10 -1 0 100:1 101:1")
        #expect(h.frame("book \(bk(1)) upd 3 10 100 - -").books.count == 1)
        let second = h.frame("book \(bk(1)) upd 1 3 200 - -")
        #expect(second.books.isEmpty && second.snapshotFetches == [bk(1)])
        #expect(second.gaps.map(\.cause) == [.sequenceBreak])
    }

    @Test func withoutAWebSocketSnapshotTheBookIsSeededFromRESTAndAStaleOneIsAskedAgain() {
        var h = live([bk(1)])
        // No snapshot (OKX's announced change, §1.6 point 2): the first push is an update.
        let first = h.frame("book \(bk(1)) upd 42 40 100 100:1 -")
        #expect(first.books.isEmpty && first.snapshotFetches == [bk(1)])
        #expect(h.frame("book \(bk(1)) upd 44 42 200 99:1 -").snapshotFetches.isEmpty)
        // REST's cache is behind the stream (35 < prevSeqId 40): asked again, nothing stored.
        let stale = h.bookSnapshotFetched(bk(1), snapshot(bk(1), seq: 35, ms: 50, bids: "100:1", asks: "101:1"))
        #expect(stale.books.isEmpty && stale.snapshotFetches == [bk(1)])
        // A failed fetch is shown and asked again.
        let failed = h.bookSnapshotFetched(bk(1), nil, error: "HTTP 502")
        #expect(failed.snapshotFetches == [bk(1)])
        #expect(failed.contains { if case .streamError(_, let m) = $0 { m.contains("HTTP 502") } else { false } })
        // At 41: 42 (prev 40 ≤ 41 < 42) is the first applied, then 44.
        let seeded = h.bookSnapshotFetched(bk(1), snapshot(bk(1), seq: 41, ms: 150, bids: "100:1", asks: "101:1"))
        #expect(seeded.books.map(\.sequence) == [41, 42, 44])
        #expect(seeded.gaps.isEmpty, "a first synchronisation is no gap")
        // A snapshot newer than every buffered update: the next push must straddle it.
        var h2 = live([bk(1)])
        h2.frame("book \(bk(1)) upd 42 40 100 100:1 -")
        h2.bookSnapshotFetched(bk(1), snapshot(bk(1), seq: 50, ms: 150, bids: "100:1", asks: "101:1"))
        #expect(h2.frame("book \(bk(1)) upd 50 48 160 - -").books.isEmpty, "already in the snapshot")
        #expect(h2.frame("book \(bk(1)) upd 52 50 170 - -").books.map(\.sequence) == [52])
    }

    @Test func aReconnectIsAGapClosedByTheNextSnapshot() {
        var h = live([bk(1)])
        h.frame("book \(bk(1)) snap 10 -1 0 100:1 101:1")
        h.frame("book \(bk(1)) upd 11 10 100 100:2 -")
        #expect(h.closed("reset").gaps.isEmpty)
        h.fire(.connect)
        h.connected()
        h.frame("ok \(bk(1))")
        let back = h.frame("book \(bk(1)) snap 90 -1 5000 100:7 101:1")
        #expect(back.books.map(\.sequence) == [90])
        #expect(
            back.gaps == [
                Gap(
                    from: ScriptedAdapter.base + 100_000, to: ScriptedAdapter.base + 5_000_000, missing: 0,
                    cause: .reconnect, reason: "reset")
            ])
        // An update of the old connection's chain after the reconnect would be a break, not applied.
        #expect(h.frame("book \(bk(1)) upd 91 90 5100 - -").books.count == 1)
    }

    @Test func snapshotRowsArePeriodicInExchangeTime() {
        var h = live([bk(1)], interval: .seconds(1))
        h.frame("book \(bk(1)) snap 10 -1 0 100:1 101:1")
        var actions: [SessionAction] = []
        for i in 1...25 { actions += h.frame("book \(bk(1)) upd \(10 + i) \(9 + i) \(i * 100) 100:\(i) -") }
        let snapshots = actions.books.filter { $0.action == .snapshot }
        #expect(snapshots.map(\.sequence) == [20, 30])
        #expect(snapshots.allSatisfy { $0.bids.map(\.size.text) == ["\($0.sequence - 10)"] })
        #expect(actions.books.filter { $0.action == .update }.count == 25)
    }

    @Test func theFirstRowInsideAWindowIsASnapshotOfTheWholeBook() {
        var h = harness()
        let start = ScriptedAdapter.base + 250_000
        h.add([bk(1)], windows: [bk(1): EventWindow(from: start)])
        h.fire(.connect)
        h.connected()
        h.frame("ok \(bk(1))")
        var actions = h.frame("book \(bk(1)) snap 10 -1 0 100:1 101:1")
        actions += h.frame("book \(bk(1)) upd 11 10 100 99:1 -")
        #expect(actions.books.isEmpty, "outside the window")
        let inside = h.frame("book \(bk(1)) upd 12 11 300 98:1 -")
        #expect(inside.books.map(\.action) == [.snapshot, .update])
        #expect(inside.books[0].bids.map(\.price.text) == ["100", "99", "98"] && inside.books[0].sequence == 12)
    }

    @Test func aTickerSilencedByAReconnectOrARefusalIsAGapAtItsNextEvent() {
        let tk = StreamID("okx/ticker/S1-USDT")!
        var h = live([tk])
        h.frame("tick \(tk) 100")
        h.closed("reset")
        h.fire(.connect)
        h.connected()
        h.frame("ok \(tk)")
        let back = h.frame("tick \(tk) 900")
        #expect(
            back.gaps == [
                Gap(
                    from: ScriptedAdapter.base + 100_000, to: ScriptedAdapter.base + 900_000, missing: 0,
                    cause: .reconnect, reason: "reset")
            ])
        #expect(h.frame("tick \(tk) 1000").gaps.isEmpty, "recorded once")
        // Refused for a while, then accepted again: a `refused` gap.
        h.frame("no \(tk) 60018")
        h.fire(.refusedRetry)
        h.frame("ok \(tk)")
        let refused = h.frame("tick \(tk) 5000").gaps
        #expect(refused.map(\.cause) == [.refused] && refused.first?.from == ScriptedAdapter.base + 1_000_000)
    }

    @Test func topNBooksAreWholeBooksWithoutChaining() {
        let top = StreamID("okx/book:5/S1-USDT")!
        var h = live([top])
        let a = h.frame("book \(top) snap 7 - 0 100:1 101:1")
        let b = h.frame("book \(top) snap 3 - 100 99:1 101:1")
        #expect((a + b).books.map(\.sequence) == [7, 3] && (a + b).snapshotFetches.isEmpty)
        #expect((a + b).books.allSatisfy { $0.depth == 5 && $0.action == .snapshot })
    }
}

/// The OKX books parser and checksum rules on the recorded real frames.
@Suite struct OKXBookTests {
    private func session(for instruments: [String]) -> (ExchangeSession<OKXAdapter>, [SessionAction]) {
        var configuration = SessionConfiguration()
        configuration.bookSnapshotInterval = nil
        var session = ExchangeSession(
            adapter: OKXAdapter(), url: "ws://127.0.0.1:1/ws/v5/public", configuration: configuration, seed: 1)
        let now = Instant(nanoseconds: 1_000_000_000)
        var budget = TokenBucket(capacity: 3, refillPerSecond: 3)
        var actions = session.add(instruments.map { StreamID(exchange: .okx, feed: .fullBook, symbol: $0) }, now: now)
        actions += session.timerFired(.connect, now: now, connectionBudget: &budget)
        actions += session.connected(now: now, wallClock: 0)
        for instrument in instruments {
            let bytes = Array(#"{"event":"subscribe","arg":{"channel":"books","instId":"\#(instrument)"}}"#.utf8)
            bytes.withUnsafeBytes { session.frame($0, isText: true, receivedAt: 0, now: now, into: &actions) }
        }
        return (session, actions)
    }

    private func bookFrames() throws -> [(receivedAt: Int64, payload: String)] {
        try recordedFrames("okx/OKX.ws.1.0").filter {
            $0.payload.contains(#""channel":"books""#) && $0.payload.contains(#""data""#)
        }
    }

    private func instrument(_ payload: String) -> String {
        let after = payload.components(separatedBy: #""instId":""#)[1]
        return String(after.prefix { $0 != "\"" })
    }

    @Test func everyRecordedBooksPushIsStoredWithItsChecksumVerified() throws {
        let frames = try bookFrames()
        #expect(frames.count == 290)
        let instruments = Array(Set(frames.map { instrument($0.payload) })).sorted()
        var (session, actions) = session(for: instruments)
        actions = []
        for frame in frames {
            let bytes = Array(frame.payload.utf8)
            bytes.withUnsafeBytes {
                session.frame(
                    $0, isText: true, receivedAt: frame.receivedAt, now: Instant(nanoseconds: 2), into: &actions)
            }
        }
        #expect(actions.books.count == 290)
        #expect(actions.snapshotFetches.isEmpty && actions.gaps.isEmpty)
        #expect(!actions.contains { if case .deadLetter = $0 { true } else { false } })
        #expect(actions.books.allSatisfy { $0.checksum != nil })
    }

    @Test func aCorruptChecksumResynchronisesThatInstrumentOnlyAndIsNotStored() throws {
        let frames = try bookFrames()
        let instruments = Array(Set(frames.map { instrument($0.payload) })).sorted()
        #expect(instruments.count >= 2)
        // The 50th update of the first instrument gets a checksum off by one.
        let victim = instruments[0]
        var updates = 0
        var corrupted: Int?
        var (session, _) = session(for: instruments)
        var actions: [SessionAction] = []
        var stored: [String: Int] = [:]
        for (index, frame) in frames.enumerated() {
            var payload = frame.payload
            if instrument(payload) == victim && payload.contains(#""action":"update""#) {
                updates += 1
                if updates == 50, let range = payload.range(of: #""checksum":(-?\d+)"#, options: .regularExpression) {
                    let value = Int64(payload[range].dropFirst(11))!
                    payload.replaceSubrange(range, with: "\"checksum\":\(value == 0 ? 1 : value - 1)")
                    corrupted = index
                }
            }
            var step: [SessionAction] = []
            let bytes = Array(payload.utf8)
            bytes.withUnsafeBytes {
                session.frame($0, isText: true, receivedAt: frame.receivedAt, now: Instant(nanoseconds: 2), into: &step)
            }
            if index == corrupted {
                #expect(step.books.isEmpty, "the wrong state is not stored")
                #expect(step.snapshotFetches == [StreamID(exchange: .okx, feed: .fullBook, symbol: victim)])
                #expect(step.gaps.map(\.cause) == [.checksum])
            }
            for book in step.books { stored[book.symbol, default: 0] += 1 }
            actions += step
        }
        let fired = try #require(corrupted)
        #expect(fired > 0)
        // Only the victim asked for a snapshot; every other instrument stored all its pushes.
        #expect(Set(actions.snapshotFetches.map(\.symbol)) == [victim])
        for other in instruments.dropFirst() {
            #expect(stored[other] == frames.filter { instrument($0.payload) == other }.count)
        }
        #expect((stored[victim] ?? 0) < frames.filter { instrument($0.payload) == victim }.count)
    }

    @Test func topNChannelsAndTheRESTBookParse() throws {
        let root = TestEnvironment.repositoryRoot + "/Tests/Fixtures/okx/"
        let bbo = try parse(String(contentsOfFile: root + "ws_bbo_tbt.json", encoding: .utf8))
        guard case .event(.book(let top))? = bbo.first else {
            Issue.record("bbo-tbt did not parse into a book message: \(bbo)")
            return
        }
        #expect(top.depth == 1 && top.action == .snapshot && top.sequence == 123_456 && top.previousSequence == nil)
        #expect(top.bids == [BookLevel(price: "8476.97", size: "256")] && top.asks.map(\.price) == ["8476.98"])
        #expect(top.stream == StreamID("okx/book:1/BTC-USDT"))
        let snapshot = try parse(String(contentsOfFile: root + "ws_books_snapshot.json", encoding: .utf8))
        guard case .event(.book(let full))? = snapshot.first else {
            Issue.record("books snapshot did not parse: \(snapshot)")
            return
        }
        #expect(full.action == .snapshot && full.depth == nil && full.asks.count == 8 && full.checksum != nil)
        let update = try parse(String(contentsOfFile: root + "ws_books_update.json", encoding: .utf8))
        guard case .event(.book(let change))? = update.first else {
            Issue.record("books update did not parse: \(update)")
            return
        }
        #expect(change.action == .update && change.previousSequence == 123_456)
        // Checksum 0 (OKX's 2026 change) means nothing to verify.
        let zero = try parse(
            #"{"arg":{"channel":"books","instId":"A-B"},"action":"update","data":[{"asks":[],"bids":[["1","2","0","1"]],"ts":"1","checksum":0,"prevSeqId":5,"seqId":6}]}"#
        )
        #expect(
            zero == [
                .event(
                    .book(
                        BookMessage(
                            exchange: .okx, symbol: "A-B", sequence: 6, previousSequence: 5, action: .update,
                            bids: [BookLevel(price: "1", size: "2")], asks: [], timestampExchange: 1000,
                            timestampCollector: 42)))
            ])
        // `action` after `data` still applies.
        let late = try parse(
            #"{"arg":{"channel":"books","instId":"A-B"},"data":[{"asks":[],"bids":[],"ts":"1","prevSeqId":-1,"seqId":6}],"action":"snapshot"}"#
        )
        #expect(late.first.map { if case .event(.book(let b)) = $0 { b.action == .snapshot } else { false } } == true)
        // Malformed levels are refused with a reason.
        #expect(throws: ExchangeParseError.self) {
            try parse(
                #"{"arg":{"channel":"books","instId":"A-B"},"action":"update","data":[{"asks":[["x","1"]],"bids":[],"ts":"1","seqId":1,"prevSeqId":0}]}"#
            )
        }
        // The REST book: without seqId (the older reply) it cannot seed; with one it does.
        let adapter = OKXAdapter()
        let stream = StreamID("okx/book/BTC-USDT")!
        let request = try #require(adapter.bookSnapshotRequest(for: stream))
        #expect(request.target == "/api/v5/market/books?instId=BTC-USDT&sz=400" && request.budget == "books")
        let old = Array(try String(contentsOfFile: root + "http_get_order_book.json", encoding: .utf8).utf8)
        #expect(
            try old.withUnsafeBytes {
                try adapter.parseBookSnapshot($0, request: request, stream: stream, receivedAt: 1)
            } == nil)
        let withSeq = Array(
            #"{"code":"0","msg":"","data":[{"asks":[["2","1","0","1"]],"bids":[["1","3","0","2"]],"ts":"1704067200000","seqId":77}]}"#
                .utf8)
        let seeded = try withSeq.withUnsafeBytes {
            try adapter.parseBookSnapshot($0, request: request, stream: stream, receivedAt: 1)
        }
        #expect(
            seeded?.sequence == 77 && seeded?.bids == [BookLevel(price: "1", size: "3")] && seeded?.action == .snapshot)
        let limited = Array(#"{"code":"50011","msg":"Too Many Requests","data":[]}"#.utf8)
        #expect(throws: RESTError.self) {
            try limited.withUnsafeBytes {
                try adapter.parseBookSnapshot($0, request: request, stream: stream, receivedAt: 1)
            }
        }
    }
}
