import WireCore

/// One symbol's order book as merged from an exchange's snapshot and updates (pure). Levels keep the
/// exchange's price and size text exactly (checksums are computed over it); prices are ordered by
/// their exact decimal value. Memory is bounded by `maxDepth` levels per side.
public struct OrderBook: Sendable, Equatable {
    /// Best first: highest bid, lowest ask.
    public private(set) var bids: [BookLevel] = []
    public private(set) var asks: [BookLevel] = []
    /// Each level's price as a fixed-point key (parallel to `bids`/`asks`), so the binary search
    /// compares two integers instead of parsing decimal text at every step.
    private var bidKeys: [PriceKey] = []
    private var askKeys: [PriceKey] = []
    /// Levels kept per side at most (OKX `books`: 400); deeper ones are dropped.
    public let maxDepth: Int

    public init(maxDepth: Int) { self.maxDepth = max(1, maxDepth) }

    /// Replaces the book with a snapshot's levels (in any order; a zero size is no level).
    public mutating func applySnapshot(bids newBids: [BookLevel], asks newAsks: [BookLevel]) {
        bids = []
        asks = []
        bidKeys = []
        askKeys = []
        applyUpdate(bids: newBids, asks: newAsks)
    }

    /// Applies changed levels: a level's size replaces the old one at its price; a zero size removes it.
    public mutating func applyUpdate(bids changed: [BookLevel], asks changedAsks: [BookLevel]) {
        for level in changed { Self.apply(level, to: &bids, keys: &bidKeys, descending: true) }
        for level in changedAsks { Self.apply(level, to: &asks, keys: &askKeys, descending: false) }
        if bids.count > maxDepth {
            bids.removeLast(bids.count - maxDepth)
            bidKeys.removeLast(bidKeys.count - maxDepth)
        }
        if asks.count > maxDepth {
            asks.removeLast(asks.count - maxDepth)
            askKeys.removeLast(askKeys.count - maxDepth)
        }
    }

    private static func apply(
        _ level: BookLevel, to side: inout [BookLevel], keys: inout [PriceKey], descending: Bool
    ) {
        let key = PriceKey(level.price)
        func order(_ i: Int) -> Int {
            // Exact either way: the fixed-point key where both prices have one, else the decimal text.
            if let a = keys[i].value, let b = key.value { return a < b ? -1 : (a == b ? 0 : 1) }
            return DecimalText.compare(side[i].price, level.price)
        }
        // Binary search for the first level not better than `level`.
        var low = 0
        var high = side.count
        while low < high {
            let mid = (low + high) / 2
            let o = order(mid)
            if descending ? o > 0 : o < 0 { low = mid + 1 } else { high = mid }
        }
        let isZero = Self.isZero(level.size)
        if low < side.count && order(low) == 0 {
            if isZero {
                side.remove(at: low)
                keys.remove(at: low)
            } else {
                side[low] = level
                keys[low] = key
            }
        } else if !isZero {
            side.insert(level, at: low)
            keys.insert(key, at: low)
        }
    }

    /// Whether a size is zero: no digit other than 0 before any exponent (`0`, `0.000`, `-0`, `0e3`).
    static func isZero(_ size: DecimalText) -> Bool {
        for byte in size.text.utf8 {
            switch byte {
            case UInt8(ascii: "0"), UInt8(ascii: "."), UInt8(ascii: "+"), UInt8(ascii: "-"): continue
            case UInt8(ascii: "e"), UInt8(ascii: "E"): return true
            default: return false
            }
        }
        return true
    }

    /// OKX's checksum (PROTOCOLS.md §1.6): the first 25 bids and asks interleaved as
    /// `bid1px:bid1sz:ask1px:ask1sz:…` (the longer side's remaining levels appended), CRC-32 as a signed
    /// 32-bit integer.
    public func okxChecksum(levels: Int = 25) -> Int32 {
        // Checksummed piece by piece: no buffer of the whole text is built.
        var crc = CRC32Accumulator()
        for i in 0..<levels {
            if i < bids.count { Self.add(bids[i], first: i == 0, to: &crc) }
            if i < asks.count { Self.add(asks[i], first: i == 0 && bids.isEmpty, to: &crc) }
        }
        return crc.signed
    }

    private static func add(_ level: BookLevel, first: Bool, to crc: inout CRC32Accumulator) {
        if !first { crc.add(byte: UInt8(ascii: ":")) }
        crc.add(level.price.text)
        crc.add(byte: UInt8(ascii: ":"))
        crc.add(level.size.text)
    }
}

/// A non-negative price as a fixed-point number: integer digits and up to 18 fraction digits packed so
/// that integer order is decimal order (`value` nil for a price it cannot hold exactly: negative,
/// more than 18 integer or fraction digits, exponent forms; those compare by their text).
struct PriceKey: Sendable, Equatable {
    /// (integer part, fraction scaled to 18 digits), compared lexicographically.
    let value: Pair?

    struct Pair: Sendable, Equatable, Comparable {
        var integer: UInt64
        var fraction: UInt64
        static func < (a: Pair, b: Pair) -> Bool {
            a.integer != b.integer ? a.integer < b.integer : a.fraction < b.fraction
        }
    }

    init(_ price: DecimalText) {
        var integer: UInt64 = 0
        var fraction: UInt64 = 0
        var integerDigits = 0
        var fractionDigits = 0
        var inFraction = false
        for byte in price.text.utf8 {
            if byte == UInt8(ascii: ".") && !inFraction {
                inFraction = true
                continue
            }
            guard byte >= 48 && byte <= 57 else {
                value = nil  // a sign, an exponent
                return
            }
            let digit = UInt64(byte - 48)
            if inFraction {
                fractionDigits += 1
                guard fractionDigits <= 18 else {
                    value = nil
                    return
                }
                fraction = fraction * 10 + digit
            } else {
                integerDigits += 1
                guard integerDigits <= 18 else {
                    value = nil
                    return
                }
                integer = integer * 10 + digit
            }
        }
        for _ in fractionDigits..<18 { fraction *= 10 }
        value = Pair(integer: integer, fraction: fraction)
    }
}
