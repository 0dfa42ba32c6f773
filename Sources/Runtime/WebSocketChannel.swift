import CollectorCore
import Crypto
public import HTTP1Protocol
public import TLS
public import WebSocketProtocol

/// A parsed `ws://` or `wss://` URL.
public struct WebSocketURL: Sendable, Equatable, CustomStringConvertible {
    public var isSecure: Bool
    public var host: String
    public var port: Int
    /// Path and query, e.g. `/ws/v5/business`.
    public var target: String

    /// Parses `ws[s]://host[:port][/path][?query]`; nil for anything else.
    public init?(_ text: String) {
        let secure: Bool
        var rest: Substring
        if text.hasPrefix("wss://") {
            secure = true
            rest = text.dropFirst(6)
        } else if text.hasPrefix("ws://") {
            secure = false
            rest = text.dropFirst(5)
        } else {
            return nil
        }
        let slash = rest.firstIndex(where: { $0 == "/" || $0 == "?" }) ?? rest.endIndex
        let authority = rest[..<slash]
        var target = String(rest[slash...])
        if target.isEmpty || target.hasPrefix("?") { target = "/" + target }
        rest = authority
        guard !authority.isEmpty, !authority.contains("@") else { return nil }
        var host = String(authority)
        var port = secure ? 443 : 80
        if authority.hasPrefix("[") {
            guard let close = authority.firstIndex(of: "]") else { return nil }
            host = String(authority[authority.index(after: authority.startIndex)..<close])
            let after = authority[authority.index(after: close)...]
            if after.hasPrefix(":") {
                guard let p = Int(after.dropFirst()), (1...65535).contains(p) else { return nil }
                port = p
            } else if !after.isEmpty {
                return nil
            }
        } else if let colon = authority.lastIndex(of: ":") {
            host = String(authority[..<colon])
            guard let p = Int(authority[authority.index(after: colon)...]), (1...65535).contains(p) else { return nil }
            port = p
        }
        guard !host.isEmpty else { return nil }
        self.isSecure = secure
        self.host = host
        self.port = port
        self.target = target
    }

    /// The `Host` header value.
    public var hostHeader: String {
        let defaultPort = isSecure ? 443 : 80
        let h = host.contains(":") ? "[\(host)]" : host
        return port == defaultPort ? h : "\(h):\(port)"
    }

    public var description: String { "\(isSecure ? "wss" : "ws")://\(hostHeader)\(target)" }
}

/// How a WebSocket client behaves.
public struct WebSocketConfiguration: Sendable {
    /// Frame and message limits (client role).
    public var connection: WSConnection.Configuration
    /// Connect + TLS + upgrade must finish within this.
    public var connectTimeout: Duration
    /// Send our own ping after this much silence; nil disables it.
    public var pingInterval: Duration?
    /// With `pingInterval`: no byte at all for a further interval after our ping closes the connection.
    /// After we send close, the transport is dropped if the peer has not answered within this.
    public var closeTimeout: Duration
    /// TLS context for `wss` URLs (nil: a default client context with the system CA store).
    public var tls: TLSContext?
    /// Extra upgrade-request headers.
    public var headers: HTTPHeaders
    /// Largest handshake response head.
    public var maxHandshakeBytes: Int

    public init(
        connection: WSConnection.Configuration = .init(role: .client), connectTimeout: Duration = .seconds(10),
        pingInterval: Duration? = nil, closeTimeout: Duration = .seconds(5), tls: TLSContext? = nil,
        headers: HTTPHeaders = [:], maxHandshakeBytes: Int = 16 * 1024
    ) {
        self.connection = connection
        self.connectTimeout = connectTimeout
        self.pingInterval = pingInterval
        self.closeTimeout = closeTimeout
        self.tls = tls
        self.headers = headers
        self.maxHandshakeBytes = maxHandshakeBytes
    }
}

/// Receives a WebSocket channel's events on its loop.
public protocol WebSocketHandler: AnyObject {
    /// The handshake completed; sending is possible.
    func webSocketDidConnect(_ channel: WebSocketChannel)
    /// A complete message; the buffer is valid only during the call (zero-copy from the read buffer).
    func webSocket(_ channel: WebSocketChannel, didReceive payload: UnsafeRawBufferPointer, isText: Bool)
    /// The channel ended: `info` says how; `error` is set when it failed (connect, TLS, handshake, I/O).
    func webSocketDidClose(_ channel: WebSocketChannel, info: WSCloseInfo, error: (any Error)?)
    /// A ping (already answered) or a pong arrived: the peer is alive though it sent no message.
    func webSocketDidReceiveControlFrame(_ channel: WebSocketChannel)
}

