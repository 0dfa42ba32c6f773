import Locking
import Runtime
import Synchronization
import TestSupport
import Testing
import WebSocketProtocol

/// Records what a channel delivers (loop-confined, read through the mutex from the test).
final class RecordingHandler: WebSocketHandler, Sendable {
    let state = Locked<(connected: Bool, messages: Int, closed: Bool)>((false, 0, false))
    func webSocketDidConnect(_ channel: WebSocketChannel) { state.withLock { $0.connected = true } }
    func webSocket(_ channel: WebSocketChannel, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {
        state.withLock { $0.messages += 1 }
    }
    func webSocketDidClose(_ channel: WebSocketChannel, info: WSCloseInfo, error: (any Error)?) {
        state.withLock { $0.closed = true }
    }
}

/// Polls `condition` (state owned by the loop) until it holds, failing after `timeout`.
func waitFor(
    _ what: String, timeout: Duration = .seconds(10), sourceLocation: SourceLocation = #_sourceLocation,
    _ condition: () -> Bool
) async throws {
    let clock = ContinuousClock()
    let deadline = clock.now.advanced(by: timeout)
    while !condition() {
        guard clock.now < deadline else {
            Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
            return
        }
        try await Task.sleep(for: .milliseconds(10))
    }
}

@Suite struct BackPressureTests {
    @Test func aFullQueueRefusesInsteadOfGrowingAndAsksForMoreAtLowWater() async {
        let queue = AsyncQueue<Int>(capacity: 3, lowWater: 1)
        let demanded = Atomic<Int>(0)
        queue.setOnDemand { demanded.add(1, ordering: .relaxed) }
        #expect(queue.push(1) && queue.push(2) && queue.push(3))
        #expect(!queue.push(4))  // refused: the producer keeps it
        #expect(queue.count == 3)
        #expect(await queue.next() == 1)
        #expect(demanded.load(ordering: .relaxed) == 0)  // 2 left: above low water
        #expect(await queue.next() == 2)
        #expect(demanded.load(ordering: .relaxed) == 1)  // at low water: the producer may resume
        #expect(queue.push(4))
        #expect(await queue.next() == 3)
        #expect(await queue.next() == 4)
    }

    @Test func aPauseAskedWhileConnectingHoldsOnceTheConnectionIsOpen() async throws {
        let (server, base) = try await startPythonWebSocketServer()
        defer { server.stop() }
        try await withEventLoop { loop in
            let handler = RecordingHandler()
            let url = try #require(WebSocketURL(base + "/burst?n=2000"))
            let channel: LoopBound<WebSocketChannel> = await withCheckedContinuation { continuation in
                loop.execute {
                    let channel = WebSocketChannel.connect(
                        to: url, configuration: WebSocketConfiguration(), loop: loop, handler: handler)
                    channel.pauseReading()  // still connecting: no transport yet
                    continuation.resume(returning: LoopBound(channel, loop: loop))
                }
            }
            try await waitFor("the handshake") { handler.state.withLock { $0.connected } }
            // The server sends 2,000 messages at once; paused, we read at most what came with the handshake.
            try await Task.sleep(for: .milliseconds(300))  // giving the server time to send, not a correctness margin
            let whilePaused = handler.state.withLock { $0.messages }
            #expect(whilePaused < 2000, "a pause asked while connecting was lost: \(whilePaused) messages read")
            loop.execute { channel.value.resumeReading() }
            try await waitFor("every message after resuming") {
                handler.state.withLock { $0.messages == 2000 && $0.closed }
            }
        }
    }
}
