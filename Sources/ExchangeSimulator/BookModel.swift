import Foundation
import MarketData

/// One price level of the book model, in integer units (the wire text is derived from them).
struct ModelLevel: Sendable, Equatable {
    /// Price in ticks of 10^-`BookModel.priceDecimals`.
    var priceTicks: Int64
    /// Size in units of 10^-8 of the base currency; 0 only in a step's changes (a removed level).
    var sizeUnits: Int64
    /// OKX's fourth field: orders at the level (0 in a removal).
    var orders: Int32
}

/// The model's whole book after one step.
struct BookState: Sendable, Equatable {
    /// The step this is the book after (0 = the initial book at the model's origin).
    var step: Int64
    var seqId: Int64
    /// Best first: highest bid first, lowest ask first. At most `BookModel.maxDepth` each.
    var bids: [ModelLevel]
    var asks: [ModelLevel]
}

/// What one step changed: the levels a `books` update carries.
struct BookStep: Sendable, Equatable {
    let step: Int64
    let prevSeqId: Int64
    let seqId: Int64
    /// Changed levels with their new size (0 = removed), best first.
    let bids: [ModelLevel]
    let asks: [ModelLevel]

    /// OKX's keepalive: no levels and the seqId unchanged (PROTOCOLS.md §1.6).
    var isKeepalive: Bool { bids.isEmpty && asks.isEmpty && seqId == prevSeqId }
}

/// A deterministic order book for one symbol: the book after step *n* is a pure function of
/// (seed, symbol, n) and the maintenance resets asked for (`resets`). Steps are laid on virtual
/// time like trades: step *n* happens `n × stepMicroseconds` after `origin` (plus a seeded jitter
/// under half a step), whether or not anyone listens.
///
/// Each step (see `advance`):
/// | what | how often |
/// |---|---|
/// | keepalive: nothing changes, seqId unchanged | 1 step in `keepaliveOneIn` |
/// | 1–3 operations: size changes (mostly near the top), removals (mostly of the best levels), new levels inside the spread or in gaps | every other step |
/// | one new level past the worst, when a side has fewer than `maxDepth` | after the operations |
/// | the worst levels removed (sent with size "0") while a side has more than `maxDepth` | last |
///
/// The explicit trim means a client that keeps the best `maxDepth` levels per side holds exactly
/// the model's book. The best bid stays below the best ask (new levels inside the spread stay
/// strictly inside), and the mid drifts towards the candle model's price path. seqIds grow by
/// 1–3 per step, except at a reset, which sets a small seqId below the previous one.
struct BookModel: Sendable {
    /// OKX `books` depth (PROTOCOLS.md §1.6).
    static let maxDepth = 400
    /// About 1 step in 50 is a keepalive; OKX sends one after ~60 s without change, but tests need
    /// to see them often.
    static let keepaliveOneIn: UInt64 = 50
    /// The checksum covers 25 levels per side (PROTOCOLS.md §1.6).
    static let checksumLevels = 25

    let symbol: String
    let hash: UInt64
    let priceDecimals: Int
    /// Virtual time (µs) of step 0.
    let origin: Int64
    let stepMicroseconds: Int64
    private let candles: CandleModel
    /// Maintenance resets: step → the seqId that step gets (below its prevSeqId).
    private(set) var resets: [Int64: Int64] = [:]

    init(symbol: String, candles: CandleModel, priceDecimals: Int, origin: Int64, stepMicroseconds: Int64) {
        precondition(stepMicroseconds >= 2, "a book step needs room for its jitter")
        self.symbol = symbol
        self.hash = candles.hash("book|" + symbol)
        self.priceDecimals = priceDecimals
        self.origin = origin
        self.stepMicroseconds = stepMicroseconds
        self.candles = candles
    }

    /// Makes step `step` a maintenance reset to `seqId` (callers keep it below that step's prevSeqId).
    mutating func addReset(at step: Int64, seqId: Int64) {
        precondition(step >= 1 && seqId >= 0, "a reset is a step after the first, to a non-negative seqId")
        resets[step] = seqId
    }

    // MARK: Time

