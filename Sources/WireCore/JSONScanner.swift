/// Why a JSON text could not be read.
public struct JSONError: Error, Sendable, Equatable, CustomStringConvertible {
    /// Byte offset of the problem.
    public var offset: Int
    public var reason: String
    public init(offset: Int, reason: String) {
        self.offset = offset
        self.reason = reason
    }
    public var description: String { "invalid JSON at byte \(offset): \(reason)" }
}

/// A forward-only, allocation-free JSON reader over a byte buffer (RFC 8259).
///
/// Parsers walk the document with `readObject`/`readArray`/`readString*`/`skipValue` and pick out the
/// fields they need; strings come back as byte ranges into the buffer, decoded only when asked.
/// The buffer must outlive the scanner. Nesting is limited to `maxDepth`.
///
/// The per-byte paths (whitespace, strings, object and array punctuation, key comparison) are
/// `@inlinable`: parsers in other modules pass their per-key closures to `readObject`/`readArray`,
/// and inlining lets the compiler fold those closures into one loop instead of an indirect call per
/// key. Error construction stays out of line.
public struct JSONScanner {
    @usableFromInline let base: UnsafePointer<UInt8>
    @usableFromInline let count: Int
    /// Offset of the next unread byte (storage of `offset`, settable by inlined code).
    @usableFromInline var position: Int = 0
    /// Objects and arrays open around the cursor.
    @usableFromInline var depth = 0
    /// Offset of the next unread byte.
    public var offset: Int { position }
    /// Deepest nesting accepted: exchange messages are 4–5 levels deep; 64 stops stack abuse.
    public static let maxDepth = 64

    /// A JSON string as found in the buffer: its raw bytes (between the quotes) and whether they hold escapes.
    public struct RawString: Equatable {
        public var range: Range<Int>
        public var hasEscapes: Bool
        @inlinable public init(range: Range<Int>, hasEscapes: Bool) {
            self.range = range
            self.hasEscapes = hasEscapes
        }
    }

    /// Creates a scanner over `buffer` (which must stay valid while the scanner is used).
    public init(_ buffer: UnsafeRawBufferPointer) {
        // An empty buffer still needs a valid pointer; reads are bounds-checked against `count`.
        base = buffer.baseAddress.map { $0.assumingMemoryBound(to: UInt8.self) } ?? UnsafePointer(bitPattern: 1)!
        count = buffer.count
    }

    @inline(__always) func byte(at i: Int) -> UInt8 { base[i] }

