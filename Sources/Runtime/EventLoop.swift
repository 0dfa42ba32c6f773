internal import CLinux
public import CollectorCore
import Foundation
@preconcurrency import Glibc
import Locking
import Synchronization

/// Something registered with the event loop for readiness events. Loop-confined.
protocol LoopSelectable: AnyObject {
    /// Called on the loop with the epoll event bits that fired.
    func ready(events: UInt32)
}

/// A timer registered with `EventLoop.scheduleTimer`.
public struct TimerHandle: Hashable, Sendable {
    let id: UInt64
}

/// One thread running an epoll loop: readiness events, timers and work posted from other threads.
///
/// Ownership: every socket, timer and protocol machine registered here is confined to this thread;
/// other threads reach it only through `execute` (a Mutex-protected inbox plus an eventfd wake-up).
/// Timers fire at millisecond resolution (epoll_wait's timeout unit).
public final class EventLoop: @unchecked Sendable {
    // @unchecked Sendable: mutable state below is touched only on the loop thread (asserted with
    // `assertInLoop`), except `inbox` (a Mutex) and `wakeFD` (eventfd writes are thread-safe).
    private let epollFD: Int32
    private let wakeFD: Int32
    private let inbox = Locked<Inbox>(Inbox())
    private var selectables: [Int32: any LoopSelectable] = [:]
    private var timerHeap = TimerHeap()
    private var timerCallbacks: [UInt64: () -> Void] = [:]
    private var nextTimerID: UInt64 = 1
    private let loopThreadID = Atomic<Int32>(0)
    private let stopped = Atomic<Bool>(false)
    private let finished = DispatchSemaphore(value: 0)
    /// One read buffer shared by every socket on this loop (handlers consume it synchronously).
    let readBuffer: UnsafeMutableRawBufferPointer
    /// The loop's name, for logs and thread names.
    public let name: String

    private struct Inbox {
        var tasks: [@Sendable () -> Void] = []
        var isWakePending = false
    }

    /// Limits of the loop.
    public enum Limits {
        /// Bytes read per read(2): large enough that one call drains a busy exchange socket
        /// (≈1,400 OKX trade frames), small enough to stay in L2 cache.
        public static let readBufferBytes = 256 * 1024
        /// epoll events handled per wake-up.
        static let maxEventsPerWake = 256
    }

    /// Starts a loop on a new thread.
    public static func start(name: String = "event-loop") throws(SystemError) -> EventLoop {
        let loop = try EventLoop(name: name)
        let ready = DispatchSemaphore(value: 0)
        let thread = Thread {
            loop.loopThreadID.store(Linux.currentThreadID(), ordering: .releasing)
            ready.signal()
            loop.run()
        }
        thread.name = name
        thread.stackSize = 8 << 20
        thread.start()
        ready.wait()
        return loop
    }

    private init(name: String) throws(SystemError) {
        self.name = name
        let ep = epoll_create1(Int32(EPOLL_CLOEXEC))
        guard ep >= 0 else { throw .current("epoll_create1") }
        let wake = eventfd(0, Linux.eventFDNonBlock | Linux.eventFDCloExec)
        guard wake >= 0 else {
            Linux.close(ep)
            throw .current("eventfd")
        }
        epollFD = ep
        wakeFD = wake
        readBuffer = UnsafeMutableRawBufferPointer.allocate(byteCount: Limits.readBufferBytes, alignment: 16)
        var event = epoll_event()
        event.events = Linux.epollIn
        event.data.fd = wake
        guard epoll_ctl(ep, EPOLL_CTL_ADD, wake, &event) == 0 else { throw .current("epoll_ctl(eventfd)") }
    }

    deinit {
        Linux.close(epollFD)
        Linux.close(wakeFD)
        readBuffer.deallocate()
    }

    /// Whether the caller runs on this loop's thread.
    public var inEventLoop: Bool { loopThreadID.load(ordering: .acquiring) == Linux.currentThreadID() }

