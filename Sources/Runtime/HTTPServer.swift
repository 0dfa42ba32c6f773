import Dispatch
public import HTTP1Protocol
import Locking
import Synchronization
import WireCore

/// How the HTTP server behaves.
public struct HTTPServerConfiguration: Sendable {
    /// Numeric address to listen on.
    public var host: String
    /// Port (0 picks a free one; read it back from `HTTPServer.port`).
    public var port: Int
    public var limits: HTTPLimits
    /// A keep-alive connection with no request in progress is closed after this.
    public var idleTimeout: Duration
    /// A request whose head and body do not complete within this gets 408 and a close (slow clients).
    public var requestTimeout: Duration
    /// Connections above this are answered 503 (with `Retry-After: 1`) and closed.
    public var maxConnections: Int

    public init(
        host: String = "0.0.0.0", port: Int, limits: HTTPLimits = HTTPLimits(maxBodyBytes: 1 << 20),
        idleTimeout: Duration = .seconds(60), requestTimeout: Duration = .seconds(10), maxConnections: Int = 1024
    ) {
        self.host = host
        self.port = port
        self.limits = limits
        self.idleTimeout = idleTimeout
        self.requestTimeout = requestTimeout
        self.maxConnections = maxConnections
    }
}

/// What the server calls for each request, off the event loop.
public typealias HTTPRequestHandler = @Sendable (HTTPRequest) async -> HTTPResponse

/// An HTTP/1.1 server on an event loop: keep-alive, pipelined requests answered in order (one in
/// flight per connection), limits mapped to 431/413, slow clients timed out with 408, idle
/// connections closed. Handlers run as tasks; responses hop back to the loop.
///
/// Memory per connection is bounded under pipelining: while a request is in flight, or while the
/// client leaves more than `TCPConnection.Limits.writeHighWater` of responses unread, no further
/// request is handled, and the socket is not read once `maxHeaderBytes + maxBodyBytes` of input are
/// buffered (the kernel then pushes back on the client). So a connection holds at most about one
/// request's worth of input (twice that in parser storage) and the high-water mark plus one response
/// of output.
public final class HTTPServer: Sendable {
    private let state: LoopBound<ServerState>
    /// The port the server listens on.
    public let port: Int

    private init(state: LoopBound<ServerState>, port: Int) {
        self.state = state
        self.port = port
    }

    /// Binds, listens and starts serving.
    public static func start(
        configuration: HTTPServerConfiguration, loop: EventLoop, handler: @escaping HTTPRequestHandler
    ) async throws -> HTTPServer {
        let result: Result<(LoopBound<ServerState>, Int), any Error> = await withCheckedContinuation { continuation in
            loop.execute {
                do {
                    let state = ServerState(configuration: configuration, loop: loop, handler: handler)
                    let port = try state.listen()
                    continuation.resume(returning: .success((LoopBound(state, loop: loop), port)))
                } catch {
                    continuation.resume(returning: .failure(error))
                }
            }
        }
        let (state, port) = try result.get()
        return HTTPServer(state: state, port: port)
    }

    /// Stops accepting, lets in-flight requests finish and closes every connection;
    /// after `deadline` the remaining connections are aborted.
    public func shutdown(deadline: Duration = .seconds(10)) async {
        let state = self.state
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            state.loop.execute { state.value.shutdown(deadline: deadline) { continuation.resume() } }
        }
    }
}

/// Server bookkeeping. Loop-confined.
final class ServerState {
    let configuration: HTTPServerConfiguration
    let loop: EventLoop
    let handler: HTTPRequestHandler
    private var listener: TCPListener?
    private var connections: [ObjectIdentifier: HTTPServerConnection] = [:]
    private var isShuttingDown = false
    private var onDrained: (() -> Void)?

    init(configuration: HTTPServerConfiguration, loop: EventLoop, handler: @escaping HTTPRequestHandler) {
        self.configuration = configuration
        self.loop = loop
        self.handler = handler
    }

    func listen() throws(SystemError) -> Int {
        let listener = try TCPListener(host: configuration.host, port: configuration.port, loop: loop) {
            // Weak: a server dropped without `shutdown` refuses late accepts instead of crashing.
            [weak self] tcp in
            guard let self else { return tcp.abort(error: nil) }
            accept(tcp)
        }
        self.listener = listener
        return listener.port
    }