extension WebSocketHandler {
    public func webSocketDidReceiveControlFrame(_ channel: WebSocketChannel) {}
}

/// A WebSocket client connection driven on an event loop. Loop-confined.
///
/// It never reconnects by itself: reconnect policy belongs to the exchange layer, which creates a
/// new channel. Masking keys are drawn per frame from `SecureRandom` (RFC 6455 §5.3).
public final class WebSocketChannel: TransportHandler {
    private enum Phase {
        case connecting
        case handshaking(HTTPParser, expectedAccept: String)
        case open
        case closed
    }

    public let loop: EventLoop
    public let url: WebSocketURL
    public let configuration: WebSocketConfiguration
    private var handler: (any WebSocketHandler)?
    private var transport: (any Transport)?
    private var phase: Phase = .connecting
    private var connection: WSConnection
    private var sink = Sink()
    private var connectTimer: TimerHandle?
    private var pingTimer: TimerHandle?
    private var closeTimer: TimerHandle?
    private var receivedSinceLastTick = false
    private var isPingOutstanding = false
    private var isDelivering = false
    /// The transport closed while `connection` was busy delivering (see `transportDidClose`).
    private var closedDuringDelivery: ClosedDuringDelivery?
    private struct ClosedDuringDelivery { var error: (any Error)? }
    /// Mirror of `connection.state`, readable while `connection` is busy in `receive` (exclusivity).
    private var machineState = WSConnection.State.open
    private var deferredClose: (code: UInt16, reason: String)?
    private var sendBuffer: [UInt8] = []
    /// Messages received (for metrics and benchmarks).
    public private(set) var messagesReceived = 0

    /// Whether messages can be sent now.
    public var isOpen: Bool {
        if case .open = phase { return machineState == .open }
        return false
    }

    /// Whether the transport can take more output without exceeding its high-water mark.
    public var isWritable: Bool { transport?.isWritable ?? false }

    private init(
        url: WebSocketURL, configuration: WebSocketConfiguration, loop: EventLoop, handler: any WebSocketHandler
    ) {
        self.url = url
        self.configuration = configuration
        self.loop = loop
        self.handler = handler
        self.connection = WSConnection(configuration: configuration.connection)
    }

    /// Starts connecting to `url`; events go to `handler` (kept alive until the channel closes).
    /// Loop thread only.
    @discardableResult
    public static func connect(
        to url: WebSocketURL, configuration: WebSocketConfiguration, loop: EventLoop, handler: any WebSocketHandler
    ) -> WebSocketChannel {
        loop.assertInLoop()
        let channel = WebSocketChannel(url: url, configuration: configuration, loop: loop, handler: handler)
        channel.start()
        return channel
    }

    private func start() {
        var tls: TLSContext? = nil
        if url.isSecure {
            do {
                tls = try configuration.tls ?? TLSContext(configuration: .client())
            } catch {
                fail(error)
                return
            }
        }
        connectTimer = loop.scheduleTimer(after: configuration.connectTimeout) { [self] in
            if case .handshaking = phase { fail(TransportError.timedOut("WebSocket handshake with \(url.host)")) }
        }
        let endpoint = Endpoint(host: url.host, port: url.port, tls: tls)
        // `self` stays alive through the completion (the closure holds it) until the transport owns it.
        Connector.connect(to: endpoint, loop: loop, timeout: configuration.connectTimeout) { [self] result in
            guard case .connecting = phase else {
                if case .success(let transport) = result { transport.abort(error: nil) }
                return
            }
            switch result {
            case .failure(let error):
                fail(error)
            case .success(let transport):
                self.transport = transport
                if let tcp = transport as? TCPConnection { tcp.setHandler(self) }
                if let tls = transport as? TLSTransport { tls.setHandler(self) }
                sendUpgrade()
            }
        }
    }

