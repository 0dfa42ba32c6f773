extension DecimalText {
    /// Orders two decimals exactly by their digits (no binary floating point: `0.1 + 0.2`-style
    /// rounding never decides a data-quality rule). Exponent forms (`1e-8`, rare) are compared
    /// through `Double`.
    public static func compare(_ a: DecimalText, _ b: DecimalText) -> Int {
        var a = a.text
        var b = b.text
        return a.withUTF8 { x in
            b.withUTF8 { y in
                guard let p = PlainDecimal(x), let q = PlainDecimal(y) else {
                    let (u, v) = (
                        Double(String(decoding: x, as: UTF8.self)) ?? 0, Double(String(decoding: y, as: UTF8.self)) ?? 0
                    )
                    return u < v ? -1 : (u > v ? 1 : 0)
                }
                return PlainDecimal.compare(p, q, x, y)
            }
        }
    }

    /// Whether the value is below zero (`-0` and `-0.000` are not).
    public var isNegative: Bool {
        var t = text
        return t.withUTF8 { x in
            guard let p = PlainDecimal(x) else { return (Double(text) ?? 0) < 0 }
            return p.negative && !p.isZero
        }
    }

    /// The price rules a candle breaks first, each decimal parsed once (the per-message hot path).
    enum CandleRule { case highBelowOpenOrClose, lowAboveOpenOrClose, highBelowLow }

    static func checkCandle(open: DecimalText, high: DecimalText, low: DecimalText, close: DecimalText) -> CandleRule? {
        var (o, h, l, c) = (open.text, high.text, low.text, close.text)
        return o.withUTF8 { ob in
            h.withUTF8 { hb in
                l.withUTF8 { lb in
                    c.withUTF8 { cb in
                        guard let po = PlainDecimal(ob), let ph = PlainDecimal(hb), let pl = PlainDecimal(lb),
                            let pc = PlainDecimal(cb)
                        else {
                            // Exponent forms: the general comparison.
                            if compare(high, open) < 0 || compare(high, close) < 0 { return .highBelowOpenOrClose }
                            if compare(low, open) > 0 || compare(low, close) > 0 { return .lowAboveOpenOrClose }
                            return compare(high, low) < 0 ? .highBelowLow : nil
                        }
                        let cmp = PlainDecimal.compare
                        if cmp(ph, po, hb, ob) < 0 || cmp(ph, pc, hb, cb) < 0 { return .highBelowOpenOrClose }
                        if cmp(pl, po, lb, ob) > 0 || cmp(pl, pc, lb, cb) > 0 { return .lowAboveOpenOrClose }
                        return cmp(ph, pl, hb, lb) < 0 ? .highBelowLow : nil
                    }
                }
            }
        }
    }
}

/// The parts of `[+-]digits[.digits]` as index ranges into its bytes.
private struct PlainDecimal {
    var negative: Bool
    /// The integer digits without leading zeros.
    var integer: Range<Int>
    /// The fraction digits without trailing zeros.
    var fraction: Range<Int>
    var isZero: Bool { integer.isEmpty && fraction.isEmpty }

    init?(_ bytes: UnsafeBufferPointer<UInt8>) {
        var i = 0
        negative = false
        if i < bytes.count && (bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+")) {
            negative = bytes[i] == UInt8(ascii: "-")
            i += 1
        }
        while i < bytes.count && bytes[i] == UInt8(ascii: "0") { i += 1 }
        let integerStart = i
        while i < bytes.count && bytes[i] >= 48 && bytes[i] <= 57 { i += 1 }
        integer = integerStart..<i
        var fractionEnd = i
        var fractionStart = i
        if i < bytes.count && bytes[i] == UInt8(ascii: ".") {
            i += 1
            fractionStart = i
            while i < bytes.count && bytes[i] >= 48 && bytes[i] <= 57 { i += 1 }
            fractionEnd = i
            while fractionEnd > fractionStart && bytes[fractionEnd - 1] == UInt8(ascii: "0") { fractionEnd -= 1 }
        }
        guard i == bytes.count else { return nil }  // an exponent: not plain
        fraction = fractionStart..<fractionEnd
    }

    static func compare(
        _ p: PlainDecimal, _ q: PlainDecimal, _ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>
    ) -> Int {
        if p.isZero && q.isZero { return 0 }
        let pNegative = p.negative && !p.isZero
        let qNegative = q.negative && !q.isZero
        if pNegative != qNegative { return pNegative ? -1 : 1 }
        let magnitude = compareMagnitude(p, q, x, y)
        return pNegative ? -magnitude : magnitude
    }

    private static func compareMagnitude(
        _ p: PlainDecimal, _ q: PlainDecimal, _ x: UnsafeBufferPointer<UInt8>, _ y: UnsafeBufferPointer<UInt8>
    ) -> Int {
        if p.integer.count != q.integer.count { return p.integer.count < q.integer.count ? -1 : 1 }
        for (i, j) in zip(p.integer, q.integer) where x[i] != y[j] { return x[i] < y[j] ? -1 : 1 }
        let n = max(p.fraction.count, q.fraction.count)
        for k in 0..<n {
            let a = k < p.fraction.count ? x[p.fraction.lowerBound + k] : UInt8(ascii: "0")
            let b = k < q.fraction.count ? y[q.fraction.lowerBound + k] : UInt8(ascii: "0")
            if a != b { return a < b ? -1 : 1 }
        }
        return 0
    }
}
