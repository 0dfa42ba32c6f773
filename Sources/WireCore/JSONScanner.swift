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
public struct JSONScanner {
    @usableFromInline let base: UnsafePointer<UInt8>
    @usableFromInline let count: Int
    /// Offset of the next unread byte.
    public private(set) var offset: Int = 0
    private var depth = 0
    /// Deepest nesting accepted: exchange messages are 4–5 levels deep; 64 stops stack abuse.
    public static let maxDepth = 64

    /// A JSON string as found in the buffer: its raw bytes (between the quotes) and whether they hold escapes.
    public struct RawString: Equatable {
        public var range: Range<Int>
        public var hasEscapes: Bool
        public init(range: Range<Int>, hasEscapes: Bool) {
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
    public func bytes(of raw: RawString) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(start: base + raw.range.lowerBound, count: raw.range.count)
    }

    /// Whether the raw string equals `literal` (no escapes).
    public func equals(_ raw: RawString, _ literal: StaticString) -> Bool {
        guard !raw.hasEscapes, raw.range.count == literal.utf8CodeUnitCount else { return false }
        return memcmp(base + raw.range.lowerBound, literal.utf8Start, raw.range.count) == 0
    }

    /// Whether the raw string starts with `literal`.
    public func hasPrefix(_ raw: RawString, _ literal: StaticString) -> Bool {
        guard !raw.hasEscapes, raw.range.count >= literal.utf8CodeUnitCount else { return false }
        return memcmp(base + raw.range.lowerBound, literal.utf8Start, literal.utf8CodeUnitCount) == 0
    }

    /// The string's value with escapes decoded.
    public func string(_ raw: RawString) -> String {
        if !raw.hasEscapes { return String(decoding: bytes(of: raw), as: UTF8.self) }
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

    @inline(__always) mutating func skipWhitespace() {
        while offset < count {
            let b = base[offset]
            guard b == 0x20 || b == 0x0A || b == 0x0D || b == 0x09 else { return }
            offset += 1
        }
    }

    func fail(_ reason: String) -> JSONError { JSONError(offset: offset, reason: reason) }

    /// The next non-space byte without consuming it (nil at the end).
    public mutating func peek() -> UInt8? {
        skipWhitespace()
        return offset < count ? base[offset] : nil
    }

    /// Requires that only whitespace remains.
    public mutating func expectEnd() throws(JSONError) {
        skipWhitespace()
        if offset != count { throw fail("unexpected data after the value") }
    }

    @inline(__always) mutating func consume(_ expected: UInt8, _ what: String) throws(JSONError) {
        skipWhitespace()
        guard offset < count, base[offset] == expected else { throw fail("expected \(what)") }
        offset += 1
    }

    /// Reads a string value.
    /// Moves to `offset` (forward only): a value read by another scanner over the same bytes.
    public mutating func skip(to newOffset: Int) {
        precondition(newOffset >= offset && newOffset <= count, "skip(to:) moves forward within the input")
        offset = newOffset
    }

    public mutating func readRawString() throws(JSONError) -> RawString {
        try consume(UInt8(ascii: "\""), "a string")
        let start = offset
        var hasEscapes = false
        while offset < count {
            let b = base[offset]
            if b == UInt8(ascii: "\"") {
                offset += 1
                return RawString(range: start..<offset - 1, hasEscapes: hasEscapes)
            }
            if b == UInt8(ascii: "\\") {
                hasEscapes = true
                guard offset + 1 < count else { break }
                let e = base[offset + 1]
                switch e {
                case UInt8(ascii: "\""), UInt8(ascii: "\\"), UInt8(ascii: "/"), UInt8(ascii: "b"), UInt8(ascii: "f"),
                    UInt8(ascii: "n"), UInt8(ascii: "r"), UInt8(ascii: "t"):
                    offset += 2
                case UInt8(ascii: "u"):
                    guard offset + 6 <= count,
                        (2..<6).allSatisfy({ Self.isHex(base[offset + $0]) })
                    else { throw fail("bad \\u escape") }
                    offset += 6
                default:
                    throw fail("bad escape")
                }
                continue
            }
            if b < 0x20 { throw fail("control character in a string") }
            offset += 1
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
        let start = offset
        if offset < count && base[offset] == UInt8(ascii: "-") { offset += 1 }
        let intStart = offset
        while offset < count, base[offset] >= 48, base[offset] <= 57 { offset += 1 }
        guard offset > intStart else { throw fail("expected a number") }
        if offset - intStart > 1 && base[intStart] == 48 { throw fail("leading zero in a number") }
        if offset < count && base[offset] == UInt8(ascii: ".") {
            offset += 1
            let fracStart = offset
            while offset < count, base[offset] >= 48, base[offset] <= 57 { offset += 1 }
            guard offset > fracStart else { throw fail("expected digits after '.'") }
        }
        if offset < count && (base[offset] == UInt8(ascii: "e") || base[offset] == UInt8(ascii: "E")) {
            offset += 1
            if offset < count && (base[offset] == UInt8(ascii: "+") || base[offset] == UInt8(ascii: "-")) {
                offset += 1
            }
            let expStart = offset
            while offset < count, base[offset] >= 48, base[offset] <= 57 { offset += 1 }
            guard offset > expStart else { throw fail("expected exponent digits") }
        }
        return start..<offset
    }

    /// Reads an integer number (no fraction or exponent) that fits `Int64`.
    public mutating func readInt64() throws(JSONError) -> Int64 {
        let range = try readNumberText()
        guard let v = Self.parseInt64(UnsafeRawBufferPointer(start: base + range.lowerBound, count: range.count))
        else { throw JSONError(offset: range.lowerBound, reason: "not a 64-bit integer") }
        return v
    }

    /// Parses ASCII digits with an optional leading '-' into `Int64`; nil on anything else or overflow.
    public static func parseInt64(_ bytes: UnsafeRawBufferPointer) -> Int64? {
        var i = 0
        var negative = false
        if bytes.count > 0 && bytes[0] == UInt8(ascii: "-") {
            negative = true
            i = 1
        }
        guard i < bytes.count, bytes.count - i <= 19 else { return nil }
        var v: Int64 = 0
        while i < bytes.count {
            let d = bytes[i] &- 48
            guard d < 10 else { return nil }
            let (m, o1) = v.multipliedReportingOverflow(by: 10)
            let (s, o2) = m.addingReportingOverflow(Int64(d))
            if o1 || o2 { return nil }
            v = s
            i += 1
        }
        return negative ? -v : v
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
        guard offset + n <= count, memcmp(base + offset, literal.utf8Start, n) == 0 else { return false }
        offset += n
        return true
    }

    /// Reads an object, calling `body` for each key with the scanner positioned at the value.
    /// `body` must consume the value (read it or `skipValue()`).
    public mutating func readObject(
        _ body: (RawString, inout JSONScanner) throws(JSONError) -> Void
    )
        throws(JSONError)
    {
        try consume(UInt8(ascii: "{"), "'{'")
        depth += 1
        if depth > Self.maxDepth { throw fail("nesting deeper than \(Self.maxDepth)") }
        defer { depth -= 1 }
        if peek() == UInt8(ascii: "}") {
            offset += 1
            return
        }
        while true {
            let key = try readRawString()
            try consume(UInt8(ascii: ":"), "':'")
            try body(key, &self)
            skipWhitespace()
            guard offset < count else { throw fail("unterminated object") }
            let b = base[offset]
            offset += 1
            if b == UInt8(ascii: "}") { return }
            if b != UInt8(ascii: ",") {
                offset -= 1
                throw fail("expected ',' or '}'")
            }
        }
    }

    /// Reads an array, calling `body` with the element index and the scanner positioned at the element.
    public mutating func readArray(_ body: (Int, inout JSONScanner) throws(JSONError) -> Void) throws(JSONError) {
        try consume(UInt8(ascii: "["), "'['")
        depth += 1
        if depth > Self.maxDepth { throw fail("nesting deeper than \(Self.maxDepth)") }
        defer { depth -= 1 }
        if peek() == UInt8(ascii: "]") {
            offset += 1
            return
        }
        var index = 0
        while true {
            try body(index, &self)
            index += 1
            skipWhitespace()
            guard offset < count else { throw fail("unterminated array") }
            let b = base[offset]
            offset += 1
            if b == UInt8(ascii: "]") { return }
            if b != UInt8(ascii: ",") {
                offset -= 1
                throw fail("expected ',' or ']'")
            }
        }
    }

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

/// Byte comparison for short keys and literals (WireCore imports nothing, so no libc memcmp).
@inline(__always)
private func memcmp(_ a: UnsafePointer<UInt8>, _ b: UnsafePointer<UInt8>, _ n: Int) -> Int32 {
    var i = 0
    while i < n {
        if a[i] != b[i] { return a[i] < b[i] ? -1 : 1 }
        i += 1
    }
    return 0
}
