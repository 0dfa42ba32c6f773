public import MarketData

extension PostgresSink {
    static let tradeColumns = "exchange, symbol, trade_id, price, size, side, timestamp_exchange, timestamp_collector"
    static let bookColumns =
        "exchange, symbol, depth, seq, prev_seq, action, bids, asks, checksum, timestamp_exchange, timestamp_collector"
    static let tickerColumns =
        "exchange, symbol, bid_price, bid_size, ask_price, ask_size, last_price, last_size, open_24h, high_24h, low_24h, volume_24h, quote_volume_24h, timestamp_exchange, timestamp_collector"

    public static func tradeCopyText(_ trades: ArraySlice<Trade>) -> [UInt8] {
        COPYText.encode(trades) { t in
            COPYText.fieldBound(t.exchange.rawValue) + COPYText.fieldBound(t.symbol) + COPYText.fieldBound(t.tradeID)
                + COPYText.decimalBound(t.price) + COPYText.decimalBound(t.size) + COPYText.fieldBound(t.side.rawValue)
                + 2 * COPYText.timestampBound + COPYText.rowEndBound
        } write: { out, t in
            out.field(t.exchange.rawValue)
            out.field(t.symbol)
            out.field(t.tradeID)
            out.decimal(t.price)
            out.decimal(t.size)
            out.field(t.side.rawValue)
            out.timestamp(t.timestampExchange)
            out.timestamp(t.timestampCollector)
            out.endRow()
        }
    }

    /// Whether the binary form stores exactly what `tradeCopyText` would (see `COPYBinary`).
    static func isBinaryEncodable(_ t: Trade) -> Bool {
        COPYBinary.timeRange.contains(t.timestampExchange) && COPYBinary.timeRange.contains(t.timestampCollector)
    }

    /// Binary COPY data for trades (`tradeColumns` order), with the header on the first slice and the
    /// trailer on the last. Every trade must be `isBinaryEncodable`.
    static func tradeCopyBinary(_ trades: ArraySlice<Trade>, isFirst: Bool, isLast: Bool) -> [UInt8] {
        COPYBinary.encode(trades, isFirst: isFirst, isLast: isLast) { t in
            COPYBinary.textBound(t.exchange.rawValue) + COPYBinary.textBound(t.symbol) + COPYBinary.textBound(t.tradeID)
                + COPYBinary.numericBound(t.price) + COPYBinary.numericBound(t.size)
                + COPYBinary.textBound(t.side.rawValue) + 2 * COPYBinary.timestampBound
        } write: { out, t in
            out.row(fields: 8)
            out.text(t.exchange.rawValue)
            out.text(t.symbol)
            out.text(t.tradeID)
            out.numeric(t.price)
            out.numeric(t.size)
            out.text(t.side.rawValue)
            out.timestamp(t.timestampExchange)
            out.timestamp(t.timestampCollector)
        }
    }

    public static func bookCopyText(_ books: ArraySlice<BookMessage>) -> [UInt8] {
        COPYText.encode(books) { b in
            COPYText.fieldBound(b.exchange.rawValue) + COPYText.fieldBound(b.symbol) + 3 * COPYText.integerBound
                + COPYText.fieldBound(b.action.rawValue) + COPYText.levelsBound(b.bids) + COPYText.levelsBound(b.asks)
                + COPYText.integerBound + 2 * COPYText.timestampBound + COPYText.rowEndBound
        } write: { out, b in
            out.field(b.exchange.rawValue)
            out.field(b.symbol)
            out.integer(Int64(b.depth ?? 0))  // 0: the full-depth book
            out.integer(b.sequence)
            out.optionalInteger(b.previousSequence)
            out.field(b.action.rawValue)
            out.levels(b.bids)
            out.levels(b.asks)
            out.optionalInteger(b.checksum)
            out.timestamp(b.timestampExchange)
            out.timestamp(b.timestampCollector)
            out.endRow()
        }
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
        COPYText.encode(tickers) { t in
            var bound = COPYText.fieldBound(t.exchange.rawValue) + COPYText.fieldBound(t.symbol)
            for d in t.decimals { bound += d.map(COPYText.decimalBound) ?? COPYText.nullBound }
            return bound + 2 * COPYText.timestampBound + COPYText.rowEndBound
        } write: { out, t in
            out.field(t.exchange.rawValue)
            out.field(t.symbol)
            for d in t.decimals { out.optionalDecimal(d) }
            out.timestamp(t.timestampExchange)
            out.timestamp(t.timestampCollector)
            out.endRow()
        }
    }
}

