import CollectorCore
import Foundation
import Testing
import WireCore

/// The scanner's layout fast paths (`take`, `readPlainString`, `rewind`, `readRemainingMembers`)
/// and its word-at-a-time integer parse must agree with the general paths on every input.
@Suite struct JSONFastPathTests {
    /// `readPlainString` reads exactly what `readRawString` reads when the string has no escape,
    /// and gives up (cursor unchanged) at the first escape, control character or missing quote —
    /// for stop bytes at every offset of the eight-byte words.
    @Test func plainStringsStopWhereTheGeneralReaderWould() throws {
        var rng = SeededRNG(seed: 8259)
        let pieces: [[UInt8]] = [
            [0x61], [0x37], [0x20], Array("é".utf8), Array("€".utf8), Array("𝄞".utf8), [0x7F], [0xFF - 0x20],
            [0x5C, 0x22], [0x5C, 0x6E], [0x01], [0x1F], Array("abcdefgh".utf8),
        ]
        for _ in 0..<4000 {
            var body: [UInt8] = []
            for _ in 0..<Int(rng.next() % 30) { body += pieces[Int(rng.next() % UInt64(pieces.count))] }
            let closed = rng.next() % 8 != 0
            let bytes = [0x22] + body + (closed ? [0x22, 0x2C] : [])
            bytes.withUnsafeBytes { raw in
                var general = JSONScanner(raw)
                let expected: JSONScanner.RawString?
                do {
                    expected = try general.readRawString()
                } catch {
                    expected = nil
                }
                var fast = JSONScanner(raw)
                let opened = fast.take("\"")
                #expect(opened)
                let got = fast.readPlainString()
                if let expected, !expected.hasEscapes {
                    #expect(got == expected, "\(bytes)")
                    #expect(fast.offset == general.offset, "\(bytes)")
                } else {
                    #expect(got == nil, "\(bytes)")
                    #expect(fast.offset == 1, "the cursor stays put: \(bytes)")
                }
            }
        }
    }

    @Test func takeMatchesWholeLiteralsOnlyAndRewindReturns() {
        let bytes = Array(#"{"instId":"BTC-USDT","tradeId":"1"}"#.utf8)
        bytes.withUnsafeBytes { raw in
            var s = JSONScanner(raw)
            let wrong = s.take(#"{"instId":"X"#)
            #expect(!wrong && s.offset == 0)
            let right = s.take(#"{"instId":""#)
            #expect(right && s.offset == 11)
            let symbol = s.readPlainString()
            #expect(symbol.map { s.string($0) } == "BTC-USDT")
            let tooLong = s.take(#","tradeId":"1"}extra"#)
            #expect(!tooLong, "a literal longer than the input")
            s.rewind(to: 0)
            let again = s.take("{")
            #expect(again && s.offset == 1)
        }
    }

    /// After a fast path consumed `{` and some members, the rest reads as `readObject` would read it,
    /// errors included.
    @Test func remainingMembersReadAsTheGeneralObjectReader() throws {
        func members(_ text: String) throws(JSONError) -> [String] {
            let bytes = Array(text.utf8)
            let result = bytes.withUnsafeBytes { raw -> Result<[String], JSONError> in
                var s = JSONScanner(raw)
                var keys: [String] = []
                guard s.take(#"{"a":1"#) else { return .failure(JSONError(offset: 0, reason: "no prefix")) }
                do throws(JSONError) {
                    try s.readRemainingMembers { key, s2 throws(JSONError) in
                        keys.append(s2.string(key))
                        try s2.skipValue()
                    }
                    try s.expectEnd()
                } catch {
                    return .failure(error)
                }
                return .success(keys)
            }
            return try result.get()
        }
        #expect(try members(#"{"a":1}"#) == [])
        #expect(try members(#"{"a":1, "b" : [1,{"c":2}] ,"d":"x"}"#) == ["b", "d"])
        for bad in [#"{"a":1"#, #"{"a":1,}"#, #"{"a":1 "b":2}"#, #"{"a":1,"b"}"#, #"{"a":1,"b":}"#] {
            #expect(throws: JSONError.self, "\(bad)") { try members(bad) }
        }
    }

    /// The eight-digit word parse agrees with `Int64(_:)` on digit strings up to 19 digits long, and
    /// refuses a non-digit (the bytes either side of '0'…'9' included) at every position.
    @Test func parseInt64AgreesWithTheStandardLibrary() {
        var rng = SeededRNG(seed: 1978)
        let strays: [UInt8] = [0x2F, 0x3A, 0x20, 0x2E, 0x2D, 0x2B, 0x00, 0x80, 0xB0, 0xFF, 0x40, 0x60]
        for length in 1...21 {
            for _ in 0..<300 {
                var digits = (0..<length).map { _ in UInt8(48 + rng.next() % 10) }
                let negative = rng.next() % 4 == 0
                if rng.next() % 3 == 0 {
                    digits[Int(rng.next() % UInt64(length))] = strays[Int(rng.next() % UInt64(strays.count))]
                }
                let bytes = (negative ? [UInt8(ascii: "-")] : []) + digits
                let text = String(decoding: bytes, as: UTF8.self)
                var expected = bytes.allSatisfy { $0 == 0x2D || ($0 >= 48 && $0 <= 57) } ? Int64(text) : nil
                if digits.count > 19 { expected = nil }  // refused: more than 19 digits, even leading zeros
                let got = bytes.withUnsafeBytes { JSONScanner.parseInt64($0) }
                #expect(got == expected, "\(bytes)")
            }
        }
        #expect(Array("9223372036854775807".utf8).withUnsafeBytes { JSONScanner.parseInt64($0) } == Int64.max)
        #expect(Array("9223372036854775808".utf8).withUnsafeBytes { JSONScanner.parseInt64($0) } == nil)
        // Found by the json fuzz target: Int64.min is a 64-bit integer too.
        #expect(Array("-9223372036854775808".utf8).withUnsafeBytes { JSONScanner.parseInt64($0) } == Int64.min)
        #expect(Array("-9223372036854775809".utf8).withUnsafeBytes { JSONScanner.parseInt64($0) } == nil)
        #expect(Array("-".utf8).withUnsafeBytes { JSONScanner.parseInt64($0) } == nil)
    }
}
