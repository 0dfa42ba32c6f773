internal import CLinux
@preconcurrency import Glibc

/// A non-blocking TCP connection on an event loop. Loop-confined.
///
/// Reads go into the loop's shared buffer and straight to the handler. Writes are attempted at once;
/// what the kernel does not take is queued and flushed on EPOLLOUT. Above `Limits.writeHighWater`
/// queued bytes, `isWritable` turns false (and back below `writeLowWater`), so producers can push back.
/// All sends use `MSG_NOSIGNAL`: a peer reset never raises SIGPIPE.
public final class TCPConnection: Transport, LoopSelectable {
    public enum Limits {
        /// Queued output above which the connection reports itself not writable (1 MiB).
        public static let writeHighWater = 1 << 20
        /// Queued output below which it is writable again (256 KiB).
        public static let writeLowWater = 256 << 10
        /// read(2) calls per readiness event before yielding to other sockets (fairness).
        static let readsPerWake = 4
    }

    public let loop: EventLoop
    public weak var handler: (any TransportHandler)?
    private var fd: Int32
    private var writeQueue: [UInt8] = []
    private var writeOffset = 0
    private var isClosing = false
    private var isShutdownWritePending = false
    private var isReadingPaused = false
    private var isWaitingForWritable = false
    public private(set) var isWritable = true
    /// The peer's address.
    public let remoteAddress: SocketAddress?
    /// The handler is kept alive by the connection until it closes (then released, breaking the cycle).
    private var retainedHandler: (any TransportHandler)?

    public var isOpen: Bool { fd >= 0 }

    /// Wraps a connected, non-blocking socket and registers it. Loop thread only.
    init(fd: Int32, loop: EventLoop, remoteAddress: SocketAddress?) throws(SystemError) {
        self.fd = fd
        self.loop = loop
        self.remoteAddress = remoteAddress
        var one: Int32 = 1
        // Latency matters more than packet count for small exchange/API messages.
        _ = setsockopt(fd, Int32(IPPROTO_TCP), TCP_NODELAY, &one, socklen_t(MemoryLayout<Int32>.size))
        do {
            try loop.register(fd: fd, events: Linux.epollIn | Linux.epollRdHup, handler: self)
        } catch {
            Linux.close(fd)
            self.fd = -1
            throw error
        }
    }

    deinit {
        if fd >= 0 { Linux.close(fd) }
    }

    /// Sets the handler and keeps it alive until the connection closes.
    public func setHandler(_ handler: any TransportHandler) {
        loop.assertInLoop()
        self.handler = handler
        self.retainedHandler = handler
    }

    func ready(events: UInt32) {
        if events & Linux.epollOut != 0 { flush() }
        guard fd >= 0 else { return }
        if events & (Linux.epollIn | Linux.epollHup | Linux.epollErr | Linux.epollRdHup) != 0 { readAvailable() }
    }

    private func readAvailable() {
        let buffer = loop.readBuffer
        for _ in 0..<Limits.readsPerWake {
            guard fd >= 0, !isReadingPaused else { return }
            let n = Glibc.read(fd, buffer.baseAddress, buffer.count)
            if n > 0 {
                handler?.transportDidReceive(UnsafeRawBufferPointer(rebasing: buffer[0..<n]))
                if n < buffer.count { return }
            } else if n == 0 {
                finish(error: nil)
                return
            } else {
                let err = errno
                if err == EAGAIN || err == EWOULDBLOCK { return }
                if err == EINTR { continue }
                finish(error: SystemError(errno: err, operation: "read"))
                return
            }
        }
    }

    public func write(_ bytes: UnsafeRawBufferPointer) {
        loop.assertInLoop()
        guard fd >= 0, !isClosing, bytes.count > 0 else { return }
        var offset = 0
        if writeQueue.count == writeOffset {
            // Nothing queued: try the kernel directly and queue only the rest.
            while offset < bytes.count {
                let n = send(fd, bytes.baseAddress! + offset, bytes.count - offset, Int32(MSG_NOSIGNAL))
                if n > 0 {
                    offset += n
                    continue
                }
                let err = errno
                if n < 0 && err == EINTR { continue }
                if n < 0 && (err == EAGAIN || err == EWOULDBLOCK) { break }
                finish(error: SystemError(errno: err, operation: "send"))
                return
            }
        }
        guard offset < bytes.count else { return }
        if writeOffset > 0 && writeOffset == writeQueue.count {
            writeQueue.removeAll(keepingCapacity: true)
            writeOffset = 0
        }
        writeQueue.append(contentsOf: UnsafeRawBufferPointer(rebasing: bytes[offset...]))
        waitForWritable(true)
        updateWritability()
    }