    private func accept(_ tcp: TCPConnection) {
        if isShuttingDown || connections.count >= configuration.maxConnections {
            // Retry-After (RFC 9110 §10.2.3): a busy server frees up quickly, so one second is a fair retry.
            let response = HTTPResponse(
                status: 503, contentType: "application/json", body: Array(#"{"error":"server busy"}"#.utf8),
                headers: ["Connection": "close", "Retry-After": "1"])
            tcp.write(HTTPSerializer.encode(response))
            tcp.close()
            return
        }
        let connection = HTTPServerConnection(tcp: tcp, server: self)
        connections[ObjectIdentifier(connection)] = connection
        connection.start()
    }

    func connectionClosed(_ connection: HTTPServerConnection) {
        connections[ObjectIdentifier(connection)] = nil
        if isShuttingDown && connections.isEmpty, let onDrained {
            self.onDrained = nil
            onDrained()
        }
    }

    func shutdown(deadline: Duration, completion: @escaping () -> Void) {
        isShuttingDown = true
        listener?.close()
        listener = nil
        if connections.isEmpty {
            completion()
            return
        }
        onDrained = completion
        for connection in connections.values { connection.closeWhenIdle() }
        loop.scheduleTimer(after: deadline) { [self] in
            for connection in connections.values { connection.abort() }
        }
    }
}

/// One server-side connection. Loop-confined.
final class HTTPServerConnection: TransportHandler {
    private let tcp: TCPConnection
    /// Strong: an open connection keeps its server's state alive (the cycle ends when the
    /// connection closes and `connectionClosed` drops it), so a server dropped without `shutdown`
    /// leaves working connections, not dangling ones.
    private let server: ServerState
    private var parser: HTTPParser
    private var isProcessing = false
    /// The client left more than the write high-water mark of responses unread: no further request is
    /// handled until the transport reports it writable again.
    private var isAwaitingDrain = false
    private var closeAfterResponse = false
    private var timer: TimerHandle?
    /// Whether `timer` is the request deadline (kept while bytes trickle in) or the idle timeout.
    private var isRequestTimer = false
    private var isClosed = false
    /// After an error response: discard input until the client closes or the linger timer fires.
    private var isLingering = false

    init(tcp: TCPConnection, server: ServerState) {
        self.tcp = tcp
        self.server = server
        self.parser = HTTPParser(role: .request, limits: server.configuration.limits)
    }

    func start() {
        tcp.setHandler(self)
        armTimer()
    }

    func transportDidReceive(_ bytes: UnsafeRawBufferPointer) {
        if isLingering { return }
        parser.feed(bytes)
        if isProcessing || isAwaitingDrain {
            // Pipelined bytes wait until the current response is out and read; bound what we buffer to
            // one largest request (the parser rejects anything bigger, so the next request always fits).
            if parser.bufferedByteCount > server.configuration.limits.maxHeaderBytes
                + server.configuration.limits.maxBodyBytes
            {
                tcp.pauseReading()
            }
            return
        }
        processNext()
    }

    func transportWritabilityChanged(isWritable: Bool) {
        guard isWritable, isAwaitingDrain, !isClosed else { return }
        isAwaitingDrain = false
        tcp.resumeReading()
        processNext()
    }

    func transportDidClose(error: (any Error)?) {
        isClosed = true
        cancelTimer()
        server.connectionClosed(self)
    }

    private func processNext() {
        guard !isClosed, !isProcessing, !isAwaitingDrain else { return }
        let message: HTTPMessage?
        do {
            message = try parser.nextMessage()
        } catch {
            sendError(status: error.status, message: error.description)
            return
        }
        if parser.takeExpectContinue() {
            tcp.write(Array("HTTP/1.1 100 Continue\r\n\r\n".utf8))
        }
        guard case .request(var request)? = message else {
            armTimer()
            return
        }
        request.clientAddress = tcp.remoteAddress?.host
        cancelTimer()
        isProcessing = true
        let keepAlive = request.head.isKeepAlive
        let isHead = request.head.method == "HEAD"
        let handler = server.handler
        let bound = LoopBound(self, loop: tcp.loop)
        let loop = tcp.loop
        Task {
            let response = await handler(request)
            loop.execute { bound.value.respond(response, keepAlive: keepAlive, isHead: isHead) }
        }
    }

    private func respond(_ response: HTTPResponse, keepAlive: Bool, isHead: Bool) {
        isProcessing = false
        guard !isClosed else { return }
        var response = response
        let close = !keepAlive || closeAfterResponse
        if close { response.head.headers.replaceOrAdd(name: "Connection", value: "close") }
        tcp.write(HTTPSerializer.encode(response, isHeadRequest: isHead))
        if close {
            tcp.close()
            return
        }
        if !tcp.isWritable {
            // The client is not reading its responses: handle nothing more until they drain, or the
            // queue would grow by one response per pipelined request.
            isAwaitingDrain = true
            return
        }
        tcp.resumeReading()
        processNext()
    }

