import WireCore

/// Why a WebSocket connection ended.
public struct WSCloseInfo: Sendable, Equatable, CustomStringConvertible {
    /// Who ended it.
    public enum Kind: Sendable, Equatable {
        /// The peer sent a close frame.
        case peerClosed
        /// We sent a close frame and the peer answered it.
        case closedByUs
        /// The peer broke the protocol; we sent a close frame with `code`.
        case protocolError
    }
    public var kind: Kind
    public var code: UInt16
    public var reason: String

    public init(kind: Kind, code: UInt16, reason: String) {
        self.kind = kind
        self.code = code
        self.reason = reason
    }

    public var description: String { "\(kind) \(code) \(reason)" }
}

/// Receives what a `WSConnection` produces while it consumes bytes.
///
/// Payload pointers are valid only during the call: copy what you keep. Frames to send are given
/// unencoded so the driver applies the masking key it draws (clients mask, RFC 6455 §5.3).
public protocol WSConnectionSink {
    /// A complete data message (text is already validated as UTF-8).
    mutating func messageReceived(_ payload: UnsafeRawBufferPointer, isText: Bool)
    /// A pong arrived (liveness).
    mutating func pongReceived(_ payload: UnsafeRawBufferPointer)
    /// The driver must send this frame (a pong, or a close reply/error close).
    mutating func sendFrame(_ opcode: WSOpcode, payload: [UInt8])
    /// The connection is over: after flushing what was sent, the driver closes the transport.
    mutating func connectionClosed(_ info: WSCloseInfo)
}

/// The RFC 6455 connection machine after the opening handshake (pure: bytes in, events out).
///
/// Discipline (STYLE.md §3): complete frames are handled straight from the caller's buffer with no
/// copy; only a frame split across reads is buffered in `partial` (the header is re-read from there,
/// which costs at most 14 bytes). Limits are checked from the header, before any payload is buffered.
///
/// States: `open` (data flows), `closeSent` (we sent close, waiting for the peer's), `closed` (done;
/// every further byte is ignored).
public struct WSConnection: Sendable {
    /// Which end we are; decides the masking rule (RFC 6455 §5.1).
    public enum Role: Sendable { case client, server }

    public struct Configuration: Sendable, Equatable {
        public var role: Role
        /// Largest single frame payload; bigger gets close 1009.
        public var maxFrameBytes: Int
        /// Largest reassembled message; bigger gets close 1009.
        public var maxMessageBytes: Int

        /// 16 MiB frames and messages: OKX's largest book snapshot is ~100 KiB; the cap only stops abuse.
        public init(role: Role, maxFrameBytes: Int = 16 << 20, maxMessageBytes: Int = 16 << 20) {
            self.role = role
            self.maxFrameBytes = maxFrameBytes
            self.maxMessageBytes = maxMessageBytes
        }
    }

    public enum State: Sendable, Equatable {
        case open
        case closeSent
        case closed
    }

    public let configuration: Configuration
    public private(set) var state: State = .open
    /// A frame split across reads.
    private var partial: [UInt8] = []
    /// Fragments of a message in progress, and its type.
    private var fragments: [UInt8] = []
    private var fragmentIsText: Bool? = nil
    private var fragmentValidator = UTF8Validation.Incremental()

    public init(configuration: Configuration) { self.configuration = configuration }