    private func flush() {
        while writeOffset < writeQueue.count {
            let n = writeQueue.withUnsafeBytes { raw in
                send(fd, raw.baseAddress! + writeOffset, raw.count - writeOffset, Int32(MSG_NOSIGNAL))
            }
            if n > 0 {
                writeOffset += n
                continue
            }
            let err = errno
            if n < 0 && err == EINTR { continue }
            if n < 0 && (err == EAGAIN || err == EWOULDBLOCK) { break }
            finish(error: SystemError(errno: err, operation: "send"))
            return
        }
        if writeOffset == writeQueue.count {
            writeQueue.removeAll(keepingCapacity: writeQueue.capacity <= Limits.writeHighWater)
            writeOffset = 0
            waitForWritable(false)
            if isShutdownWritePending {
                isShutdownWritePending = false
                _ = Glibc.shutdown(fd, Int32(SHUT_WR))
            }
            if isClosing {
                finish(error: nil)
                return
            }
        } else if writeOffset > Limits.writeLowWater {
            writeQueue.removeFirst(writeOffset)
            writeOffset = 0
        }
        updateWritability()
    }

    private func updateWritability() {
        let queued = writeQueue.count - writeOffset
        if isWritable && queued > Limits.writeHighWater {
            isWritable = false
            handler?.transportWritabilityChanged(isWritable: false)
        } else if !isWritable && queued < Limits.writeLowWater {
            isWritable = true
            handler?.transportWritabilityChanged(isWritable: true)
        }
    }

    private func waitForWritable(_ wait: Bool) {
        guard fd >= 0, wait != isWaitingForWritable else { return }
        isWaitingForWritable = wait
        updateInterest()
    }

    private func updateInterest() {
        var events: UInt32 = isReadingPaused ? 0 : (Linux.epollIn | Linux.epollRdHup)
        if isWaitingForWritable { events |= Linux.epollOut }
        loop.modify(fd: fd, events: events)
    }

    public func pauseReading() {
        loop.assertInLoop()
        guard fd >= 0, !isReadingPaused else { return }
        isReadingPaused = true
        updateInterest()
    }

    public func resumeReading() {
        loop.assertInLoop()
        guard fd >= 0, isReadingPaused else { return }
        isReadingPaused = false
        updateInterest()
    }

    /// Sends FIN once queued output is flushed, but keeps reading: a server that refuses a request
    /// early reads (and discards) what the client still sends, so the client sees the response rather
    /// than a reset ("lingering close").
    public func shutdownOutput() {
        loop.assertInLoop()
        guard fd >= 0 else { return }
        if writeOffset == writeQueue.count {
            _ = Glibc.shutdown(fd, Int32(SHUT_WR))
        } else {
            isShutdownWritePending = true
        }
    }

    public func close() {
        loop.assertInLoop()
        guard fd >= 0, !isClosing else { return }
        isClosing = true
        if writeOffset == writeQueue.count {
            finish(error: nil)
        } else {
            // Stop reading; finish once the queue drains (flush calls finish).
            isReadingPaused = true
            updateInterest()
        }
    }

    public func abort(error: (any Error)?) {
        loop.assertInLoop()
        guard fd >= 0 else { return }
        // SO_LINGER 0 makes close(2) send RST: the peer learns at once that data was dropped.
        var linger = Glibc.linger(l_onoff: 1, l_linger: 0)
        _ = setsockopt(fd, SOL_SOCKET, SO_LINGER, &linger, socklen_t(MemoryLayout<Glibc.linger>.size))
        finish(error: error)
    }

    private func finish(error: (any Error)?) {
        guard fd >= 0 else { return }
        loop.deregister(fd: fd)
        Linux.close(fd)
        fd = -1
        writeQueue = []
        writeOffset = 0
        let handler = self.handler
        retainedHandler = nil
        handler?.transportDidClose(error: error)
    }

    // MARK: - Connecting

    /// Connects to the first address that accepts, within `timeout` overall. Loop thread only;
    /// `completion` runs on the loop.
    static func connect(
        to addresses: [SocketAddress], loop: EventLoop, timeout: Duration,
        completion: @escaping (Result<TCPConnection, any Error>) -> Void
    ) {
        loop.assertInLoop()
        let attempt = ConnectAttempt(addresses: addresses, loop: loop, completion: completion)
        attempt.start(timeout: timeout)
    }
}

@available(*, unavailable)
extension TCPConnection: Sendable {}

/// One in-flight non-blocking connect, trying addresses in order. Loop-confined.
final class ConnectAttempt: LoopSelectable {
    private var addresses: [SocketAddress]
    private let loop: EventLoop
    private var completion: ((Result<TCPConnection, any Error>) -> Void)?
    private var fd: Int32 = -1
    private var current: SocketAddress?
    private var timer: TimerHandle?
    private var lastError: (any Error)?
    /// Keeps the attempt alive while the socket is registered.
    private var selfReference: ConnectAttempt?

    init(addresses: [SocketAddress], loop: EventLoop, completion: @escaping (Result<TCPConnection, any Error>) -> Void)
    {
        self.addresses = addresses
        self.loop = loop
        self.completion = completion
    }

    func start(timeout: Duration) {
        selfReference = self
        timer = loop.scheduleTimer(after: timeout) { [weak self] in
            self?.complete(.failure(TransportError.timedOut("connect to \(self?.current?.description ?? "?")")))
        }
        tryNext()
    }

