import Crypto
public import HTTP1Protocol
public import TLS
public import WebSocketProtocol

/// Receives a server-side WebSocket connection's events on its loop.
public protocol WebSocketServerHandler: AnyObject {
    /// The upgrade succeeded; `request` is the client's upgrade request (path, headers).
    func webSocketDidConnect(_ connection: WebSocketServerConnection, request: HTTPRequest)
    /// A complete message from the client; valid only during the call.
    func webSocket(_ connection: WebSocketServerConnection, didReceive payload: UnsafeRawBufferPointer, isText: Bool)
    /// Output can be queued again after back-pressure.
    func webSocketBecameWritable(_ connection: WebSocketServerConnection)
    /// The connection ended.
    func webSocketDidClose(_ connection: WebSocketServerConnection, info: WSCloseInfo)
}

extension WebSocketServerHandler {
    public func webSocketBecameWritable(_ connection: WebSocketServerConnection) {}
}

/// A WebSocket server: accepts TCP (optionally TLS), answers the upgrade, then drives a
/// server-role `WSConnection`. Used by the exchange simulator and benchmarks. Loop-confined.
public final class WebSocketServer {
    private var listener: TCPListener?
    public let loop: EventLoop
    private let tls: TLSContext?
    private let makeHandler: () -> any WebSocketServerHandler
    private var connections: [ObjectIdentifier: WebSocketServerConnection] = [:]

    /// Starts listening on `host:port` (0 picks a port). Loop thread only.
    public init(
        host: String, port: Int, tls: TLSContext? = nil, loop: EventLoop,
        makeHandler: @escaping () -> any WebSocketServerHandler
    ) throws(SystemError) {
        self.loop = loop
        self.tls = tls
        self.makeHandler = makeHandler
        // Weak: a server dropped without `close()` must not be reached by a late accept; the
        // connection is then refused.
        listener = try TCPListener(host: host, port: port, loop: loop) { [weak self] tcp in
            guard let self else { return tcp.abort(error: nil) }
            accept(tcp)
        }
    }

    /// The bound port.
    public var port: Int { listener?.port ?? 0 }

    /// Open connections.
    public var openConnections: [WebSocketServerConnection] { Array(connections.values) }

    private func accept(_ tcp: TCPConnection) {
        guard let tls else {
            adopt(tcp)
            return
        }
        TLSTransport.accept(tcp, context: tls) { [weak self] result in
            if case .success(let transport) = result { self?.adopt(transport) }
        }
    }

    private func adopt(_ transport: any Transport) {
        let connection = WebSocketServerConnection(transport: transport, handler: makeHandler()) { [weak self] c in
            self?.connections[ObjectIdentifier(c)] = nil
        }
        connections[ObjectIdentifier(connection)] = connection
        if let tcp = transport as? TCPConnection { tcp.setHandler(connection) }
        if let tls = transport as? TLSTransport { tls.setHandler(connection) }
    }

    /// Stops accepting and aborts every connection.
    public func close() {
        listener?.close()
        listener = nil
        for connection in connections.values { connection.abort() }
        connections.removeAll()
    }
}

@available(*, unavailable)
extension WebSocketServer: Sendable {}

/// One server-side WebSocket connection. Loop-confined.
public final class WebSocketServerConnection: TransportHandler {
    private let transport: any Transport
    private var handler: (any WebSocketServerHandler)?
    private var parser: HTTPParser? = HTTPParser(role: .request, limits: HTTPLimits(maxBodyBytes: 0))
    private var connection = WSConnection(configuration: .init(role: .server))
    private var sink = ServerSink()
    private let onClose: (WebSocketServerConnection) -> Void
    private var isClosed = false
    /// Mirror of `connection.state`, readable while `connection` is busy in `receive` (exclusivity).
    private var machineState = WSConnection.State.open
    private var isDelivering = false
    /// The transport closed under a handler's write while `connection` was busy in `receive`: the
    /// close is reported once `receive` returns (reporting it inside would re-enter the machine,
    /// an exclusivity violation that traps; found by the AddressSanitizer run of issue 13).
    private var closedDuringDelivery = false
    private var deferredClose: (code: UInt16, reason: String)?
    private var sendBuffer: [UInt8] = []
    /// The path the client asked for.
    public private(set) var path: String = ""

    init(
        transport: any Transport, handler: any WebSocketServerHandler,
        onClose: @escaping (WebSocketServerConnection) -> Void
    ) {
        self.transport = transport
        self.handler = handler
        self.onClose = onClose
    }

    public var loop: EventLoop { transport.loop }
    /// Whether more output may be queued without exceeding the transport's high-water mark.
    public var isWritable: Bool { transport.isWritable }
    public var isOpen: Bool { !isClosed && parser == nil && machineState == .open }