    private func sendError(status: Int, message: String) {
        // Name the part of the request at fault, as the API's own errors do.
        let field = status == 413 ? "body" : status == 431 ? "headers" : "request"
        let body = Array("{\"error\":\(JSONText.quoted(message)),\"field\":\"\(field)\",\"status\":\(status)}".utf8)
        let response = HTTPResponse(
            status: status, contentType: "application/json", body: body, headers: ["Connection": "close"])
        tcp.write(HTTPSerializer.encode(response))
        // Lingering close: stop sending, keep reading what the client still sends, close when it is
        // done (EOF) or after two seconds, so the client reads our answer instead of a reset.
        isLingering = true
        cancelTimer()
        tcp.shutdownOutput()
        tcp.loop.scheduleTimer(after: .seconds(2)) { [weak self] in self?.tcp.close() }
    }

    private func armTimer() {
        guard !isClosed else { return }
        let midMessage = parser.isMidMessage
        // A slow client's deadline runs from the request's first byte: more bytes do not extend it.
        if midMessage && isRequestTimer && timer != nil { return }
        cancelTimer()
        isRequestTimer = midMessage
        let timeout = midMessage ? server.configuration.requestTimeout : server.configuration.idleTimeout
        timer = tcp.loop.scheduleTimer(after: timeout) { [weak self] in
            guard let self, !self.isClosed, !self.isProcessing else { return }
            if self.parser.isMidMessage {
                self.sendError(status: 408, message: "request not completed within \(timeout)")
            } else {
                self.tcp.close()
            }
        }
    }

    private func cancelTimer() {
        if let timer { tcp.loop.cancelTimer(timer) }
        timer = nil
    }

    func closeWhenIdle() {
        closeAfterResponse = true
        // Awaiting drain counts as idle: close() sends what is queued, then closes.
        if !isProcessing { tcp.close() }
    }

    func abort() { tcp.abort(error: nil) }
}

@available(*, unavailable)
extension HTTPServerConnection: Sendable {}

extension HTTPServer {
    /// ``start(configuration:loop:handler:)`` from synchronous start-up code (a process's main, before
    /// anything else runs), waiting for the bind; not from the event loop's thread.
    public static func startBlocking(
        configuration: HTTPServerConfiguration, loop: EventLoop, handler: @escaping HTTPRequestHandler
    ) throws -> HTTPServer {
        let box = Locked<Result<HTTPServer, any Error>?>(nil)
        let done = DispatchSemaphore(value: 0)
        Task.detached {
            do {
                let server = try await HTTPServer.start(configuration: configuration, loop: loop, handler: handler)
                box.withLock { $0 = .success(server) }
            } catch {
                box.withLock { $0 = .failure(error) }
            }
            done.signal()
        }
        done.wait()
        guard let result = box.withLock({ $0 }) else { throw CancellationError() }
        return try result.get()
    }
}

/// The handler a process's HTTP port serves, swapped as the process moves through its phases: a
/// port is bound first (so one in use stops start-up before migrations or exchange connections),
/// answers `/health` 200 and everything else 503 while the process starts or stands by, and the
/// API's handler once it serves.
public final class HTTPHandlerSlot: Sendable {
    private let current: Locked<HTTPRequestHandler>

    /// Starts with ``unavailable(_:role:)``'s answers for `reason`.
    public init(reason: String, role: String = "starting") { current = Locked(Self.unavailable(reason, role: role)) }

    /// Serves `handler` from the next request on.
    public func serve(_ handler: @escaping HTTPRequestHandler) { current.withLock { $0 = handler } }

    /// Answers as ``unavailable(_:role:)`` from the next request on.
    public func unavailable(_ reason: String, role: String) { serve(Self.unavailable(reason, role: role)) }

    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let handler = current.withLock { $0 }
        return await handler(request)
    }

    /// `/health` 200 (the process is alive, in `role`); every other path 503 with `reason` and
    /// `Retry-After: 1`.
    public static func unavailable(_ reason: String, role: String) -> HTTPRequestHandler {
        let quoted = JSONText.quoted(reason)
        let roleText = JSONText.quoted(role)
        return { request in
            let path = request.head.target.split(separator: "?", maxSplits: 1).first ?? ""
            if path == "/health" {
                return HTTPResponse(
                    status: 200, contentType: "application/json",
                    body: Array(#"{"status":"ok","role":\#(roleText),"reason":\#(quoted)}"#.utf8))
            }
            return HTTPResponse(
                status: 503, contentType: "application/json",
                body: Array(#"{"ready":false,"reason":\#(quoted),"error":\#(quoted),"status":503}"#.utf8),
                headers: ["Retry-After": "1"])
        }
    }
}
