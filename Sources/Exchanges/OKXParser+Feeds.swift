import MarketData
import WireCore

extension OKXParser {
    /// `trades-all` rows (PROTOCOLS.md §1.4): `{"instId","tradeId","px","sz","side","ts"}`, one per fill.
    /// Unknown fields (`source`, `seqId`, `count`) are ignored.
    @discardableResult
    static func parseTrades(
        _ rows: UnsafeRawBufferPointer, symbol: String, receivedAt: Int64, into out: inout [ExchangeMessage]
    ) throws(Failure) -> Int {
        var scanner = JSONScanner(rows)
        do {
            try scanner.readArray { _, s throws(JSONError) in
                var row = TradeRow()
                // OKX's own layout up to `ts`, byte for byte (PROTOCOLS.md §1.4); later members (`count`,
                // `seqId`, `source`…) and any other layout go through the general, order-free path.
                let rowStart = s.offset
                if s.take(#"{"instId":""#), s.readPlainString() != nil,
                    s.take(#","tradeId":""#), let i = s.readPlainString(),
                    s.take(#","px":""#), let p = s.readPlainString(),
                    s.take(#","sz":""#), let z = s.readPlainString(),
                    s.take(#","side":""#), let d = s.readPlainString(),
                    s.take(#","ts":""#), let t = s.readPlainString()
                {
                    row = TradeRow(id: i, price: p, size: z, side: d, time: t)
                    try s.readRemainingMembers { key, s2 throws(JSONError) in try row.read(key, &s2) }
                } else {
                    s.rewind(to: rowStart)
                    try s.readObject { key, s2 throws(JSONError) in try row.read(key, &s2) }
                }
                let (id, price, size, side, time) = (row.id, row.price, row.size, row.side, row.time)
                guard let id, !id.range.isEmpty, !id.hasEscapes else {
                    throw JSONError(offset: s.offset, reason: "trade without tradeId")
                }
                // OKX trade ids are decimal integers; continuity and backfill rely on it.
                guard JSONScanner.parseInt64(s.bytes(of: id)).map({ $0 >= 0 }) ?? false else {
                    throw JSONError(offset: s.offset, reason: "trade tradeId is not a decimal integer")
                }
                guard let price, let px = DecimalText(bytes: s.bytes(of: price)) else {
                    throw JSONError(offset: s.offset, reason: "trade px is not a decimal")
                }
                guard let size, let sz = DecimalText(bytes: s.bytes(of: size)) else {
                    throw JSONError(offset: s.offset, reason: "trade sz is not a decimal")
                }
                let taker: TradeSide
                if let side, s.equals(side, "buy") {
                    taker = .buy
                } else if let side, s.equals(side, "sell") {
                    taker = .sell
                } else {
                    throw JSONError(offset: s.offset, reason: "trade side is neither buy nor sell")
                }
                guard let time, let ms = milliseconds(s.bytes(of: time)) else {
                    throw JSONError(offset: s.offset, reason: "trade ts is not a millisecond time")
                }
                out.append(
                    .event(
                        .trade(
                            Trade(
                                exchange: .okx, symbol: symbol, tradeID: s.string(id), price: px, size: sz,
                                side: taker, timestampExchange: ms * 1000, timestampCollector: receivedAt))))
            }
        } catch {
            throw .shape("bad trades data: \(error.reason)")
        }
        return scanner.offset
    }

    /// `tickers` rows (PROTOCOLS.md §1.7). For spot (and margin) `vol24h` is the base-currency volume
    /// and `volCcy24h` the quote-currency one; for derivatives (`instType` SWAP, FUTURES, OPTION) OKX
    /// counts `vol24h` in contracts and `volCcy24h` in base currency, so the stored volume is
    /// `volCcy24h` (base, comparable across instruments) and the quote volume NULL (not sent). An empty
    /// string (OKX sends `""` where it has no value) is stored as NULL, any other value must be a decimal.
    @discardableResult
    static func parseTickers(
        _ rows: UnsafeRawBufferPointer, symbol: String, receivedAt: Int64, into out: inout [ExchangeMessage]
    ) throws(Failure) -> Int {
        var scanner = JSONScanner(rows)
        do {
            try scanner.readArray { _, s throws(JSONError) in
                var fields: [String: JSONScanner.RawString] = [:]
                var time: JSONScanner.RawString?
                var isDerivative = false
                try s.readObject { key, s2 throws(JSONError) in
                    if s2.equals(key, "ts") {
                        time = try s2.readRawString()
                    } else if s2.equals(key, "instType") {
                        let kind = try s2.readRawString()
                        isDerivative = !(s2.equals(kind, "SPOT") || s2.equals(kind, "MARGIN") || kind.range.isEmpty)
                    } else if let name = tickerField(key, s2) {
                        fields[name] = try s2.readRawString()
                    } else {
                        try s2.skipValue()
                    }
                }
                func decimal(_ name: String) throws(JSONError) -> DecimalText? {
                    guard let raw = fields[name], !raw.range.isEmpty else { return nil }
                    guard let value = DecimalText(bytes: s.bytes(of: raw)) else {
                        throw JSONError(offset: s.offset, reason: "ticker \(name) is not a decimal")
                    }
                    return value
                }
                guard let time, let ms = milliseconds(s.bytes(of: time)) else {
                    throw JSONError(offset: s.offset, reason: "ticker ts is not a millisecond time")
                }
                out.append(
                    .event(
                        .ticker(
                            Ticker(
                                exchange: .okx, symbol: symbol, bidPrice: try decimal("bidPx"),
                                bidSize: try decimal("bidSz"), askPrice: try decimal("askPx"),
                                askSize: try decimal("askSz"), lastPrice: try decimal("last"),
                                lastSize: try decimal("lastSz"), open24h: try decimal("open24h"),
                                high24h: try decimal("high24h"), low24h: try decimal("low24h"),
                                volume24h: try decimal(isDerivative ? "volCcy24h" : "vol24h"),
                                quoteVolume24h: isDerivative ? nil : try decimal("volCcy24h"),
                                timestampExchange: ms * 1000, timestampCollector: receivedAt))))
            }
        } catch {
            throw .shape("bad tickers data: \(error.reason)")
        }
        return scanner.offset
    }

    private static let tickerFields: [StaticString] = [
        "bidPx", "bidSz", "askPx", "askSz", "last", "lastSz", "open24h", "high24h", "low24h", "vol24h", "volCcy24h",
    ]

    /// The ticker field `key` names, if we keep it.
    private static func tickerField(_ key: JSONScanner.RawString, _ s: JSONScanner) -> String? {
        for name in tickerFields where s.equals(key, name) { return name.description }
        return nil
    }

    /// A millisecond epoch time as OKX sends it (a string of digits): from the epoch to before the
    /// year 2286 (10^13 ms), so the µs value (×1000) always fits Int64. Every OKX time goes through
    /// here.
    static func milliseconds(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        guard let ms = JSONScanner.parseInt64(bytes), ms >= 0, ms < 10_000_000_000_000 else { return nil }
        return ms
    }
}

/// The members of one trade row that matter, as raw strings in the frame.
struct TradeRow {
    var id: JSONScanner.RawString?
    var price: JSONScanner.RawString?
    var size: JSONScanner.RawString?
    var side: JSONScanner.RawString?
    var time: JSONScanner.RawString?

    /// Reads the value of member `key` (a later duplicate replaces an earlier one; unknown keys are
    /// skipped, validated).
    @inline(__always)
    mutating func read(_ key: JSONScanner.RawString, _ s: inout JSONScanner) throws(JSONError) {
        if s.equals(key, "tradeId") {
            id = try s.readRawString()
        } else if s.equals(key, "px") {
            price = try s.readRawString()
        } else if s.equals(key, "sz") {
            size = try s.readRawString()
        } else if s.equals(key, "side") {
            side = try s.readRawString()
        } else if s.equals(key, "ts") {
            time = try s.readRawString()
        } else {
            try s.skipValue()
        }
    }
}