extension Ticker {
    /// The decimal columns in `tickerColumns` order.
    fileprivate var decimals: [DecimalText?] {
        [
            bidPrice, bidSize, askPrice, askSize, lastPrice, lastSize, open24h, high24h, low24h, volume24h,
            quoteVolume24h,
        ]
    }
}

/// PostgreSQL COPY text format: tab-separated fields, `\N` for NULL, `\\`, tab, newline and carriage
/// return escaped; timestamps written as `YYYY-MM-DD HH:MM:SS.ffffff+00`.
///
/// `encode` sizes one buffer from every row's worst case (`*Bound`: twice a text's bytes when each
/// needs an escape) and the writers fill it through a pointer: no growth, no per-byte bounds or
/// uniqueness checks on the hot path. A timestamp in the same second as the previous one copies
/// that one's `YYYY-MM-DD HH:MM:SS.` from the buffer (a batch's times are close together).
struct COPYText {
    private let base: UnsafeMutablePointer<UInt8>
    private let capacity: Int
    private(set) var count = 0
    private var atRowStart = true
    /// The second (µs / 10⁶, floored) whose 20-byte prefix was last written, and where.
    private var prefixSecond: Int64 = .min
    private var prefixOffset = 0

    /// Bytes of `YYYY-MM-DD HH:MM:SS.ffffff+00`, plus its separator.
    static let timestampBound = 30
    /// A separator and `\N`.
    static let nullBound = 3
    /// A separator and an `Int64` in decimal (`-9223372036854775808`), or `\N`.
    static let integerBound = 21
    static let rowEndBound = 1

    /// A separator and `text` with every byte escaped.
    static func fieldBound(_ text: String) -> Int { 1 + 2 * text.utf8.count }
    /// A separator and the decimal's text (never escaped: digits, sign, point, exponent).
    static func decimalBound(_ d: DecimalText) -> Int { 1 + d.text.utf8.count }
    /// A separator and the `{{p,s},…}` literal (`{}` when empty).
    static func levelsBound(_ levels: [BookLevel]) -> Int {
        var bound = 3
        for level in levels { bound += level.price.text.utf8.count + level.size.text.utf8.count + 4 }
        return bound
    }

    /// The COPY text of `rows`: `bound` is a row's worst-case size, `write` writes it.
    static func encode<Row>(
        _ rows: ArraySlice<Row>, bound: (Row) -> Int, write: (inout COPYText, Row) -> Void
    ) -> [UInt8] {
        // Rows are read in place (no copy, so no retain/release of their strings per row).
        rows.withUnsafeBufferPointer { rows in
            var capacity = 0
            for i in rows.indices { capacity += bound(rows[i]) }
            return [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
                guard let base = buffer.baseAddress else { return }  // no rows: nothing to write
                var out = COPYText(base: base, capacity: buffer.count)
                for i in rows.indices { write(&out, rows[i]) }
                initialized = out.count
            }
        }
    }

