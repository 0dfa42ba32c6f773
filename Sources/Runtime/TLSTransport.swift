import CollectorCore
public import TLS

/// TLS over a TCP connection: drives a sans-IO `TLSSession` with the socket's bytes. Loop-confined.
public final class TLSTransport: Transport, TransportHandler {
    public var loop: EventLoop { tcp.loop }
    public weak var handler: (any TransportHandler)?
    private var retainedHandler: (any TransportHandler)?
    private let tcp: TCPConnection
    private let session: TLSSession
    private var ciphertext: [UInt8] = []
    private var handshakeCompletion: ((Result<Void, any Error>) -> Void)?
    private var isClosed = false

    public var isWritable: Bool { tcp.isWritable }
    public var isOpen: Bool { !isClosed && tcp.isOpen }

    /// Starts a handshake over `tcp`; `completion` runs on the loop when it finishes or fails.
    init(
        tcp: TCPConnection, context: TLSContext, serverName: String?,
        completion: @escaping (Result<Void, any Error>) -> Void
    ) throws(TLSError) {
        self.tcp = tcp
        self.session = try TLSSession(context: context, serverName: serverName)
        self.handshakeCompletion = completion
        tcp.setHandler(self)
    }

    /// Sets the handler and keeps it alive until the transport closes.
    public func setHandler(_ handler: any TransportHandler) {
        self.handler = handler
        self.retainedHandler = handler
    }

    func startHandshake() { advanceHandshake() }

    /// Server side: wraps an accepted connection; the handshake proceeds as the client's hello
    /// arrives and `completion` runs on the loop when it finishes or fails. Loop thread only.
    public static func accept(
        _ tcp: TCPConnection, context: TLSContext, completion: @escaping (Result<TLSTransport, any Error>) -> Void
    ) {
        var transport: TLSTransport?
        do {
            transport = try TLSTransport(tcp: tcp, context: context, serverName: nil) { result in
                // `transport` is assigned before any bytes can arrive (they need a loop turn).
                completion(result.map { transport! })
            }
        } catch {
            tcp.abort(error: error)
            completion(.failure(error))
        }
    }

    private func advanceHandshake() {
        let result = session.handshake()
        sendCiphertext()
        switch result {
        case .complete:
            let completion = handshakeCompletion
            handshakeCompletion = nil
            completion?(.success(()))
            // Application data may have arrived together with the last handshake record.
            drainPlaintext()
        case .wantIO:
            break
        case .failed(let error):
            fail(error)
        }
    }

    private func sendCiphertext() {
        guard session.hasPendingCiphertext else { return }
        ciphertext.removeAll(keepingCapacity: true)
        session.takeCiphertext(into: &ciphertext)
        tcp.write(ciphertext)
    }

    public func transportDidReceive(_ bytes: UnsafeRawBufferPointer) {
        session.feed(ciphertext: bytes)
        if !session.isHandshakeComplete {
            advanceHandshake()
            return
        }
        drainPlaintext()
    }

