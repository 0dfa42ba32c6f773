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

    /// Slicing-by-16: sixteen bytes per step through sixteen derived tables (~4× the byte-wise speed;
    /// OKX's book checksum text is ~1 KB per update), then eight, then one at a time.
    public static func checksum(buffer bytes: UnsafeBufferPointer<UInt8>, continuing crc: UInt32 = 0) -> UInt32 {
        var c = ~crc
        guard let base = bytes.baseAddress else { return crc }
        let raw = UnsafeRawPointer(base)
        @inline(__always) func word(_ i: Int) -> UInt32 {
            UInt32(littleEndian: raw.loadUnaligned(fromByteOffset: i, as: UInt32.self))
        }
        sliced.withUnsafeBufferPointer { t in
            @inline(__always) func lookup(_ table: Int, _ w: UInt32) -> UInt32 {
                t[(table + 3) * 256 + Int(w & 0xFF)] ^ t[(table + 2) * 256 + Int((w >> 8) & 0xFF)]
                    ^ t[(table + 1) * 256 + Int((w >> 16) & 0xFF)] ^ t[table * 256 + Int(w >> 24)]
            }
            var i = 0
            let n = bytes.count
            while i + 16 <= n {
                let one = lookup(12, c ^ word(i))
                let two = lookup(8, word(i + 4))
                let three = lookup(4, word(i + 8))
                let four = lookup(0, word(i + 12))
                c = one ^ two ^ three ^ four
                i += 16
            }
            if i + 8 <= n {
                c = lookup(4, c ^ word(i)) ^ lookup(0, word(i + 4))
                i += 8
            }
            while i < n {
                c = t[Int((c ^ UInt32(base[i])) & 0xFF)] ^ (c >> 8)
                i += 1
            }
        }
        return ~c
    }

    /// Table k (at k × 256) maps a byte to its CRC after k more zero bytes; table 0 is `table`.
    static let sliced: [UInt32] = {
        var t = table + [UInt32](repeating: 0, count: 15 * 256)
        for k in 1..<16 {
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
    /// The running register (inverted start; `value` inverts it back).
    fileprivate var c: UInt32 = 0xFFFF_FFFF

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

/// A run of CRC-32 input known by its length and its raw register: the register after the run
/// starting from zero, with no inversions. CRC-32 is linear over GF(2), so the register after a run
/// is the register before it advanced over as many zero bytes, xor the run's raw register; a text
/// made of runs kept from earlier (OKX's book levels, each `px:sz`) is then checksummed with a few
/// table steps per run rather than one per byte.
public struct CRC32Piece: Sendable, Hashable {
    /// The register after the piece's bytes from a zero register.
    public private(set) var raw: UInt32 = 0
    /// The piece's length in bytes.
    public private(set) var count: Int = 0

    public init() {}

    /// The piece `first`, `separator`, `second` (a level's `price:size`): copied into one stack
    /// buffer, then checksummed sixteen bytes a step.
    public init(_ first: UnsafeBufferPointer<UInt8>, _ separator: UInt8, _ second: UnsafeBufferPointer<UInt8>) {
        let n = first.count + 1 + second.count
        raw = withUnsafeTemporaryAllocation(of: UInt8.self, capacity: n) { buffer in
            var i = buffer.initialize(from: first).1
            buffer.initializeElement(at: i, to: separator)
            i += 1
            for byte in second {
                buffer.initializeElement(at: i, to: byte)
                i += 1
            }
            // From a zero register with no final inversion: `checksum` inverts on the way in and out.
            return ~CRC32.checksum(buffer: UnsafeBufferPointer(buffer), continuing: 0xFFFF_FFFF)
        }
        count = n
    }
}

extension CRC32Accumulator {
    /// Appends `pieces` with `separator` between each two (not before the first). Per piece, the
    /// separator is xored into the register (processing a byte is processing a zero byte from the
    /// register xor that byte), the register is advanced over the separator and the piece in zero
    /// bytes, at most 16 in one step of four parallel table lookups, and the piece's raw register is
    /// xored in. O(total bytes / 16), two dependent steps for a typical OKX level.
    public mutating func add(_ pieces: UnsafeBufferPointer<CRC32Piece>, separatedBy separator: UInt8) {
        var c = self.c
        CRC32.sliced.withUnsafeBufferPointer { t in
            // The register after m (1...16) zero bytes: register byte j goes through m - 1 - j more
            // bytes (table m - 1 - j); for m < 4 the bytes not yet reached just shift down.
            @inline(__always) func advanced(_ c: UInt32, _ m: Int) -> UInt32 {
                var r = m < 4 ? c >> (8 * UInt32(m)) : 0
                r ^= t[(m - 1) * 256 + Int(c & 0xFF)]
                if m > 1 { r ^= t[(m - 2) * 256 + Int((c >> 8) & 0xFF)] }
                if m > 2 { r ^= t[(m - 3) * 256 + Int((c >> 16) & 0xFF)] }
                if m > 3 { r ^= t[(m - 4) * 256 + Int(c >> 24)] }
                return r
            }
            for (i, piece) in pieces.enumerated() {
                var n = piece.count
                if i > 0 {
                    c ^= UInt32(separator)
                    n += 1
                }
                while n > 16 {
                    c = advanced(c, 16)
                    n -= 16
                }
                if n > 0 { c = advanced(c, n) }
                c ^= piece.raw
            }
        }
        self.c = c
    }
}
