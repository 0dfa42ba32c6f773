import Foundation
import MarketData
import WireCore

/// One fill of the trade model (one `trades-all` row).
struct Fill: Sendable, Equatable {
    /// OKX `tradeId`: consecutive integers per symbol.
    let id: Int64
    /// Id of the first fill of the taker order this fill belongs to. The fills of one order share
    /// their time and side, and their price moves one way only (a sweep through the book).
    let orderStart: Int64
    /// Virtual time, µs.
    let time: Int64
    /// Price in units of 10^-`priceDecimals`.
    let priceTicks: Int64
    let priceDecimals: Int
    /// Size in units of 10^-8 of the base currency.
    let sizeUnits: Int64
    /// The taker's side.
    let side: TradeSide

    var priceText: String { TradeModel.decimal(priceTicks, scale: priceDecimals) }
    var sizeText: String { TradeModel.decimal(sizeUnits, scale: TradeModel.sizeDecimals) }
    /// OKX's `ts`: epoch milliseconds.
    var milliseconds: Int64 { time / 1000 }
}

/// Consecutive fills of one taker order at one price: one message of the aggregated `trades`
/// channel (PROTOCOLS.md §1.4), which names the last fill and counts the fills.
struct AggregatedTrade: Sendable, Equatable {
    let first: Fill
    let last: Fill
    let count: Int
    let sizeUnits: Int64

    var sizeText: String { TradeModel.decimal(sizeUnits, scale: TradeModel.sizeDecimals) }
}

/// Deterministic trades: the fills of a symbol are a function of (seed, symbol, trade id), laid out
/// on virtual time, so WebSocket pushes, REST pages and the test oracle agree on every fill. Fills
/// happen whether or not anyone is subscribed.
///
/// Layout: virtual time from `origin` is cut into 1-minute bars, each holding exactly `fillsPerBar`
/// fills, so the bar of a trade id (and the first id of a bar) is arithmetic. Within a bar the fills
/// are grouped into taker orders of 1…`maxFillsPerOrder` fills; order *j* of *m* happens at a
/// seeded point of the *j*-th *m*-th of the bar, so times never decrease as ids grow. Prices follow
/// the candle model's price path (plus a few ticks of noise) so trades and candles look alike; they
/// are not the candles' source, and candle volumes are not the sums of these fills.
struct TradeModel: Sendable {
    /// One bar of the layout, µs (the 1m bar of `tradesPerBar`).
    static let barMicroseconds: Int64 = 60_000_000
    /// Trade ids start near here; each symbol gets its own millions so ids of two symbols rarely meet.
    static let firstIDBase: Int64 = 100_000_000
    /// Most fills per bar: 1,000 a virtual second, far past any real spot market, and a bar's fills
    /// (generated whole for every lookup) stay a few MB at most.
    static let maxFillsPerBar = 60_000
    /// Most history before the start: OKX's history-trades reaches back 3 months (PROTOCOLS.md §1.8).
    static let maxHistoryMinutes = 129_600
    /// Largest taker order, in fills (bounds how far an aggregation can reach back).
    static let maxFillsPerOrder = 5
    /// Sizes are in base currency with 8 decimals, like OKX spot.
    static let sizeDecimals = 8
    /// A taker order's notional is log-uniform between these (cents): $5 … $20,000.
    static let minNotionalCents = 500.0
    static let maxNotionalCents = 2_000_000.0
    private static let dayMicroseconds: Int64 = 86_400_000_000

    let candles: CandleModel
    let fillsPerBar: Int
    /// Virtual time (µs) of the first fill's bar; no fill exists before it.
    let origin: Int64

    init(candles: CandleModel, fillsPerBar: Int, origin: Int64) {
        precondition(fillsPerBar >= 1, "the trade model needs at least one fill per bar")
        self.candles = candles
        self.fillsPerBar = fillsPerBar
        self.origin = origin
    }

    /// The id of `symbol`'s first fill.
    func firstID(_ symbol: String) -> Int64 {
        Self.firstIDBase + Int64(candles.hash(symbol) % 900) * 1_000_000
    }

