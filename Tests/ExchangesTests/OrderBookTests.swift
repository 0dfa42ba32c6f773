import Foundation
import MarketData
import Testing
import WireCore

/// `OrderBook` merging and OKX's checksum, replayed over every `books` push of the recorded OKX
/// capture (read by Foundation's JSON parser here; the collector's own books parser comes with book
/// collection): each push's checksum must equal the one OKX sent.
@Suite struct OrderBookTests {
    private func levels(_ value: Any?) -> [BookLevel] {
        ((value as? [[String]]) ?? []).compactMap { row in
            guard row.count >= 2, let price = DecimalText(row[0]), let size = DecimalText(row[1]) else { return nil }
            return BookLevel(price: price, size: size)
        }
    }

    @Test func everyRecordedBooksPushMatchesOKXsChecksum() throws {
        let frames = try recordedFrames("okx/OKX.ws.1.0").filter {
            $0.payload.contains(#""channel":"books""#) && $0.payload.contains(#""data""#)
        }
        #expect(frames.count == 290)
        var books: [String: OrderBook] = [:]
        var checked = 0
        for frame in frames {
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(frame.payload.utf8)) as? [String: Any])
            let instrument = try #require((object["arg"] as? [String: Any])?["instId"] as? String)
            let action = object["action"] as? String
            for row in (object["data"] as? [[String: Any]]) ?? [] {
                var book = books[instrument] ?? OrderBook(maxDepth: 400)
                if action == "snapshot" {
                    book.applySnapshot(bids: levels(row["bids"]), asks: levels(row["asks"]))
                } else {
                    book.applyUpdate(bids: levels(row["bids"]), asks: levels(row["asks"]))
                }
                books[instrument] = book
                let expected = try #require((row["checksum"] as? NSNumber)?.int32Value)
                #expect(book.okxChecksum() == expected, "\(instrument) at \(frame.receivedAt)")
                checked += 1
            }
        }
        #expect(checked == 290)
        #expect(books.values.allSatisfy { $0.bids.count <= 400 && $0.asks.count <= 400 })
    }

    @Test func theDocsExampleChecksumAndLevelRules() {
        var book = OrderBook(maxDepth: 3)
        book.applySnapshot(
            bids: [BookLevel(price: "8476.97", size: "256"), BookLevel(price: "8475.55", size: "101")],
            asks: [BookLevel(price: "8476.98", size: "415"), BookLevel(price: "8477", size: "7")])
        // bid1, ask1, bid2, ask2 as sent (the docs example's own checksum value is illustrative only; the
        // 290 recorded pushes above are the real check).
        #expect(book.okxChecksum() == CRC32.signed(Array("8476.97:256:8476.98:415:8475.55:101:8477:7".utf8)))
        // A zero size removes a level; a new price is inserted in order; depth stays bounded.
        book.applyUpdate(
            bids: [BookLevel(price: "8475.55", size: "0"), BookLevel(price: "8476.5", size: "1")],
            asks: [
                BookLevel(price: "8476.990", size: "2"), BookLevel(price: "8480", size: "1"),
                BookLevel(price: "8490", size: "1"),
            ])
        #expect(book.bids.map(\.price) == ["8476.97", "8476.5"])
        #expect(book.asks.map(\.price) == ["8476.98", "8476.990", "8477"], "8476.990 sorts by value; depth 3")
    }

    /// Prices the fixed-point key cannot hold (19 integer digits, 19 fraction digits, exponents)
    /// still sort by their exact value among those it can, and a best-first snapshot, an unordered
    /// one and level-by-level updates all give the same book.
    @Test func pricesBeyondTheFixedPointKeySortByValue() {
        let prices: [DecimalText] = [
            "1e1", "9.5", "10.0000000000000000001", "10", "1000000000000000000", "999999999999999999.9",
            "0.0000000000000000001", "0", "2.50", "2.5000000000000000001",
        ]
        let sorted = prices.sorted { DecimalText.compare($0, $1) > 0 }
        let levels = prices.enumerated().map { BookLevel(price: $0.element, size: DecimalText("\($0.offset + 1)")!) }
        var unordered = OrderBook(maxDepth: 400)
        unordered.applySnapshot(bids: levels, asks: [])
        // "1e1" and "10" are the same price: the later level ("10", size 4) is kept.
        let expected = sorted.filter { $0 != "1e1" }
        #expect(unordered.bids.map(\.price) == expected)
        #expect(unordered.bids.first { $0.price == "10" }?.size == "4")
        var bestFirst = OrderBook(maxDepth: 400)
        bestFirst.applySnapshot(bids: unordered.bids, asks: unordered.bids.reversed())
        #expect(bestFirst.bids == unordered.bids)
        #expect(bestFirst.asks == unordered.bids.reversed())
        var updated = OrderBook(maxDepth: 400)
        updated.applyUpdate(bids: unordered.bids.reversed(), asks: unordered.bids)
        #expect(updated == bestFirst)
    }
}
