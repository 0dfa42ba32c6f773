public import MarketData
import WireCore

/// The spool's record format, versioned (DESIGN.md §4).
///
/// | version | first line | records (one per line, a JSON array of strings) |
/// |---|---|---|
/// | 1 (issue 3's candle-only collector) | none | `[exchange, symbol, timeframe, open_time, o, h, l, c, volume, quote_volume, confirmed, ts_exchange, ts_collector]` |
/// | 2 | `collector-spool 2` | a type tag, then the fields: `["c", …candle as v1]`, `["t", exchange, symbol, trade_id, price, size, side, ts_exchange, ts_collector]`, `["b", exchange, symbol, seq, prev_seq, action, bids, asks, checksum, ts_exchange, ts_collector]` (bids/asks nested `[[price, size], …]`), `["k", exchange, symbol, 11 ticker decimals, ts_exchange, ts_collector]` |
/// | 3 | `collector-spool 3` | as 2, and `"b"` records end with the book depth (`""` = full depth); `["g", stream, from, to, missing, cause, recovered (1/0), reason, recorded_at]` gap-ledger entries |
///
/// Times are µs integers as text; decimals keep the exchange's digits; an absent optional is `""`.
/// A file of a later version is refused with a message naming the version.
public enum SpoolFormat {
    public static let currentVersion = 3
    static let header = "collector-spool \(currentVersion)\n"

    /// Why a batch file cannot be read back (the batch is moved aside, never half-replayed).
    public struct DecodeError: Error, CustomStringConvertible {
        public var description: String
    }

    /// A batch file's bytes for `events` (format `currentVersion`).
    public static func encode(_ events: [MarketEvent]) -> [UInt8] {
        var out = header
        out.reserveCapacity(events.count * 180)
        for event in events {
            var fields: [String]
            var nested: [[BookLevel]] = []
            switch event {
            case .candle(let c):
                fields = ["c"] + candleFields(c)
            case .trade(let t):
                fields = [
                    "t", t.exchange.rawValue, t.symbol, t.tradeID, t.price.text, t.size.text, t.side.rawValue,
                    String(t.timestampExchange), String(t.timestampCollector),
                ]
            case .book(let b):
                fields = [
                    "b", b.exchange.rawValue, b.symbol, String(b.sequence), b.previousSequence.map { String($0) } ?? "",
                    b.action.rawValue,
                ]
                nested = [b.bids, b.asks]
            case .ticker(let t):
                fields = ["k", t.exchange.rawValue, t.symbol]
                fields += tickerDecimals(t).map { $0?.text ?? "" }
                fields += [String(t.timestampExchange), String(t.timestampCollector)]
            case .gap(let g):
                fields = [
                    "g", g.stream.description, String(g.gap.from), String(g.gap.to), String(g.gap.missing),
                    g.gap.cause.rawValue, g.gap.recovered ? "1" : "0", g.gap.reason, String(g.recordedAt),
                ]
            }
            out += "[" + fields.map(JSONText.quoted).joined(separator: ",")
            if case .book(let b) = event {
                for levels in nested {
                    out +=
                        ",["
                        + levels.map { "[\(JSONText.quoted($0.price.text)),\(JSONText.quoted($0.size.text))]" }
                        .joined(separator: ",") + "]"
                }
                out += "," + JSONText.quoted(b.checksum.map { String($0) } ?? "")
                out += "," + JSONText.quoted(String(b.timestampExchange))
                out += "," + JSONText.quoted(String(b.timestampCollector))
                out += "," + JSONText.quoted(b.depth.map { String($0) } ?? "")
            }
            out += "]\n"
        }
        return Array(out.utf8)
    }

    static func candleFields(_ c: Candle) -> [String] {
        [
            c.exchange.rawValue, c.symbol, c.timeframe.key, String(c.openTime), c.open.text, c.high.text, c.low.text,
            c.close.text, c.volume.text, c.quoteVolume.text, c.isConfirmed ? "1" : "0", String(c.timestampExchange),
            String(c.timestampCollector),
        ]
    }