    private init(base: UnsafeMutablePointer<UInt8>, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    /// Room for `n` more bytes: the bounds above make this a programmer error, never a data one.
    private func claim(_ n: Int) {
        precondition(count + n <= capacity, "COPY row larger than its bound")
    }

    private mutating func put(_ byte: UInt8) {
        base[count] = byte
        count += 1
    }

    private mutating func separator() {
        claim(1)
        if !atRowStart { put(9) }
        atRowStart = false
    }

    /// Text with COPY escapes.
    mutating func field(_ text: String) {
        separator()
        var text = text
        text.withUTF8 { utf8 in
            claim(2 * utf8.count)
            guard utf8.contains(where: { $0 == 92 || $0 == 9 || $0 == 10 || $0 == 13 }) else {
                copy(utf8)
                return
            }
            for b in utf8 {
                switch b {
                case 92: put2(92, 92)
                case 9: put2(92, UInt8(ascii: "t"))
                case 10: put2(92, UInt8(ascii: "n"))
                case 13: put2(92, UInt8(ascii: "r"))
                default: put(b)
                }
            }
        }
    }

    /// A validated decimal: its bytes need no escape.
    mutating func decimal(_ d: DecimalText) {
        separator()
        var text = d.text
        text.withUTF8 { utf8 in
            claim(utf8.count)
            copy(utf8)
        }
    }

    mutating func optionalDecimal(_ d: DecimalText?) {
        guard let d else { return null() }
        decimal(d)
    }

    mutating func integer(_ value: Int64) {
        separator()
        claim(20)
        var magnitude = value.magnitude
        if value < 0 { put(UInt8(ascii: "-")) }
        var digits = 1
        var probe = magnitude
        while probe >= 10 {
            probe /= 10
            digits += 1
        }
        var i = count + digits - 1
        while i >= count {
            base[i] = UInt8(48 + magnitude % 10)
            magnitude /= 10
            i -= 1
        }
        count += digits
    }

    mutating func optionalInteger(_ value: Int64?) {
        guard let value else { return null() }
        integer(value)
    }

    /// `{{price,size},…}`, `{}` when empty (see `PostgresSink.levelsLiteral`).
    mutating func levels(_ levels: [BookLevel]) {
        separator()
        claim(2)
        guard !levels.isEmpty else { return put2(UInt8(ascii: "{"), UInt8(ascii: "}")) }
        put(UInt8(ascii: "{"))
        for (i, level) in levels.enumerated() {
            claim(4)
            if i > 0 { put(UInt8(ascii: ",")) }
            put(UInt8(ascii: "{"))
            raw(level.price.text)
            put(UInt8(ascii: ","))
            raw(level.size.text)
            put(UInt8(ascii: "}"))
        }
        put(UInt8(ascii: "}"))
    }

    mutating func null() {
        separator()
        claim(2)
        put2(92, UInt8(ascii: "N"))
    }

    mutating func endRow() {
        claim(1)
        put(10)
        atRowStart = true
    }

    /// µs since the epoch as `YYYY-MM-DD HH:MM:SS.ffffff+00` (UTC).
    mutating func timestamp(_ t: Int64) {
        separator()
        claim(29)
        let second = Self.floorDiv(t, 1_000_000)
        if second == prefixSecond {
            (base + count).update(from: base + prefixOffset, count: 20)
            count += 20
        } else {
            prefixSecond = second
            prefixOffset = count
            writePrefix(t, second: second)
        }
        let micros = Int(t - second * 1_000_000)
        putDigits(micros, width: 6)
        put(UInt8(ascii: "+"))
        put2(UInt8(ascii: "0"), UInt8(ascii: "0"))
    }

    /// `YYYY-MM-DD HH:MM:SS.`: the year as four digits, as the format always wrote it.
    private mutating func writePrefix(_ t: Int64, second: Int64) {
        let (y, m, d) = UTCCalendar.date(ofMicroseconds: t)
        var divisor = 1000
        var v = y
        while divisor > 0 {
            put(UInt8(truncatingIfNeeded: 48 + (v / divisor) % 10))
            v %= divisor
            divisor /= 10
        }
        put(UInt8(ascii: "-"))
        putDigits(m, width: 2)
        put(UInt8(ascii: "-"))
        putDigits(d, width: 2)
        put(UInt8(ascii: " "))
        let ofDay = Int(second - Self.floorDiv(second, 86_400) * 86_400)
        putDigits(ofDay / 3600, width: 2)
        put(UInt8(ascii: ":"))
        putDigits(ofDay / 60 % 60, width: 2)
        put(UInt8(ascii: ":"))
        putDigits(ofDay % 60, width: 2)
        put(UInt8(ascii: "."))
    }

    /// ⌊a / b⌋ for b > 0.
    private static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    /// `value` (0 ≤ value < 10^width) zero-padded to `width` digits.
    private mutating func putDigits(_ value: Int, width: Int) {
        var v = value
        var i = count + width - 1
        while i >= count {
            base[i] = UInt8(truncatingIfNeeded: 48 + v % 10)
            v /= 10
            i -= 1
        }
        count += width
    }

    private mutating func put2(_ a: UInt8, _ b: UInt8) {
        base[count] = a
        base[count + 1] = b
        count += 2
    }

    private mutating func copy(_ bytes: UnsafeBufferPointer<UInt8>) {
        guard let source = bytes.baseAddress else { return }  // empty text
        (base + count).update(from: source, count: bytes.count)
        count += bytes.count
    }

    private mutating func raw(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            claim(utf8.count)
            copy(utf8)
        }
    }
}

