import Collector
import Foundation
import MarketData
import TestSupport
import Testing

@Suite struct SpoolTests {
    @Test func batchesReplayInOrderAndSurviveARestart() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "spool")
        let t = UTCCalendar.microseconds(year: 2025, month: 1, day: 1)
        let first = [
            makeCandle(open: t, close: "1.5"), makeCandle("ETH-USDT", open: t, close: "2.25", confirmed: false),
        ]
        let second = [makeCandle(open: t + 60_000_000, close: "3")]
        do {
            let spool = try Spool(directory: directory, maxBytes: 1 << 20)
            try spool.append(first)
            try spool.append(second)
            #expect(spool.batchCount == 2)
        }
        // A new process finds both batches, oldest first, byte-exact.
        let reopened = try Spool(directory: directory, maxBytes: 1 << 20)
        let a = try #require(try reopened.oldest())
        #expect(a.candles == first)
        try reopened.remove(a.sequence)
        let b = try #require(try reopened.oldest())
        #expect(b.candles == second)
        try reopened.remove(b.sequence)
        #expect(reopened.isEmpty && reopened.byteCount == 0)
        // Leftover temporary files (a crash before the rename) are discarded, never replayed.
        #expect(
            FileManager.default.createFile(
                atPath: directory + "/00000000000000000099.batch.tmp", contents: Data("junk".utf8))
        )
        #expect(try Spool(directory: directory, maxBytes: 1 << 20).isEmpty)
    }

    @Test func aFullSpoolRefusesBatchesInsteadOfGrowing() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "spool")
        let spool = try Spool(directory: directory, maxBytes: 400)
        let batch = (0..<3).map { makeCandle(open: Int64($0) * 60_000_000) }
        try spool.append(batch)  // the first batch is always accepted
        #expect(throws: Spool.FullError.self) { try spool.append(batch) }
        #expect(spool.batchCount == 1)
    }

    @Test func deadLettersKeepTheRawTextAndTheReason() throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "dead")
        let letters = try DeadLetters(directory: directory)
        let time = UTCCalendar.microseconds(year: 2025, month: 5, day: 6)
        letters.record(exchange: .okx, raw: #"{"bad": "json\n"#, reason: "invalid JSON at byte 14", at: time)
        letters.flush()
        let text = try String(contentsOfFile: directory + "/2025-05-06.jsonl", encoding: .utf8)
        let object = try #require(try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: String])
        #expect(object["raw"] == #"{"bad": "json\n"#)
        #expect(object["reason"] == "invalid JSON at byte 14")
        #expect(object["exchange"] == "okx")
        #expect(letters.count == 1)
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