    /// Feeds bytes from the transport; events go to `sink`.
    public mutating func receive<S: WSConnectionSink>(_ bytes: UnsafeRawBufferPointer, sink: inout S) {
        guard state != .closed, bytes.count > 0 else { return }
        var input = bytes
        if !partial.isEmpty {
            // Complete the split frame first, taking only the bytes that belong to it.
            while true {
                let parsed = partial.withUnsafeBytes { p in
                    Result { () throws(WSProtocolError) in try WSFrameHeader.parse(p) }
                }
                let header: WSFrameHeader?
                switch parsed {
                case .success(let h): header = h
                case .failure(let error):
                    fail(error, sink: &sink)
                    return
                }
                guard let header else {
                    // The header itself is incomplete: move one byte at a time (at most 14).
                    guard !input.isEmpty else { return }
                    partial.append(input[0])
                    input = UnsafeRawBufferPointer(rebasing: input[1...])
                    continue
                }
                if let error = checkLimits(header) {
                    fail(error, sink: &sink)
                    return
                }
                let total = header.headerLength + header.payloadLength
                let take = min(total - partial.count, input.count)
                partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[0..<take]))
                input = UnsafeRawBufferPointer(rebasing: input[take...])
                guard partial.count == total else { return }
                var frame = partial
                partial = []
                frame.withUnsafeMutableBytes { buffer in
                    handleFrame(header, frame: buffer, sink: &sink)
                }
                if state == .closed || input.isEmpty { return }
                break
            }
        }
        // Fast path: frames entirely inside `input`.
        var offset = 0
        let count = input.count
        while offset < count && state != .closed {
            let rest = UnsafeRawBufferPointer(rebasing: input[offset...])
            let header: WSFrameHeader?
            do {
                header = try WSFrameHeader.parse(rest)
            } catch {
                fail(error, sink: &sink)
                return
            }
            guard let header else { break }
            if let error = checkLimits(header) {
                fail(error, sink: &sink)
                return
            }
            let total = header.headerLength + header.payloadLength
            guard total <= rest.count else { break }
            if header.maskKey == nil {
                handleUnmaskedFrame(header, frame: UnsafeRawBufferPointer(rebasing: rest[0..<total]), sink: &sink)
            } else {
                var copy = Array(rest[0..<total])
                copy.withUnsafeMutableBytes { handleFrame(header, frame: $0, sink: &sink) }
            }
            offset += total
        }
        if offset < count && state != .closed {
            partial.append(contentsOf: UnsafeRawBufferPointer(rebasing: input[offset...]))
        }
    }

    /// Starts the closing handshake from our side; the driver sends the returned frame payload as `.close`.
    /// Returns nil when a close was already sent or the connection is closed.
    public mutating func initiateClose(code: UInt16, reason: String) -> [UInt8]? {
        guard state == .open else { return nil }
        precondition(WSCloseCode.isValidOnWire(code), "close code \(code) may not be sent")
        state = .closeSent
        return WSFrameEncoder.closePayload(code: code, reason: reason)
    }

    /// The transport ended without a close handshake: returns the close info to report (code 1006).
    public mutating func transportClosed() -> WSCloseInfo? {
        guard state != .closed else { return nil }
        state = .closed
        return WSCloseInfo(kind: .protocolError, code: WSCloseCode.abnormalClosure, reason: "connection lost")
    }

    // MARK: - Frame handling

    private func checkLimits(_ header: WSFrameHeader) -> WSProtocolError? {
        if header.payloadLength > configuration.maxFrameBytes {
            return WSProtocolError(
                .messageTooBig, "frame of \(header.payloadLength) bytes exceeds \(configuration.maxFrameBytes)")
        }
        // RFC 6455 §5.5: control frames carry at most 125 bytes and are never fragmented.
        if header.rawOpcode & 0x8 != 0 {
            if header.payloadLength > 125 {
                return WSProtocolError(.protocolError, "control frame payload of \(header.payloadLength) bytes")
            }
            if !header.isFinal { return WSProtocolError(.protocolError, "fragmented control frame") }
        }
        // RFC 6455 §5.1: a server MUST NOT mask; a client MUST mask.
        switch configuration.role {
        case .client where header.maskKey != nil:
            return WSProtocolError(.protocolError, "masked frame from server")
        case .server where header.maskKey == nil:
            return WSProtocolError(.protocolError, "unmasked frame from client")
        default:
            break
        }
        // RFC 6455 §5.2: RSV bits MUST be 0 unless an extension defines them (we negotiate none).
        if header.reservedBits != 0 { return WSProtocolError(.protocolError, "reserved bits set") }
        return nil
    }

    private mutating func handleFrame<S: WSConnectionSink>(
        _ header: WSFrameHeader, frame: UnsafeMutableRawBufferPointer, sink: inout S
    ) {
        if let mask = header.maskKey {
            WSFrameEncoder.applyMask(mask, to: UnsafeMutableRawBufferPointer(rebasing: frame[header.headerLength...]))
        }
        handleUnmaskedFrame(header, frame: UnsafeRawBufferPointer(frame), sink: &sink)
    }

    private mutating func handleUnmaskedFrame<S: WSConnectionSink>(
        _ header: WSFrameHeader, frame: UnsafeRawBufferPointer, sink: inout S
    ) {
        let payload = UnsafeRawBufferPointer(rebasing: frame[header.headerLength...])
        guard let opcode = WSOpcode(rawValue: header.rawOpcode) else {
            fail(WSProtocolError(.protocolError, "unknown opcode \(header.rawOpcode)"), sink: &sink)
            return
        }
        switch opcode {
        case .text, .binary:
            guard fragmentIsText == nil else {
                fail(WSProtocolError(.protocolError, "new data frame inside a fragmented message"), sink: &sink)
                return
            }
            let isText = opcode == .text
            if header.isFinal {
                if isText && !UTF8Validation.isValid(payload) {
                    fail(WSProtocolError(.invalidPayload, "text message is not valid UTF-8"), sink: &sink)
                    return
                }
                if state == .open { sink.messageReceived(payload, isText: isText) }
            } else {
                fragmentIsText = isText
                fragmentValidator = UTF8Validation.Incremental()
                appendFragment(payload, sink: &sink)
            }
        case .continuation:
            guard let isText = fragmentIsText else {
                fail(WSProtocolError(.protocolError, "continuation frame without a message to continue"), sink: &sink)
                return
            }
            appendFragment(payload, sink: &sink)
            guard state != .closed, header.isFinal else { return }
            if isText && !fragmentValidator.isComplete {
                fail(WSProtocolError(.invalidPayload, "text message ends inside a UTF-8 sequence"), sink: &sink)
                return
            }
            let message = fragments
            fragments = []
            fragmentIsText = nil
            if state == .open { message.withUnsafeBytes { sink.messageReceived($0, isText: isText) } }
        case .ping:
            // RFC 6455 §5.5.3: answer with a pong carrying the same payload, unless we are closing.
            if state == .open { sink.sendFrame(.pong, payload: Array(payload)) }
        case .pong:
            sink.pongReceived(payload)
        case .close:
            handleClose(payload, sink: &sink)
        }
    }

    private mutating func appendFragment<S: WSConnectionSink>(_ payload: UnsafeRawBufferPointer, sink: inout S) {
        if fragments.count + payload.count > configuration.maxMessageBytes {
            fail(
                WSProtocolError(.messageTooBig, "message exceeds \(configuration.maxMessageBytes) bytes"), sink: &sink)
            return
        }
        if fragmentIsText == true && !fragmentValidator.feed(payload) {
            fail(WSProtocolError(.invalidPayload, "text message is not valid UTF-8"), sink: &sink)
            return
        }
        fragments.append(contentsOf: payload)
    }

    private mutating func handleClose<S: WSConnectionSink>(_ payload: UnsafeRawBufferPointer, sink: inout S) {
        var code = WSCloseCode.noStatusReceived
        var reason = ""
        if payload.count == 1 {
            fail(WSProtocolError(.protocolError, "close frame with a 1-byte payload"), sink: &sink)
            return
        }
        if payload.count >= 2 {
            code = UInt16(payload[0]) << 8 | UInt16(payload[1])
            guard WSCloseCode.isValidOnWire(code) else {
                fail(WSProtocolError(.protocolError, "invalid close code \(code)"), sink: &sink)
                return
            }
            let reasonBytes = UnsafeRawBufferPointer(rebasing: payload[2...])
            guard UTF8Validation.isValid(reasonBytes) else {
                fail(WSProtocolError(.invalidPayload, "close reason is not valid UTF-8"), sink: &sink)
                return
            }
            reason = String(decoding: reasonBytes, as: UTF8.self)
        }
        switch state {
        case .open:
            // RFC 6455 §5.5.1: reply with a close frame, echoing the status code.
            sink.sendFrame(
                .close, payload: code == WSCloseCode.noStatusReceived ? [] : [UInt8(code >> 8), UInt8(code & 0xFF)])
            state = .closed
            sink.connectionClosed(WSCloseInfo(kind: .peerClosed, code: code, reason: reason))
        case .closeSent:
            state = .closed
            sink.connectionClosed(WSCloseInfo(kind: .closedByUs, code: code, reason: reason))
        case .closed:
            break
        }
    }

    private mutating func fail<S: WSConnectionSink>(_ error: WSProtocolError, sink: inout S) {
        guard state != .closed else { return }
        if state == .open {
            sink.sendFrame(.close, payload: WSFrameEncoder.closePayload(code: error.closeCode, reason: error.reason))
        }
        state = .closed
        partial = []
        fragments = []
        sink.connectionClosed(WSCloseInfo(kind: .protocolError, code: error.closeCode, reason: error.reason))
    }
}

