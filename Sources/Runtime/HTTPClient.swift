public import HTTP1Protocol
import Locking
import Synchronization

/// An HTTP/1.1 client connection: one request at a time, kept alive while the server allows it.
public final class HTTPClientConnection: Sendable {
    private let driver: LoopBound<HTTPClientDriver>
    private let busy = Locked(false)
    /// The host this connection talks to (for the `Host` header).
    public let hostHeader: String

    private init(driver: LoopBound<HTTPClientDriver>, hostHeader: String) {
        self.driver = driver
        self.hostHeader = hostHeader
    }

    /// Connects to `endpoint` (TCP, or TLS when `endpoint.tls` is set).
    public static func connect(
        to endpoint: Endpoint, loop: EventLoop, timeout: Duration = .seconds(10)
    ) async throws
        -> HTTPClientConnection
    {
        let result: Result<LoopBound<HTTPClientDriver>, any Error> = await withCheckedContinuation { continuation in
            loop.execute {
                Connector.connect(to: endpoint, loop: loop, timeout: timeout) { result in
                    switch result {
                    case .success(let transport):
                        let driver = HTTPClientDriver(transport: transport)
                        continuation.resume(returning: .success(LoopBound(driver, loop: loop)))
                    case .failure(let error):
                        continuation.resume(returning: .failure(error))
                    }
                }
            }
        }
        let defaultPort = endpoint.tls == nil ? 80 : 443
        let host = endpoint.port == defaultPort ? endpoint.host : "\(endpoint.host):\(endpoint.port)"
        return HTTPClientConnection(driver: try result.get(), hostHeader: host)
    }

    /// Sends `request` and returns the whole response. Adds `Host` if missing. Throws if another
    /// request is in flight on this connection, on I/O or parse errors, and after `timeout`.
    public func execute(
        _ request: HTTPRequest, timeout: Duration = .seconds(30), limits: HTTPLimits = HTTPLimits()
    )
        async throws -> HTTPResponse
    {
        let acquired = busy.withLock { isBusy -> Bool in
            if isBusy { return false }
            isBusy = true
            return true
        }
        guard acquired else { throw TransportError("a request is already in flight on this connection") }
        defer { busy.withLock { $0 = false } }
        var request = request
        if request.head.headers["Host"] == nil { request.head.headers.add(name: "Host", value: hostHeader) }
        let driver = self.driver
        let sendable = request
        let result: Result<HTTPResponse, any Error> = await withCheckedContinuation { continuation in
            driver.loop.execute {
                driver.value.execute(sendable, timeout: timeout, limits: limits) { continuation.resume(returning: $0) }
            }
        }
        return try result.get()
    }

    /// Whether the connection can carry another request.
    public var isReusable: Bool {
        get async {
            let driver = self.driver
            return await withCheckedContinuation { continuation in
                driver.loop.execute { continuation.resume(returning: driver.value.isReusable) }
            }
        }
    }

    /// Closes the connection.
    public func close() {
        let driver = self.driver
        driver.loop.execute { driver.value.close() }
    }
}

/// Convenience: one request on a fresh connection.
public enum HTTPClient {
    /// Sends `request` to `endpoint` on a new connection and closes it afterwards.
    public static func send(
        _ request: HTTPRequest, to endpoint: Endpoint, loop: EventLoop, timeout: Duration = .seconds(30)
    ) async throws -> HTTPResponse {
        let connection = try await HTTPClientConnection.connect(to: endpoint, loop: loop, timeout: timeout)
        defer { connection.close() }
        return try await connection.execute(request, timeout: timeout)
    }
}

/// The loop side of a client connection. Loop-confined.
final class HTTPClientDriver: TransportHandler {
    private let transport: any Transport
    private var parser = HTTPParser(role: .response)
    private var pending: ((Result<HTTPResponse, any Error>) -> Void)?
    private var timer: TimerHandle?
    private var closeAfterResponse = false
    private var isClosed = false

    init(transport: any Transport) {
        self.transport = transport
        if let tcp = transport as? TCPConnection { tcp.setHandler(self) }
        if let tls = transport as? TLSTransport { tls.setHandler(self) }
    }

    var isReusable: Bool { !isClosed && !closeAfterResponse && pending == nil }

    func execute(
        _ request: HTTPRequest, timeout: Duration, limits: HTTPLimits,
        completion: @escaping (Result<HTTPResponse, any Error>) -> Void
    ) {
        guard !isClosed, !closeAfterResponse else {
            completion(.failure(TransportError("connection is closed")))
            return
        }
        parser = HTTPParser(role: .response, limits: limits)
        parser.requestSent(method: request.head.method)
        pending = completion
        closeAfterResponse = !request.head.isKeepAlive
        timer = transport.loop.scheduleTimer(after: timeout) { [weak self] in
            self?.fail(TransportError.timedOut("HTTP \(request.head.method) \(request.head.target)"))
        }
        transport.write(HTTPSerializer.encode(request))
    }

    func transportDidReceive(_ bytes: UnsafeRawBufferPointer) {
        guard pending != nil else {
            // Bytes with no request outstanding break HTTP/1.1 framing: the connection is unusable.
            fail(TransportError("unexpected bytes from the server"))
            return
        }
        parser.feed(bytes)
        do {
            if case .response(let response)? = try parser.nextMessage() { complete(response) }
        } catch {
            fail(error)
        }
    }

    func transportDidClose(error: (any Error)?) {
        isClosed = true
        guard pending != nil else { return }
        do {
            if case .response(let response)? = try parser.connectionClosed() {
                complete(response)
                return
            }
            fail(error ?? HTTPParseError.connectionClosedEarly)
        } catch let parseError {
            fail(error ?? parseError)
        }
    }

    private func complete(_ response: HTTPResponse) {
        if let timer { transport.loop.cancelTimer(timer) }
        timer = nil
        if response.head.headers.containsToken("close", in: "Connection") || response.head.version == .http1_0 {
            closeAfterResponse = true
        }
        let pending = self.pending
        self.pending = nil
        if closeAfterResponse { close() }
        pending?(.success(response))
    }

    private func fail(_ error: any Error) {
        if let timer { transport.loop.cancelTimer(timer) }
        timer = nil
        let pending = self.pending
        self.pending = nil
        if !isClosed {
            isClosed = true
            transport.abort(error: error)
        }
        pending?(.failure(error))
    }

    func close() {
        guard !isClosed else { return }
        isClosed = true
        transport.close()
    }
}

@available(*, unavailable)
extension HTTPClientDriver: Sendable {}
