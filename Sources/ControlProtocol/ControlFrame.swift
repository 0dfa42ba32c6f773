/// Control-protocol framing (DESIGN.md §3): a 4-byte big-endian unsigned length `N`, then `N` bytes —
/// a 1-byte message type and the body. `N` of zero or above the limit is a protocol error: the
/// receiver closes that connection with the reason. Pure: bytes in, frames or an error out.
public struct ControlFrame: Hashable, Sendable {
    public var type: UInt8
    public var body: [UInt8]

    public init(type: UInt8, body: [UInt8]) {
        self.type = type
        self.body = body
    }

    /// The frame on the wire: length, type, body.
    public func encoded() -> [UInt8] {
        let n = UInt32(1 + body.count)
        var out: [UInt8] = []
        out.reserveCapacity(4 + Int(n))
        out += [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF), type]
        out += body
        return out
    }
}

/// Why a byte stream is not a control-protocol stream.
public enum ControlFrameError: Error, Hashable, Sendable, CustomStringConvertible {
    /// A length of zero: a frame needs at least its type byte.
    case emptyFrame
    /// A length above the receiver's limit.
    case frameTooLarge(length: UInt32, limit: Int)

    public var description: String {
        switch self {
        case .emptyFrame: return "control frame of length 0 (a frame holds at least its type byte)"
        case .frameTooLarge(let length, let limit):
            return "control frame of \(length) bytes is above the limit of \(limit)"
        }
    }
}

/// Reassembles frames from a TCP byte stream. Bounded: it never holds more than one frame of at
/// most `maxFrameBytes` plus its length prefix; after an error it stays failed (the connection is
/// to be closed, nothing after the bad length is read).
public struct ControlFrameDecoder: Sendable {
    /// The smallest limit a receiver may set (DESIGN.md §3: at least 1 MiB).
    public static let minimumLimit = 1 << 20

    /// The largest `N` accepted.
    public private(set) var maxFrameBytes: Int
    private var buffer: [UInt8] = []
    private var start = 0
    private var failure: ControlFrameError?

    /// `limit` below `minimumLimit` is raised to it.
    public init(maxFrameBytes limit: Int = ControlFrameDecoder.minimumLimit) {
        maxFrameBytes = max(limit, Self.minimumLimit)
    }

    /// The limit for a cluster of `shards` shards: room for a full sync of every shard's status
    /// (`bytesPerShard` each), never below `minimumLimit`.
    public static func limit(forShards shards: Int, bytesPerShard: Int = 512) -> Int {
        max(minimumLimit, shards.multipliedReportingOverflow(by: bytesPerShard).partialValue)
    }

    /// A peer that proved itself may send larger frames (a full sync of many shards) than one that
    /// has not (its `Hello`): the limit only grows.
    public mutating func raiseLimit(to limit: Int) { maxFrameBytes = max(maxFrameBytes, limit) }

    /// Bytes held, not yet returned as frames.
    public var bufferedByteCount: Int { buffer.count - start }

    /// Appends received bytes. Returns the frames now complete, in order; throws at the first bad
    /// length (the frames before it are returned by earlier calls only, so call this per read).
    public mutating func feed(_ bytes: some Sequence<UInt8>) throws(ControlFrameError) -> [ControlFrame] {
        if let failure { throw failure }
        buffer.append(contentsOf: bytes)
        var frames: [ControlFrame] = []
        while buffer.count - start >= 4 {
            let n =
                UInt32(buffer[start]) << 24 | UInt32(buffer[start + 1]) << 16 | UInt32(buffer[start + 2]) << 8
                | UInt32(buffer[start + 3])
            if n == 0 { return try fail(.emptyFrame, keeping: frames) }
            if Int(n) > maxFrameBytes {
                return try fail(.frameTooLarge(length: n, limit: maxFrameBytes), keeping: frames)
            }
            guard buffer.count - start >= 4 + Int(n) else { break }
            let typeIndex = start + 4
            frames.append(
                ControlFrame(type: buffer[typeIndex], body: Array(buffer[(typeIndex + 1)..<(typeIndex + Int(n))])))
            start = typeIndex + Int(n)
        }
        // Compact once the consumed prefix dominates, so the buffer stays within one frame's size.
        if start > 0 && start >= buffer.count / 2 {
            buffer.removeFirst(start)
            start = 0
        }
        return frames
    }

    /// Records the failure. Frames completed before the bad length in this same call are returned
    /// (they arrived intact, ahead of it); the next call throws.
    private mutating func fail(
        _ error: ControlFrameError, keeping frames: [ControlFrame]
    ) throws(ControlFrameError)
        -> [ControlFrame]
    {
        failure = error
        buffer = []
        start = 0
        if frames.isEmpty { throw error }
        return frames
    }

    /// The error that stopped this stream, if any.
    public var error: ControlFrameError? { failure }
}