    /// Traps (in debug builds) unless called on the loop thread.
    public func assertInLoop(file: StaticString = #fileID, line: UInt = #line) {
        assert(inEventLoop, "called off the event loop '\(name)'", file: file, line: line)
    }

    /// The loop's monotonic clock.
    public func now() -> Instant { Instant(nanoseconds: Linux.monotonicNanoseconds()) }

    /// Runs `work` on the loop thread soon. Safe from any thread.
    public func execute(_ work: @escaping @Sendable () -> Void) {
        let needsWake = inbox.withLock { inbox -> Bool in
            inbox.tasks.append(work)
            if inbox.isWakePending { return false }
            inbox.isWakePending = true
            return true
        }
        // Also from the loop itself: the loop may be about to block in epoll_wait.
        if needsWake { wake() }
    }

    private func wake() {
        var one: UInt64 = 1
        // EAGAIN means the counter is already non-zero: the loop will wake anyway.
        _ = Glibc.write(wakeFD, &one, 8)
    }

    /// Schedules `callback` on the loop after `delay`. Loop thread only.
    @discardableResult
    public func scheduleTimer(after delay: Duration, _ callback: @escaping () -> Void) -> TimerHandle {
        assertInLoop()
        let id = nextTimerID
        nextTimerID += 1
        let deadline = Linux.monotonicNanoseconds() &+ max(0, delay.nanosecondsClamped)
        timerHeap.push(TimerHeap.Entry(deadline: deadline, id: id))
        timerCallbacks[id] = callback
        return TimerHandle(id: id)
    }

    /// Cancels a timer; harmless if it already fired. Loop thread only.
    public func cancelTimer(_ handle: TimerHandle) {
        assertInLoop()
        timerCallbacks[handle.id] = nil
    }

    /// Registers `fd` for `events`. Loop thread only.
    func register(fd: Int32, events: UInt32, handler: any LoopSelectable) throws(SystemError) {
        assertInLoop()
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        guard epoll_ctl(epollFD, EPOLL_CTL_ADD, fd, &event) == 0 else { throw .current("epoll_ctl(ADD)") }
        selectables[fd] = handler
    }

    /// Changes the events `fd` waits for. Loop thread only.
    func modify(fd: Int32, events: UInt32) {
        assertInLoop()
        var event = epoll_event()
        event.events = events
        event.data.fd = fd
        // Fails only for an fd we never registered: a programmer error.
        let rc = epoll_ctl(epollFD, EPOLL_CTL_MOD, fd, &event)
        assert(rc == 0, "epoll_ctl(MOD) on unregistered fd \(fd): errno \(errno)")
    }

    /// Removes `fd` from the loop (call before closing it). Loop thread only.
    func deregister(fd: Int32) {
        assertInLoop()
        // ENOENT/EBADF only if the fd was never registered or already closed; either way it is gone.
        _ = epoll_ctl(epollFD, EPOLL_CTL_DEL, fd, nil)
        selectables[fd] = nil
    }

    /// Stops the loop after the work already posted, and waits for its thread to finish.
    /// Call from outside the loop.
    public func shutdown() {
        precondition(!inEventLoop, "EventLoop.shutdown() would wait for itself")
        execute { [self] in stopped.store(true, ordering: .releasing) }
        finished.wait()
    }