/// PostgreSQL binary COPY format (`COPY … FROM STDIN (FORMAT binary)`): a signature header, then per
/// row a 16-bit field count and per field a 32-bit length and the type's binary form, big-endian
/// throughout; a -1 trailer. The server skips text parsing (numeric_in, the date/time parser), which
/// is most of its cost per row after the heap and index work.
///
/// It stores exactly what the text form stores for every decimal (`numeric` follows `numeric_in`,
/// exponents included) and for times in years 1–9999 (`timeRange`; outside it the text form's
/// four-digit year does not round-trip, so such rows must take the text path). Sized from each
/// row's worst case like `COPYText`.
struct COPYBinary {
    private let base: UnsafeMutablePointer<UInt8>
    private let capacity: Int
    private(set) var count = 0

    /// PGCOPY\n\377\r\n\0, flags 0, header extension length 0.
    static let headerBytes: [UInt8] = [80, 71, 67, 79, 80, 89, 10, 255, 13, 10, 0, 0, 0, 0, 0, 0, 0, 0, 0]
    /// The field count, per row.
    static let rowBound = 2
    static let timestampBound = 12
    static let boolBound = 5
    static let trailerBound = 2
    /// µs from the Unix epoch to PostgreSQL's (2000-01-01 00:00 UTC).
    static let postgresEpoch: Int64 = 946_684_800_000_000
    /// 0001-01-01 and 10000-01-01 00:00 UTC (µs): the years `COPYText` writes as they are.
    static let timeRange: Range<Int64> = -62_135_596_800_000_000..<253_402_300_800_000_000

    static func textBound(_ text: String) -> Int { 4 + text.utf8.count }
    /// Length word, four 16-bit header words, and the groups: m digits span at most m/4 + 2 of them
    /// wherever the point falls (an exponent moves the weight, not the span).
    static func numericBound(_ d: DecimalText) -> Int { 16 + d.text.utf8.count / 2 }

    /// The binary COPY data of `rows`, with the header when `isFirst` and the trailer when `isLast`.
    static func encode<Row>(
        _ rows: ArraySlice<Row>, isFirst: Bool, isLast: Bool, bound: (Row) -> Int,
        write: (inout COPYBinary, Row) -> Void
    ) -> [UInt8] {
        rows.withUnsafeBufferPointer { rows in
            var capacity = (isFirst ? headerBytes.count : 0) + (isLast ? trailerBound : 0)
            for i in rows.indices { capacity += rowBound + bound(rows[i]) }
            return [UInt8](unsafeUninitializedCapacity: capacity) { buffer, initialized in
                guard let base = buffer.baseAddress else { return }  // nothing to write
                var out = COPYBinary(base: base, capacity: buffer.count)
                if isFirst { headerBytes.withUnsafeBufferPointer { out.copy($0) } }
                for i in rows.indices { write(&out, rows[i]) }
                if isLast { out.int16(-1) }
                initialized = out.count
            }
        }
    }

    private init(base: UnsafeMutablePointer<UInt8>, capacity: Int) {
        self.base = base
        self.capacity = capacity
    }

    /// Room for `n` more bytes: the bounds make this a programmer error, never a data one.
    private func claim(_ n: Int) {
        precondition(count + n <= capacity, "COPY row larger than its bound")
    }

    /// Starts a row of `fields` fields.
    mutating func row(fields: Int16) { int16(fields) }

    mutating func text(_ text: String) {
        var text = text
        text.withUTF8 { utf8 in
            int32(Int32(utf8.count))
            copy(utf8)
        }
    }

    mutating func bool(_ value: Bool) {
        int32(1)
        claim(1)
        base[count] = value ? 1 : 0
        count += 1
    }

    /// timestamptz: µs since 2000-01-01 00:00 UTC. `t` must be in `timeRange`.
    mutating func timestamp(_ t: Int64) {
        int32(8)
        int64(t - Self.postgresEpoch)
    }