    private func sendUpgrade() {
        let (request, accept) = WSHandshake.makeRequest(
            host: url.hostHeader, path: url.target, nonce: SecureRandom.bytes(16), extraHeaders: configuration.headers)
        var parser = HTTPParser(
            role: .response,
            limits: HTTPLimits(maxHeaderBytes: configuration.maxHandshakeBytes, maxBodyBytes: 64 * 1024))
        parser.requestSent(method: "GET")
        phase = .handshaking(parser, expectedAccept: accept)
        transport?.write(HTTPSerializer.encode(request))
    }

    // MARK: TransportHandler

    public func transportDidReceive(_ bytes: UnsafeRawBufferPointer) {
        receivedSinceLastTick = true
        switch phase {
        case .open:
            deliver(bytes)
        case .handshaking(var parser, let accept):
            parser.feed(bytes)
            let message: HTTPMessage?
            do {
                message = try parser.nextMessage()
            } catch {
                fail(WSHandshakeError("malformed handshake response: \(error)"))
                return
            }
            guard case .response(let response)? = message else {
                phase = .handshaking(parser, expectedAccept: accept)
                return
            }
            do {
                try WSHandshake.validate(response: response, expectedAccept: accept)
            } catch {
                fail(error)
                return
            }
            let leftover = parser.takeRemainingBytes()
            phase = .open
            // A pause asked for while connecting starts now that the handshake is read (back-pressure
            // survives reconnects); bytes that came with the handshake response are delivered below.
            if isReadingPaused { transport?.pauseReading() }
            if let connectTimer { loop.cancelTimer(connectTimer) }
            connectTimer = nil
            schedulePing()
            handler?.webSocketDidConnect(self)
            if !leftover.isEmpty, case .open = phase { leftover.withUnsafeBytes { deliver($0) } }
        case .connecting, .closed:
            break
        }
    }

    public func transportDidClose(error: (any Error)?) {
        machineState = .closed
        // Under a handler's write inside `deliver`: `connection` is busy in `receive`, so the close
        // is reported when it returns (re-entering it here traps on exclusivity).
        if isDelivering {
            closedDuringDelivery = ClosedDuringDelivery(error: error)
            return
        }
        guard case .closed = phase else {
            let info =
                connection.transportClosed()
                ?? WSCloseInfo(kind: .protocolError, code: WSCloseCode.abnormalClosure, reason: "connection lost")
            end(info: info, error: error ?? TransportError("connection closed without a close handshake"))
            return
        }
    }

    public func transportWritabilityChanged(isWritable: Bool) {}

    // MARK: Receiving

    private func deliver(_ bytes: UnsafeRawBufferPointer) {
        isDelivering = true
        sink.channel = self
        connection.receive(bytes, sink: &sink)
        sink.channel = nil
        isDelivering = false
        if let closed = closedDuringDelivery {
            closedDuringDelivery = nil
            sink.framesToSend.removeAll()  // the transport is gone
            if sink.closeInfo == nil {
                transportDidClose(error: closed.error)
                return
            }
        }
        machineState = connection.state
        // Apply what callbacks asked for while `connection` was busy.
        for (opcode, payload) in sink.framesToSend { sendFrame(opcode, payload: payload) }
        sink.framesToSend.removeAll()
        if let info = sink.closeInfo {
            sink.closeInfo = nil
            if info.kind == .protocolError {
                end(info: info, error: WSProtocolError(.protocolError, info.reason))
            } else {
                end(info: info, error: nil)
            }
            return
        }
        if let close = deferredClose {
            deferredClose = nil
            self.close(code: close.code, reason: close.reason)
        }
    }

    /// Collects the machine's output; messages go straight to the handler (zero-copy).
    private struct Sink: WSConnectionSink {
        unowned(unsafe) var channel: WebSocketChannel?
        var framesToSend: [(WSOpcode, [UInt8])] = []
        var closeInfo: WSCloseInfo?

        mutating func messageReceived(_ payload: UnsafeRawBufferPointer, isText: Bool) {
            guard let channel else { return }
            channel.messagesReceived += 1
            channel.handler?.webSocket(channel, didReceive: payload, isText: isText)
        }
        mutating func pongReceived(_ payload: UnsafeRawBufferPointer) {
            guard let channel else { return }
            channel.isPingOutstanding = false
            channel.handler?.webSocketDidReceiveControlFrame(channel)
        }
        mutating func sendFrame(_ opcode: WSOpcode, payload: [UInt8]) {
            framesToSend.append((opcode, payload))
            // A pong we send answers the peer's ping: the peer is alive.
            if opcode == .pong, let channel { channel.handler?.webSocketDidReceiveControlFrame(channel) }
        }
        mutating func connectionClosed(_ info: WSCloseInfo) { closeInfo = info }
    }

