import Collector
import Foundation
import MarketData
import TestSupport
import Testing

/// One event of every type, with the awkward values a codec must keep: long decimals, exponents,
/// absent optionals, empty and non-empty book sides.
func makeMixedEvents(at t: Int64) -> [MarketEvent] {
    [
        .candle(makeCandle(open: t, close: "1.5")),
        .candle(makeCandle("ETH-USDT", open: t, close: "2.25", confirmed: false)),
        .trade(
            Trade(
                exchange: .okx, symbol: "BTC-USDT", tradeID: "242720720", price: "42219.9", size: "0.00012",
                side: .sell, timestampExchange: t + 1, timestampCollector: t + 2)),
        .book(
            BookMessage(
                exchange: .okx, symbol: "BTC-USDT", sequence: 123_456, previousSequence: 123_455, action: .update,
                bids: [BookLevel(price: "41006.8", size: "0.60038921")], asks: [], checksum: -1_234_567,
                timestampExchange: t + 3, timestampCollector: t + 4)),
        .book(
            BookMessage(
                exchange: .okx, symbol: "BTC-USDT", sequence: 7, previousSequence: nil, action: .snapshot,
                bids: [BookLevel(price: "1", size: "2"), BookLevel(price: "0.5", size: "1e-8")],
                asks: [BookLevel(price: "3", size: "4")], timestampExchange: t + 5, timestampCollector: t + 6)),
        .book(
            BookMessage(
                exchange: .okx, symbol: "BTC-USDT", sequence: 8, previousSequence: nil, action: .snapshot,
                bids: [BookLevel(price: "1", size: "2")], asks: [], timestampExchange: t + 5, timestampCollector: t + 6,
                depth: 5)),
        .gap(
            GapRecord(
                stream: StreamID("okx/book:5/BTC-USDT")!,
                gap: Gap(
                    from: t, to: t + 5, missing: 0, cause: .sequenceBreak, reason: "update follows 3, \"quoted\", ünï"),
                recordedAt: t + 9)),
        .ticker(
            Ticker(
                exchange: .okx, symbol: "BTC-USDT", bidPrice: "41006.8", bidSize: "1", askPrice: "41006.9",
                askSize: "2.5", lastPrice: "41006.85", open24h: "40000", volume24h: "1234.5",
                timestampExchange: t + 7, timestampCollector: t + 8)),
    ]
}

