/// Receives what a transport produces. Loop-confined: every call happens on the transport's loop.
public protocol TransportHandler: AnyObject {
    /// Bytes arrived; the buffer is valid only during the call.
    func transportDidReceive(_ bytes: UnsafeRawBufferPointer)
    /// The transport closed: `nil` for an orderly close (EOF, our own close), otherwise why.
    func transportDidClose(error: (any Error)?)
    /// Queued output crossed the high- or low-water mark.
    func transportWritabilityChanged(isWritable: Bool)
}

extension TransportHandler {
    public func transportWritabilityChanged(isWritable: Bool) {}
}

/// A connected byte stream (plain TCP or TLS over TCP). Loop-confined.
public protocol Transport: AnyObject {
    /// The loop every call must be made on.
    var loop: EventLoop { get }
    /// Where received bytes and the close go.
    var handler: (any TransportHandler)? { get set }
    /// False while queued output is above the high-water mark (back-pressure for writers).
    var isWritable: Bool { get }
    /// Whether the transport is still open.
    var isOpen: Bool { get }
    /// Queues bytes for sending.
    func write(_ bytes: UnsafeRawBufferPointer)
    /// Closes after queued output is sent (TLS: after close_notify).
    func close()
    /// Closes at once, dropping queued output.
    func abort(error: (any Error)?)
    /// Stops reading (the kernel buffer then pushes back on the peer).
    func pauseReading()
    /// Resumes reading.
    func resumeReading()
}

extension Transport {
    /// Queues bytes for sending.
    public func write(_ bytes: [UInt8]) { bytes.withUnsafeBytes { write($0) } }
}

/// Transport-level failures that are not a single syscall's.
public struct TransportError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }

    /// The operation did not finish in time.
    public static func timedOut(_ what: String) -> TransportError { TransportError("\(what) timed out") }
}