    /// The bytes of `raw` as a buffer (valid as long as the scanner's buffer).
    @inlinable
    public func bytes(of raw: RawString) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + raw.range.lowerBound, count: raw.range.count)
    }

    /// Whether the raw string equals `literal` (no escapes).
    @inlinable @inline(__always)
    public func equals(_ raw: RawString, _ literal: StaticString) -> Bool {
        guard !raw.hasEscapes, raw.range.count == literal.utf8CodeUnitCount else { return false }
        return bytesEqual(base + raw.range.lowerBound, literal.utf8Start, raw.range.count)
    }

    /// Whether the raw string starts with `literal`.
    @inlinable
    public func hasPrefix(_ raw: RawString, _ literal: StaticString) -> Bool {
        guard !raw.hasEscapes, raw.range.count >= literal.utf8CodeUnitCount else { return false }
        return bytesEqual(base + raw.range.lowerBound, literal.utf8Start, literal.utf8CodeUnitCount)
    }

    /// The string's value with escapes decoded.
    @inlinable
    public func string(_ raw: RawString) -> String {
        if !raw.hasEscapes { return String(decoding: bytes(of: raw), as: UTF8.self) }
        return unescapedString(raw)
    }

    /// `string(_:)` for a string with escapes.
    @usableFromInline
    func unescapedString(_ raw: RawString) -> String {
        var out: [UInt8] = []
        var i = raw.range.lowerBound
        while i < raw.range.upperBound {
            let b = base[i]
            if b != UInt8(ascii: "\\") {
                out.append(b)
                i += 1
                continue
            }
            let e = base[i + 1]
            i += 2
            switch e {
            case UInt8(ascii: "n"): out.append(10)
            case UInt8(ascii: "t"): out.append(9)
            case UInt8(ascii: "r"): out.append(13)
            case UInt8(ascii: "b"): out.append(8)
            case UInt8(ascii: "f"): out.append(12)
            case UInt8(ascii: "u"):
                var scalar = hex4(at: i)
                i += 4
                // A surrogate pair encodes one scalar beyond the BMP.
                if (0xD800..<0xDC00).contains(scalar), i + 5 < raw.range.upperBound, base[i] == UInt8(ascii: "\\"),
                    base[i + 1] == UInt8(ascii: "u")
                {
                    let low = hex4(at: i + 2)
                    if (0xDC00..<0xE000).contains(low) {
                        scalar = 0x10000 + ((scalar - 0xD800) << 10) + (low - 0xDC00)
                        i += 6
                    }
                }
                let u = Unicode.Scalar(scalar) ?? "\u{FFFD}"
                out.append(contentsOf: String(Character(u)).utf8)
            default: out.append(e)  // \" \\ \/
            }
        }
        return String(decoding: out, as: UTF8.self)
    }

    private func hex4(at i: Int) -> UInt32 {
        var v: UInt32 = 0
        for k in 0..<4 {
            let c = base[i + k]
            let d: UInt32
            switch c {
            case UInt8(ascii: "0")...UInt8(ascii: "9"): d = UInt32(c - UInt8(ascii: "0"))
            case UInt8(ascii: "a")...UInt8(ascii: "f"): d = UInt32(c - UInt8(ascii: "a") + 10)
            default: d = UInt32(c &- UInt8(ascii: "A") &+ 10) & 0xF
            }
            v = v << 4 | d
        }
        return v
    }

    @inlinable @inline(__always)
    mutating func skipWhitespace() {
        while position < count {
            let b = base[position]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            position += 1
        }
    }

    @usableFromInline
    func fail(_ reason: String) -> JSONError { JSONError(offset: position, reason: reason) }

    /// The next non-space byte without consuming it (nil at the end).
    @inlinable
    public mutating func peek() -> UInt8? {
        skipWhitespace()
        return position < count ? base[position] : nil
    }

    /// Whether the next value (after whitespace) starts like a number: `-` or a digit. Strict readers
    /// use it to name a field of the wrong type instead of reporting invalid JSON.
    public mutating func peekIsNumber() -> Bool {
        guard let byte = peek() else { return false }
        return byte == UInt8(ascii: "-") || (byte >= UInt8(ascii: "0") && byte <= UInt8(ascii: "9"))
    }

    /// Requires that only whitespace remains.
    public mutating func expectEnd() throws(JSONError) {
        skipWhitespace()
        if position != count { throw fail("unexpected data after the value") }
    }

    @inlinable @inline(__always)
    mutating func consume(_ expected: UInt8, _ what: StaticString) throws(JSONError) {
        skipWhitespace()
        guard position < count, base[position] == expected else { throw expectationFailure(what) }
        position += 1
    }

    /// The error for a missing `what` at the cursor (out of line: only malformed input gets here).
    @usableFromInline @inline(never)
    func expectationFailure(_ what: StaticString) -> JSONError { fail("expected \(what)") }

    // MARK: Layout fast paths
    //
    // An exchange serialises its pushes the same way every time. A parser may first try that exact
    // layout with `take` and `readPlainString` (no whitespace, no escapes), and on any difference
    // `rewind` to where it began and read the same bytes with the general, order-free methods. The
    // fast path accepts only input the general path accepts, and reads it the same way.

    /// If the bytes at the cursor are exactly `literal` (no whitespace is skipped), consumes them.
    @inlinable @inline(__always)
    public mutating func take(_ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard count - position >= n, bytesEqual(base + position, literal.utf8Start, n) else { return false }
        position += n
        return true
    }

    /// The offset of the first byte at or after `start` that ends or interrupts a plain string — `"`,
    /// a backslash or a control character — or `count`: eight bytes a word, then byte by byte.
    @inlinable @inline(__always)
    func plainRunEnd(from start: Int) -> Int {
        var i = start
        while i + 8 <= count {
            let word = UInt64(littleEndian: UnsafeRawPointer(base + i).loadUnaligned(as: UInt64.self))
            let stops = stringStopLanes(word)
            if stops != 0 { return i + stops.trailingZeroBitCount >> 3 }
            i += 8
        }
        while i < count {
            let b = base[i]
            if b == UInt8(ascii: "\"") || b == UInt8(ascii: "\\") || b < 0x20 { return i }
            i += 1
        }
        return count
    }

    /// With the cursor just past an opening quote: the string's bytes up to the closing quote, which is
    /// consumed. Nil (cursor unchanged) if an escape, a control character or the end comes first: the
    /// general path then reads (or refuses) it.
    @inlinable @inline(__always)
    public mutating func readPlainString() -> RawString? {
        let end = plainRunEnd(from: position)
        guard end < count, base[end] == UInt8(ascii: "\"") else { return nil }
        defer { position = end + 1 }
        return RawString(range: position..<end, hasEscapes: false)
    }

    /// Moves the cursor back to `offset` (the start of a fast path that did not match). Nesting must
    /// be what it was there: fast paths use `take`, which opens no nesting level.
    @inlinable
    public mutating func rewind(to offset: Int) {
        precondition(offset >= 0 && offset <= position, "rewind(to:) moves backward")
        position = offset
    }

    /// Continues an object whose `{` and first members a fast path consumed with `take`: reads the
    /// remaining `, key: value` members up to and including the `}` (the cursor is after the last
    /// value read), calling `body` for each as `readObject` does.
    @inlinable
    public mutating func readRemainingMembers(
        _ body: (RawString, inout JSONScanner) throws(JSONError) -> Void
    ) throws(JSONError) {
        try enterNesting()
        defer { depth -= 1 }
        while true {
            try consumeSeparator(closing: UInt8(ascii: "}"), "unterminated object", "expected ',' or '}'")
            if base[position - 1] == UInt8(ascii: "}") { return }
            let key = try readRawString()
            try consume(UInt8(ascii: ":"), "':'")
            try body(key, &self)
        }
    }

    /// Moves to `offset` (forward only): a value read by another scanner over the same bytes.
    public mutating func skip(to newOffset: Int) {
        precondition(newOffset >= position && newOffset <= count, "skip(to:) moves forward within the input")
        position = newOffset
    }

    /// Reads a string value, returning its raw bytes' range (escapes checked, not decoded).
    @inlinable @inline(__always)
    public mutating func readRawString() throws(JSONError) -> RawString {
        try consume(UInt8(ascii: "\""), "a string")
        let start = position
        // Plain bytes up to the closing quote, the common case; an escape, a control character or the
        // end of input goes to the general loop.
        let i = plainRunEnd(from: start)
        if i < count && base[i] == UInt8(ascii: "\"") {
            position = i + 1
            return RawString(range: start..<i, hasEscapes: false)
        }
        position = i
        return try readRawStringRest(start: start)
    }

    /// The rest of a string from the cursor (at an escape, a control character or the end), which
    /// began at `start`.
    @usableFromInline
    mutating func readRawStringRest(start: Int) throws(JSONError) -> RawString {
        var hasEscapes = false
        while position < count {
            let b = base[position]
            if b == UInt8(ascii: "\"") {
                position += 1
                return RawString(range: start..<position - 1, hasEscapes: hasEscapes)
            }
            if b == UInt8(ascii: "\\") {
                hasEscapes = true
                guard position + 1 < count else { break }
                let e = base[position + 1]
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    position += 2
                case UInt8(ascii: "u"):
                    guard position + 6 <= count,
                        (2..<6).allSatisfy({ Self.isHex(base[position + $0]) })
                    else { throw fail("bad \\u escape") }
                    position += 6
                default:
                    throw fail("bad escape")
                }
                continue
            }
            if b < 0x20 { throw fail("control character in a string") }
            position += 1
        }
        throw fail("unterminated string")
    }

    static func isHex(_ c: UInt8) -> Bool {
        (c >= 48 && c <= 57) || (c >= 65 && c <= 70) || (c >= 97 && c <= 102)
    }

    /// Reads a string value and decodes it.
    public mutating func readString() throws(JSONError) -> String { string(try readRawString()) }

    /// Reads a number token and returns its raw text range (validated against the JSON grammar).
    public mutating func readNumberText() throws(JSONError) -> Range<Int> {
        skipWhitespace()
        let start = position
        if position < count && base[position] == UInt8(ascii: "-") { position += 1 }
        let intStart = position
        while position < count, base[position] >= 48, base[position] <= 57 { position += 1 }
        guard position > intStart else { throw fail("expected a number") }
        if position - intStart > 1 && base[intStart] == 48 { throw fail("leading zero in a number") }
        if position < count && base[position] == UInt8(ascii: ".") {
            position += 1
            let fracStart = position
            while position < count, base[position] >= 48, base[position] <= 57 { position += 1 }
            guard position > fracStart else { throw fail("expected digits after '.'") }
        }
        if position < count && (base[position] == UInt8(ascii: "e") || base[position] == UInt8(ascii: "E")) {
            position += 1
            if position < count && (base[position] == UInt8(ascii: "+") || base[position] == UInt8(ascii: "-")) {
                position += 1
            }
            let expStart = position
            while position < count, base[position] >= 48, base[position] <= 57 { position += 1 }
            guard position > expStart else { throw fail("expected exponent digits") }
        }
        return start..<position
    }

    /// Reads an integer number (no fraction or exponent) that fits `Int64`.
    public mutating func readInt64() throws(JSONError) -> Int64 {
        let range = try readNumberText()
        guard let v = Self.parseInt64(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
        else { throw JSONError(offset: range.lowerBound, reason: "not a 64-bit integer") }
        return v
    }

    /// Parses ASCII digits (at most 19, leading zeros included) with an optional leading '-' into
    /// `Int64`; nil on anything else or overflow.
    @inlinable
    public static func parseInt64(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        let negative = bytes.count > 0 && bytes[0] == UInt8(ascii: "-")
        var i = negative ? 1 : 0
        guard i < bytes.count, bytes.count - i <= 19 else { return nil }
        // 18 digits stay below 10^18 < Int64.max, so they need no overflow checks; only a 19th can
        // overflow, and it is checked below.
        let unchecked = min(bytes.count, i + 18)
        var v: UInt64 = 0
        while i + 8 <= unchecked {
            guard let chunk = eightDigits(bytes.loadUnaligned(fromByteOffset: i, as: UInt64.self)) else { return nil }
            v = v &* 100_000_000 &+ chunk
            i += 8
        }
        while i < unchecked {
            let d = bytes[i] &- 48
            guard d < 10 else { return nil }
            v = v &* 10 &+ UInt64(d)
            i += 1
        }
        if i < bytes.count {
            let d = bytes[i] &- 48
            guard d < 10 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (sum, o2) = m.addingReportingOverflow(UInt64(d))
            guard !o1, !o2 else { return nil }
            v = sum
        }
        // The magnitude must fit: up to Int64.max, or one more for a negative number (Int64.min).
        if negative {
            guard v <= UInt64(Int64.max) + 1 else { return nil }
            return Int64(truncatingIfNeeded: 0 &- v)
        }
        guard v <= UInt64(Int64.max) else { return nil }
        return Int64(v)
    }

    /// Reads `true` or `false`.
    public mutating func readBool() throws(JSONError) -> Bool {
        skipWhitespace()
        if matchLiteral("true") { return true }
        if matchLiteral("false") { return false }
        throw fail("expected true or false")
    }

    /// Reads `null` if it comes next; returns whether it did.
    public mutating func readNullIfPresent() -> Bool {
        skipWhitespace()
        return matchLiteral("null")
    }

    private mutating func matchLiteral(_ literal: StaticString) -> Bool {
        let n = literal.utf8CodeUnitCount
        guard position + n <= count, bytesEqual(base + position, literal.utf8Start, n) else { return false }
        position += n
        return true
    }

    /// Reads an object, calling `body` for each key with the scanner positioned at the value.
    /// `body` must consume the value (read it or `skipValue()`).
    @inlinable
    public mutating func readObject(
        _ body: (RawString, inout JSONScanner) throws(JSONError) -> Void
    )
        throws(JSONError)
    {
        try consume(UInt8(ascii: "{"), "'{'")
        try enterNesting()
        defer { depth -= 1 }
        if peek() == UInt8(ascii: "}") {
            position += 1
            return
        }
        while true {
            let key = try readRawString()
            try consume(UInt8(ascii: ":"), "':'")
            try body(key, &self)
            try consumeSeparator(closing: UInt8(ascii: "}"), "unterminated object", "expected ',' or '}'")
            if base[position - 1] == UInt8(ascii: "}") { return }
        }
    }

    /// Reads an array, calling `body` with the element index and the scanner positioned at the element.
    @inlinable
    public mutating func readArray(_ body: (Int, inout JSONScanner) throws(JSONError) -> Void) throws(JSONError) {
        try consume(UInt8(ascii: "["), "'['")
        try enterNesting()
        defer { depth -= 1 }
        if peek() == UInt8(ascii: "]") {
            position += 1
            return
        }
        var index = 0
        while true {
            try body(index, &self)
            index += 1
            try consumeSeparator(closing: UInt8(ascii: "]"), "unterminated array", "expected ',' or ']'")
            if base[position - 1] == UInt8(ascii: "]") { return }
        }
    }

    /// One level deeper, within `maxDepth`.
    @inlinable @inline(__always)
    mutating func enterNesting() throws(JSONError) {
        depth += 1
        if depth > Self.maxDepth { throw nestingFailure() }
    }

    @usableFromInline @inline(never)
    func nestingFailure() -> JSONError { fail("nesting deeper than \(Self.maxDepth)") }

    /// Consumes the `,` or `closing` byte after a member or element.
    @inlinable @inline(__always)
    mutating func consumeSeparator(
        closing: UInt8, _ unterminated: StaticString, _ unexpected: StaticString
    ) throws(JSONError) {
        skipWhitespace()
        guard position < count else { throw separatorFailure(unterminated) }
        let b = base[position]
        guard b == UInt8(ascii: ",") || b == closing else { throw separatorFailure(unexpected) }
        position += 1
    }

    @usableFromInline @inline(never)
    func separatorFailure(_ reason: StaticString) -> JSONError { fail(reason.description) }

    /// Skips one value of any type (validating it).
    public mutating func skipValue() throws(JSONError) {
        switch peek() {
        case UInt8(ascii: "\"")?: _ = try readRawString()
        case UInt8(ascii: "{")?: try readObject { _, s throws(JSONError) in try s.skipValue() }
        case UInt8(ascii: "[")?: try readArray { _, s throws(JSONError) in try s.skipValue() }
        case UInt8(ascii: "t")?, UInt8(ascii: "f")?: _ = try readBool()
        case UInt8(ascii: "n")?:
            if !readNullIfPresent() { throw fail("expected null") }
        case nil: throw fail("unexpected end of input")
        default: _ = try readNumberText()
        }
    }
}