    private func drainPlaintext() {
        // The ciphertext was copied into the session's BIO, so the loop's read buffer is free again.
        let buffer = loop.readBuffer
        while !isClosed {
            switch session.read(into: buffer) {
            case .bytes(let n):
                handler?.transportDidReceive(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
            case .wantMore:
                sendCiphertext()  // e.g. key updates or session tickets to acknowledge
                return
            case .closed:
                finish(error: nil)
                tcp.close()
                return
            case .failed(let error):
                fail(error)
                return
            }
        }
    }

    public func transportDidClose(error: (any Error)?) {
        if let completion = handshakeCompletion {
            handshakeCompletion = nil
            completion(.failure(error ?? TLSError(.unexpectedEOF, "peer closed the connection during the handshake")))
            isClosed = true
            return
        }
        // A TCP EOF without close_notify: report it so truncation is not mistaken for a clean end.
        finish(error: error ?? TLSError(.unexpectedEOF, "peer closed without close_notify"))
    }

    public func transportWritabilityChanged(isWritable: Bool) {
        handler?.transportWritabilityChanged(isWritable: isWritable)
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        guard !isClosed else { return }
        do {
            _ = try session.write(plaintext: bytes)
        } catch {
            fail(error)
            return
        }
        sendCiphertext()
    }

    public func close() {
        guard !isClosed else { return }
        session.shutdown()
        sendCiphertext()
        finish(error: nil)
        tcp.close()
    }

    public func abort(error: (any Error)?) {
        guard !isClosed else { return }
        finish(error: error)
        tcp.abort(error: error)
    }

    public func pauseReading() { tcp.pauseReading() }
    public func resumeReading() { tcp.resumeReading() }

    private func fail(_ error: any Error) {
        if let completion = handshakeCompletion {
            handshakeCompletion = nil
            isClosed = true
            tcp.abort(error: error)
            completion(.failure(error))
            return
        }
        finish(error: error)
        tcp.abort(error: error)
    }

    private func finish(error: (any Error)?) {
        guard !isClosed else { return }
        isClosed = true
        let handler = self.handler
        retainedHandler = nil
        handler?.transportDidClose(error: error)
    }
}

@available(*, unavailable)
extension TLSTransport: Sendable {}

/// Where to connect: host, port, and TLS when wanted.
public struct Endpoint: Sendable {
    public var host: String
    public var port: Int
    /// TLS context for `wss`/`https`; nil for plain TCP.
    public var tls: TLSContext?
    /// The name to verify and send as SNI (defaults to `host`).
    public var serverName: String?

    public init(host: String, port: Int, tls: TLSContext? = nil, serverName: String? = nil) {
        self.host = host
        self.port = port
        self.tls = tls
        self.serverName = serverName
    }
}

/// Opens transports: name lookup on a helper thread, TCP connect, then the TLS handshake if asked.
public enum Connector {
    /// Connects within `timeout` overall. Loop thread only; `completion` runs on the loop.
    public static func connect(
        to endpoint: Endpoint, loop: EventLoop, timeout: Duration,
        completion: @escaping (Result<any Transport, any Error>) -> Void
    ) {
        loop.assertInLoop()
        let deadline = loop.now().advanced(by: timeout)
        Resolver.resolve(host: endpoint.host, port: endpoint.port, loop: loop) { result in
            switch result {
            case .failure(let error):
                completion(.failure(error))
            case .success(let addresses):
                let remaining = deadline.duration(since: loop.now())
                guard remaining > .zero else {
                    completion(.failure(TransportError.timedOut("name lookup of \(endpoint.host)")))
                    return
                }
                TCPConnection.connect(to: addresses, loop: loop, timeout: remaining) { result in
                    switch result {
                    case .failure(let error):
                        completion(.failure(error))
                    case .success(let tcp):
                        guard let context = endpoint.tls else {
                            completion(.success(tcp))
                            return
                        }
                        startTLS(
                            on: tcp, context: context, endpoint: endpoint, deadline: deadline, completion: completion)
                    }
                }
            }
        }
    }

    private static func startTLS(
        on tcp: TCPConnection, context: TLSContext, endpoint: Endpoint, deadline: Instant,
        completion: @escaping (Result<any Transport, any Error>) -> Void
    ) {
        let loop = tcp.loop
        var finished = false
        var timer: TimerHandle?
        let tls: TLSTransport
        do {
            var transport: TLSTransport?
            tls = try TLSTransport(tcp: tcp, context: context, serverName: endpoint.serverName ?? endpoint.host) {
                result in
                guard !finished else { return }
                finished = true
                if let timer { loop.cancelTimer(timer) }
                switch result {
                case .success: completion(.success(transport!))  // set below before any callback can run
                case .failure(let error): completion(.failure(error))
                }
            }
            transport = tls
        } catch {
            tcp.abort(error: error)
            completion(.failure(error))
            return
        }
        timer = loop.scheduleTimer(after: deadline.duration(since: loop.now())) {
            guard !finished else { return }
            finished = true
            tls.abort(error: nil)
            completion(.failure(TransportError.timedOut("TLS handshake with \(endpoint.host)")))
        }
        tls.startHandshake()
    }
}
