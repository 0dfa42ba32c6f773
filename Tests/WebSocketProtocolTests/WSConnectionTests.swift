import HTTP1Protocol
import TestSupport
import Testing
import WebSocketProtocol

/// Feeds `pieces` into a fresh machine and returns every event.
func run(
    _ pieces: [[UInt8]], role: WSConnection.Role = .client, maxFrame: Int = 1 << 20, maxMessage: Int = 1 << 20
)
    -> [WSEvent]
{
    var connection = WSConnection(
        configuration: .init(role: role, maxFrameBytes: maxFrame, maxMessageBytes: maxMessage))
    return pieces.flatMap { connection.receive($0) }
}

func text(_ s: String) -> WSEvent { .message(Array(s.utf8), isText: true) }

func protocolClose(_ code: UInt16) -> (WSEvent) -> Bool {
    { event in
        if case .closed(let info) = event { return info.kind == .protocolError && info.code == code }
        return false
    }
}

@Suite struct RFC6455ExampleTests {
    // RFC 6455 §5.7 example frames.
    static let unmaskedHello: [UInt8] = [0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    static let maskedHello: [UInt8] = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
    static let fragmentedHello: [UInt8] = [0x01, 0x03, 0x48, 0x65, 0x6c, 0x80, 0x02, 0x6c, 0x6f]
    static let unmaskedPing: [UInt8] = [0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f]
    static let maskedPong: [UInt8] = [0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]

    @Test func clientDecodesUnmaskedTextForEveryChunking() {
        for pieces in DecoderVerifier.chunkings(of: Self.unmaskedHello) {
            #expect(run(pieces) == [text("Hello")])
        }
    }

    @Test func serverDecodesMaskedText() {
        for pieces in DecoderVerifier.chunkings(of: Self.maskedHello) {
            #expect(run(pieces, role: .server) == [text("Hello")])
        }
    }

    @Test func fragmentedMessageIsReassembled() {
        for pieces in DecoderVerifier.chunkings(of: Self.fragmentedHello) {
            #expect(run(pieces) == [text("Hello")])
        }
    }

    @Test func pingIsAnsweredWithPongCarryingItsPayload() {
        #expect(run([Self.unmaskedPing]) == [.send(.pong, Array("Hello".utf8))])
    }

    @Test func encoderReproducesTheRFCBytes() {
        #expect(WSFrameEncoder.encode(opcode: .text, payload: Array("Hello".utf8), maskKey: nil) == Self.unmaskedHello)
        #expect(
            WSFrameEncoder.encode(opcode: .text, payload: Array("Hello".utf8), maskKey: 0x37fa_213d)
                == Self.maskedHello)
        #expect(
            WSFrameEncoder.encode(opcode: .pong, payload: Array("Hello".utf8), maskKey: 0x37fa_213d) == Self.maskedPong)
        #expect(
            WSFrameEncoder.encode(opcode: .text, payload: Array("Hel".utf8), isFinal: false, maskKey: nil)
                == Array(Self.fragmentedHello[0..<5]))
    }

    @Test(arguments: [256, 65536])
    func extendedLengthsRoundTrip(size: Int) {
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0) }
        let frame = WSFrameEncoder.encode(opcode: .binary, payload: payload, maskKey: nil)
        if size == 256 { #expect(Array(frame[0..<4]) == [0x82, 0x7E, 0x01, 0x00]) }
        if size == 65536 { #expect(Array(frame[0..<10]) == [0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0]) }
        for pieces in DecoderVerifier.chunkings(of: frame, seeds: [9]) where pieces.count < 1000 || size == 256 {
            #expect(run(pieces) == [.message(payload, isText: false)])
        }
        let masked = WSFrameEncoder.encode(opcode: .binary, payload: payload, maskKey: 0xDEAD_BEEF)
        #expect(run([masked], role: .server) == [.message(payload, isText: false)])
    }

    @Test func handshakeAcceptMatchesRFCExample() {
        // RFC 6455 §1.3.
        #expect(WSHandshake.acceptValue(forKey: "dGhlIHNhbXBsZSBub25jZQ==") == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=")
    }
}

