import WireCore

/// One symbol's order book as merged from an exchange's snapshot and updates (pure). Levels keep the
/// exchange's price and size text exactly (checksums are computed over it); prices are ordered by
/// their exact decimal value. Memory is bounded by `maxDepth` levels per side.
public struct OrderBook: Sendable, Equatable {
    /// Best first: highest bid, lowest ask.
    public private(set) var bids: [BookLevel] = []
    public private(set) var asks: [BookLevel] = []
    /// Levels kept per side at most (OKX `books`: 400); deeper ones are dropped.
    public let maxDepth: Int

    public init(maxDepth: Int) { self.maxDepth = max(1, maxDepth) }

    /// Replaces the book with a snapshot's levels (in any order; a zero size is no level).
    public mutating func applySnapshot(bids newBids: [BookLevel], asks newAsks: [BookLevel]) {
        bids = []
        asks = []
        applyUpdate(bids: newBids, asks: newAsks)
    }

    /// Applies changed levels: a level's size replaces the old one at its price; a zero size removes it.
    public mutating func applyUpdate(bids changed: [BookLevel], asks changedAsks: [BookLevel]) {
        for level in changed { Self.apply(level, to: &bids, descending: true) }
        for level in changedAsks { Self.apply(level, to: &asks, descending: false) }
        if bids.count > maxDepth { bids.removeLast(bids.count - maxDepth) }
        if asks.count > maxDepth { asks.removeLast(asks.count - maxDepth) }
    }

    private static func apply(_ level: BookLevel, to side: inout [BookLevel], descending: Bool) {
        // Binary search for the first level not better than `level`.
        var low = 0
        var high = side.count
        while low < high {
            let mid = (low + high) / 2
            let order = DecimalText.compare(side[mid].price, level.price)
            let better = descending ? order > 0 : order < 0
            if better { low = mid + 1 } else { high = mid }
        }
        let isZero = DecimalText.compare(level.size, "0") == 0
        if low < side.count && DecimalText.compare(side[low].price, level.price) == 0 {
            if isZero { side.remove(at: low) } else { side[low] = level }
        } else if !isZero {
            side.insert(level, at: low)
        }
    }

    /// OKX's checksum (PROTOCOLS.md §1.6): the first 25 bids and asks interleaved as
    /// `bid1px:bid1sz:ask1px:ask1sz:…` (the longer side's remaining levels appended), CRC-32 as a signed
    /// 32-bit integer.
    public func okxChecksum(levels: Int = 25) -> Int32 {
        var text: [UInt8] = []
        text.reserveCapacity(levels * 40)
        func add(_ level: BookLevel) {
            if !text.isEmpty { text.append(UInt8(ascii: ":")) }
            text.append(contentsOf: level.price.text.utf8)
            text.append(UInt8(ascii: ":"))
            text.append(contentsOf: level.size.text.utf8)
        }
        for i in 0..<levels {
            if i < bids.count { add(bids[i]) }
            if i < asks.count { add(asks[i]) }
        }
        return CRC32.signed(text)
    }
}
