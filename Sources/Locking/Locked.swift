// A value behind a pthread mutex: the lock every module uses instead of Synchronization.Mutex.
//
// Why not `Mutex`: on Linux the standard library's Mutex parks threads with raw futex system calls,
// which ThreadSanitizer cannot see, so every access it protects is reported as a race (issue 13
// reproduced this with four threads and a counter). A pthread mutex is intercepted by TSan, so a
// TSan run reports only real races, with no suppressions. The cost is the same uncontended
// compare-and-swap; the lock is never held across a suspension point or I/O.
import Glibc

/// `value`, reachable only inside `withLock`. Same shape as `Synchronization.Mutex`.
public final class Locked<Value>: @unchecked Sendable {
    private let mutex: UnsafeMutablePointer<pthread_mutex_t>
    private var value: Value

    /// A lock around `value`.
    public init(_ value: sending Value) {
        mutex = .allocate(capacity: 1)
        mutex.initialize(to: pthread_mutex_t())
        let status = pthread_mutex_init(mutex, nil)
        precondition(status == 0, "pthread_mutex_init failed: \(status)")
        self.value = value
    }

    deinit {
        pthread_mutex_destroy(mutex)
        mutex.deinitialize(count: 1)
        mutex.deallocate()
    }

    /// Runs `body` with the value, holding the lock.
    public func withLock<Result: ~Copyable, E: Error>(
        _ body: (inout sending Value) throws(E) -> sending Result
    ) throws(E) -> sending Result {
        pthread_mutex_lock(mutex)
        defer { pthread_mutex_unlock(mutex) }
        return try body(&value)
    }
}
