import Foundation
import MarketData

/// Deterministic candles: the same (symbol, timeframe, open time) always gives the same bar, so
/// WebSocket pushes, REST pages and test oracles agree.
struct CandleModel: Sendable {
    let seed: UInt64

    /// A smooth price path for `symbol` at virtual time `t` (µs), in cents.
    func priceCents(_ symbol: String, at t: Int64) -> Int64 {
        let phase = Double(hash(symbol) % 10_000) / 10_000 * 6.283
        let base = 10_000 + Double(hash(symbol) % 5_000_000)
        let x = Double(t) / 3_600_000_000  // hours
        return Int64(base * (1 + 0.01 * (sin(x * 1.7 + phase) + 0.5 * sin(x * 7.3 + 2 * phase))))
    }

    func hash(_ s: String) -> UInt64 {
        var h: UInt64 = 0xcbf2_9ce4_8422_2325 ^ seed
        for b in s.utf8 {
            h ^= UInt64(b)
            h &*= 0x100_0000_01b3
        }
        return h
    }

    /// The bar opening at `openTime`, as of virtual time `asOf` (complete when `asOf` ≥ the bar's end).
    func candle(symbol: String, timeframe: Timeframe, openTime: Int64, asOf: Int64) -> (Candle, isComplete: Bool) {
        let end = timeframe.nextOpenTime(after: openTime)
        let isComplete = asOf >= end
        let last = isComplete ? end : max(openTime, asOf)
        let o = priceCents(symbol, at: openTime)
        let c = priceCents(symbol, at: last)
        // Sample the path for high/low so partial and final bars are consistent.
        var h = max(o, c)
        var l = min(o, c)
        let steps: Int64 = 8
        for k in 1..<steps {
            let t = openTime + (last - openTime) * k / steps
            let p = priceCents(symbol, at: t)
            h = max(h, p)
            l = min(l, p)
        }
        let fraction = Double(last - openTime) / Double(max(1, end - openTime))
        let volumeMilli = Int64(Double(hash(symbol + String(openTime)) % 100_000 + 1_000) * fraction)
        let quoteCents = volumeMilli * c / 1000
        func cents(_ v: Int64) -> DecimalText { DecimalText("\(v / 100).\(pad2(v % 100))")! }  // digits only
        let candle = Candle(
            exchange: .okx, symbol: symbol, timeframe: timeframe, openTime: openTime, open: cents(o), high: cents(h),
            low: cents(l), close: cents(c), volume: DecimalText("\(volumeMilli / 1000).\(pad3(volumeMilli % 1000))")!,
            quoteVolume: cents(quoteCents), isConfirmed: isComplete, timestampExchange: openTime,
            timestampCollector: 0)
        return (candle, isComplete)
    }

    /// The bar containing virtual time `t`.
    func openTime(containing t: Int64, timeframe: Timeframe) -> Int64 {
        if let fixed = timeframe.fixedMicroseconds {
            let local = t + timeframe.zoneOffsetMicroseconds
            let floor = local >= 0 ? local / fixed * fixed : -((-local + fixed - 1) / fixed) * fixed
            return floor - timeframe.zoneOffsetMicroseconds
        }
        // Calendar months: n-month bars start in months 1, 1+n, 1+2n… of the alignment zone.
        let (y, m, _) = UTCCalendar.date(ofMicroseconds: t + timeframe.zoneOffsetMicroseconds)
        let startMonth = (m - 1) / timeframe.months * timeframe.months + 1
        return UTCCalendar.microseconds(year: y, month: startMonth, day: 1) - timeframe.zoneOffsetMicroseconds
    }

    /// OKX's wire form of a candle row: `[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm]`.
    static func row(_ c: Candle) -> String {
        "[\"\(c.openTime / 1000)\",\"\(c.open)\",\"\(c.high)\",\"\(c.low)\",\"\(c.close)\",\"\(c.volume)\",\"\(c.quoteVolume)\",\"\(c.quoteVolume)\",\"\(c.isConfirmed ? 1 : 0)\"]"
    }
}

private func pad2(_ v: Int64) -> String { v < 10 ? "0\(v)" : "\(v)" }
private func pad3(_ v: Int64) -> String { v < 10 ? "00\(v)" : v < 100 ? "0\(v)" : "\(v)" }