    /// Price decimals for `symbol`, from its price level: 0.1 above $10,000, 0.01 above $100.
    func priceDecimals(_ symbol: String) -> Int {
        let cents = candles.priceCents(symbol, at: 0)
        return cents >= 1_000_000 ? 1 : cents >= 10_000 ? 2 : 3
    }

    /// The smooth price path at `t`, in ticks of 10^-`decimals`.
    private func pathTicks(_ symbol: String, decimals: Int, at t: Int64) -> Int64 {
        Self.ticks(cents: candles.priceCents(symbol, at: t), decimals: decimals)
    }

    /// A price in cents as ticks of 10^-`decimals` (1, 2 or 3 decimals; see `priceDecimals`).
    static func ticks(cents: Int64, decimals: Int) -> Int64 {
        switch decimals {
        case 1: return cents / 10
        case 2: return cents
        default: return cents * 10
        }
    }

    /// The fills of bar `bar` (0 = the bar starting at `origin`), in id order.
    func fills(_ symbol: String, bar: Int64) -> [Fill] {
        precondition(bar >= 0, "no fills before the model's origin")
        let h = candles.hash(symbol)
        let decimals = priceDecimals(symbol)
        let first = firstID(symbol) + bar * Int64(fillsPerBar)
        let barStart = origin + bar * Self.barMicroseconds
        var starts: [Int] = []
        var run = 0
        for i in 0..<fillsPerBar {
            if i == 0 || run >= Self.maxFillsPerOrder || mix(h, first + Int64(i), 1) % 100 < 60 {
                starts.append(i)
                run = 1
            } else {
                run += 1
            }
        }
        let orders = Int64(starts.count)
        var out: [Fill] = []
        out.reserveCapacity(fillsPerBar)
        for (j, start) in starts.enumerated() {
            let end = j + 1 < starts.count ? starts[j + 1] : fillsPerBar
            let orderID = first + Int64(start)
            let slot = Int64(mix(h, orderID, 2) % UInt64(Self.barMicroseconds))
            let time = barStart + (Int64(j) * Self.barMicroseconds + slot) / orders
            let side: TradeSide = mix(h, orderID, 3) & 1 == 0 ? .buy : .sell
            var price = pathTicks(symbol, decimals: decimals, at: time) + Int64(mix(h, orderID, 4) % 7) - 3
            for i in start..<end {
                let id = first + Int64(i)
                // A sweep: now and then the next fill takes the next price level.
                if i > start && mix(h, id, 5) % 4 == 0 { price += side == .buy ? 1 : -1 }
                price = max(1, price)
                out.append(
                    Fill(
                        id: id, orderStart: orderID, time: time, priceTicks: price, priceDecimals: decimals,
                        sizeUnits: size(h, id: id, priceTicks: price, decimals: decimals), side: side))
            }
        }
        return out
    }

    /// A fill's size: a log-uniform notional at the fill's price, often rounded as people type sizes.
    private func size(_ h: UInt64, id: Int64, priceTicks: Int64, decimals: Int) -> Int64 {
        let u = Double(mix(h, id, 6) % 1_000_000) / 1_000_000
        let notionalCents = Self.minNotionalCents * exp(u * log(Self.maxNotionalCents / Self.minNotionalCents))
        let priceCents = Double(priceTicks) * 100 / pow(10, Double(decimals))
        let units = Int64(notionalCents / priceCents * 1e8)
        let quantum: Int64
        switch mix(h, id, 7) % 3 {
        case 0: quantum = 10_000  // 0.0001
        case 1: quantum = 100  // 0.000001
        default: quantum = 1
        }
        return max(quantum, units / quantum * quantum)
    }

    /// The fill with id `id` (which must be at or after `firstID`).
    func fill(_ symbol: String, id: Int64) -> Fill {
        let offset = id - firstID(symbol)
        precondition(offset >= 0, "trade id before the model's first")
        let n = Int64(fillsPerBar)
        return fills(symbol, bar: offset / n)[Int(offset % n)]
    }

