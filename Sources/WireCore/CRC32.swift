/// CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF), as zlib's
/// `crc32` computes it; OKX's book checksum is its value read as a signed 32-bit integer
/// (PROTOCOLS.md §1.6). Table-driven, one byte per step.
public enum CRC32 {
    static let table: [UInt32] = (0..<256).map { n -> UInt32 in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? 0xEDB8_8320 ^ (c >> 1) : c >> 1 }
        return c
    }

    /// The checksum of `bytes`, continuing from `crc` (0 to start).
    public static func checksum(_ bytes: some Sequence<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        table.withUnsafeBufferPointer { table in
            for byte in bytes { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        }
        return ~c
    }

    /// The checksum of a byte array: a concrete overload, so callers in other modules do not go
    /// through the unspecialised generic path (one witness call per byte, ~10× slower).
    public static func checksum(_ bytes: [UInt8], continuing crc: UInt32 = 0) -> UInt32 {
        bytes.withUnsafeBufferPointer { checksum(buffer: $0, continuing: crc) }
    }

    /// Slicing-by-8: eight bytes per step through eight derived tables (~3× the byte-wise speed).
    public static func checksum(buffer bytes: UnsafeBufferPointer<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        sliced.withUnsafeBufferPointer { t in
            var i = 0
            let n = bytes.count
            while i + 8 <= n {
                let one =
                    c
                    ^ (UInt32(bytes[i]) | UInt32(bytes[i + 1]) << 8 | UInt32(bytes[i + 2]) << 16
                        | UInt32(bytes[i + 3]) << 24)
                let two =
                    UInt32(bytes[i + 4]) | UInt32(bytes[i + 5]) << 8 | UInt32(bytes[i + 6]) << 16
                    | UInt32(bytes[i + 7]) << 24
                c =
                    t[7 * 256 + Int(one & 0xFF)] ^ t[6 * 256 + Int((one >> 8) & 0xFF)]
                    ^ t[5 * 256 + Int((one >> 16) & 0xFF)] ^ t[4 * 256 + Int(one >> 24)]
                    ^ t[3 * 256 + Int(two & 0xFF)] ^ t[2 * 256 + Int((two >> 8) & 0xFF)]
                    ^ t[256 + Int((two >> 16) & 0xFF)] ^ t[Int(two >> 24)]
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(bytes[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

    /// Table k (at k × 256) maps a byte to its CRC after k more zero bytes; table 0 is `table`.
    static let sliced: [UInt32] = {
        var t = table + [UInt32](repeating: 0, count: 7 * 256)
        for k in 1..<8 {
            for n in 0..<256 {
                let previous = t[(k - 1) * 256 + n]
                t[k * 256 + n] = (previous >> 8) ^ t[Int(previous & 0xFF)]
            }
        }
        return t
    }()

    /// OKX's form: the checksum as a signed 32-bit integer.
    public static func signed(_ bytes: some Sequence<UInt8>) -> Int32 { Int32(bitPattern: checksum(bytes)) }
    public static func signed(_ bytes: [UInt8]) -> Int32 { Int32(bitPattern: checksum(bytes)) }
}

/// A CRC-32 computed piece by piece (no buffer of the whole input is built): OKX's book checksum
/// runs over 50 levels' text, appended level by level.
public struct CRC32Accumulator {
    private var c: UInt32 = 0xFFFF_FFFF

    public init() {}

    public mutating func add(_ bytes: UnsafeBufferPointer<UInt8>) {
        var c = self.c
        CRC32.table.withUnsafeBufferPointer { table in
            for byte in bytes { c = table[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
        }
        self.c = c
    }

    /// The UTF-8 bytes of `text` (small strings are read in place, without a copy to the heap).
    public mutating func add(_ text: String) {
        var text = text
        text.withUTF8 { add($0) }
    }

    public mutating func add(byte: UInt8) {
        c = CRC32.table.withUnsafeBufferPointer { $0[Int((c ^ UInt32(byte)) & 0xFF)] ^ (c >> 8) }
    }

    public var value: UInt32 { ~c }
    /// OKX's form: a signed 32-bit integer.
    public var signed: Int32 { Int32(bitPattern: ~c) }
}
