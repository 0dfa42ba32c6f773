/// An append-only byte buffer: `write*` appends, `set*` patches in place (STYLE.md §3).
public struct ByteWriter: Sendable {
    /// The bytes written so far.
    public private(set) var bytes: [UInt8]

    /// Creates an empty writer with room for `capacity` bytes.
    public init(capacity: Int = 0) {
        bytes = []
        bytes.reserveCapacity(capacity)
    }

    /// How many bytes were written.
    public var count: Int { bytes.count }

    /// Appends one byte.
    public mutating func writeUInt8(_ value: UInt8) { bytes.append(value) }

    /// Appends a big-endian integer.
    public mutating func writeInteger<T: FixedWidthInteger>(_ value: T) {
        let size = MemoryLayout<T>.size
        for i in stride(from: size - 1, through: 0, by: -1) {
            bytes.append(UInt8(truncatingIfNeeded: value >> (i * 8)))
        }
    }

    /// Appends raw bytes.
    public mutating func writeBytes(_ more: some Sequence<UInt8>) { bytes.append(contentsOf: more) }

    /// Appends the UTF-8 bytes of `string`.
    public mutating func writeString(_ string: String) { bytes.append(contentsOf: string.utf8) }

    /// Overwrites a big-endian integer at `index` (used to back-patch length prefixes).
    public mutating func setInteger<T: FixedWidthInteger>(_ value: T, at index: Int) {
        let size = MemoryLayout<T>.size
        precondition(index >= 0 && index + size <= bytes.count, "setInteger out of range")
        for i in 0..<size {
            bytes[index + i] = UInt8(truncatingIfNeeded: value >> ((size - 1 - i) * 8))
        }
    }

    /// Reserves a 4-byte big-endian length, runs `body`, then back-patches the length of what it wrote.
    public mutating func writeLengthPrefixed(_ body: (inout ByteWriter) throws -> Void) rethrows {
        let lengthIndex = bytes.count
        writeInteger(UInt32(0))
        try body(&self)
        let length = bytes.count - lengthIndex - 4
        precondition(length <= Int(UInt32.max), "length-prefixed body larger than 4 GiB")
        setInteger(UInt32(length), at: lengthIndex)
    }

    /// Removes everything written, keeping capacity.
    public mutating func clear() { bytes.removeAll(keepingCapacity: true) }
}
