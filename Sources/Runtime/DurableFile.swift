@preconcurrency import Glibc

/// Crash-safe file replacement: write a temporary file, fsync it, rename it over the target and
/// fsync the directory, so a reader sees the old contents or the new ones, never a torn file.
/// Blocking: call from a file-I/O queue, never from an event loop.
public enum DurableFile {
    /// Atomically replaces (or creates) `path` with `bytes`. With `sync: false` the replacement is
    /// atomic but not made durable (no fsync): for state that may safely go back after a crash.
    public static func write(_ bytes: [UInt8], to path: String, sync: Bool = true) throws(SystemError) {
        let temporary = path + ".tmp"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)
        guard fd >= 0 else { throw .current("open \(temporary)") }
        var offset = 0
        while offset < bytes.count {
            let n = bytes.withUnsafeBytes { Glibc.write(fd, $0.baseAddress! + offset, bytes.count - offset) }
            if n < 0 {
                if errno == EINTR { continue }
                let error = SystemError.current("write \(temporary)")
                Linux.close(fd)
                throw error
            }
            offset += n
        }
        guard !sync || fsync(fd) == 0 else {
            let error = SystemError.current("fsync \(temporary)")
            Linux.close(fd)
            throw error
        }
        Linux.close(fd)
        guard rename(temporary, path) == 0 else { throw .current("rename \(temporary)") }
        if sync { syncDirectory(of: path) }
    }

    /// Removes `path`; with `sync` (the default) the removal is made durable.
    public static func remove(_ path: String, sync: Bool = true) throws(SystemError) {
        guard unlink(path) == 0 else { throw .current("unlink \(path)") }
        if sync { syncDirectory(of: path) }
    }

    /// fsyncs the directory holding `path` (makes a rename or unlink durable). A failure leaves the
    /// file itself intact, so it is not reported.
    public static func syncDirectory(of path: String) {
        let directory = path.split(separator: "/", omittingEmptySubsequences: false).dropLast().joined(separator: "/")
        let fd = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return }
        _ = fsync(fd)
        Linux.close(fd)
    }
}
