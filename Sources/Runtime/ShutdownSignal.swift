public import Dispatch
import Foundation
@preconcurrency import Glibc
import Synchronization

/// SIGTERM and SIGINT as one shutdown request: the first starts a graceful shutdown, a second
/// exits at once (130). SIGPIPE is ignored.
public final class ShutdownRequest: Sendable {
    private let semaphore = DispatchSemaphore(value: 0)
    private let raised = Atomic<Bool>(false)
    private let count = Atomic<Int>(0)

    public init() {}

    /// Installs the handlers; the caller keeps the returned sources for the life of the process.
    public func install(program: String) -> [any DispatchSourceSignal] {
        signal(SIGPIPE, SIG_IGN)
        return [SIGTERM, SIGINT].map { sig in
            signal(sig, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: sig, queue: .global())
            source.setEventHandler { @Sendable [self] in
                if count.add(1, ordering: .relaxed).newValue > 1 {
                    FileHandle.standardError.write(Data("\(program): second signal, exiting now\n".utf8))
                    exit(130)
                }
                raised.store(true, ordering: .relaxed)
                semaphore.signal()
            }
            source.resume()
            return source
        }
    }

    /// Whether a shutdown was asked for (without waiting).
    public var isRaised: Bool { raised.load(ordering: .relaxed) }

    /// Waits for the first signal on a thread of its own: blocking a Dispatch pool thread instead
    /// starves the cooperative pool of a process pinned to one CPU.
    public func wait() async {
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            let thread = Thread { [semaphore] in
                semaphore.wait()
                continuation.resume()
            }
            thread.name = "shutdown-signal"
            thread.start()
        }
    }
}