@Suite struct WSProtocolViolationTests {
    @Test(
        arguments: [
            ([0x83, 0x00], WSCloseCode.protocolError),  // reserved opcode 3
            ([0x8B, 0x00], WSCloseCode.protocolError),  // reserved control opcode 0xB
            ([0xC1, 0x00], WSCloseCode.protocolError),  // RSV1 set
            ([0x81, 0x81, 1, 2, 3, 4, 0x41], WSCloseCode.protocolError),  // masked frame from a server
            ([0x09, 0x00], WSCloseCode.protocolError),  // fragmented ping
            ([0x80, 0x00], WSCloseCode.protocolError),  // continuation with nothing to continue
            ([0x01, 0x01, 0x41, 0x81, 0x00], WSCloseCode.protocolError),  // new text inside a fragmented one
            ([0x88, 0x01, 0x03], WSCloseCode.protocolError),  // close with a 1-byte payload
            ([0x88, 0x02, 0x03, 0xED], WSCloseCode.protocolError),  // close code 1005 on the wire
            ([0x88, 0x02, 0x00, 0x10], WSCloseCode.protocolError),  // close code 16
            ([0x81, 0x02, 0xC0, 0xAF], WSCloseCode.invalidPayload),  // overlong UTF-8 in text
            ([0x01, 0x01, 0xCE, 0x80, 0x00], WSCloseCode.invalidPayload),  // text ends mid code point
            ([0x88, 0x04, 0x03, 0xE8, 0xFF, 0xFE], WSCloseCode.invalidPayload),  // invalid UTF-8 close reason
            ([0x81, 0x7E, 0x00, 0x05, 0, 0, 0, 0, 0], WSCloseCode.protocolError),  // non-minimal 16-bit length
        ] as [([UInt8], UInt16)])
    func violationClosesWithCode(bytes: [UInt8], code: UInt16) {
        for pieces in DecoderVerifier.chunkings(of: bytes, seeds: [1]) {
            let events = run(pieces)
            #expect(events.contains(where: protocolClose(code)), "\(bytes) gave \(events)")
            // A close frame with the same code is sent first.
            guard case .send(.close, let payload)? = events.first(where: { if case .send = $0 { true } else { false } })
            else {
                Issue.record("no close frame sent for \(bytes)")
                continue
            }
            #expect(payload.count >= 2 && UInt16(payload[0]) << 8 | UInt16(payload[1]) == code)
        }
    }

    @Test func controlFrameLongerThan125BytesIsAProtocolError() {
        let frame: [UInt8] = [0x89, 0x7E, 0x00, 0x7E] + [UInt8](repeating: 0, count: 126)
        #expect(run([frame]).contains(where: protocolClose(WSCloseCode.protocolError)))
    }

    @Test func oversizeFrameIsRejectedFromItsHeaderBeforeThePayloadArrives() {
        // Only the header is fed: the limit check must not wait for the payload.
        let header: [UInt8] = [0x82, 0x7F, 0, 0, 0, 0, 0, 0x10, 0, 0]
        let events = run([header], maxFrame: 1024)
        #expect(events.contains(where: protocolClose(WSCloseCode.messageTooBig)))
    }

    @Test func oversizeReassembledMessageIs1009() {
        let part = [UInt8](repeating: 0x41, count: 100)
        let frames =
            WSFrameEncoder.encode(opcode: .text, payload: part, isFinal: false, maskKey: nil)
            + WSFrameEncoder.encode(opcode: .continuation, payload: part, isFinal: true, maskKey: nil)
        #expect(run([frames], maxMessage: 150).contains(where: protocolClose(WSCloseCode.messageTooBig)))
    }

    @Test func unmaskedFrameFromAClientIsAProtocolErrorOnTheServer() {
        #expect(run([[0x81, 0x00]], role: .server).contains(where: protocolClose(WSCloseCode.protocolError)))
    }

