@preconcurrency import Glibc

/// An exclusive `flock` on a file, held while this value lives (the kernel drops it when the
/// process dies, however it dies): one active coordinator per data directory.
public final class FileLock: Sendable {
    private let descriptor: Int32
    public let path: String

    public struct Failure: Error, CustomStringConvertible {
        public var description: String
    }

    private init(descriptor: Int32, path: String) {
        self.descriptor = descriptor
        self.path = path
    }

    /// The lock, or nil when another process holds it; throws when the file cannot be opened.
    public static func tryLock(_ path: String) throws(Failure) -> FileLock? {
        let fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw Failure(description: "cannot open lock file \(path): \(String(cString: strerror(errno)))")
        }
        guard flock(fd, LOCK_EX | LOCK_NB) == 0 else {
            let code = errno
            close(fd)
            if code == EWOULDBLOCK { return nil }
            throw Failure(description: "cannot lock \(path): \(String(cString: strerror(code)))")
        }
        return FileLock(descriptor: fd, path: path)
    }

    deinit { close(descriptor) }
}