    /// numeric, as `numeric_in` reads the text: the digits (sign, integer and fraction digits,
    /// optional exponent `e±n` moving the point) in base 10000 grouped around the point, without
    /// leading or trailing zero groups; the weight (power of 10000) of the first group; the sign; the
    /// display scale = fraction digits − exponent (at least 0), so `1.50` stays `1.50`. Zero has no
    /// digits, weight 0 and a positive sign (PostgreSQL normalises every value so).
    mutating func numeric(_ d: DecimalText) {
        var text = d.text
        text.withUTF8 { b in
            let n = b.count
            var i = 0
            var isNegative = false
            if i < n && (b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+")) {
                isNegative = b[i] == UInt8(ascii: "-")
                i += 1
            }
            let mantissa = i
            var intDigits = 0
            while i < n && b[i] &- 48 < 10 { i += 1 }
            intDigits = i - mantissa
            var fracDigits = 0
            if i < n && b[i] == UInt8(ascii: ".") {
                i += 1
                let start = i
                while i < n && b[i] &- 48 < 10 { i += 1 }
                fracDigits = i - start
            }
            var exponent = 0
            if i < n {  // `e`/`E` (DecimalText validated the syntax: sign, 1–4 digits)
                i += 1
                let isNegativeExponent = b[i] == UInt8(ascii: "-")
                if b[i] == UInt8(ascii: "-") || b[i] == UInt8(ascii: "+") { i += 1 }
                while i < n {
                    exponent = exponent * 10 + Int(b[i] &- 48)
                    i += 1
                }
                if isNegativeExponent { exponent = -exponent }
            }
            // Digit j (0-based over integer then fraction digits) has place 10^(point - 1 - j).
            let point = intDigits + exponent
            let header = count
            claim(12)
            count += 12  // length, ndigits, weight, sign, dscale: patched below
            var weight = 0
            var digits = 0  // groups written, trailing zero groups included
            var nonzero = 0  // groups up to the last non-zero one
            var group = 0
            var place = Self.floorMod(point - 1, 4)  // of digit 0 within its group (3: thousands)
            var started = false
            var j = 0
            var k = mantissa
            while j < intDigits + fracDigits {
                if b[k] == UInt8(ascii: ".") { k += 1 }
                group += Int(b[k] &- 48) * Self.powersOfTen[place]
                k += 1
                if place == 0 || j == intDigits + fracDigits - 1 {
                    if started || group != 0 {
                        if !started {
                            started = true
                            weight = Self.floorDiv(point - 1 - j, 4)
                        }
                        int16(Int16(group))
                        digits += 1
                        if group != 0 { nonzero = digits }
                    }
                    group = 0
                    place = 3
                } else {
                    place -= 1
                }
                j += 1
            }
            count -= 2 * (digits - nonzero)  // trailing zero groups
            let scale = max(0, fracDigits - exponent)
            let end = count
            count = header
            int32(Int32(8 + 2 * nonzero))
            int16(Int16(nonzero))
            int16(nonzero == 0 ? 0 : Int16(weight))
            int16(nonzero > 0 && isNegative ? 0x4000 : 0)
            int16(Int16(scale))
            count = end
        }
    }

    private static let powersOfTen = [1, 10, 100, 1000]
    private static func floorDiv(_ a: Int, _ b: Int) -> Int { a >= 0 ? a / b : -((-a + b - 1) / b) }
    private static func floorMod(_ a: Int, _ b: Int) -> Int { a - floorDiv(a, b) * b }

    private mutating func int16(_ value: Int16) {
        claim(2)
        let v = UInt16(bitPattern: value)
        base[count] = UInt8(truncatingIfNeeded: v >> 8)
        base[count + 1] = UInt8(truncatingIfNeeded: v)
        count += 2
    }

    private mutating func int32(_ value: Int32) {
        claim(4)
        let v = UInt32(bitPattern: value)
        for k in 0..<4 { base[count + k] = UInt8(truncatingIfNeeded: v >> (24 - 8 * k)) }
        count += 4
    }

    private mutating func int64(_ value: Int64) {
        claim(8)
        let v = UInt64(bitPattern: value)
        for k in 0..<8 { base[count + k] = UInt8(truncatingIfNeeded: v >> (56 - 8 * k)) }
        count += 8
    }

    private mutating func copy(_ bytes: UnsafeBufferPointer<UInt8>) {
        claim(bytes.count)
        guard let source = bytes.baseAddress else { return }  // empty text
        (base + count).update(from: source, count: bytes.count)
        count += bytes.count
    }
}