    static func tickerDecimals(_ t: Ticker) -> [DecimalText?] {
        [
            t.bidPrice, t.bidSize, t.askPrice, t.askSize, t.lastPrice, t.lastSize, t.open24h, t.high24h, t.low24h,
            t.volume24h, t.quoteVolume24h,
        ]
    }

    /// Decodes a batch file of any version this build knows.
    public static func decode(_ bytes: [UInt8]) throws(DecodeError) -> [MarketEvent] {
        var lines = bytes.split(separator: 10, omittingEmptySubsequences: true)[...]
        guard let first = lines.first else { return [] }
        var version = 1
        if first.starts(with: Array("collector-spool ".utf8)) {
            let text = String(decoding: first.dropFirst(16), as: UTF8.self)
            guard let v = Int(text) else {
                throw DecodeError(description: "unreadable spool header '\(text.prefix(20))'")
            }
            guard v <= currentVersion else {
                throw DecodeError(
                    description:
                        "spool batch written by a newer collector (format \(v), this build reads 1 to \(currentVersion)): run that version to drain the spool, or move the file aside"
                )
            }
            version = v
            lines = lines.dropFirst()
        }
        var events: [MarketEvent] = []
        events.reserveCapacity(lines.count)
        for (index, line) in lines.enumerated() {
            guard let event = try decodeLine(Array(line), version: version) else {
                throw DecodeError(description: "corrupt spool record \(index + 1) (format \(version))")
            }
            events.append(event)
        }
        return events
    }

    /// One element of a record: a string, or an array of `[price, size]` pairs.
    enum Element {
        case text(String)
        case levels([BookLevel])
    }

    private static func decodeLine(_ line: [UInt8], version: Int) throws(DecodeError) -> MarketEvent? {
        let elements: [Element]
        do {
            elements = try line.withUnsafeBytes { raw throws(JSONError) in
                var scanner = JSONScanner(raw)
                var out: [Element] = []
                try scanner.readArray { _, s throws(JSONError) in
                    if s.peek() == UInt8(ascii: "[") {
                        var levels: [BookLevel] = []
                        var bad = false
                        try s.readArray { _, pair throws(JSONError) in
                            var parts: [String] = []
                            try pair.readArray { _, p throws(JSONError) in parts.append(try p.readString()) }
                            if parts.count == 2, let price = DecimalText(parts[0]), let size = DecimalText(parts[1]) {
                                levels.append(BookLevel(price: price, size: size))
                            } else {
                                bad = true
                            }
                        }
                        if bad { throw JSONError(offset: 0, reason: "bad book level") }
                        out.append(.levels(levels))
                    } else {
                        out.append(.text(try s.readString()))
                    }
                }
                try scanner.expectEnd()
                return out
            }
        } catch {
            return nil
        }
        var texts: [String] = []
        for element in elements {
            if case .text(let t) = element { texts.append(t) }
        }
        if version == 1 { return candle(texts[...]).map(MarketEvent.candle) }
        guard let tag = texts.first else { return nil }
        let rest = texts.dropFirst()
        switch tag {
        case "c": return candle(rest).map(MarketEvent.candle)
        case "t": return trade(rest).map(MarketEvent.trade)
        case "k": return ticker(rest).map(MarketEvent.ticker)
        case "g" where version >= 3: return gap(rest).map(MarketEvent.gap)
        case "b":
            // Format 3 appends the depth.
            guard elements.count == (version >= 3 ? 12 : 11), case .levels(let bids) = elements[6],
                case .levels(let asks) = elements[7]
            else {
                return nil
            }
            return book(rest, bids: bids, asks: asks).map(MarketEvent.book)
        default: return nil
        }
    }

