public import MarketData

extension PostgresSink {
    static let tradeColumns = "exchange, symbol, trade_id, price, size, side, timestamp_exchange, timestamp_collector"
    static let bookColumns =
        "exchange, symbol, seq, prev_seq, action, bids, asks, checksum, timestamp_exchange, timestamp_collector"
    static let tickerColumns =
        "exchange, symbol, bid_price, bid_size, ask_price, ask_size, last_price, last_size, open_24h, high_24h, low_24h, volume_24h, quote_volume_24h, timestamp_exchange, timestamp_collector"

    public static func tradeCopyText(_ trades: ArraySlice<Trade>) -> [UInt8] {
        var out = COPYText(capacity: trades.count * 120)
        for t in trades {
            out.field(t.exchange.rawValue)
            out.field(t.symbol)
            out.field(t.tradeID)
            out.field(t.price.text)
            out.field(t.size.text)
            out.field(t.side.rawValue)
            out.timestamp(t.timestampExchange)
            out.timestamp(t.timestampCollector)
            out.endRow()
        }
        return out.bytes
    }

    public static func bookCopyText(_ books: ArraySlice<BookMessage>) -> [UInt8] {
        var out = COPYText(capacity: books.count * 400)
        for b in books {
            out.field(b.exchange.rawValue)
            out.field(b.symbol)
            out.field(String(b.sequence))
            out.optional(b.previousSequence.map { String($0) })
            out.field(b.action.rawValue)
            out.field(levelsLiteral(b.bids))
            out.field(levelsLiteral(b.asks))
            out.optional(b.checksum.map { String($0) })
            out.timestamp(b.timestampExchange)
            out.timestamp(b.timestampCollector)
            out.endRow()
        }
        return out.bytes
    }

    /// `{{price,size},…}` (a two-dimensional numeric array), `{}` when empty. Decimal text needs no
    /// quoting inside an array literal (digits, sign, point, exponent).
    static func levelsLiteral(_ levels: [BookLevel]) -> String {
        guard !levels.isEmpty else { return "{}" }
        var s = "{"
        s.reserveCapacity(levels.count * 24)
        for (i, level) in levels.enumerated() {
            if i > 0 { s += "," }
            s += "{" + level.price.text + "," + level.size.text + "}"
        }
        return s + "}"
    }

    public static func tickerCopyText(_ tickers: ArraySlice<Ticker>) -> [UInt8] {
        var out = COPYText(capacity: tickers.count * 200)
        for t in tickers {
            out.field(t.exchange.rawValue)
            out.field(t.symbol)
            for d in [
                t.bidPrice, t.bidSize, t.askPrice, t.askSize, t.lastPrice, t.lastSize, t.open24h, t.high24h, t.low24h,
                t.volume24h, t.quoteVolume24h,
            ] {
                out.optional(d?.text)
            }
            out.timestamp(t.timestampExchange)
            out.timestamp(t.timestampCollector)
            out.endRow()
        }
        return out.bytes
    }
}

/// PostgreSQL COPY text format: tab-separated fields, `\N` for NULL, `\\`, tab, newline and carriage
/// return escaped; timestamps written as `YYYY-MM-DD HH:MM:SS.ffffff+00` straight into the buffer.
struct COPYText {
    private(set) var bytes: [UInt8] = []
    private var atRowStart = true
    private var day: Int64 = .min
    private var dayPrefix: [UInt8] = []

    init(capacity: Int) { bytes.reserveCapacity(capacity) }

    private mutating func separator() {
        if !atRowStart { bytes.append(9) }
        atRowStart = false
    }

    mutating func field(_ text: String) {
        separator()
        for b in text.utf8 {
            switch b {
            case UInt8(ascii: "\\"): bytes.append(contentsOf: [92, 92])
            case 9: bytes.append(contentsOf: [92, UInt8(ascii: "t")])
            case 10: bytes.append(contentsOf: [92, UInt8(ascii: "n")])
            case 13: bytes.append(contentsOf: [92, UInt8(ascii: "r")])
            default: bytes.append(b)
            }
        }
    }

    mutating func optional(_ text: String?) {
        guard let text else {
            separator()
            bytes.append(contentsOf: [92, UInt8(ascii: "N")])
            return
        }
        field(text)
    }

    mutating func endRow() {
        bytes.append(10)
        atRowStart = true
    }

    /// µs since the epoch, remembering the last day's `YYYY-MM-DD ` prefix (batches share days).
    mutating func timestamp(_ t: Int64) {
        separator()
        let microsPerDay: Int64 = 86_400_000_000
        let d = t >= 0 ? t / microsPerDay : -((-t + microsPerDay - 1) / microsPerDay)
        if d != day {
            day = d
            let (y, m, dd) = UTCCalendar.date(ofMicroseconds: t)
            dayPrefix = []
            appendDigits(y, 4, &dayPrefix)
            dayPrefix.append(UInt8(ascii: "-"))
            appendDigits(m, 2, &dayPrefix)
            dayPrefix.append(UInt8(ascii: "-"))
            appendDigits(dd, 2, &dayPrefix)
            dayPrefix.append(UInt8(ascii: " "))
        }
        bytes.append(contentsOf: dayPrefix)
        var rem = t - d * microsPerDay
        let micros = rem % 1_000_000
        rem /= 1_000_000
        appendDigits(Int(rem / 3600), 2, &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(Int(rem / 60 % 60), 2, &bytes)
        bytes.append(UInt8(ascii: ":"))
        appendDigits(Int(rem % 60), 2, &bytes)
        bytes.append(UInt8(ascii: "."))
        appendDigits(Int(micros), 6, &bytes)
        bytes.append(contentsOf: [UInt8(ascii: "+"), UInt8(ascii: "0"), UInt8(ascii: "0")])
    }

    private func appendDigits(_ value: Int, _ width: Int, _ out: inout [UInt8]) {
        var divisor = 1
        for _ in 1..<width { divisor *= 10 }
        var v = value
        while divisor > 0 {
            out.append(UInt8(48 + (v / divisor) % 10))
            v %= divisor
            divisor /= 10
        }
    }
}
