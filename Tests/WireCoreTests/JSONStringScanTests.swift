import CollectorCore
import Foundation
import Testing
import WireCore

/// `JSONScanner.readRawString` skips eight bytes at a time; random strings with quotes, escapes,
/// multi-byte UTF-8 and control characters at every offset must read exactly as Foundation's JSON
/// parser reads them, and a raw control character must still be refused wherever it falls.
@Suite struct JSONStringScanTests {
    @Test func randomStringsReadAsFoundationReadsThem() throws {
        var rng = SeededRNG(seed: 6455)
        let pieces = ["a", "b", "7", " ", #"\""#, #"\\"#, #"\n"#, #"\u00e9"#, "é", "€", "𝄞", #"\/"#, "xyzxyzxy"]
        for _ in 0..<3000 {
            var body = ""
            for _ in 0..<Int(rng.next() % 40) { body += pieces[Int(rng.next() % UInt64(pieces.count))] }
            let json = "[\"\(body)\"]"
            let expected = try #require(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String]).first
            let bytes = Array(json.utf8)
            let got = try bytes.withUnsafeBytes { raw throws(JSONError) -> String? in
                var scanner = JSONScanner(raw)
                var value: String?
                try scanner.readArray { _, s throws(JSONError) in value = try s.readString() }
                return value
            }
            #expect(got == expected, "\(json)")
        }
    }

    @Test(arguments: 0..<20)
    func aRawControlCharacterIsRefusedAtAnyOffset(offset: Int) {
        var bytes = Array("[\"".utf8) + Array(repeating: UInt8(ascii: "a"), count: 24) + Array("\"]".utf8)
        bytes[2 + offset] = 0x01
        let refused = bytes.withUnsafeBytes { raw -> Bool in
            var scanner = JSONScanner(raw)
            do {
                try scanner.readArray { _, s throws(JSONError) in _ = try s.readRawString() }
                return false
            } catch let error as JSONError {
                return error.reason.contains("control character")
            } catch {
                return false
            }
        }
        #expect(refused)
    }
}
