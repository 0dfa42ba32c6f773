import CollectorCore
import Foundation
import Testing
import WireCore

/// `JSONBytes` writes what Foundation's JSON parser reads back exactly: random strings with quotes,
/// backslashes, control characters and multi-byte UTF-8, integers at the edges of their range.
@Suite struct JSONBytesTests {
    @Test func randomStringsAndIntegersReadBackAsWritten() throws {
        var rng = SeededRNG(seed: 8259)
        let pieces = ["a", "7", " ", "\"", "\\", "\n", "\r", "\t", "\u{01}", "\u{1f}", "é", "€", "𝄞", "/"]
        for _ in 0..<2000 {
            var text = ""
            for _ in 0..<Int(rng.next() % 30) { text += pieces[Int(rng.next() % UInt64(pieces.count))] }
            let number = Int64(bitPattern: rng.next()) >> (rng.next() % 64)
            var json = JSONBytes()
            json.raw("{\"s\":")
            json.quoted(text)
            json.raw(",\"n\":")
            json.int(number)
            json.raw(",\"b\":")
            json.bool(number % 2 == 0)
            json.raw("}")
            let object = try #require(
                try JSONSerialization.jsonObject(with: Data(json.bytes)) as? [String: Any], "\(text)")
            #expect(object["s"] as? String == text)
            #expect((object["n"] as? NSNumber)?.int64Value == number)
            #expect(object["b"] as? Bool == (number % 2 == 0))
            // The same escaping as the string helper.
            #expect(
                String(
                    decoding: {
                        var q = JSONBytes(); q.quoted(text); return q.bytes
                    }(), as: UTF8.self)
                    == JSONText.quoted(text))
        }
    }

    @Test func extremesAndZero() throws {
        for value in [Int64.min, Int64.max, 0, -1, 1, 10, -10] {
            var json = JSONBytes()
            json.int(value)
            #expect(String(decoding: json.bytes, as: UTF8.self) == String(value))
        }
        var json = JSONBytes()
        json.int(UInt64.max)
        #expect(String(decoding: json.bytes, as: UTF8.self) == String(UInt64.max))
    }
}