    @Test func nothingIsDeliveredAfterAViolation() {
        let events = run([[0xC1, 0x00] + RFC6455ExampleTests.unmaskedHello])
        #expect(!events.contains(text("Hello")))
    }
}

@Suite struct WSCloseHandshakeTests {
    @Test func peerCloseIsEchoedAndReported() {
        let events = run([
            WSFrameEncoder.encode(opcode: .close, payload: [0x03, 0xE8] + Array("bye".utf8), maskKey: nil)
        ])
        #expect(
            events == [
                .send(.close, [0x03, 0xE8]), .closed(WSCloseInfo(kind: .peerClosed, code: 1000, reason: "bye")),
            ])
    }

    @Test func ourCloseCompletesWhenThePeerAnswers() {
        var connection = WSConnection(configuration: .init(role: .client))
        let payload = connection.initiateClose(code: 1000, reason: "done")
        #expect(payload == [0x03, 0xE8] + Array("done".utf8))
        #expect(connection.initiateClose(code: 1000, reason: "again") == nil)
        // Data after our close is not delivered; the peer's close completes the handshake.
        let events = connection.receive(
            RFC6455ExampleTests.unmaskedHello
                + WSFrameEncoder.encode(opcode: .close, payload: [0x03, 0xE8], maskKey: nil))
        #expect(events == [.closed(WSCloseInfo(kind: .closedByUs, code: 1000, reason: ""))])
        #expect(connection.state == .closed)
    }

    @Test func emptyCloseReportsNoStatus() {
        let events = run([[0x88, 0x00]])
        #expect(events == [.send(.close, []), .closed(WSCloseInfo(kind: .peerClosed, code: 1005, reason: ""))])
    }

    @Test func transportLossReports1006Once() {
        var connection = WSConnection(configuration: .init(role: .client))
        #expect(connection.transportClosed()?.code == 1006)
        #expect(connection.transportClosed() == nil)
    }

    @Test func closePayloadReasonIsCutOnACharacterBoundary() {
        let payload = WSFrameEncoder.closePayload(code: 1000, reason: String(repeating: "é", count: 100))
        #expect(payload.count <= 125)
        #expect(String(validating: payload[2...], as: UTF8.self) != nil)
    }
}

@Suite struct WSHandshakeTests {
    @Test func clientRequestAndServerResponseAgree() throws {
        let (request, accept) = WSHandshake.makeRequest(
            host: "ws.okx.com", path: "/ws/v5/business", nonce: Array(0..<16), extraHeaders: ["Origin": "x"])
        #expect(request.head.headers["Sec-WebSocket-Key"] == "AAECAwQFBgcICQoLDA0ODw==")
        #expect(request.head.headers["Origin"] == "x")
        let response = try WSHandshake.serverResponse(to: request).get()
        try WSHandshake.validate(response: response, expectedAccept: accept)
    }

    @Test func wrongAcceptOrStatusFailsWithReason() {
        var response = HTTPResponse(
            head: HTTPResponseHead(
                status: 101, headers: ["Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": "nope"])
        )
        #expect(throws: WSHandshakeError("Sec-WebSocket-Accept does not match the key")) {
            try WSHandshake.validate(response: response, expectedAccept: "right")
        }
        response.head.status = 403
        response.head.reason = "Forbidden"
        #expect(throws: WSHandshakeError("expected 101 Switching Protocols, got 403 Forbidden", status: 403)) {
            try WSHandshake.validate(response: response, expectedAccept: "right")
        }
    }

    @Test func serverRejectsRequestsThatAreNotUpgrades() {
        let request = HTTPRequest(head: HTTPRequestHead(method: "GET", target: "/", headers: ["Host": "h"]))
        guard case .failure(let error) = WSHandshake.serverResponse(to: request) else {
            Issue.record("accepted a plain GET")
            return
        }
        #expect(error.status == 426)
    }
}