    public func transportDidReceive(_ bytes: UnsafeRawBufferPointer) {
        guard var parser else {
            sink.connection = self
            isDelivering = true
            connection.receive(bytes, sink: &sink)
            isDelivering = false
            sink.connection = nil
            if closedDuringDelivery {
                closedDuringDelivery = false
                sink.framesToSend.removeAll()  // nowhere to send them
                if let info = sink.closeInfo {
                    sink.closeInfo = nil
                    machineState = .closed
                    finish(info)
                } else {
                    reportTransportClosed()
                }
                return
            }
            machineState = connection.state
            flushSink()
            if let close = deferredClose {
                deferredClose = nil
                self.close(code: close.code, reason: close.reason)
            }
            return
        }
        parser.feed(bytes)
        let message: HTTPMessage?
        do {
            message = try parser.nextMessage()
        } catch {
            rejectUpgrade(status: error.status, reason: error.description)
            return
        }
        guard case .request(let request)? = message else {
            self.parser = parser
            return
        }
        switch WSHandshake.serverResponse(to: request) {
        case .failure(let error):
            rejectUpgrade(status: error.status ?? 400, reason: error.reason)
        case .success(let response):
            let leftover = parser.takeRemainingBytes()
            self.parser = nil
            path = request.head.target
            transport.write(HTTPSerializer.encode(response))
            handler?.webSocketDidConnect(self, request: request)
            if !leftover.isEmpty { leftover.withUnsafeBytes { transportDidReceive($0) } }
        }
    }

    private func rejectUpgrade(status: Int, reason: String) {
        let response = HTTPResponse(
            status: status, contentType: "text/plain", body: Array(reason.utf8), headers: ["Connection": "close"])
        transport.write(HTTPSerializer.encode(response))
        transport.close()
    }

    private func flushSink() {
        for (opcode, payload) in sink.framesToSend { sendFrame(opcode, payload) }
        sink.framesToSend.removeAll()
        if let info = sink.closeInfo {
            sink.closeInfo = nil
            finish(info)
            transport.close()
        }
    }

    public func transportDidClose(error: (any Error)?) {
        machineState = .closed
        if isDelivering {
            closedDuringDelivery = true
            return
        }
        reportTransportClosed()
    }

    /// Tells the machine and the handler the transport is gone (`machineState` is already closed).
    private func reportTransportClosed() {
        let info =
            connection.transportClosed()
            ?? WSCloseInfo(kind: .protocolError, code: WSCloseCode.abnormalClosure, reason: "connection lost")
        finish(info)
    }

    public func transportWritabilityChanged(isWritable: Bool) {
        if isWritable { handler?.webSocketBecameWritable(self) }
    }

    private struct ServerSink: WSConnectionSink {
        unowned(unsafe) var connection: WebSocketServerConnection?
        var framesToSend: [(WSOpcode, [UInt8])] = []
        var closeInfo: WSCloseInfo?
        mutating func messageReceived(_ payload: UnsafeRawBufferPointer, isText: Bool) {
            guard let connection else { return }
            connection.handler?.webSocket(connection, didReceive: payload, isText: isText)
        }
        mutating func pongReceived(_ payload: UnsafeRawBufferPointer) {}
        mutating func sendFrame(_ opcode: WSOpcode, payload: [UInt8]) { framesToSend.append((opcode, payload)) }
        mutating func connectionClosed(_ info: WSCloseInfo) { closeInfo = info }
    }

    /// Sends a text message (servers do not mask).
    public func send(text: String) {
        guard isOpen else { return }
        var text = text
        sendBuffer.removeAll(keepingCapacity: true)
        text.withUTF8 {
            WSFrameEncoder.encode(opcode: .text, payload: UnsafeRawBufferPointer($0), maskKey: nil, into: &sendBuffer)
        }
        transport.write(sendBuffer)
    }

    /// Sends a binary message.
    public func send(binary: [UInt8]) {
        guard isOpen else { return }
        transport.write(WSFrameEncoder.encode(opcode: .binary, payload: binary, maskKey: nil))
    }

    /// Writes bytes that already hold complete, encoded frames (simulators and benchmarks).
    public func sendEncodedFrames(_ bytes: UnsafeRawBufferPointer) {
        guard isOpen else { return }
        transport.write(bytes)
    }

    /// Sends a ping.
    public func sendPing(_ payload: [UInt8] = []) { sendFrame(.ping, payload) }

    private func sendFrame(_ opcode: WSOpcode, _ payload: [UInt8]) {
        guard !isClosed, parser == nil else { return }
        transport.write(WSFrameEncoder.encode(opcode: opcode, payload: payload, maskKey: nil))
    }

    /// Starts the closing handshake.
    public func close(code: UInt16 = WSCloseCode.normal, reason: String = "") {
        if isDelivering {
            deferredClose = (code, reason)
            return
        }
        guard let payload = connection.initiateClose(code: code, reason: reason) else { return }
        machineState = connection.state
        sendFrame(.close, payload)
    }

    /// Drops the connection without a close frame (simulates a crash or network cut).
    public func abort() {
        guard !isClosed else { return }
        transport.abort(error: nil)
    }

    private func finish(_ info: WSCloseInfo) {
        guard !isClosed else { return }
        isClosed = true
        let handler = self.handler
        self.handler = nil
        handler?.webSocketDidClose(self, info: info)
        onClose(self)
    }
}

@available(*, unavailable)
extension WebSocketServerConnection: Sendable {}
