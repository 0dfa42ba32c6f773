/// CRC-32 (IEEE 802.3: reflected polynomial 0xEDB88320, initial and final XOR 0xFFFFFFFF), as zlib's
/// `crc32` computes it; OKX's book checksum is its value read as a signed 32-bit integer
/// (PROTOCOLS.md §1.6). Table-driven, one byte per step.
public enum CRC32 {
    private static let table: [UInt32] = (0..<256).map { n -> UInt32 in
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

    /// OKX's form: the checksum as a signed 32-bit integer.
    public static func signed(_ bytes: some Sequence<UInt8>) -> Int32 { Int32(bitPattern: checksum(bytes)) }
}