    /// Fills `from…through` in id order, clipped to ids that exist. Callers bound the range.
    func fills(_ symbol: String, from: Int64, through: Int64) -> [Fill] {
        let first = firstID(symbol)
        let low = max(from, first)
        guard low <= through else { return [] }
        let n = Int64(fillsPerBar)
        var out: [Fill] = []
        out.reserveCapacity(Int(through - low + 1))
        var bar = (low - first) / n
        while first + bar * n <= through {
            for fill in fills(symbol, bar: bar) where fill.id >= low && fill.id <= through { out.append(fill) }
            bar += 1
        }
        return out
    }

    /// The id of the last fill at or before virtual time `t`; `firstID - 1` when there is none.
    func lastID(_ symbol: String, asOf t: Int64) -> Int64 {
        let first = firstID(symbol)
        guard t >= origin else { return first - 1 }
        let bar = (t - origin) / Self.barMicroseconds
        if let last = fills(symbol, bar: bar).last(where: { $0.time <= t }) { return last.id }
        return first + bar * Int64(fillsPerBar) - 1
    }

    /// Groups consecutive fills of one order at one price (the aggregated `trades` channel).
    static func aggregate(_ fills: [Fill]) -> [AggregatedTrade] {
        var out: [AggregatedTrade] = []
        var index = 0
        while index < fills.count {
            let first = fills[index]
            var size = first.sizeUnits
            var end = index + 1
            while end < fills.count && fills[end].orderStart == first.orderStart
                && fills[end].priceTicks == first.priceTicks
            {
                size += fills[end].sizeUnits
                end += 1
            }
            out.append(AggregatedTrade(first: first, last: fills[end - 1], count: end - index, sizeUnits: size))
            index = end
        }
        return out
    }

    /// Whether `next` continues the aggregation that `fill` is in.
    static func sameAggregation(_ fill: Fill, _ next: Fill) -> Bool {
        fill.orderStart == next.orderStart && fill.priceTicks == next.priceTicks
    }

    // MARK: Wire forms

    /// A `trades-all` row (PROTOCOLS.md §1.4).
    static func webSocketRow(_ f: Fill, symbol: String) -> String {
        "{\"instId\":\(JSONText.quoted(symbol)),\"tradeId\":\"\(f.id)\",\"px\":\"\(f.priceText)\",\"sz\":\"\(f.sizeText)\",\"side\":\"\(f.side.rawValue)\",\"ts\":\"\(f.milliseconds)\"}"
    }

    /// A `trades` row: the last fill's id, the summed size and the fill count.
    static func webSocketRow(_ a: AggregatedTrade, symbol: String) -> String {
        "{\"instId\":\(JSONText.quoted(symbol)),\"tradeId\":\"\(a.last.id)\",\"px\":\"\(a.last.priceText)\",\"sz\":\"\(a.sizeText)\",\"side\":\"\(a.last.side.rawValue)\",\"ts\":\"\(a.last.milliseconds)\",\"count\":\"\(a.count)\"}"
    }

    /// A `/api/v5/market/history-trades` row, in OKX's field order.
    static func restRow(_ f: Fill, symbol: String) -> String {
        "{\"instId\":\(JSONText.quoted(symbol)),\"side\":\"\(f.side.rawValue)\",\"sz\":\"\(f.sizeText)\",\"px\":\"\(f.priceText)\",\"tradeId\":\"\(f.id)\",\"ts\":\"\(f.milliseconds)\"}"
    }

    /// An oracle row (`/control/trades`).
    static func oracleRow(_ f: Fill) -> String {
        "{\"tradeId\":\"\(f.id)\",\"px\":\"\(f.priceText)\",\"sz\":\"\(f.sizeText)\",\"side\":\"\(f.side.rawValue)\",\"ts\":\"\(f.milliseconds)\"}"
    }