    private func tryNext() {
        guard !addresses.isEmpty else {
            complete(.failure(lastError ?? TransportError("no address to connect to")))
            return
        }
        let address = addresses.removeFirst()
        current = address
        let s = socket(address.family, Linux.sockStream | Linux.sockNonBlock | Linux.sockCloExec, 0)
        guard s >= 0 else {
            lastError = SystemError.current("socket")
            tryNext()
            return
        }
        let rc = address.withSockAddr { Glibc.connect(s, $0, $1) }
        if rc == 0 || errno == EINPROGRESS {
            fd = s
            do {
                try loop.register(fd: s, events: Linux.epollOut, handler: self)
            } catch {
                Linux.close(s)
                fd = -1
                lastError = error
                tryNext()
            }
            return
        }
        lastError = SystemError(errno: errno, operation: "connect to \(address)")
        Linux.close(s)
        tryNext()
    }

    func ready(events: UInt32) {
        guard fd >= 0 else { return }
        var error: Int32 = 0
        var length = socklen_t(MemoryLayout<Int32>.size)
        _ = getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length)
        let s = fd
        loop.deregister(fd: s)
        fd = -1
        if error != 0 {
            Linux.close(s)
            lastError = SystemError(errno: error, operation: "connect to \(current?.description ?? "?")")
            tryNext()
            return
        }
        do {
            let connection = try TCPConnection(fd: s, loop: loop, remoteAddress: current)
            complete(.success(connection))
        } catch {
            complete(.failure(error))
        }
    }

    private func complete(_ result: Result<TCPConnection, any Error>) {
        guard let completion else { return }
        self.completion = nil
        if let timer { loop.cancelTimer(timer) }
        if fd >= 0 {
            loop.deregister(fd: fd)
            Linux.close(fd)
            fd = -1
        }
        selfReference = nil
        completion(result)
    }
}

/// A listening TCP socket that hands accepted connections to `onAccept`. Loop-confined.
public final class TCPListener: LoopSelectable {
    public let loop: EventLoop
    private var fd: Int32
    /// The bound address (with the kernel-chosen port when 0 was asked for).
    public let localAddress: SocketAddress
    private let onAccept: (TCPConnection) -> Void

    /// Binds and listens on `host:port` (port 0 picks a free port). Loop thread only.
    public init(
        host: String, port: Int, loop: EventLoop, backlog: Int32 = 1024, onAccept: @escaping (TCPConnection) -> Void
    )
        throws(SystemError)
    {
        loop.assertInLoop()
        guard let address = SocketAddress(ip: host.trimmingBrackets(), port: port) else {
            throw SystemError(errno: EINVAL, operation: "listen address \(host) is not a numeric IP")
        }
        let s = socket(address.family, Linux.sockStream | Linux.sockNonBlock | Linux.sockCloExec, 0)
        guard s >= 0 else { throw .current("socket") }
        var one: Int32 = 1
        _ = setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        guard address.withSockAddr({ bind(s, $0, $1) }) == 0 else {
            let error = SystemError.current("bind \(address)")
            Linux.close(s)
            throw error
        }
        guard listen(s, backlog) == 0 else {
            let error = SystemError.current("listen")
            Linux.close(s)
            throw error
        }
        var storage = sockaddr_storage()
        var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
        _ = withUnsafeMutablePointer(to: &storage) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(s, $0, &length) }
        }
        self.fd = s
        self.loop = loop
        self.localAddress = SocketAddress(storage: storage, length: length)
        self.onAccept = onAccept
        do {
            try loop.register(fd: s, events: Linux.epollIn, handler: self)
        } catch {
            Linux.close(s)
            self.fd = -1
            throw error
        }
    }

    deinit {
        if fd >= 0 { Linux.close(fd) }
    }

    /// The bound port.
    public var port: Int { localAddress.port }

    func ready(events: UInt32) {
        // Accept everything pending, bounded so one busy listener cannot starve the loop.
        for _ in 0..<64 {
            guard fd >= 0 else { return }
            var storage = sockaddr_storage()
            var length = socklen_t(MemoryLayout<sockaddr_storage>.size)
            let s = withUnsafeMutablePointer(to: &storage) {
                $0.withMemoryRebound(to: sockaddr.self, capacity: 1) {
                    clinux_accept4(fd, $0, &length, Linux.sockNonBlock | Linux.sockCloExec)
                }
            }
            if s < 0 {
                // EAGAIN: drained. ECONNABORTED/EMFILE etc.: skip this round; the listener stays up.
                return
            }
            do {
                let connection = try TCPConnection(
                    fd: s, loop: loop, remoteAddress: SocketAddress(storage: storage, length: length))
                onAccept(connection)
            } catch {
                continue  // registration failed; the TCPConnection init already closed the socket
            }
        }
    }

    /// Stops listening. Loop thread only.
    public func close() {
        loop.assertInLoop()
        guard fd >= 0 else { return }
        loop.deregister(fd: fd)
        Linux.close(fd)
        fd = -1
    }
}

@available(*, unavailable)
extension TCPListener: Sendable {}
