import Locking
import Synchronization

/// A bounded, back-pressured hand-off from an event loop to async code.
///
/// The producer (the loop) calls `push`; when `capacity` elements already wait the element is
/// refused (`false`): the producer keeps it, pauses its source (e.g. stops reading a socket) and
/// pushes it again once `onDemand` runs — which happens (on the consumer's thread) when the consumer
/// has drained the queue to `lowWater`. Nothing is dropped and the queue never holds more than
/// `capacity` elements.
public final class AsyncQueue<Element: Sendable>: AsyncSequence, Sendable {
    private struct State {
        var items: [Element] = []
        var head = 0
        var waiter: CheckedContinuation<Element?, Never>?
        var isFinished = false
        var isProducerPaused = false
        var onDemand: (@Sendable () -> Void)?
        var count: Int { items.count - head }
    }
    private enum Outcome { case element(Element), end, wait, registered }
    private let state = Locked(State())
    /// Elements the queue holds at most.
    public let capacity: Int
    /// Elements at or below which a refused producer is told to resume.
    public let lowWater: Int

    /// Creates a queue; `capacity` must be positive and `lowWater` below it.
    public init(capacity: Int = 4096, lowWater: Int = 1024) {
        precondition(capacity > 0 && lowWater >= 0 && lowWater < capacity, "AsyncQueue needs 0 <= low < capacity")
        self.capacity = capacity
        self.lowWater = lowWater
    }

    /// Sets what runs when a paused producer may continue.
    public func setOnDemand(_ onDemand: @escaping @Sendable () -> Void) {
        state.withLock { $0.onDemand = onDemand }
    }

    /// Adds an element; returns false — without adding it — when the queue is full: the producer
    /// keeps the element and pauses until `onDemand` runs. After `finish` elements are discarded
    /// (returns true: there is nobody left to consume them).
    public func push(_ element: Element) -> Bool {
        let (waiter, accepted) = state.withLock { s -> (CheckedContinuation<Element?, Never>?, Bool) in
            guard !s.isFinished else { return (nil, true) }
            if let waiter = s.waiter {
                s.waiter = nil
                return (waiter, true)
            }
            guard s.count < capacity else {
                s.isProducerPaused = true
                return (nil, false)
            }
            s.items.append(element)
            return (nil, true)
        }
        waiter?.resume(returning: element)
        return accepted
    }

    /// Ends the sequence after the buffered elements.
    public func finish() {
        let waiter = state.withLock { s -> CheckedContinuation<Element?, Never>? in
            s.isFinished = true
            defer { s.waiter = nil }
            return s.waiter
        }
        waiter?.resume(returning: nil)
    }

    /// Number of buffered elements.
    public var count: Int { state.withLock { $0.count } }

    /// The next element, or nil when finished (or the task was cancelled).
    public func next() async -> Element? {
        if let (element, demand) = popBuffered() {
            demand?()
            return element
        }
        return await withTaskCancellationHandler {
            await withCheckedContinuation { (continuation: CheckedContinuation<Element?, Never>) in
                let outcome: Outcome = state.withLock { s in
                    if s.count > 0 {
                        // An element arrived between the fast path and here: take it the normal way.
                        return .wait
                    }
                    if s.isFinished || Task.isCancelled { return .end }
                    s.waiter = continuation
                    return .registered
                }
                switch outcome {
                case .element(let e): continuation.resume(returning: e)
                case .end: continuation.resume(returning: nil)
                case .wait:
                    // Pop it with the demand check (the producer may be waiting for low water).
                    if let (element, demand) = popBuffered() {
                        demand?()
                        continuation.resume(returning: element)
                    } else {
                        continuation.resume(returning: nil)
                    }
                case .registered: break
                }
            }
        } onCancel: {
            let waiter = state.withLock { s -> CheckedContinuation<Element?, Never>? in
                defer { s.waiter = nil }
                return s.waiter
            }
            waiter?.resume(returning: nil)
        }
    }

    /// The next buffered element without waiting (nil when none is buffered): a consumer that
    /// handles elements in batches takes what is there after one `next()`.
    public func nextBuffered() -> Element? {
        guard let (element, demand) = popBuffered() else { return nil }
        demand?()
        return element
    }

    private func popBuffered() -> (Element, (@Sendable () -> Void)?)? {
        state.withLock { s -> (Element, (@Sendable () -> Void)?)? in
            guard s.count > 0 else { return nil }
            let element = s.items[s.head]
            s.head += 1
            // Compact often enough that consumed elements are not kept alive long (memory stays
            // near `capacity`), rarely enough that it costs O(1) per element amortised.
            if s.head >= 32 && s.head * 2 > s.items.count {
                s.items.removeFirst(s.head)
                s.head = 0
            }
            var demand: (@Sendable () -> Void)? = nil
            if s.isProducerPaused && s.count <= lowWater {
                s.isProducerPaused = false
                demand = s.onDemand
            }
            return (element, demand)
        }
    }

    public struct AsyncIterator: AsyncIteratorProtocol {
        let queue: AsyncQueue
        public mutating func next() async -> Element? { await queue.next() }
    }

    public func makeAsyncIterator() -> AsyncIterator { AsyncIterator(queue: self) }
}
