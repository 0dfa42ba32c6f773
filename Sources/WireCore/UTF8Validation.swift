/// Strict UTF-8 validation (RFC 3629: no overlongs, no surrogates, nothing above U+10FFFF).
public enum UTF8Validation {
    /// Whether `bytes` is well-formed UTF-8. ASCII runs are checked eight bytes at a time.
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        var state = Incremental()
        return state.feed(bytes) && state.isComplete
    }

    /// Whether `bytes` is well-formed UTF-8.
    public static func isValid(_ bytes: [UInt8]) -> Bool {
        bytes.withUnsafeBytes { isValid($0) }
    }

    /// A validator fed in pieces: a message split over frames can be checked as it arrives.
    public struct Incremental: Sendable {
        /// Continuation bytes still expected for the current code point.
        private var remaining: Int = 0
        /// Allowed range for the next continuation byte (tightened after E0, ED, F0, F4).
        private var lower: UInt8 = 0x80
        private var upper: UInt8 = 0xBF

        /// Creates a validator at a code-point boundary.
        public init() {}

        /// True when no code point is left unfinished.
        public var isComplete: Bool { remaining == 0 }

        /// Feeds more bytes; returns false at the first invalid byte.
        public mutating func feed(_ bytes: UnsafeRawBufferPointer) -> Bool {
            let count = bytes.count
            guard count > 0, let base = bytes.baseAddress else { return true }
            var i = 0
            while i < count {
                if remaining == 0 {
                    // Fast path: eight ASCII bytes at once.
                    while i + 8 <= count {
                        let word = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
                        if word & 0x8080_8080_8080_8080 != 0 { break }
                        i += 8
                    }
                    if i >= count { break }
                    let b = base.load(fromByteOffset: i, as: UInt8.self)
                    i += 1
                    switch b {
                    case 0x00...0x7F: continue
                    case 0xC2...0xDF: remaining = 1; lower = 0x80; upper = 0xBF
                    case 0xE0: remaining = 2; lower = 0xA0; upper = 0xBF
                    case 0xE1...0xEC, 0xEE...0xEF: remaining = 2; lower = 0x80; upper = 0xBF
                    case 0xED: remaining = 2; lower = 0x80; upper = 0x9F
                    case 0xF0: remaining = 3; lower = 0x90; upper = 0xBF
                    case 0xF1...0xF3: remaining = 3; lower = 0x80; upper = 0xBF
                    case 0xF4: remaining = 3; lower = 0x80; upper = 0x8F
                    default: return false
                    }
                } else {
                    let b = base.load(fromByteOffset: i, as: UInt8.self)
                    i += 1
                    guard b >= lower && b <= upper else { return false }
                    remaining -= 1
                    lower = 0x80
                    upper = 0xBF
                }
            }
            return true
        }
    }
}
