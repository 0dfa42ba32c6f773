import Collector
import ExchangeSimulator
import Foundation
import HTTP1Protocol
import MarketData
import PostgresClient
import Runtime
import TestSupport
import Testing

/// OKX order books end to end: exchange-sim → WebSocket → session (sequencing, checksums,
/// resynchronisation) → spool → PostgreSQL, checked against the simulator's oracle of its book.
@Suite struct BookFeedTests {
    /// Virtual milliseconds per book step: at the harness's 600× clock that is 300 updates a second
    /// per book, enough to exercise every rule without starving the rest of a parallel test run.
    static let bookStepMilliseconds = 2000

    /// One stored book row.
    struct Row: Equatable {
        var seq: Int64
        var prev: Int64?
        var action: String
        var bids: [BookLevel]
        var asks: [BookLevel]
        var time: Int64
    }

    func request(_ harness: Harness, _ method: String, _ target: String) async throws -> (Int, [String: Any]) {
        let response = try await HTTPClient.send(
            HTTPRequest(head: HTTPRequestHead(method: method, target: target)),
            to: Endpoint(host: "127.0.0.1", port: harness.simulator.restPort), loop: harness.loop)
        let body = (try? JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]) ?? [:]
        return (response.head.status, body)
    }

    /// Stored rows of one book stream in rebuild order.
    func stored(_ harness: Harness, _ symbol: String, depth: Int = 0) async throws -> [Row] {
        let rows = try await harness.executor.run { c throws(PGError) in
            try c.execute(
                """
                SELECT seq::text, prev_seq::text, action, bids::text, asks::text,
                       (extract(epoch FROM timestamp_exchange) * 1000000)::bigint::text
                FROM book_messages WHERE exchange = 'okx' AND symbol = $1 AND depth = $2::integer
                ORDER BY timestamp_exchange, seq, action DESC
                """, [symbol, String(depth)]
            ).rows
        }
        return rows.compactMap { r in
            guard let seq = r[0].flatMap({ Int64($0) }), let action = r[2], let bids = r[3].flatMap(Self.levels),
                let asks = r[4].flatMap(Self.levels), let time = r[5].flatMap({ Int64($0) })
            else { return nil }
            return Row(seq: seq, prev: r[1].flatMap { Int64($0) }, action: action, bids: bids, asks: asks, time: time)
        }
    }

    /// PostgreSQL's text of a `numeric[][]`: `{{1.5,2},{3,4}}` or `{}`.
    static func levels(_ text: String) -> [BookLevel]? {
        guard text != "{}" else { return [] }
        guard text.hasPrefix("{{"), text.hasSuffix("}}") else { return nil }
        var out: [BookLevel] = []
        for pair in text.dropFirst(2).dropLast(2).split(separator: "},{") {
            let parts = pair.split(separator: ",")
            guard parts.count == 2, let price = DecimalText(String(parts[0])), let size = DecimalText(String(parts[1]))
            else { return nil }
            out.append(BookLevel(price: price, size: size))
        }
        return out
    }

    /// The book at the end of `rows`, rebuilt from stored rows alone: the newest snapshot, then the
    /// updates after it. Also checks that every update between snapshots follows the one before.
    func rebuild(_ rows: [Row], depth: Int = 400) -> (book: OrderBook, chainBreaks: Int) {
        var book = OrderBook(maxDepth: depth)
        var last: Int64?
        var breaks = 0
        for row in rows {
            if row.action == "snapshot" {
                book.applySnapshot(bids: row.bids, asks: row.asks)
            } else {
                // A maintenance reset (seq < prev) still names the previous seq.
                if let last, let prev = row.prev, prev != last { breaks += 1 }
                book.applyUpdate(bids: row.bids, asks: row.asks)
            }
            last = row.seq
        }
        return (book, breaks)
    }

    /// The simulator's own book at `seq` (price/size pairs, best first).
    func oracle(_ harness: Harness, _ symbol: String, seq: Int64) async throws -> (bids: [BookLevel], asks: [BookLevel])
    {
        let (status, body) = try await request(harness, "GET", "/control/book?instId=\(symbol)&seqId=\(seq)")
        #expect(status == 200, "oracle: \(body)")
        func side(_ key: String) -> [BookLevel] {
            ((body[key] as? [[String]]) ?? []).compactMap { pair in
                guard pair.count >= 2, let p = DecimalText(pair[0]), let s = DecimalText(pair[1]) else { return nil }
                return BookLevel(price: p, size: s)
            }
        }
        return (side("bids"), side("asks"))
    }

    /// The rebuilt book of `symbol` equals the simulator's at the last stored row.
    func expectRebuiltEqualsOracle(_ harness: Harness, _ symbol: String) async throws {
        let rows = try await stored(harness, symbol)
        let last = try #require(rows.last)
        let (book, breaks) = rebuild(rows)
        #expect(breaks == 0, "\(symbol): stored updates do not chain")
        let truth = try await oracle(harness, symbol, seq: last.seq)
        #expect(book.bids == truth.bids && book.asks == truth.asks, "\(symbol) at seq \(last.seq)")
        #expect(!truth.bids.isEmpty && !truth.asks.isEmpty)
    }

    @Test func aCorruptChecksumResyncsThatSymbolOnlyAndItsGapSurvivesARestart() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(
            conninfo: database.conninfo, configure: { $0.bookSnapshotInterval = nil },
            simulator: { $0.bookStepMilliseconds = Self.bookStepMilliseconds })
        let btc = StreamID("okx/book/BTC-USDT")!
        let eth = StreamID("okx/book/ETH-USDT")!
        let top5 = StreamID("okx/book:5/BTC-USDT")!
        let bbo = StreamID("okx/book:1/BTC-USDT")!
        #expect(await harness.engine.subscribe([btc, eth, top5, bbo]).isEmpty)
        try await harness.waitUntil("50 book rows of each symbol") {
            let btcRows = try await stored(harness, "BTC-USDT").count
            let ethRows = try await stored(harness, "ETH-USDT").count
            return btcRows >= 50 && ethRows >= 50
        }
        let (faultStatus, fault) = try await request(
            harness, "POST", "/control/book-fault?instId=BTC-USDT&kind=checksum")
        #expect(faultStatus == 200, "\(fault)")
        try await harness.waitUntil("BTC-USDT resynchronised after the bad checksum") {
            let snapshots = try await stored(harness, "BTC-USDT").filter { $0.action == "snapshot" }.count
            let gaps = harness.engine.status.status(btc)?.gaps ?? []
            return snapshots >= 2 && gaps.contains { $0.cause == .checksum && $0.to > $0.from }
        }
        let ethRowsAtResync = try await stored(harness, "ETH-USDT").count
        try await harness.waitUntil("both symbols flowing after the resync") {
            let ethRows = try await stored(harness, "ETH-USDT").count
            let btcUpdates = try await stored(harness, "BTC-USDT").filter { $0.action == "update" }.count
            return ethRows >= ethRowsAtResync + 20 && btcUpdates >= 100
        }
        await harness.engine.shutdown()
        #expect(await harness.engine.storage.finish(timeout: .seconds(30)))
        // The other symbol was untouched: one snapshot, no gap, every update chained.
        #expect(harness.engine.status.status(eth)?.gaps.isEmpty == true)
        let ethRows = try await stored(harness, "ETH-USDT")
        #expect(ethRows.filter { $0.action == "snapshot" }.count == 1)
        // Both books rebuilt from their stored rows equal the simulator's at the last stored row: the
        // wrong state after the bad checksum was never stored.
        try await expectRebuiltEqualsOracle(harness, "BTC-USDT")
        try await expectRebuiltEqualsOracle(harness, "ETH-USDT")
        // Top-5 and best bid/offer rows are whole books equal to the oracle's top levels.
        for (depth, count) in [(5, 5), (1, 1)] {
            let rows = try await stored(harness, "BTC-USDT", depth: depth)
            let last = try #require(rows.last, "no book:\(depth) rows")
            #expect(rows.allSatisfy { $0.action == "snapshot" && $0.prev == nil })
            let truth = try await oracle(harness, "BTC-USDT", seq: last.seq)
            #expect(last.bids == Array(truth.bids.prefix(count)) && last.asks == Array(truth.asks.prefix(count)))
        }
        // The ledger is in PostgreSQL…
        let ledger = try await harness.executor.run { c throws(PGError) in
            try c.execute("SELECT symbol, feed, cause, recovered::text FROM gaps ORDER BY symbol").rows
        }
        #expect(ledger.map { $0.map { $0 ?? "" } } == [["BTC-USDT", "book", "checksum", "false"]])
        await harness.stop()
        // …and a restarted collector shows it before any new data.
        let again = try await Harness.start(
            conninfo: database.conninfo, simulator: { $0.bookStepMilliseconds = Self.bookStepMilliseconds })
        #expect(await again.engine.subscribe([btc]).isEmpty)
        #expect(again.engine.status.status(btc)?.gaps.map(\.cause) == [.checksum])
        await again.stop()
    }

    @Test func withoutSnapshotsOrChecksumsTheBookIsSeededFromRESTAndASkippedSeqIdResyncs() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(
            conninfo: database.conninfo, symbols: ["BTC-USDT"], configure: { $0.bookSnapshotInterval = nil },
            simulator: {
                $0.bookStepMilliseconds = Self.bookStepMilliseconds
                $0.sendsBookSnapshot = false
                $0.bookChecksumZero = true
            })
        let btc = StreamID("okx/book/BTC-USDT")!
        #expect(await harness.engine.subscribe([btc]).isEmpty)
        try await harness.waitUntil("50 book rows seeded from REST") {
            try await stored(harness, "BTC-USDT").count >= 50
        }
        let first = try #require(try await stored(harness, "BTC-USDT").first)
        #expect(first.action == "snapshot", "the REST book starts the stored rows")
        let (faultStatus, fault) = try await request(
            harness, "POST", "/control/book-fault?instId=BTC-USDT&kind=skip-seq")
        #expect(faultStatus == 200, "\(fault)")
        try await harness.waitUntil("a sequence break and a resync") {
            let snapshots = try await stored(harness, "BTC-USDT").filter { $0.action == "snapshot" }.count
            return snapshots >= 2
                && (harness.engine.status.status(btc)?.gaps ?? []).contains { $0.cause == .sequenceBreak }
        }
        let (resetStatus, _) = try await request(harness, "POST", "/control/book-fault?instId=BTC-USDT&kind=reset")
        #expect(resetStatus == 200)
        try await harness.waitUntil("the maintenance reset stored, and updates after it") {
            let rows = try await stored(harness, "BTC-USDT")
            guard let reset = rows.firstIndex(where: { ($0.prev ?? 0) > $0.seq }) else { return false }
            return rows.count >= reset + 20
        }
        await harness.engine.shutdown()
        #expect(await harness.engine.storage.finish(timeout: .seconds(30)))
        // A maintenance reset is no gap: the only one is the skipped seqId.
        #expect(harness.engine.status.status(btc)?.gaps.map(\.cause) == [.sequenceBreak])
        let rows = try await stored(harness, "BTC-USDT")
        #expect(rows.contains { ($0.prev ?? 0) > $0.seq }, "the reset was stored")
        try await expectRebuiltEqualsOracle(harness, "BTC-USDT")
        await harness.stop()
    }
}