    // MARK: Sending

    /// Sends a text message (no-op unless open).
    public func send(text: String) {
        var text = text
        text.withUTF8 { sendMessage(.text, payload: UnsafeRawBufferPointer($0)) }
    }

    /// Sends a binary message (no-op unless open).
    public func send(binary: [UInt8]) {
        binary.withUnsafeBytes { sendMessage(.binary, payload: $0) }
    }

    /// Sends a ping (the pong resets the liveness check).
    public func sendPing(_ payload: [UInt8] = []) {
        precondition(payload.count <= 125, "RFC 6455 §5.5: control frames carry at most 125 bytes")
        sendFrame(.ping, payload: payload)
    }

    private func sendMessage(_ opcode: WSOpcode, payload: UnsafeRawBufferPointer) {
        guard isOpen, let transport else { return }
        sendBuffer.removeAll(keepingCapacity: true)
        WSFrameEncoder.encode(
            opcode: opcode, payload: payload, maskKey: SecureRandom.uint32(), into: &sendBuffer)
        transport.write(sendBuffer)
    }

    private func sendFrame(_ opcode: WSOpcode, payload: [UInt8]) {
        guard let transport, transport.isOpen else { return }
        transport.write(WSFrameEncoder.encode(opcode: opcode, payload: payload, maskKey: SecureRandom.uint32()))
    }

    /// Starts the closing handshake; the handler hears `webSocketDidClose` when it completes
    /// (or after `closeTimeout`). Before the handshake completes, it just aborts the connection.
    public func close(code: UInt16 = WSCloseCode.normal, reason: String = "") {
        loop.assertInLoop()
        if isDelivering {
            deferredClose = (code, reason)
            return
        }
        switch phase {
        case .connecting, .handshaking:
            end(info: WSCloseInfo(kind: .closedByUs, code: code, reason: reason), error: nil)
        case .open:
            guard let payload = connection.initiateClose(code: code, reason: reason) else { return }
            machineState = connection.state
            sendFrame(.close, payload: payload)
            closeTimer = loop.scheduleTimer(after: configuration.closeTimeout) { [self] in
                end(
                    info: WSCloseInfo(kind: .closedByUs, code: code, reason: reason),
                    error: TransportError.timedOut("waiting for the peer's close frame"))
            }
        case .closed:
            break
        }
    }

    /// Pauses reading from the socket (back-pressure towards the peer). Asked while connecting, it
    /// takes effect once the opening handshake has been read.
    public func pauseReading() {
        isReadingPaused = true
        if case .open = phase { transport?.pauseReading() }
    }

    /// Resumes reading.
    public func resumeReading() {
        isReadingPaused = false
        transport?.resumeReading()
    }

    /// Whether reading is paused by `pauseReading`.
    public private(set) var isReadingPaused = false

    // MARK: Liveness and ending

    private func schedulePing() {
        guard let interval = configuration.pingInterval else { return }
        pingTimer = loop.scheduleTimer(after: interval) { [self] in
            guard case .open = phase else { return }
            if receivedSinceLastTick {
                receivedSinceLastTick = false
            } else if isPingOutstanding {
                fail(TransportError.timedOut("no data or pong for \(interval * 2)"))
                return
            } else {
                isPingOutstanding = true
                sendPing()
            }
            schedulePing()
        }
    }

    private func fail(_ error: any Error) {
        end(
            info: WSCloseInfo(kind: .protocolError, code: WSCloseCode.abnormalClosure, reason: "\(error)"), error: error
        )
    }

    private func end(info: WSCloseInfo, error: (any Error)?) {
        if case .closed = phase { return }
        phase = .closed
        for timer in [connectTimer, pingTimer, closeTimer].compactMap({ $0 }) { loop.cancelTimer(timer) }
        connectTimer = nil
        pingTimer = nil
        closeTimer = nil
        if let transport {
            transport.handler = nil
            if error == nil || info.kind == .protocolError { transport.close() } else { transport.abort(error: error) }
        }
        transport = nil
        let handler = self.handler
        self.handler = nil
        handler?.webSocketDidClose(self, info: info, error: error)
    }
}

@available(*, unavailable)
extension WebSocketChannel: Sendable {}
