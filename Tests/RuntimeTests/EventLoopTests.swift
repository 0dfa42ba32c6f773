import Locking
import Synchronization
import Testing

@testable import Runtime

/// Runs `body` with a fresh event loop and shuts it down afterwards.
func withEventLoop<R>(_ body: (EventLoop) async throws -> R) async throws -> R {
    let loop = try EventLoop.start(name: "test-loop")
    do {
        let result = try await body(loop)
        await loop.shutdown()
        return result
    } catch {
        await loop.shutdown()
        throw error
    }
}

/// Runs `work` on the loop and returns its result.
func onLoop<R: Sendable>(_ loop: EventLoop, _ work: @escaping @Sendable () -> R) async -> R {
    await withCheckedContinuation { continuation in loop.execute { continuation.resume(returning: work()) } }
}

@Suite struct EventLoopTests {
    @Test func executeRunsWorkOnTheLoopThread() async throws {
        try await withEventLoop { loop in
            #expect(!loop.inEventLoop)
            let inLoop = await onLoop(loop) { loop.inEventLoop }
            #expect(inLoop)
        }
    }

    @Test func timersFireInDeadlineOrderAndCancelledOnesNever() async throws {
        try await withEventLoop { loop in
            let fired: [String] = await withCheckedContinuation { continuation in
                loop.execute {
                    var order: [String] = []
                    loop.scheduleTimer(after: .milliseconds(30)) { order.append("30ms") }
                    let cancelled = loop.scheduleTimer(after: .milliseconds(20)) { order.append("cancelled") }
                    loop.scheduleTimer(after: .milliseconds(10)) { order.append("10ms") }
                    loop.scheduleTimer(after: .milliseconds(60)) { continuation.resume(returning: order) }
                    loop.cancelTimer(cancelled)
                }
            }
            #expect(fired == ["10ms", "30ms"])
        }
    }

    @Test func workPostedFromManyThreadsAllRuns() async throws {
        try await withEventLoop { loop in
            let counter = Counter()
            await withTaskGroup(of: Void.self) { group in
                for _ in 0..<8 {
                    group.addTask { for _ in 0..<1000 { loop.execute { counter.increment() } } }
                }
            }
            let total = await onLoop(loop) { counter.value }
            #expect(total == 8000)
        }
    }
}

final class Counter: Sendable {
    private let storage = Locked(0)
    func increment() { storage.withLock { $0 += 1 } }
    var value: Int { storage.withLock { $0 } }
}

/// Collects bytes and the close of a transport. Loop-confined.
final class CollectingHandler: TransportHandler {
    var received: [UInt8] = []
    var closeError: (any Error)?
    var isClosed = false
    var onReceive: ((CollectingHandler) -> Void)?
    var onClose: ((CollectingHandler) -> Void)?
    func transportDidReceive(_ bytes: UnsafeRawBufferPointer) {
        received.append(contentsOf: bytes)
        onReceive?(self)
    }
    func transportDidClose(error: (any Error)?) {
        isClosed = true
        closeError = error
        onClose?(self)
    }
}

@Suite struct TCPTests {
    @Test func largeTransferArrivesIntactThroughBackPressure() async throws {
        let size = 8 << 20
        let payload = (0..<size).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let received: [UInt8] = try await withEventLoop { loop in
            await withCheckedContinuation { continuation in
                loop.execute {
                    var server: TCPListener?
                    let sink = CollectingHandler()
                    sink.onClose = { continuation.resume(returning: $0.received) }
                    // try!: binding port 0 on loopback cannot clash with another listener.
                    server = try! TCPListener(host: "127.0.0.1", port: 0, loop: loop) { tcp in tcp.setHandler(sink) }
                    let endpoint = Endpoint(host: "127.0.0.1", port: server!.port)
                    Connector.connect(to: endpoint, loop: loop, timeout: .seconds(5)) { result in
                        guard case .success(let transport) = result else { fatalError("connect failed: \(result)") }
                        transport.write(payload)
                        #expect(!transport.isWritable)  // 8 MiB cannot all fit the socket buffers at once
                        transport.close()  // closes once the queue has drained
                        server?.close()
                    }
                }
            }
        }
        #expect(received.count == size)
        #expect(received == payload)
    }

    @Test func connectToAClosedPortFailsWithConnectionRefused() async throws {
        let message: String = try await withEventLoop { loop in
            await withCheckedContinuation { continuation in
                loop.execute {
                    // Bind then close a listener to find a port nobody listens on.
                    // try!: port 0 is always bindable.
                    let listener = try! TCPListener(host: "127.0.0.1", port: 0, loop: loop) { _ in }
                    let port = listener.port
                    listener.close()
                    Connector.connect(to: Endpoint(host: "127.0.0.1", port: port), loop: loop, timeout: .seconds(5)) {
                        result in
                        switch result {
                        case .success: continuation.resume(returning: "connected")
                        case .failure(let error): continuation.resume(returning: "\(error)")
                        }
                    }
                }
            }
        }
        #expect(message.contains("Connection refused"))
    }

    @Test func unknownHostFailsInTheResolver() async throws {
        await #expect(throws: ResolverError.self) {
            _ = try await Resolver.resolve(host: "no-such-host.invalid", port: 80)
        }
        let local = try await Resolver.resolve(host: "localhost", port: 80)
        #expect(local.contains { $0.host == "127.0.0.1" || $0.host == "::1" })
    }
}
