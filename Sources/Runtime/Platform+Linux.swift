internal import CLinux
@preconcurrency import Glibc

/// An operating-system error captured at the call site (STYLE.md §4).
public struct SystemError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The errno value.
    public var errno: Int32
    /// The call that failed, e.g. `connect`.
    public var operation: String

    public init(errno: Int32, operation: String) {
        self.errno = errno
        self.operation = operation
    }

    /// Captures the current errno for `operation`.
    static func current(_ operation: String) -> SystemError { SystemError(errno: Glibc.errno, operation: operation) }

    public var description: String { "\(operation): \(String(cString: strerror(errno))) (errno \(errno))" }
}

/// Linux constants and thin syscall wrappers used by the event loop and sockets.
enum Linux {
    // epoll event bits (sys/epoll.h); imported as an enum type by Swift, so restated as plain values.
    static let epollIn: UInt32 = 0x001
    static let epollOut: UInt32 = 0x004
    static let epollErr: UInt32 = 0x008
    static let epollHup: UInt32 = 0x010
    static let epollRdHup: UInt32 = 0x2000

    static let sockStream = Int32(SOCK_STREAM.rawValue)
    static let sockNonBlock = Int32(SOCK_NONBLOCK.rawValue)
    static let sockCloExec = Int32(SOCK_CLOEXEC.rawValue)
    static let eventFDNonBlock = Int32(EFD_NONBLOCK)
    static let eventFDCloExec = Int32(EFD_CLOEXEC)

    /// Monotonic time in nanoseconds (CLOCK_MONOTONIC).
    static func monotonicNanoseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_MONOTONIC, &ts)
        return Int64(ts.tv_sec) * 1_000_000_000 + Int64(ts.tv_nsec)
    }

    /// Wall-clock time in microseconds since the Unix epoch (CLOCK_REALTIME).
    static func wallClockMicroseconds() -> Int64 {
        var ts = timespec()
        clock_gettime(CLOCK_REALTIME, &ts)
        return Int64(ts.tv_sec) * 1_000_000 + Int64(ts.tv_nsec) / 1000
    }

    /// The kernel thread id of the caller.
    static func currentThreadID() -> Int32 { clinux_gettid() }

    /// Closes `fd`, ignoring EINTR (Linux always releases the descriptor, see close(2)).
    static func close(_ fd: Int32) {
        _ = Glibc.close(fd)
    }
}

/// The wall clock, for event timestamps (never for measuring intervals: use `EventLoop.now()`).
public enum WallClock {
    /// Microseconds since the Unix epoch (CLOCK_REALTIME).
    public static func microseconds() -> Int64 { Linux.wallClockMicroseconds() }
}
