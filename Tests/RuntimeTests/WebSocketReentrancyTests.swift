import HTTP1Protocol
import Locking
import Testing
import WebSocketProtocol

@testable import Runtime

/// A handler's write that finds the socket gone closes the transport inside the delivery of a
/// message. Reporting that close re-entered the connection machine while it was still in `receive`
/// (an exclusivity violation: the process trapped). Found by the AddressSanitizer run (issue 13);
/// a fake transport makes the failing write deterministic.
@Suite struct WebSocketReentrancyTests {
    /// A transport whose every write fails the way `TCPConnection.send` does on a reset socket: it
    /// closes and tells its handler at once, inside the write.
    final class FailingTransport: Transport {
        let loop: EventLoop
        weak var handler: (any TransportHandler)?
        var isOpen = true
        var writes = 0
        var failWrites = false
        init(loop: EventLoop) { self.loop = loop }
        var isWritable: Bool { isOpen }
        func write(_ bytes: UnsafeRawBufferPointer) {
            writes += 1
            guard failWrites, isOpen else { return }
            isOpen = false
            handler?.transportDidClose(error: SystemError(errno: 104, operation: "send"))
        }
        func close() { isOpen = false }
        func abort(error: (any Error)?) { isOpen = false }
        func pauseReading() {}
        func resumeReading() {}
    }

    /// Echoes every message; records the close.
    final class EchoHandler: WebSocketServerHandler {
        var closes: [WSCloseInfo] = []
        var messages = 0
        func webSocketDidConnect(_ connection: WebSocketServerConnection, request: HTTPRequest) {}
        func webSocket(
            _ connection: WebSocketServerConnection, didReceive payload: UnsafeRawBufferPointer, isText: Bool
        ) {
            messages += 1
            connection.send(text: "echo")
        }
        func webSocketDidClose(_ connection: WebSocketServerConnection, info: WSCloseInfo) { closes.append(info) }
    }

    @Test func aWriteThatClosesTheTransportDuringDeliveryIsReportedOnceAfterIt() async throws {
        try await withEventLoop { loop in
            let outcome = await onLoop(loop) { () -> String in
                let transport = FailingTransport(loop: loop)
                let handler = EchoHandler()
                let connection = WebSocketServerConnection(transport: transport, handler: handler) { _ in }
                transport.handler = connection
                let upgrade =
                    "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    + "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
                Array(upgrade.utf8).withUnsafeBytes { connection.transportDidReceive($0) }
                transport.failWrites = true
                // Two masked "Hello" frames in one read: the first one's echo fails the socket.
                let frame: [UInt8] = [0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58]
                (frame + frame).withUnsafeBytes { connection.transportDidReceive($0) }
                return "messages \(handler.messages) closes \(handler.closes.map(\.code)) open \(connection.isOpen)"
            }
            // Both messages arrived before the failure was known, so both are delivered (the second
            // one's echo is not attempted: the connection already reads as closed); the close is
            // reported once, after the read, as the abnormal closure it is.
            #expect(outcome == "messages 2 closes [1006] open false")
        }
    }
}