    /// Virtual time (µs) of step `step`: on the step grid plus a seeded jitter, so `ts` values look
    /// like OKX's and never decrease.
    func time(ofStep step: Int64) -> Int64 {
        guard step > 0 else { return origin }
        return origin + step * stepMicroseconds + Int64(bookMix(hash, step, 1) % UInt64(stepMicroseconds / 2))
    }

    /// The newest step at or before virtual time `t` (0 before the origin).
    func step(at t: Int64) -> Int64 {
        guard t > origin else { return 0 }
        let k = (t - origin) / stepMicroseconds
        return time(ofStep: k) > t ? k - 1 : k
    }

    /// OKX's `ts` of a step: epoch milliseconds.
    func milliseconds(ofStep step: Int64) -> Int64 { time(ofStep: step) / 1000 }

    // MARK: Steps

    /// The book at step 0: `maxDepth` levels per side around the price path, dense near the top.
    func initial() -> BookState {
        var rng = StepRandom(hash, 0)
        let mid = targetTicks(at: origin)
        let spread = 1 + Int64(rng.below(3))
        var bids: [ModelLevel] = []
        var asks: [ModelLevel] = []
        bids.reserveCapacity(Self.maxDepth + 4)
        asks.reserveCapacity(Self.maxDepth + 4)
        var bid = max(Int64(Self.maxDepth) * 10, mid - spread / 2)
        var ask = bid + spread
        for i in 0..<Self.maxDepth {
            bids.append(level(bid, &rng))
            asks.append(level(ask, &rng))
            bid -= gap(depth: i, &rng)
            ask += gap(depth: i, &rng)
        }
        return BookState(step: 0, seqId: baseSeqId, bids: bids, asks: asks)
    }

    /// Moves `state` one step on and returns what changed.
    func advance(_ state: inout BookState) -> BookStep {
        let n = state.step + 1
        var rng = StepRandom(hash, n)
        let prevSeqId = state.seqId
        let reset = resets[n]
        state.step = n
        if reset == nil && rng.below(Self.keepaliveOneIn) == 0 {
            return BookStep(step: n, prevSeqId: prevSeqId, seqId: prevSeqId, bids: [], asks: [])
        }
        var changes = Changes()
        // Odds (in %) that a move goes up, leaning towards the price path.
        let target = targetTicks(at: time(ofStep: n))
        let mid2 = state.bids[0].priceTicks + state.asks[0].priceTicks
        let lean = max(-30, min(30, (2 * target - mid2) / 2))
        let upPercent = UInt64(50 + lean)
        let operations = 1 + rng.below(3)
        for index in 0..<operations {
            let roll = index == 0 ? 0 : rng.below(100)
            switch roll {
            case 0..<40:
                resize(&state, &changes, &rng)
            case 40..<60:
                // Removals mostly take the best level of the side the price moves away from.
                let isBid = rng.below(100) >= upPercent
                removeNearTop(isBid: isBid, &state, &changes, &rng)
            case 60..<85:
                let isBid = rng.below(100) < upPercent
                if !insertInsideSpread(isBid: isBid, &state, &changes, &rng) {
                    insertInGap(isBid: isBid, &state, &changes, &rng)
                }
            default:
                insertInGap(isBid: rng.below(2) == 0, &state, &changes, &rng)
            }
        }
        refillAndTrim(isBid: true, &state, &changes, &rng)
        refillAndTrim(isBid: false, &state, &changes, &rng)
        state.seqId = reset ?? prevSeqId + 1 + Int64(rng.below(3))
        return BookStep(
            step: n, prevSeqId: prevSeqId, seqId: state.seqId,
            bids: changes.delta(isBid: true, state.bids), asks: changes.delta(isBid: false, state.asks))
    }

    /// The first seqId: large like OKX's, different per symbol.
    private var baseSeqId: Int64 { 10_000_000_000 + Int64(hash % 9_000_000_000) }

    /// The price path in ticks (the same path trades follow).
    private func targetTicks(at t: Int64) -> Int64 {
        TradeModel.ticks(cents: candles.priceCents(symbol, at: t), decimals: priceDecimals)
    }

    /// Ticks between level `depth` and the next: 1–2 near the top, up to 8 deep.
    private func gap(depth: Int, _ rng: inout StepRandom) -> Int64 {
        1 + Int64(rng.below(depth < 20 ? 2 : depth < 100 ? 4 : 8))
    }