/// Byte comparison for short keys and literals (WireCore imports nothing, so no libc memcmp): eight
/// bytes a word (unaligned loads), then the tail byte by byte.
@inlinable @inline(__always)
func bytesEqual(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Bool {
    var i = 0
    while i + 8 <= n {
        let x = UnsafeRawPointer(a + i).loadUnaligned(as: UInt64.self)
        let y = UnsafeRawPointer(b + i).loadUnaligned(as: UInt64.self)
        if x != y { return false }
        i += 8
    }
    while i < n {
        if a[i] != b[i] { return false }
        i += 1
    }
    return true
}

/// SWAR over eight bytes in a `UInt64`: the result has a lane's high bit set exactly where the
/// condition holds for that byte (exact forms: no carry crosses a lane).
@usableFromInline let laneLow7: UInt64 = 0x7F7F_7F7F_7F7F_7F7F
@usableFromInline let laneHigh: UInt64 = 0x8080_8080_8080_8080
@usableFromInline let laneOnes: UInt64 = 0x0101_0101_0101_0101

/// Lanes below `n` (1...128): high bit clear and the low seven bits plus 128 - n stay below 128.
@inlinable @inline(__always)
func lanesBelow(_ x: UInt64, _ n: UInt8) -> UInt64 {
    ~(((x & laneLow7) &+ UInt64(128 - n) &* laneOnes) | x) & laneHigh
}

/// Lanes that end or interrupt a plain JSON string: `"`, a backslash or a control character.
@inlinable @inline(__always)
func stringStopLanes(_ x: UInt64) -> UInt64 {
    lanesBelow(x ^ 0x2222_2222_2222_2222, 1) | lanesBelow(x ^ 0x5C5C_5C5C_5C5C_5C5C, 1) | lanesBelow(x, 0x20)
}

/// The value of eight ASCII digits as loaded from memory (first digit first), or nil if any byte is
/// not a digit. SWAR: validate all lanes, then combine pairs, quads and halves.
@inlinable @inline(__always)
func eightDigits(_ loaded: UInt64) -> UInt64? {
    let x = UInt64(littleEndian: loaded)
    let high: UInt64 = 0xF0F0_F0F0_F0F0_F0F0
    let threes: UInt64 = 0x3030_3030_3030_3030
    // 0x30...0x39 only: high nibble 3, and still 3 after adding 6 (no lane carries past 0x45).
    guard x & high == threes, (x &+ 0x0606_0606_0606_0606) & high == threes else { return nil }
    var v = x & 0x0F0F_0F0F_0F0F_0F0F
    v = (v &* 10 &+ (v >> 8)) & 0x00FF_00FF_00FF_00FF
    v = (v &* 100 &+ (v >> 16)) & 0x0000_FFFF_0000_FFFF
    v = (v &* 10_000 &+ (v >> 32)) & 0xFFFF_FFFF
    return v
}
