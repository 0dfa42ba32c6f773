import HTTP1Protocol
import WebSocketProtocol
import WireCore

// WebSocket (RFC 6455): the frame-header codec and masking, the connection machine (what an
// exchange sends us, and what a client sends our stream API), and the opening handshake.
extension FuzzTarget {
    static let webSocketTargets: [FuzzTarget] = [
        FuzzTarget(
            name: "ws-frame",
            summary: "frame header: an accepted header re-encodes (payload masked again) to the same bytes"
        ) { input throws(FuzzFinding) in try WebSocketFuzz.checkFrame(input) },
        FuzzTarget(
            name: "ws-connection",
            summary: "connection machine (client and server role): split = whole, limits held, nothing after close"
        ) { input throws(FuzzFinding) in try WebSocketFuzz.checkConnection(input) },
        FuzzTarget(
            name: "ws-handshake",
            summary: "opening handshake: a 101 answer carries the key's accept value; validation agrees with it"
        ) { input throws(FuzzFinding) in try WebSocketFuzz.checkHandshake(input) },
    ]
}

enum WebSocketFuzz {
    static let maxFrameBytes = 256
    static let maxMessageBytes = 512

    // MARK: - ws-frame

    static func checkFrame(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "ws-frame"
        let parsed = input.withUnsafeBytes { bytes in
            Result { () throws(WSProtocolError) in try WSFrameHeader.parse(bytes) }
        }
        guard case .success(let header) = parsed, let header else { return }
        try require(
            header.headerLength >= 2 && header.headerLength <= 14 && header.headerLength <= input.count, target,
            "header length \(header.headerLength) for \(input.count) input bytes")
        // Every shorter prefix needs more bytes: it neither parses nor fails.
        for cut in 0..<header.headerLength {
            let prefix = input.withUnsafeBytes { bytes in
                Result { () throws(WSProtocolError) in
                    try WSFrameHeader.parse(UnsafeRawBufferPointer(rebasing: bytes[0..<cut]))
                }
            }
            guard case .success(nil) = prefix else {
                throw FuzzFinding(
                    target: target, "a \(cut)-byte prefix of a \(header.headerLength)-byte header gave \(prefix)")
            }
        }
        // The masking XOR: eight bytes a word must equal a byte at a time, at any offset.
        let tail = Array(input[header.headerLength...])
        let key = header.maskKey ?? 0x9A3C_5E71
        // The first 259 bytes cover every alignment of the word loop and its tail many times over.
        let sample = tail.prefix(259)
        for offset in [0, 1, 3] where offset <= sample.count {
            var fast = Array(sample[offset...])
            fast.withUnsafeMutableBytes { WSFrameEncoder.applyMask(key, to: $0) }
            let keyBytes = [UInt8(key >> 24), UInt8((key >> 16) & 0xFF), UInt8((key >> 8) & 0xFF), UInt8(key & 0xFF)]
            let slow = sample[offset...].enumerated().map { $0.element ^ keyBytes[$0.offset % 4] }
            try require(fast == slow, target, "applyMask differs from a byte-wise XOR at offset \(offset)")
        }
        // An accepted header with a known opcode and no extension bits re-encodes to the same bytes.
        guard header.reservedBits == 0, let opcode = WSOpcode(rawValue: header.rawOpcode),
            header.payloadLength <= tail.count
        else { return }
        var payload = Array(tail[0..<header.payloadLength])
        if let mask = header.maskKey { payload.withUnsafeMutableBytes { WSFrameEncoder.applyMask(mask, to: $0) } }
        let encoded = WSFrameEncoder.encode(
            opcode: opcode, payload: payload, isFinal: header.isFinal, maskKey: header.maskKey)
        let original = Array(input[0..<(header.headerLength + header.payloadLength)])
        try require(encoded == original, target, "re-encoded \(encoded.prefix(16)) differs from \(original.prefix(16))")
    }

    // MARK: - ws-connection

    static func checkConnection(_ input: [UInt8]) throws(FuzzFinding) {
        // An odd first byte also starts our side's close handshake, at an offset it picks, so the
        // closing state (messages dropped, no pongs, the peer's close completing ours) is reached.
        let closeAt = input.first.flatMap { $0 & 1 == 1 ? Int($0 >> 1) * input.count / 127 : nil }
        for role in [WSConnection.Role.client, .server] {
            let whole = run([input[...]], role: role, closeAt: closeAt)
            let split = run(SplitPoints.pieces(of: input), role: role, closeAt: closeAt)
            try require(
                whole == split, "ws-connection",
                "\(role): split at \(SplitPoints.points(for: input)) gave \(split), whole gave \(whole)")
            try checkEvents(whole, role: role)
        }
    }

