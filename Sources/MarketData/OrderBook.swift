import WireCore

/// One symbol's order book as merged from an exchange's snapshot and updates (pure). Levels keep the
/// exchange's price and size text exactly (checksums are computed over it); prices are ordered by
/// their exact decimal value. Memory is bounded by `maxDepth` levels per side.
public struct OrderBook: Sendable, Equatable {
    /// Best first: highest bid. O(n): a copy of the side (snapshot rows, tests).
    public var bids: [BookLevel] { bidEntries.reversed().map(\.level) }
    /// Best first: lowest ask. O(n), as `bids`.
    public var asks: [BookLevel] { askEntries.reversed().map(\.level) }
    /// Each side worst first, best last: most changes land near the top of the book, so at the
    /// array's end an insert or a removal there moves a few entries instead of all 400. Bids are
    /// thus in ascending price order, asks in descending.
    private var bidEntries: [Entry] = []
    private var askEntries: [Entry] = []
    /// Levels kept per side at most (OKX `books`: 400); deeper ones are dropped.
    public let maxDepth: Int

    public init(maxDepth: Int) { self.maxDepth = max(1, maxDepth) }

    public static func == (a: OrderBook, b: OrderBook) -> Bool {
        a.maxDepth == b.maxDepth && a.bidEntries == b.bidEntries && a.askEntries == b.askEntries
    }

    /// Replaces the book with a snapshot's levels (in any order; a zero size is no level).
    public mutating func applySnapshot(bids newBids: [BookLevel], asks newAsks: [BookLevel]) {
        bidEntries = Self.side(newBids, ascending: true, maxDepth: maxDepth)
        askEntries = Self.side(newAsks, ascending: false, maxDepth: maxDepth)
    }

    /// Applies changed levels: a level's size replaces the old one at its price; a zero size removes it.
    public mutating func applyUpdate(bids changed: [BookLevel], asks changedAsks: [BookLevel]) {
        for level in changed { Self.apply(level, to: &bidEntries, ascending: true) }
        for level in changedAsks { Self.apply(level, to: &askEntries, ascending: false) }
        // The worst levels are at the front.
        if bidEntries.count > maxDepth { bidEntries.removeFirst(bidEntries.count - maxDepth) }
        if askEntries.count > maxDepth { askEntries.removeFirst(askEntries.count - maxDepth) }
    }

    /// A side built from a snapshot's levels. Exchanges send them best first, each strictly worse than
    /// the one before: then they are only reversed (O(n)); any other order is merged level by level.
    private static func side(_ levels: [BookLevel], ascending: Bool, maxDepth: Int) -> [Entry] {
        var entries: [Entry] = []
        entries.reserveCapacity(min(levels.count, maxDepth) + 1)
        var isBestFirst = true
        var previous: Entry?
        for level in levels.reversed() {
            let (entry, isZero) = Entry.make(level)
            // Walking from the worst, each level must be strictly better than the one before it (zero
            // sizes included: a repeated price is merged in order below).
            if let previous {
                let o = order(previous, entry)
                guard ascending ? o < 0 : o > 0 else {
                    isBestFirst = false
                    break
                }
            }
            previous = entry
            if !isZero { entries.append(entry) }
        }
        if !isBestFirst {
            entries.removeAll(keepingCapacity: true)
            for level in levels { apply(level, to: &entries, ascending: ascending) }
        }
        if entries.count > maxDepth { entries.removeFirst(entries.count - maxDepth) }
        return entries
    }

    private static func apply(_ level: BookLevel, to side: inout [Entry], ascending: Bool) {
        let (entry, isZero) = Entry.make(level)
        // Binary search for the first entry not below (bids: ascending) or not above (asks) `level`.
        var low = 0
        var high = side.count
        while low < high {
            let mid = (low &+ high) >> 1
            let o = order(side[mid], entry)
            if ascending ? o < 0 : o > 0 { low = mid &+ 1 } else { high = mid }
        }
        if low < side.count && order(side[low], entry) == 0 {
            if isZero { side.remove(at: low) } else { side[low] = entry }
        } else if !isZero {
            side.insert(entry, at: low)
        }
    }