    /// A new level at `price`: a log-uniform notional of $10 … $100,000, sized as people type sizes.
    private func level(_ price: Int64, _ rng: inout StepRandom) -> ModelLevel {
        let u = Double(rng.below(1_000_000)) / 1_000_000
        let notionalCents = 1_000 * pow(10, u * 4)
        var priceCents = Double(price) * 100
        for _ in 0..<priceDecimals { priceCents /= 10 }
        let units = Int64(notionalCents / priceCents * 1e8)
        let quantum: Int64
        switch rng.below(4) {
        case 0: quantum = 1_000_000  // 0.01
        case 1: quantum = 10_000  // 0.0001
        case 2: quantum = 100  // 0.000001
        default: quantum = 1
        }
        let size = max(quantum, units / quantum * quantum)
        return ModelLevel(priceTicks: price, sizeUnits: size, orders: Int32(1 + rng.below(12)))
    }

    /// An index into a side of `count` levels: near the top most of the time, anywhere sometimes.
    private func biasedIndex(count: Int, top: Int, _ rng: inout StepRandom) -> Int {
        if rng.below(100) < 85 {
            let u = Double(rng.below(1 << 20)) / Double(1 << 20)
            return min(count - 1, Int(u * u * Double(min(count, top))))
        }
        return Int(rng.below(UInt64(count)))
    }

    private func resize(_ state: inout BookState, _ changes: inout Changes, _ rng: inout StepRandom) {
        let isBid = rng.below(2) == 0
        let count = isBid ? state.bids.count : state.asks.count
        let index = biasedIndex(count: count, top: 60, &rng)
        let old = isBid ? state.bids[index] : state.asks[index]
        var new = level(old.priceTicks, &rng)
        if new.sizeUnits == old.sizeUnits { new.sizeUnits += 1 }
        changes.touch(old.priceTicks, isBid: isBid, before: old)
        if isBid { state.bids[index] = new } else { state.asks[index] = new }
    }

    private func removeNearTop(isBid: Bool, _ state: inout BookState, _ changes: inout Changes, _ rng: inout StepRandom)
    {
        let count = isBid ? state.bids.count : state.asks.count
        // Keep plenty of levels: a side never runs thin, whatever the seed.
        guard count > Self.maxDepth / 2 else { return resize(&state, &changes, &rng) }
        let u = Double(rng.below(1 << 20)) / Double(1 << 20)
        let index = Int(u * u * 10)
        let old = isBid ? state.bids.remove(at: index) : state.asks.remove(at: index)
        changes.touch(old.priceTicks, isBid: isBid, before: old)
    }

    /// A new best level strictly inside the spread; false when the spread is one tick.
    private func insertInsideSpread(
        isBid: Bool, _ state: inout BookState, _ changes: inout Changes, _ rng: inout StepRandom
    ) -> Bool {
        let bestBid = state.bids[0].priceTicks
        let bestAsk = state.asks[0].priceTicks
        let spread = bestAsk - bestBid
        guard spread >= 2 else { return false }
        let into = 1 + Int64(rng.below(UInt64(min(spread - 1, 3))))
        let price = isBid ? bestBid + into : bestAsk - into
        changes.touch(price, isBid: isBid, before: nil)
        if isBid { state.bids.insert(level(price, &rng), at: 0) } else { state.asks.insert(level(price, &rng), at: 0) }
        return true
    }

    /// A new level between two existing ones that are more than a tick apart (a size change when
    /// there is no such gap nearby).
    private func insertInGap(isBid: Bool, _ state: inout BookState, _ changes: inout Changes, _ rng: inout StepRandom) {
        let found =
            isBid ? gapLevel(in: state.bids, isBid: true, &rng) : gapLevel(in: state.asks, isBid: false, &rng)
        guard let (index, price) = found else { return resize(&state, &changes, &rng) }
        changes.touch(price, isBid: isBid, before: nil)
        let new = level(price, &rng)
        if isBid { state.bids.insert(new, at: index) } else { state.asks.insert(new, at: index) }
    }