    /// `shutdown()` for async callers: the wait for the loop's thread happens on a thread of its
    /// own, so a cooperative-pool thread is never blocked by a loop finishing a long callback.
    public func shutdown() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            Thread {
                self.shutdown()
                continuation.resume()
            }.start()
        }
    }

    private func run() {
        let events = UnsafeMutablePointer<epoll_event>.allocate(capacity: Limits.maxEventsPerWake)
        defer {
            events.deallocate()
            finished.signal()
        }
        while !stopped.load(ordering: .acquiring) {
            let timeout = nextTimeoutMillis()
            let n = epoll_wait(epollFD, events, Int32(Limits.maxEventsPerWake), timeout)
            if n < 0 {
                if errno == EINTR { continue }
                // epoll_wait fails otherwise only for a bad epoll fd: our own bug.
                preconditionFailure("epoll_wait failed: errno \(errno)")
            }
            for i in 0..<Int(n) {
                let fd = events[i].data.fd
                if fd == wakeFD {
                    var value: UInt64 = 0
                    _ = Glibc.read(wakeFD, &value, 8)  // reset the eventfd counter; EAGAIN is fine
                    continue
                }
                // A handler may close other fds during this batch: look each one up fresh.
                selectables[fd]?.ready(events: events[i].events)
            }
            runTimers()
            runInbox()
        }
        // Drop registrations so sockets and timers are released with the loop.
        selectables.removeAll()
        timerCallbacks.removeAll()
    }

    private func nextTimeoutMillis() -> Int32 {
        let hasWork = inbox.withLock { !$0.tasks.isEmpty }
        if hasWork { return 0 }
        while let top = timerHeap.peek(), timerCallbacks[top.id] == nil { _ = timerHeap.pop() }
        guard let top = timerHeap.peek() else { return -1 }
        let delta = top.deadline - Linux.monotonicNanoseconds()
        if delta <= 0 { return 0 }
        return Int32(min((delta + 999_999) / 1_000_000, Int64(Int32.max)))
    }

    private func runTimers() {
        let now = Linux.monotonicNanoseconds()
        while let top = timerHeap.peek(), top.deadline <= now {
            _ = timerHeap.pop()
            if let callback = timerCallbacks.removeValue(forKey: top.id) { callback() }
        }
    }

    private func runInbox() {
        let tasks = inbox.withLock { inbox -> [@Sendable () -> Void] in
            inbox.isWakePending = false
            defer { inbox.tasks.removeAll(keepingCapacity: true) }
            return inbox.tasks
        }
        for task in tasks { task() }
    }
}

/// A binary min-heap of timer deadlines.
struct TimerHeap {
    struct Entry {
        var deadline: Int64
        var id: UInt64
        func precedes(_ other: Entry) -> Bool {
            deadline < other.deadline || (deadline == other.deadline && id < other.id)
        }
    }
    private var items: [Entry] = []

    func peek() -> Entry? { items.first }

    mutating func push(_ entry: Entry) {
        items.append(entry)
        var child = items.count - 1
        while child > 0 {
            let parent = (child - 1) / 2
            guard items[child].precedes(items[parent]) else { break }
            items.swapAt(child, parent)
            child = parent
        }
    }

    mutating func pop() -> Entry? {
        guard !items.isEmpty else { return nil }
        items.swapAt(0, items.count - 1)
        let top = items.removeLast()
        var parent = 0
        while true {
            let left = 2 * parent + 1
            let right = left + 1
            var smallest = parent
            if left < items.count && items[left].precedes(items[smallest]) { smallest = left }
            if right < items.count && items[right].precedes(items[smallest]) { smallest = right }
            if smallest == parent { break }
            items.swapAt(parent, smallest)
            parent = smallest
        }
        return top
    }
}

/// A value confined to one event loop that may be passed across threads but read only on that loop
/// (after swift-nio's NIOLoopBound).
public struct LoopBound<Value>: @unchecked Sendable {
    // @unchecked Sendable: `value` is only accessed on `loop`'s thread (asserted on every access).
    private let storage: Value
    /// The loop that owns the value.
    public let loop: EventLoop

    /// Wraps `value`; must be called on `loop`.
    public init(_ value: Value, loop: EventLoop) {
        loop.assertInLoop()
        self.storage = value
        self.loop = loop
    }

    /// The value; asserts that the caller is on the owning loop.
    public var value: Value {
        loop.assertInLoop()
        return storage
    }
}
