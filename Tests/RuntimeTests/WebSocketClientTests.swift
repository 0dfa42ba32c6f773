import Runtime
import TestSupport
import Testing
import WebSocketProtocol

/// Starts the independent Python `websockets` server and returns it with its base URL.
func startPythonWebSocketServer() async throws -> (ExternalProcess, String) {
    let server = try ExternalProcess(TestEnvironment.python, [TestEnvironment.peerScript("ws_server.py")])
    let line = try await server.waitForLine(prefix: "LISTENING ")
    return (server, "ws://127.0.0.1:\(line.dropFirst("LISTENING ".count))")
}

/// Collects events until `.closed` (or `limit` events).
func collect(_ client: WebSocketClient, limit: Int = 100_000) async -> [WebSocketClient.Event] {
    var events: [WebSocketClient.Event] = []
    for await event in client.events {
        events.append(event)
        if case .closed = event { break }
        if events.count >= limit { break }
    }
    return events
}

@Suite struct WebSocketClientTests {
    @Test func textAndBinaryEchoThroughAnIndependentServer() async throws {
        let (server, base) = try await startPythonWebSocketServer()
        defer { server.stop() }
        try await withEventLoop { loop in
            let client = try await WebSocketClient.connect(to: base + "/echo", loop: loop)
            client.send(text: "hello κόσμε")
            client.send(binary: [0, 1, 2, 255])
            let big = String(repeating: "x", count: 70_000)  // 64-bit length on the wire
            client.send(text: big)
            var events: [WebSocketClient.Event] = []
            for await event in client.events {
                events.append(event)
                if events.count == 3 { break }
            }
            #expect(events == [.text("hello κόσμε"), .binary([0, 1, 2, 255]), .text(big)])
            client.close()
            let rest = await collect(client)
            #expect(rest.last == .closed(WSCloseInfo(kind: .closedByUs, code: 1000, reason: ""), error: nil))
        }
    }

    @Test func fragmentedMessagesArriveWhole() async throws {
        let (server, base) = try await startPythonWebSocketServer()
        defer { server.stop() }
        try await withEventLoop { loop in
            let client = try await WebSocketClient.connect(to: base + "/fragmented", loop: loop)
            var events: [WebSocketClient.Event] = []
            for await event in client.events {
                events.append(event)
                if events.count == 2 { break }
            }
            #expect(events == [.text("Hello, world"), .binary([0, 1, 2, 3])])
            client.close()
        }
    }

    @Test func serverPingIsAnswered() async throws {
        let (server, base) = try await startPythonWebSocketServer()
        defer { server.stop() }
        try await withEventLoop { loop in
            let client = try await WebSocketClient.connect(to: base + "/ping", loop: loop)
            let first = await client.events.next()
            #expect(first == .text("pong-received"))
            client.close()
        }
    }

    @Test func serverInitiatedCloseReportsCodeAndReason() async throws {
        let (server, base) = try await startPythonWebSocketServer()
        defer { server.stop() }
        try await withEventLoop { loop in
            let client = try await WebSocketClient.connect(to: base + "/close", loop: loop)
            let events = await collect(client)
            #expect(events == [.closed(WSCloseInfo(kind: .peerClosed, code: 4001, reason: "bye"), error: nil)])
        }
    }

    @Test func abruptResetEndsWith1006AndAnError() async throws {
        let (server, base) = try await startPythonWebSocketServer()
        defer { server.stop() }
        try await withEventLoop { loop in
            let client = try await WebSocketClient.connect(to: base + "/reset", loop: loop)
            let events = await collect(client)
            #expect(events.first == .text("before-reset"))
            guard case .closed(let info, let error)? = events.last else {
                Issue.record("no close event: \(events)")
                return
            }
            #expect(info.code == 1006)
            #expect(error != nil)
        }
    }

    @Test func oversizeMessageIsRefusedWith1009() async throws {
        let (server, base) = try await startPythonWebSocketServer()
        defer { server.stop() }
        try await withEventLoop { loop in
            let configuration = WebSocketConfiguration(
                connection: .init(role: .client, maxFrameBytes: 1 << 20, maxMessageBytes: 1 << 20))
            let client = try await WebSocketClient.connect(
                to: base + "/big?size=2097152", configuration: configuration, loop: loop)
            let events = await collect(client)
            guard case .closed(let info, _)? = events.last else {
                Issue.record("no close event")
                return
            }
            #expect(info.kind == .protocolError && info.code == 1009)
            #expect(events.count == 1)  // nothing delivered
        }
    }

    @Test func tenThousandMessagesInARowArriveInOrder() async throws {
        let (server, base) = try await startPythonWebSocketServer()
        defer { server.stop() }
        try await withEventLoop { loop in
            // A small queue forces the back-pressure path (pause/resume reading) many times.
            let client = try await WebSocketClient.connect(to: base + "/burst?n=10000", loop: loop, queueHighWater: 64)
            let events = await collect(client)
            let texts = events.compactMap { event -> String? in
                if case .text(let t) = event { return t }
                return nil
            }
            #expect(texts.count == 10_000)
            #expect(texts == (0..<10_000).map { "msg-\($0)" })
            #expect(events.last == .closed(WSCloseInfo(kind: .peerClosed, code: 1000, reason: "done"), error: nil))
        }
    }

    @Test func handshakeWithANonWebSocketServerFailsClearly() async throws {
        try await withEventLoop { loop in
            let server = try await HTTPServer.start(
                configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), loop: loop
            ) { _ in HTTP1ProtocolResponse.notFound }
            await #expect {
                _ = try await WebSocketClient.connect(to: "ws://127.0.0.1:\(server.port)/", loop: loop)
            } throws: { error in
                "\(error)".contains("expected 101 Switching Protocols, got 404")
            }
            await server.shutdown()
        }
    }

    @Test func badURLsAreRejected() {
        #expect(WebSocketURL("http://x/") == nil)
        #expect(WebSocketURL("ws://") == nil)
        #expect(WebSocketURL("ws://host:99999/") == nil)
        let url = WebSocketURL("wss://ws.okx.com/ws/v5/business?x=1")
        #expect(url?.port == 443 && url?.target == "/ws/v5/business?x=1" && url?.isSecure == true)
        #expect(WebSocketURL("ws://[::1]:8080")?.host == "::1")
    }
}
