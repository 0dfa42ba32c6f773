public import WebSocketProtocol

/// An async WebSocket client over a `WebSocketChannel` (for tests, tools and low-rate users;
/// the exchange layer uses `WebSocketChannel` with its own handler to parse without copying).
///
/// Messages arrive in order on `events`; when the consumer lags, the socket stops being read
/// (back-pressure reaches the server through TCP) rather than dropping anything.
public final class WebSocketClient: Sendable {
    /// What a client receives.
    public enum Event: Sendable, Equatable {
        case text(String)
        case binary([UInt8])
        /// The connection ended (always the last event); `error` describes a failure.
        case closed(WSCloseInfo, error: String?)
    }

    /// Received messages, then one `.closed`.
    public let events: AsyncQueue<Event>
    private let channel: LoopBound<WebSocketChannel>

    private init(channel: LoopBound<WebSocketChannel>, events: AsyncQueue<Event>) {
        self.channel = channel
        self.events = events
    }

    /// Connects and completes the opening handshake, or throws why it could not.
    public static func connect(
        to url: String, configuration: WebSocketConfiguration = WebSocketConfiguration(), loop: EventLoop,
        queueHighWater: Int = 4096
    ) async throws -> WebSocketClient {
        guard let parsed = WebSocketURL(url) else { throw TransportError("not a ws:// or wss:// URL: \(url)") }
        let events = AsyncQueue<Event>(capacity: queueHighWater, lowWater: queueHighWater / 4)
        let result: Result<LoopBound<WebSocketChannel>, any Error> = await withCheckedContinuation { continuation in
            loop.execute {
                let adapter = QueueAdapter(events: events, continuation: continuation)
                let channel = WebSocketChannel.connect(
                    to: parsed, configuration: configuration, loop: loop, handler: adapter)
                let bound = LoopBound(channel, loop: loop)
                let boundAdapter = LoopBound(adapter, loop: loop)
                events.setOnDemand { loop.execute { boundAdapter.value.demand(bound.value) } }
            }
        }
        return WebSocketClient(channel: try result.get(), events: events)
    }

    /// Sends a text message.
    public func send(text: String) {
        let channel = self.channel
        channel.loop.execute { channel.value.send(text: text) }
    }

    /// Sends a binary message.
    public func send(binary: [UInt8]) {
        let channel = self.channel
        channel.loop.execute { channel.value.send(binary: binary) }
    }

    /// Sends a ping.
    public func sendPing(_ payload: [UInt8] = []) {
        let channel = self.channel
        channel.loop.execute { channel.value.sendPing(payload) }
    }

    /// Starts the closing handshake; `events` ends with `.closed` when it completes.
    public func close(code: UInt16 = WSCloseCode.normal, reason: String = "") {
        let channel = self.channel
        channel.loop.execute { channel.value.close(code: code, reason: reason) }
    }
}

/// Bridges channel callbacks into an `AsyncQueue`. Loop-confined.
private final class QueueAdapter: WebSocketHandler {
    let events: AsyncQueue<WebSocketClient.Event>
    var continuation: CheckedContinuation<Result<LoopBound<WebSocketChannel>, any Error>, Never>?

    init(
        events: AsyncQueue<WebSocketClient.Event>,
        continuation: CheckedContinuation<Result<LoopBound<WebSocketChannel>, any Error>, Never>
    ) {
        self.events = events
        self.continuation = continuation
    }

    func webSocketDidConnect(_ channel: WebSocketChannel) {
        continuation?.resume(returning: .success(LoopBound(channel, loop: channel.loop)))
        continuation = nil
    }

    /// Events the full queue refused, in order (bounded by what one socket read delivers: reading
    /// pauses on the first refusal).
    private var held: [WebSocketClient.Event] = []
    private var finishAfterHeld = false

    func webSocket(_ channel: WebSocketChannel, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {
        let event: WebSocketClient.Event =
            isText ? .text(String(decoding: payload, as: UTF8.self)) : .binary(Array(payload))
        if held.isEmpty && events.push(event) { return }
        held.append(event)
        channel.pauseReading()
    }

    /// The consumer caught up: hand over held events, then read again.
    func demand(_ channel: WebSocketChannel) {
        while let first = held.first {
            guard events.push(first) else { return }
            held.removeFirst()
        }
        if finishAfterHeld {
            events.finish()
        } else {
            channel.resumeReading()
        }
    }

    func webSocketDidClose(_ channel: WebSocketChannel, info: WSCloseInfo, error: (any Error)?) {
        if let continuation {
            continuation.resume(returning: .failure(error ?? TransportError("closed during the handshake: \(info)")))
            self.continuation = nil
        }
        let closed = WebSocketClient.Event.closed(info, error: error.map { "\($0)" })
        if held.isEmpty && events.push(closed) {
            events.finish()
        } else {
            held.append(closed)
            finishAfterHeld = true
        }
    }
}