@Suite struct SpoolTests {
    @Test func everyEventTypeReplaysExactlyInOrderAndSurvivesARestart() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "spool")
        let t = UTCCalendar.microseconds(year: 2025, month: 1, day: 1)
        let first = makeMixedEvents(at: t)
        let second: [MarketEvent] = [.candle(makeCandle(open: t + 60_000_000, close: "3"))]
        do {
            let spool = try Spool(directory: directory, maxBytes: 1 << 20)
            try spool.append(first)
            try spool.append(second)
            #expect(spool.batchCount == 2)
        }
        // A new process finds both batches, oldest first, field-exact.
        let reopened = try Spool(directory: directory, maxBytes: 1 << 20)
        let a = try #require(reopened.next(for: "postgres"))
        #expect(try reopened.read(a) == first)
        try reopened.advance("postgres", to: a)
        let b = try #require(reopened.next(for: "postgres"))
        #expect(b > a)
        #expect(try reopened.read(b) == second)
        try reopened.advance("postgres", to: b)
        #expect(reopened.isEmpty && reopened.byteCount == 0)
        // Leftover temporary files (a crash before the rename) are discarded, never replayed.
        #expect(
            FileManager.default.createFile(
                atPath: directory + "/00000000000000000099.batch.tmp", contents: Data("junk".utf8)))
        let again = try Spool(directory: directory, maxBytes: 1 << 20)
        #expect(again.isEmpty)
        // Sequences keep rising across restarts (the cursor remembers the last one).
        #expect(try again.append(second) > b)
    }

    @Test func aBatchIsKeptUntilEverySinkHasStoredIt() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "spool")
        let events: [MarketEvent] = [.candle(makeCandle(open: 0))]
        let spool = try Spool(directory: directory, maxBytes: 1 << 20, sinks: ["postgres", "parquet"])
        let one = try spool.append(events)
        let two = try spool.append(events)
        try spool.advance("postgres", to: two)
        #expect(spool.next(for: "postgres") == nil)
        #expect(spool.next(for: "parquet") == one)
        #expect(spool.batchCount == 2 && spool.backlog(of: "parquet") == 2 && spool.backlog(of: "postgres") == 0)
        try spool.advance("parquet", to: one)
        #expect(spool.batchCount == 1)
        // Cursors survive a restart: the slow sink resumes where it was, the fast one has nothing.
        let reopened = try Spool(directory: directory, maxBytes: 1 << 20, sinks: ["postgres", "parquet"])
        #expect(reopened.next(for: "parquet") == two)
        #expect(reopened.next(for: "postgres") == nil)
        // A sink added later starts at the oldest batch still on disk.
        let widened = try Spool(directory: directory, maxBytes: 1 << 20, sinks: ["postgres", "parquet", "s3"])
        #expect(widened.next(for: "s3") == two)
    }

    @Test func aFullSpoolRefusesBatchesInsteadOfGrowing() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "spool")
        let spool = try Spool(directory: directory, maxBytes: 400)
        let batch = (0..<3).map { MarketEvent.candle(makeCandle(open: Int64($0) * 60_000_000)) }
        try spool.append(batch)  // the first batch is always accepted
        #expect(throws: Spool.FullError.self) { try spool.append(batch) }
        #expect(spool.batchCount == 1)
    }

    @Test func aSpoolLeftByTheCandleOnlyVersionIsReplayed() throws {
        // Issue 3's format: no header, one 13-field candle array per line (bytes as that version wrote them).
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "spool")
        let v1 =
            #"["okx","BTC-USDT","1m","1704067200000000","42219.9","42220","42219.8","42219.95","1.5","63329.85","1","1704067200000000","1704067201000000"]"#
            + "\n"
            + #"["okx","ETH-USDT","1Dutc","1704067200000000","2300.1","2310","2290","2305.5","10","23000","0","1704067200000000","1704067202000000"]"#
            + "\n"
        #expect(
            FileManager.default.createFile(
                atPath: directory + "/00000000000000000007.batch", contents: Data(v1.utf8)))
        let spool = try Spool(directory: directory, maxBytes: 1 << 20)
        let sequence = try #require(spool.next(for: "postgres"))
        #expect(sequence == 7)
        let events = try spool.read(sequence)
        #expect(events.count == 2)
        guard case .candle(let btc) = events.first, case .candle(let eth) = events.last else {
            Issue.record("expected two candles, got \(events)")
            return
        }
        #expect(btc.symbol == "BTC-USDT" && btc.close.text == "42219.95" && btc.isConfirmed)
        #expect(btc.timestampCollector == 1_704_067_201_000_000)
        #expect(eth.timeframe.key == "1Dutc" && !eth.isConfirmed && eth.quoteVolume.text == "23000")
        // New batches after it are in the current format and come after it.
        #expect(try spool.append(events) > 7)
    }

    @Test func aBatchOfANewerFormatIsRefusedWithAMessage() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "spool")
        #expect(
            FileManager.default.createFile(
                atPath: directory + "/00000000000000000003.batch",
                contents: Data("collector-spool 9\n[\"z\"]\n".utf8)))
        let spool = try Spool(directory: directory, maxBytes: 1 << 20)
        do {
            _ = try spool.read(3)
            Issue.record("read a format-9 batch")
        } catch let error as Spool.UnreadableBatch {
            #expect(error.reason.contains("format 9"))
            #expect(error.reason.contains("run that version to drain the spool"))
        }
        // Moved aside, not deleted: the operator keeps it.
        try spool.quarantine(3)
        #expect(spool.isEmpty)
        #expect(FileManager.default.fileExists(atPath: directory + "/unreadable/00000000000000000003.batch"))
    }

    @Test func deadLettersKeepTheRawTextAndTheReason() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "dead")
        let letters = try DeadLetters(directory: directory)
        let time = UTCCalendar.microseconds(year: 2025, month: 5, day: 6)
        letters.record(exchange: .okx, raw: #"{"bad": "json\n"#, reason: "invalid JSON at byte 14", at: time)
        letters.record(exchange: .okx, raw: "second", reason: "r2", at: time + 1, source: "sink:postgres")
        letters.flush()
        let text = try String(contentsOfFile: directory + "/2025-05-06.jsonl", encoding: .utf8)
        let lines = text.split(separator: "\n")
        #expect(lines.count == 2)
        let object = try #require(
            try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: String])
        #expect(object["raw"] == #"{"bad": "json\n"#)
        #expect(object["reason"] == "invalid JSON at byte 14")
        #expect(object["exchange"] == "okx")
        #expect(object["source"] == "parser")
        let second = try #require(try JSONSerialization.jsonObject(with: Data(lines[1].utf8)) as? [String: String])
        #expect(second["source"] == "sink:postgres")
        #expect(letters.count == 2)
    }

    @Test func deadLettersStopAtTheirBoundAndCountWhatTheyRefuse() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "dead")
        let letters = try DeadLetters(directory: directory, maxBytes: 1000)
        for i in 0..<50 {
            letters.record(exchange: .okx, raw: String(repeating: "x", count: 100), reason: "r\(i)", at: 0)
        }
        letters.flush()
        let size = try FileManager.default.attributesOfItem(atPath: directory + "/1970-01-01.jsonl")[.size] as? Int
        #expect((size ?? 0) <= 1000)
        #expect(letters.count > 0 && letters.count < 50)
        #expect(letters.count + letters.droppedCount == 50)
        // The bound holds across restarts: the directory's size is counted at start.
        let reopened = try DeadLetters(directory: directory, maxBytes: 1000)
        reopened.record(exchange: .okx, raw: String(repeating: "y", count: 500), reason: "big", at: 0)
        reopened.flush()
        #expect(reopened.droppedCount == 1)
    }

    @Test func qualityRulesNameTheBrokenRule() {
        var candle = makeCandle(open: 0)
        #expect(candle.qualityProblem() == nil)
        candle.high = "99"
        #expect(candle.qualityProblem()?.hasPrefix("high 99 below max(open") == true)
        candle = makeCandle(open: 0)
        candle.low = "101"
        #expect(candle.qualityProblem()?.hasPrefix("low 101 above min(open") == true)
        candle = makeCandle(open: 0)
        candle.volume = "-1"
        #expect(candle.qualityProblem() == "negative volume -1")
    }
}