    /// Feeds the pieces (starting our close once `closeAt` bytes are in), then ends the transport
    /// (which reports 1006 unless a close came first).
    static func run(_ pieces: [ArraySlice<UInt8>], role: WSConnection.Role, closeAt: Int?) -> [WSEvent] {
        var connection = WSConnection(
            configuration: .init(role: role, maxFrameBytes: maxFrameBytes, maxMessageBytes: maxMessageBytes))
        var events: [WSEvent] = []
        var fed = 0
        func closeIfDue() {
            guard let closeAt, fed == closeAt else { return }
            if let payload = connection.initiateClose(code: WSCloseCode.goingAway, reason: "fuzz") {
                events.append(.send(.close, payload))
            }
        }
        closeIfDue()
        for piece in pieces {
            var rest = piece
            if let closeAt, closeAt > fed, closeAt < fed + piece.count {
                let cut = piece.startIndex + (closeAt - fed)
                events += connection.receive(Array(piece[..<cut]))
                fed = closeAt
                closeIfDue()
                rest = piece[cut...]
            }
            events += connection.receive(Array(rest))
            fed += rest.count
            if !rest.isEmpty { closeIfDue() }
        }
        if let info = connection.transportClosed() { events.append(.closed(info)) }
        return events
    }

    static func checkEvents(_ events: [WSEvent], role: WSConnection.Role) throws(FuzzFinding) {
        let target = "ws-connection"
        var closed = false
        var sentClose = false
        for event in events {
            try require(!closed, target, "\(role): \(event) after the connection closed")
            switch event {
            case .message(let payload, let isText):
                try require(!sentClose, target, "\(role): a message delivered after our close")
                try require(
                    payload.count <= maxMessageBytes, target,
                    "\(role): a \(payload.count)-byte message passed the limit")
                try require(
                    !isText || payload.withUnsafeBytes { UTF8Validation.isValid($0) }, target,
                    "\(role): a text message is not UTF-8")
            case .pong(let payload):
                try require(payload.count <= 125, target, "\(role): a \(payload.count)-byte pong")
            case .send(let opcode, let payload):
                try require(payload.count <= 125, target, "\(role): we would send a \(payload.count)-byte \(opcode)")
                try require(opcode == .pong || opcode == .close, target, "\(role): we would send \(opcode) unasked")
                try require(!sentClose, target, "\(role): we would send a frame after our close")
                if opcode == .close {
                    sentClose = true
                    try require(
                        payload.count != 1, target, "\(role): we would send a close with a 1-byte payload")
                }
            case .closed(let info):
                closed = true
                try require(
                    info.code == WSCloseCode.noStatusReceived || info.code == WSCloseCode.abnormalClosure
                        || WSCloseCode.isValidOnWire(info.code), target, "\(role): closed with code \(info.code)")
            }
        }
        try require(closed, target, "\(role): the transport ended but no close was reported")
    }

    // MARK: - ws-handshake

    static func checkHandshake(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "ws-handshake"
        let limits = HTTPLimits(maxHeaderBytes: 4096, maxHeaderCount: 32, maxBodyBytes: 1024)
        var requests = HTTPParser(role: .request, limits: limits)
        requests.feed(input)
        if case .success(let message?) = Result(catching: { try requests.nextMessage() }),
            case .request(let request) = message
        {
            switch WSHandshake.serverResponse(to: request) {
            case .success(let response):
                let key = request.head.headers["Sec-WebSocket-Key"] ?? ""
                try require(response.head.status == 101, target, "an upgrade answered \(response.head.status)")
                try require(
                    response.head.headers["Sec-WebSocket-Accept"] == WSHandshake.acceptValue(forKey: key), target,
                    "the accept value does not match key \(key)")
                // Our own client must accept what our server answered.
                let validated = Result { () throws(WSHandshakeError) in
                    try WSHandshake.validate(response: response, expectedAccept: WSHandshake.acceptValue(forKey: key))
                }
                if case .failure(let error) = validated {
                    throw FuzzFinding(target: target, "our client refused our server's answer: \(error)")
                }
            case .failure(let error):
                try require(
                    (400...499).contains(error.status ?? 0), target,
                    "a refused upgrade has status \(String(describing: error.status))")
            }
        }
        // The same bytes as a server's answer to the key "dGhlIHNhbXBsZSBub25jZQ==" (RFC 6455 §1.3).
        var responses = HTTPParser(role: .response, limits: limits)
        responses.feed(input)
        let accept = WSHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==")
        try require(accept == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=", target, "RFC 6455 §1.3 accept value is \(accept)")
        guard case .success(let message?) = Result(catching: { try responses.nextMessage() }),
            case .response(let response) = message
        else { return }
        switch Result(catching: { () throws(WSHandshakeError) in
            try WSHandshake.validate(response: response, expectedAccept: accept)
        }) {
        case .success:
            try require(response.head.status == 101, target, "validated a \(response.head.status) answer")
            try require(
                response.head.headers["Sec-WebSocket-Accept"] == accept, target, "validated a wrong accept value")
        case .failure(let error):
            try require(
                error.status == nil || error.status == response.head.status, target,
                "a refusal reports status \(String(describing: error.status)) for \(response.head.status)")
        }
    }
}
