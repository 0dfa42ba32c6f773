/// A cursor over bytes: `read*` advances, `get*` does not (STYLE.md §3 byte vocabulary).
///
/// Value type; cheap to copy (the storage is copy-on-write). Reads past the end return `nil`.
public struct ByteReader: Sendable {
    /// The bytes being read.
    public private(set) var bytes: [UInt8]
    /// Index of the next unread byte.
    public private(set) var readerIndex: Int

    /// Creates a reader positioned at the start of `bytes`.
    public init(_ bytes: [UInt8]) {
        self.bytes = bytes
        self.readerIndex = 0
    }

    /// How many bytes are left to read.
    public var readableBytes: Int { bytes.count - readerIndex }

    /// The unread bytes, without consuming them.
    public var unreadBytes: ArraySlice<UInt8> { bytes[readerIndex...] }

    /// Appends bytes that arrived later. Compacts already-read bytes first when that saves memory.
    public mutating func append(contentsOf more: some Sequence<UInt8>) {
        if readerIndex > 0 && readerIndex >= bytes.count / 2 {
            bytes.removeFirst(readerIndex)
            readerIndex = 0
        }
        bytes.append(contentsOf: more)
    }

    /// Moves the cursor forward by `count` bytes; `count` must not exceed `readableBytes`.
    public mutating func skip(_ count: Int) {
        precondition(count >= 0 && count <= readableBytes, "skip past the end of a ByteReader")
        readerIndex += count
    }

    /// Moves the cursor back to `index` (an index previously read from `readerIndex`).
    public mutating func moveReaderIndex(to index: Int) {
        precondition(index >= 0 && index <= bytes.count, "reader index out of range")
        readerIndex = index
    }

    /// The byte `offset` bytes past the cursor, if present; nil for a negative offset.
    public func getUInt8(at offset: Int = 0) -> UInt8? {
        // Compared without adding, so an offset taken from the wire cannot overflow.
        guard offset >= 0, offset < readableBytes else { return nil }
        return bytes[readerIndex + offset]
    }

    /// A big-endian integer `offset` bytes past the cursor, if enough bytes are present; nil for a
    /// negative offset.
    public func getInteger<T: FixedWidthInteger>(as type: T.Type = T.self, at offset: Int = 0) -> T? {
        let size = MemoryLayout<T>.size
        // Compared without adding, so an offset taken from the wire cannot overflow.
        guard offset >= 0, size <= readableBytes, offset <= readableBytes - size else { return nil }
        let start = readerIndex + offset
        var value: T = 0
        // Truncating: a byte above 0x7F is not representable in `Int8`, but its bits are what we want.
        for i in 0..<size { value = (value << 8) | T(truncatingIfNeeded: bytes[start + i]) }
        return value
    }

    /// Reads one byte.
    public mutating func readUInt8() -> UInt8? {
        guard let value = getUInt8() else { return nil }
        readerIndex += 1
        return value
    }

    /// Reads a big-endian integer.
    public mutating func readInteger<T: FixedWidthInteger>(as type: T.Type = T.self) -> T? {
        guard let value: T = getInteger() else { return nil }
        readerIndex += MemoryLayout<T>.size
        return value
    }

    /// Reads exactly `count` bytes, or nothing.
    public mutating func readBytes(_ count: Int) -> [UInt8]? {
        guard count >= 0, count <= readableBytes else { return nil }
        let out = Array(bytes[readerIndex..<readerIndex + count])
        readerIndex += count
        return out
    }

    /// Drops already-read bytes from storage (keeps indices consistent).
    public mutating func discardReadBytes() {
        guard readerIndex > 0 else { return }
        bytes.removeFirst(readerIndex)
        readerIndex = 0
    }
}