    /// Where a level fits between two levels more than a tick apart (searching 20 levels from a
    /// biased start), and its price.
    private func gapLevel(in levels: [ModelLevel], isBid: Bool, _ rng: inout StepRandom) -> (Int, Int64)? {
        let start = biasedIndex(count: levels.count - 1, top: 100, &rng)
        var index = start
        while index + 1 < levels.count && index < start + 20 {
            let distance = abs(levels[index + 1].priceTicks - levels[index].priceTicks)
            if distance >= 2 {
                let offset = 1 + Int64(rng.below(UInt64(distance - 1)))
                return (index + 1, isBid ? levels[index].priceTicks - offset : levels[index].priceTicks + offset)
            }
            index += 1
        }
        return nil
    }

    /// One new level past the worst when a side is short, then the worst removed while it is long.
    private func refillAndTrim(isBid: Bool, _ state: inout BookState, _ changes: inout Changes, _ rng: inout StepRandom)
    {
        let count = isBid ? state.bids.count : state.asks.count
        if count < Self.maxDepth {
            // Force-unwrap: a side never has fewer than maxDepth / 2 levels (`removeNearTop`).
            let worst = (isBid ? state.bids.last : state.asks.last)!.priceTicks
            let distance = gap(depth: Self.maxDepth, &rng)
            let price = isBid ? worst - distance : worst + distance
            if price >= 1 {
                changes.touch(price, isBid: isBid, before: nil)
                let new = level(price, &rng)
                if isBid { state.bids.append(new) } else { state.asks.append(new) }
            }
        }
        while (isBid ? state.bids.count : state.asks.count) > Self.maxDepth {
            let old = isBid ? state.bids.removeLast() : state.asks.removeLast()
            changes.touch(old.priceTicks, isBid: isBid, before: old)
        }
    }
}

/// The levels one step touched, with their state before it; the step's changes are the touched
/// levels that differ afterwards.
private struct Changes {
    private var bids: [(price: Int64, before: ModelLevel?)] = []
    private var asks: [(price: Int64, before: ModelLevel?)] = []

    mutating func touch(_ price: Int64, isBid: Bool, before: ModelLevel?) {
        if isBid {
            if !bids.contains(where: { $0.price == price }) { bids.append((price, before)) }
        } else {
            if !asks.contains(where: { $0.price == price }) { asks.append((price, before)) }
        }
    }

    /// The changed levels of one side after the step, best first (removals with size 0).
    func delta(isBid: Bool, _ side: [ModelLevel]) -> [ModelLevel] {
        var out: [ModelLevel] = []
        for (price, before) in isBid ? bids : asks {
            let after = BookSide.find(price, in: side, isBid: isBid).map { side[$0] }
            if after == before { continue }
            out.append(after ?? ModelLevel(priceTicks: price, sizeUnits: 0, orders: 0))
        }
        return isBid ? out.sorted { $0.priceTicks > $1.priceTicks } : out.sorted { $0.priceTicks < $1.priceTicks }
    }
}

/// Searching a side of the book, best first.
enum BookSide {
    /// The index of the level at `price`, if any.
    static func find(_ price: Int64, in side: [ModelLevel], isBid: Bool) -> Int? {
        var low = 0
        var high = side.count
        while low < high {
            let mid = (low + high) / 2
            let p = side[mid].priceTicks
            if p == price { return mid }
            if isBid ? p > price : p < price { low = mid + 1 } else { high = mid }
        }
        return nil
    }
}

/// splitmix64 seeded by (symbol hash, step): each step draws its own sequence, so any step can be
/// replayed on its own from the book before it.
struct StepRandom {
    private var state: UInt64

    init(_ hash: UInt64, _ step: Int64) { state = bookMix(hash, step, 0) }

    /// A value in 0..<bound.
    mutating func below(_ bound: UInt64) -> UInt64 {
        precondition(bound > 0, "a random draw needs a positive bound")
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return (z ^ (z >> 31)) % bound
    }
}

/// splitmix64 of (hash, step, salt).
func bookMix(_ h: UInt64, _ step: Int64, _ salt: UInt64) -> UInt64 {
    var z = h &+ UInt64(bitPattern: step) &* 0x9E37_79B9_7F4A_7C15 &+ salt &* 0xD1B5_4A32_D192_ED03
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}
