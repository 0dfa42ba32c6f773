/// RFC 6455 §5.2 opcodes.
public enum WSOpcode: UInt8, Sendable, Equatable {
    case continuation = 0x0
    case text = 0x1
    case binary = 0x2
    case close = 0x8
    case ping = 0x9
    case pong = 0xA

    /// Control frames are close, ping and pong (RFC 6455 §5.5).
    public var isControl: Bool { rawValue & 0x8 != 0 }
}

/// Close status codes (RFC 6455 §7.4.1).
public enum WSCloseCode {
    public static let normal: UInt16 = 1000
    public static let goingAway: UInt16 = 1001
    public static let protocolError: UInt16 = 1002
    public static let unsupportedData: UInt16 = 1003
    /// Never sent on the wire: "the close frame had no status code".
    public static let noStatusReceived: UInt16 = 1005
    /// Never sent on the wire: "the connection ended without a close frame".
    public static let abnormalClosure: UInt16 = 1006
    public static let invalidPayload: UInt16 = 1007
    public static let policyViolation: UInt16 = 1008
    public static let messageTooBig: UInt16 = 1009
    public static let internalError: UInt16 = 1011

    /// Whether `code` may appear in a close frame (RFC 6455 §7.4.1–§7.4.2, IANA registry).
    public static func isValidOnWire(_ code: UInt16) -> Bool {
        switch code {
        case 1000...1003, 1007...1014, 3000...4999: true
        default: false
        }
    }
}

/// A decoded frame header.
public struct WSFrameHeader: Sendable, Equatable {
    public var isFinal: Bool
    /// RSV1–RSV3 as the top three bits of the low nibble (0 unless an extension was negotiated).
    public var reservedBits: UInt8
    /// The raw 4-bit opcode (validated later, so an unknown one can be reported).
    public var rawOpcode: UInt8
    /// The masking key, when the MASK bit is set.
    public var maskKey: UInt32?
    /// Payload length in bytes.
    public var payloadLength: Int
    /// Header length in bytes (2 to 14).
    public var headerLength: Int

    /// Parses a header at the start of `bytes`; `nil` when more bytes are needed.
    /// Lengths are decoded here but checked against limits by the caller before any payload is buffered.
    public static func parse(_ bytes: UnsafeRawBufferPointer) throws(WSProtocolError) -> WSFrameHeader? {
        let count = bytes.count
        guard count >= 2 else { return nil }
        let b0 = bytes[0]
        let b1 = bytes[1]
        var length = Int(b1 & 0x7F)
        var index = 2
        if length == 126 {
            guard count >= 4 else { return nil }
            length = Int(bytes[2]) << 8 | Int(bytes[3])
            index = 4
            // RFC 6455 §5.2: the minimal number of bytes MUST be used to encode the length.
            if length < 126 { throw WSProtocolError(.protocolError, "non-minimal 16-bit payload length") }
        } else if length == 127 {
            guard count >= 10 else { return nil }
            var value: UInt64 = 0
            for i in 2..<10 { value = value << 8 | UInt64(bytes[i]) }
            // RFC 6455 §5.2: the most significant bit MUST be 0.
            if value >> 63 != 0 { throw WSProtocolError(.protocolError, "64-bit payload length with the top bit set") }
            if value < 65536 { throw WSProtocolError(.protocolError, "non-minimal 64-bit payload length") }
            guard value <= UInt64(Int.max / 2) else { throw WSProtocolError(.messageTooBig, "payload length \(value)") }
            length = Int(value)
            index = 10
        }
        var mask: UInt32? = nil
        if b1 & 0x80 != 0 {
            guard count >= index + 4 else { return nil }
            mask =
                UInt32(bytes[index]) << 24 | UInt32(bytes[index + 1]) << 16 | UInt32(bytes[index + 2]) << 8
                | UInt32(bytes[index + 3])
            index += 4
        }
        return WSFrameHeader(
            isFinal: b0 & 0x80 != 0, reservedBits: (b0 >> 4) & 0x7, rawOpcode: b0 & 0x0F, maskKey: mask,
            payloadLength: length, headerLength: index)
    }
}

