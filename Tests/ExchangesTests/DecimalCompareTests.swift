import CollectorCore
import Foundation
import MarketData
import Testing

/// `DecimalText.compare` orders decimals exactly, checked against Foundation's `Decimal` (an
/// independent decimal implementation) on edge cases and seeded random digit strings.
@Suite struct DecimalCompareTests {
    func reference(_ a: String, _ b: String) -> Int {
        let x = Decimal(string: a)!
        let y = Decimal(string: b)!
        return x < y ? -1 : (x > y ? 1 : 0)
    }

    @Test(arguments: [
        ("1", "1.0"), ("0.10", "0.1"), ("-0", "0"), ("-0.000", "0.0"), ("+5", "5"), ("007.5", "7.50"),
        ("42219.9", "42219.89"), ("-1.5", "-1.45"), ("-2", "1"), ("0.0000001", "0"), ("100", "99.999"),
        ("1e-8", "0.00000001"), ("2E3", "1999.5"),
    ])
    func edgeCasesOrderAsDecimalDoes(pair: (String, String)) {
        let (a, b) = pair
        #expect(DecimalText.compare(DecimalText(a)!, DecimalText(b)!) == reference(a, b), "\(a) vs \(b)")
        #expect(DecimalText.compare(DecimalText(b)!, DecimalText(a)!) == reference(b, a), "\(b) vs \(a)")
    }

    @Test func randomDecimalsOrderAsDecimalDoes() {
        var rng = SeededRNG(seed: 2026)
        func random() -> String {
            let sign = ["", "-", "+"][Int(rng.next() % 3)]
            let zeros = String(repeating: "0", count: Int(rng.next() % 3))
            let integer = String(rng.next() % 1000)
            let fraction =
                rng.next() % 2 == 0
                ? "" : "." + String(rng.next() % 100_000) + String(repeating: "0", count: Int(rng.next() % 3))
            return sign + zeros + integer + fraction
        }
        for _ in 0..<5000 {
            let (a, b) = (random(), random())
            #expect(DecimalText.compare(DecimalText(a)!, DecimalText(b)!) == reference(a, b), "\(a) vs \(b)")
        }
    }

    @Test func negativityIgnoresNegativeZero() {
        #expect(DecimalText("-0.00").isNegative == false)
        #expect(DecimalText("-0.001").isNegative)
        #expect(DecimalText("0").isNegative == false)
    }
}