    private static func candle(_ f: ArraySlice<String>) -> Candle? {
        let f = Array(f)
        guard f.count == 13, let exchange = ExchangeName(rawValue: f[0]), let tf = Timeframe(f[2]),
            let openTime = Int64(f[3]), let o = DecimalText(f[4]), let h = DecimalText(f[5]), let l = DecimalText(f[6]),
            let c = DecimalText(f[7]), let v = DecimalText(f[8]), let q = DecimalText(f[9]),
            f[10] == "1" || f[10] == "0", let tsE = Int64(f[11]), let tsC = Int64(f[12])
        else { return nil }
        return Candle(
            exchange: exchange, symbol: f[1], timeframe: tf, openTime: openTime, open: o, high: h, low: l, close: c,
            volume: v, quoteVolume: q, isConfirmed: f[10] == "1", timestampExchange: tsE, timestampCollector: tsC)
    }

    private static func trade(_ f: ArraySlice<String>) -> Trade? {
        let f = Array(f)
        guard f.count == 8, let exchange = ExchangeName(rawValue: f[0]), !f[2].isEmpty, let price = DecimalText(f[3]),
            let size = DecimalText(f[4]), let side = TradeSide(rawValue: f[5]), let tsE = Int64(f[6]),
            let tsC = Int64(f[7])
        else { return nil }
        return Trade(
            exchange: exchange, symbol: f[1], tradeID: f[2], price: price, size: size, side: side,
            timestampExchange: tsE, timestampCollector: tsC)
    }

    private static func book(_ f: ArraySlice<String>, bids: [BookLevel], asks: [BookLevel]) -> BookMessage? {
        let f = Array(f)
        // Texts: exchange, symbol, seq, prev_seq, action, checksum, ts_exchange, ts_collector[, depth].
        guard f.count == 8 || f.count == 9, let exchange = ExchangeName(rawValue: f[0]), let seq = Int64(f[2]),
            let action = BookMessage.Action(rawValue: f[4]), let tsE = Int64(f[6]), let tsC = Int64(f[7])
        else { return nil }
        let previous: Int64?
        if f[3].isEmpty { previous = nil } else if let p = Int64(f[3]) { previous = p } else { return nil }
        let checksum: Int64?
        if f[5].isEmpty { checksum = nil } else if let c = Int64(f[5]) { checksum = c } else { return nil }
        var depth: Int?
        if f.count == 9 && !f[8].isEmpty {
            guard let d = Int(f[8]), Feed.bookDepths.contains(d) else { return nil }
            depth = d
        }
        return BookMessage(
            exchange: exchange, symbol: f[1], sequence: seq, previousSequence: previous, action: action, bids: bids,
            asks: asks, checksum: checksum, timestampExchange: tsE, timestampCollector: tsC, depth: depth)
    }

    private static func gap(_ f: ArraySlice<String>) -> GapRecord? {
        let f = Array(f)
        guard f.count == 8, let stream = StreamID(f[0]), let from = Int64(f[1]), let to = Int64(f[2]),
            let missing = Int(f[3]), let cause = Gap.Cause(rawValue: f[4]), f[5] == "1" || f[5] == "0",
            let recordedAt = Int64(f[7])
        else { return nil }
        return GapRecord(
            stream: stream,
            gap: Gap(from: from, to: to, missing: missing, cause: cause, recovered: f[5] == "1", reason: f[6]),
            recordedAt: recordedAt)
    }

    private static func ticker(_ f: ArraySlice<String>) -> Ticker? {
        let f = Array(f)
        guard f.count == 15, let exchange = ExchangeName(rawValue: f[0]), let tsE = Int64(f[13]),
            let tsC = Int64(f[14])
        else { return nil }
        var decimals: [DecimalText?] = []
        for text in f[2..<13] {
            if text.isEmpty {
                decimals.append(nil)
            } else if let d = DecimalText(text) {
                decimals.append(d)
            } else {
                return nil
            }
        }
        return Ticker(
            exchange: exchange, symbol: f[1], bidPrice: decimals[0], bidSize: decimals[1], askPrice: decimals[2],
            askSize: decimals[3], lastPrice: decimals[4], lastSize: decimals[5], open24h: decimals[6],
            high24h: decimals[7], low24h: decimals[8], volume24h: decimals[9], quoteVolume24h: decimals[10],
            timestampExchange: tsE, timestampCollector: tsC)
    }
}