/// What a `WSConnection` produced, as comparable values (tests and low-rate callers).
public enum WSEvent: Sendable, Equatable {
    case message([UInt8], isText: Bool)
    case pong([UInt8])
    case send(WSOpcode, [UInt8])
    case closed(WSCloseInfo)
}

/// A sink that records events as `WSEvent`s, copying payloads.
public struct WSEventCollector: WSConnectionSink {
    public var events: [WSEvent] = []
    public init() {}
    public mutating func messageReceived(_ payload: UnsafeRawBufferPointer, isText: Bool) {
        events.append(.message(Array(payload), isText: isText))
    }
    public mutating func pongReceived(_ payload: UnsafeRawBufferPointer) { events.append(.pong(Array(payload))) }
    public mutating func sendFrame(_ opcode: WSOpcode, payload: [UInt8]) { events.append(.send(opcode, payload)) }
    public mutating func connectionClosed(_ info: WSCloseInfo) { events.append(.closed(info)) }
}

extension WSConnection {
    /// Feeds bytes and returns the events as values (copies payloads; not for the hot path).
    public mutating func receive(_ bytes: [UInt8]) -> [WSEvent] {
        var collector = WSEventCollector()
        bytes.withUnsafeBytes { receive($0, sink: &collector) }
        return collector.events
    }
}