    /// A `tickers` row (PROTOCOLS.md §1.7) at virtual time `now`, or nil before the first fill.
    /// `last`/`lastSz` are the last fill's; the best bid and ask straddle it (the taker took the ask
    /// on a buy, the bid on a sell), so bid < ask. The 24 h and start-of-day prices come from the
    /// price path (high/low sampled every 15 virtual minutes, widened to include `last`); the 24 h
    /// volumes are nominal (the fill count in the window times the mean notional), not fill sums.
    func ticker(_ symbol: String, at now: Int64) -> String? {
        let lastID = lastID(symbol, asOf: now)
        guard lastID >= firstID(symbol) else { return nil }
        let last = fill(symbol, id: lastID)
        let h = candles.hash(symbol)
        let decimals = last.priceDecimals
        let spread = 1 + Int64(mix(h, lastID, 8) % 3)
        let (bid, ask) =
            last.side == .buy
            ? (max(1, last.priceTicks - spread), last.priceTicks) : (last.priceTicks, last.priceTicks + spread)
        func quote(_ salt: UInt64) -> Int64 { (Int64(mix(h, lastID, salt) % 200_000) + 1) * 1_000 }
        let day = Self.dayMicroseconds
        let open = pathTicks(symbol, decimals: decimals, at: now - day)
        var high = max(open, last.priceTicks)
        var low = min(open, last.priceTicks)
        for k in Int64(1)...96 {
            let p = pathTicks(symbol, decimals: decimals, at: now - day + k * day / 96)
            high = max(high, p)
            low = min(low, p)
        }
        let count = Double(lastID - self.lastID(symbol, asOf: now - day))
        let meanNotionalCents =
            (Self.maxNotionalCents - Self.minNotionalCents) / log(Self.maxNotionalCents / Self.minNotionalCents)
        let quoteCents = Int64(count * meanNotionalCents)
        let lastCents = Double(last.priceTicks) * 100 / pow(10, Double(decimals))
        let baseUnits = Int64(count * meanNotionalCents / lastCents * 1e8)
        let sodUtc0 = pathTicks(symbol, decimals: decimals, at: floorDiv(now, day) * day)
        let hk: Int64 = 8 * 3_600_000_000
        let sodUtc8 = pathTicks(symbol, decimals: decimals, at: floorDiv(now + hk, day) * day - hk)
        func px(_ v: Int64) -> String { Self.decimal(v, scale: decimals) }
        func sz(_ v: Int64) -> String { Self.decimal(v, scale: Self.sizeDecimals) }
        return
            "{\"instType\":\"SPOT\",\"instId\":\(JSONText.quoted(symbol)),\"last\":\"\(last.priceText)\",\"lastSz\":\"\(last.sizeText)\",\"askPx\":\"\(px(ask))\",\"askSz\":\"\(sz(quote(9)))\",\"bidPx\":\"\(px(bid))\",\"bidSz\":\"\(sz(quote(10)))\",\"open24h\":\"\(px(open))\",\"high24h\":\"\(px(high))\",\"low24h\":\"\(px(low))\",\"volCcy24h\":\"\(Self.decimal(quoteCents, scale: 2))\",\"vol24h\":\"\(sz(baseUnits))\",\"sodUtc0\":\"\(px(sodUtc0))\",\"sodUtc8\":\"\(px(sodUtc8))\",\"ts\":\"\(floorDiv(now, 1000))\"}"
    }

    /// `value` × 10^-`scale` as OKX writes numbers: no exponent, no trailing fractional zeros.
    static func decimal(_ value: Int64, scale: Int) -> String {
        precondition(value >= 0 && scale >= 0 && scale <= 18, "decimal text of a non-negative fixed-point value")
        var unit: Int64 = 1
        for _ in 0..<scale { unit *= 10 }
        let whole = value / unit
        var fraction = value % unit
        guard fraction != 0 else { return "\(whole)" }
        var digits = scale
        while fraction % 10 == 0 {
            fraction /= 10
            digits -= 1
        }
        let text = String(fraction)
        return "\(whole)." + String(repeating: "0", count: digits - text.count) + text
    }
}

/// splitmix64 of (symbol hash, id, salt): the model's only source of variety.
private func mix(_ h: UInt64, _ id: Int64, _ salt: UInt64) -> UInt64 {
    var z = h &+ UInt64(bitPattern: id) &* 0x9E37_79B9_7F4A_7C15 &+ salt &* 0xD1B5_4A32_D192_ED03
    z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
    z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
    return z ^ (z >> 31)
}

private func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }
