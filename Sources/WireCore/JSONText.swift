/// Minimal JSON text helpers for hand-written encoders (hot paths and error bodies).
public enum JSONText {
    /// `string` as a quoted JSON string literal (RFC 8259 §7 escaping).
    public static func quoted(_ string: String) -> String {
        var out = "\""
        out.reserveCapacity(string.utf8.count + 2)
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let s where s.value < 0x20:
                let hex = String(s.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        out += "\""
        return out
    }
}

/// A JSON text written straight into bytes, for documents too large to build from strings (the
/// cluster map at 50,000 shards). The caller writes the structure; strings are escaped as
/// `JSONText.quoted` does.
public struct JSONBytes: Sendable {
    public private(set) var bytes: [UInt8] = []

    public init(reservingCapacity capacity: Int = 0) { bytes.reserveCapacity(capacity) }

    /// Structure or text known to need no escaping (`{"id":`, `,"state":`).
    public mutating func raw(_ text: StaticString) {
        text.withUTF8Buffer { bytes.append(contentsOf: $0) }
    }

    /// Text already in JSON form (a number or literal rendered elsewhere).
    public mutating func raw(_ text: String) { bytes.append(contentsOf: text.utf8) }

    /// Another text written separately (a part whose header depends on what it found).
    public mutating func append(_ other: JSONBytes) { bytes.append(contentsOf: other.bytes) }

    public mutating func int(_ value: Int) { int(Int64(value)) }

    public mutating func int(_ value: Int64) {
        if value < 0 { bytes.append(UInt8(ascii: "-")) }
        int(value.magnitude)
    }

    public mutating func int(_ value: UInt64) {
        guard value != 0 else {
            bytes.append(UInt8(ascii: "0"))
            return
        }
        let start = bytes.count
        var v = value
        while v > 0 {
            bytes.append(UInt8(ascii: "0") + UInt8(truncatingIfNeeded: v % 10))
            v /= 10
        }
        bytes[start...].reverse()
    }

    public mutating func bool(_ value: Bool) {
        if value { raw("true") } else { raw("false") }
    }

    /// `string` quoted, with the escapes of RFC 8259 §7 (UTF-8 above ASCII passes through).
    public mutating func quoted(_ string: String) {
        bytes.append(UInt8(ascii: "\""))
        for byte in string.utf8 {
            switch byte {
            case UInt8(ascii: "\""): raw("\\\"")
            case UInt8(ascii: "\\"): raw("\\\\")
            case UInt8(ascii: "\n"): raw("\\n")
            case UInt8(ascii: "\r"): raw("\\r")
            case UInt8(ascii: "\t"): raw("\\t")
            case 0..<0x20:
                let hex: [UInt8] = Array("0123456789abcdef".utf8)
                bytes.append(contentsOf: [
                    UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hex[Int(byte >> 4)],
                    hex[Int(byte & 0xF)],
                ])
            default: bytes.append(byte)
            }
        }
        bytes.append(UInt8(ascii: "\""))
    }
}