    /// Price order of two entries: exact either way, the fixed-point key where both prices have one,
    /// else the decimal text.
    @inline(__always)
    private static func order(_ a: Entry, _ b: Entry) -> Int {
        if let x = a.key.value, let y = b.key.value { return x < y ? -1 : (x == y ? 0 : 1) }
        return DecimalText.compare(a.level.price, b.level.price)
    }

    /// Whether a size is zero: no digit other than 0 before any exponent (`0`, `0.000`, `-0`, `0e3`).
    static func isZero(_ size: DecimalText) -> Bool {
        var text = size.text
        return text.withUTF8 { isZero($0) }
    }

    static func isZero(_ bytes: UnsafeBufferPointer<UInt8>) -> Bool {
        for byte in bytes {
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
    /// 32-bit integer. Each level's `px:sz` is kept as a CRC-32 piece (computed once, when the level
    /// was applied), so the text is never rebuilt: the pieces are combined in order.
    public func okxChecksum(levels: Int = 25) -> Int32 {
        let depth = max(0, levels)
        return bidEntries.withUnsafeBufferPointer { bids in
            askEntries.withUnsafeBufferPointer { asks in
                let bidCount = min(depth, bids.count)
                let askCount = min(depth, asks.count)
                return withUnsafeTemporaryAllocation(of: CRC32Piece.self, capacity: bidCount + askCount) { pieces in
                    var n = 0
                    for i in 0..<max(bidCount, askCount) {
                        if i < bidCount {
                            pieces.initializeElement(at: n, to: bids[bids.count - 1 - i].piece)
                            n += 1
                        }
                        if i < askCount {
                            pieces.initializeElement(at: n, to: asks[asks.count - 1 - i].piece)
                            n += 1
                        }
                    }
                    var crc = CRC32Accumulator()
                    crc.add(UnsafeBufferPointer(rebasing: pieces[..<n]), separatedBy: UInt8(ascii: ":"))
                    return crc.signed
                }
            }
        }
    }
}

/// One level as the book keeps it: the exchange's text, its price as a fixed-point key, and its
/// checksum text `px:sz` as a CRC-32 piece.
private struct Entry: Sendable, Equatable {
    var key: PriceKey
    var level: BookLevel
    var piece: CRC32Piece

    /// The entry for `level`, and whether its size is zero (price and size read in one pass each).
    static func make(_ level: BookLevel) -> (Entry, isZero: Bool) {
        var price = level.price.text
        var size = level.size.text
        return price.withUTF8 { p in
            size.withUTF8 { s in
                (
                    Entry(key: PriceKey(bytes: p), level: level, piece: CRC32Piece(p, UInt8(ascii: ":"), s)),
                    OrderBook.isZero(s)
                )
            }
        }
    }

    /// Key and piece are functions of the level.
    static func == (a: Entry, b: Entry) -> Bool { a.level == b.level }
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
        var text = price.text
        self = text.withUTF8 { PriceKey(bytes: $0) }
    }

    init(bytes: UnsafeBufferPointer<UInt8>) {
        let n = bytes.count
        var i = 0
        var integer: UInt64 = 0
        // Wrapping arithmetic: a run of more than 18 digits is refused below, whatever it summed to.
        while i < n && bytes[i] &- 48 < 10 {
            integer = integer &* 10 &+ UInt64(bytes[i] &- 48)
            i += 1
        }
        let integerDigits = i
        var fraction: UInt64 = 0
        var fractionDigits = 0
        if i < n && bytes[i] == UInt8(ascii: ".") {
            i += 1
            let start = i
            while i < n && bytes[i] &- 48 < 10 {
                fraction = fraction &* 10 &+ UInt64(bytes[i] &- 48)
                i += 1
            }
            fractionDigits = i - start
        }
        // A sign, an exponent, or more than 18 integer or fraction digits: compared by the text.
        guard i == n && integerDigits <= 18 && fractionDigits <= 18 else {
            value = nil
            return
        }
        value = Pair(integer: integer, fraction: fraction * Self.scales[fractionDigits])
    }

    /// 10^(18 - k): scales a fraction of k digits to 18.
    private static let scales: [UInt64] = (0...18).map { k in
        (0..<(18 - k)).reduce(UInt64(1)) { power, _ in power * 10 }
    }
}