/// A protocol violation by the peer, with the close code to send (RFC 6455 §7.4.1).
public struct WSProtocolError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The close code this violation maps to.
    public var closeCode: UInt16
    /// What was wrong (safe to log: it never contains payload bytes).
    public var reason: String

    public enum Kind: Sendable { case protocolError, invalidPayload, messageTooBig }

    public init(_ kind: Kind, _ reason: String) {
        switch kind {
        case .protocolError: closeCode = WSCloseCode.protocolError
        case .invalidPayload: closeCode = WSCloseCode.invalidPayload
        case .messageTooBig: closeCode = WSCloseCode.messageTooBig
        }
        self.reason = reason
    }

    public var description: String { "WebSocket protocol error \(closeCode): \(reason)" }
}

/// Frame encoding (pure).
public enum WSFrameEncoder {
    /// Appends one frame to `out`. With a `maskKey` (clients MUST mask, RFC 6455 §5.3) the payload is XOR-masked.
    public static func encode(
        opcode: WSOpcode, payload: UnsafeRawBufferPointer, isFinal: Bool = true, maskKey: UInt32?,
        into out: inout [UInt8]
    ) {
        out.append((isFinal ? 0x80 : 0) | opcode.rawValue)
        let maskBit: UInt8 = maskKey == nil ? 0 : 0x80
        let n = payload.count
        if n < 126 {
            out.append(maskBit | UInt8(n))
        } else if n <= 0xFFFF {
            out.append(maskBit | 126)
            out.append(UInt8(n >> 8))
            out.append(UInt8(n & 0xFF))
        } else {
            out.append(maskBit | 127)
            for shift in stride(from: 56, through: 0, by: -8) { out.append(UInt8((UInt64(n) >> UInt64(shift)) & 0xFF)) }
        }
        guard let maskKey else {
            out.append(contentsOf: payload)
            return
        }
        let maskBytes: [UInt8] = [
            UInt8(maskKey >> 24), UInt8((maskKey >> 16) & 0xFF), UInt8((maskKey >> 8) & 0xFF), UInt8(maskKey & 0xFF),
        ]
        out.append(contentsOf: maskBytes)
        let start = out.count
        out.append(contentsOf: payload)
        out.withUnsafeMutableBytes { buffer in
            applyMask(maskKey, to: UnsafeMutableRawBufferPointer(rebasing: buffer[start...]))
        }
    }

    /// Encodes one frame and returns its bytes.
    public static func encode(opcode: WSOpcode, payload: [UInt8], isFinal: Bool = true, maskKey: UInt32?) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(payload.count + 14)
        payload.withUnsafeBytes { encode(opcode: opcode, payload: $0, isFinal: isFinal, maskKey: maskKey, into: &out) }
        return out
    }

    /// The payload of a close frame: a 2-byte code and a UTF-8 reason cut to fit 125 bytes.
    public static func closePayload(code: UInt16, reason: String) -> [UInt8] {
        var out: [UInt8] = [UInt8(code >> 8), UInt8(code & 0xFF)]
        var reasonBytes = Array(reason.utf8.prefix(123))
        // Do not cut a multi-byte character in half.
        while !reasonBytes.isEmpty && !WireCoreUTF8.isValid(reasonBytes) { reasonBytes.removeLast() }
        out.append(contentsOf: reasonBytes)
        return out
    }

    /// XORs `buffer` with the 4-byte big-endian `maskKey`, eight bytes at a time where possible.
    public static func applyMask(_ maskKey: UInt32, to buffer: UnsafeMutableRawBufferPointer) {
        guard let base = buffer.baseAddress else { return }
        let keyBytes: (UInt8, UInt8, UInt8, UInt8) = (
            UInt8(maskKey >> 24), UInt8((maskKey >> 16) & 0xFF), UInt8((maskKey >> 8) & 0xFF), UInt8(maskKey & 0xFF)
        )
        // Build a 64-bit word whose in-memory byte order repeats the key (works on little and big endian).
        var word: UInt64 = 0
        withUnsafeMutableBytes(of: &word) { w in
            for i in 0..<8 {
                w[i] = i % 4 == 0 ? keyBytes.0 : i % 4 == 1 ? keyBytes.1 : i % 4 == 2 ? keyBytes.2 : keyBytes.3
            }
        }
        var i = 0
        let n = buffer.count
        while i + 8 <= n {
            let v = base.loadUnaligned(fromByteOffset: i, as: UInt64.self)
            base.storeBytes(of: v ^ word, toByteOffset: i, as: UInt64.self)
            i += 8
        }
        while i < n {
            let k = i % 4 == 0 ? keyBytes.0 : i % 4 == 1 ? keyBytes.1 : i % 4 == 2 ? keyBytes.2 : keyBytes.3
            buffer[i] ^= k
            i += 1
        }
    }
}
