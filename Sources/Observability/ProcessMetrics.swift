import Foundation

/// The process's own resource use, read from procfs (Linux) at scrape time, under the names, types
/// and help texts of Prometheus client_golang's process collector, so that standard dashboards and
/// alerts work unchanged.
///
/// | Family | Type | Source |
/// |---|---|---|
/// | `process_cpu_seconds_total` | counter | `/proc/self/stat` utime + stime, in USER_HZ ticks |
/// | `process_resident_memory_bytes` | gauge | `/proc/self/status` VmRSS (kB) |
/// | `process_virtual_memory_bytes` | gauge | `/proc/self/stat` vsize |
/// | `process_open_fds` | gauge | entries of `/proc/self/fd` |
/// | `process_max_fds` | gauge | `/proc/self/limits` "Max open files", soft limit |
/// | `process_start_time_seconds` | gauge | `/proc/stat` btime + `/proc/self/stat` starttime |
///
/// A file that cannot be read or parsed (another OS, a locked-down procfs) leaves its family
/// without samples; the scrape never fails because of it.
enum ProcessMetrics {
    /// Clock ticks per second of procfs's time fields. USER_HZ is fixed at 100 in the Linux
    /// userspace ABI (what `sysconf(_SC_CLK_TCK)` answers); prometheus/procfs hard-codes it the same
    /// way, and this target does not import Glibc to ask.
    static let ticksPerSecond = 100.0

    /// The fields of `/proc/<pid>/stat` we export.
    struct Stat {
        /// User plus system CPU time, in ticks.
        var cpuTicks: UInt64
        /// Start time after boot, in ticks.
        var startTicks: UInt64
        /// Virtual memory size, in bytes.
        var virtualBytes: UInt64

        /// Parses one `stat` line. The command name (field 2) is in parentheses and may itself hold
        /// spaces or parentheses, so fields are counted from the last `)`.
        init?(_ text: String) {
            guard let close = text.lastIndex(of: ")") else { return nil }
            // After ")": field 3 (state) is index 0, so field n is index n - 3.
            let fields = text[text.index(after: close)...].split(separator: " ", omittingEmptySubsequences: true)
            guard fields.count > 20, let utime = UInt64(fields[11]), let stime = UInt64(fields[12]),
                let start = UInt64(fields[19]), let vsize = UInt64(fields[20])
            else { return nil }
            cpuTicks = utime + stime
            startTicks = start
            virtualBytes = vsize
        }
    }

    /// `VmRSS` of a `/proc/<pid>/status` text, in bytes (the file gives kB).
    static func residentBytes(status text: String) -> Double? {
        value(after: "VmRSS:", in: text).flatMap { Double($0) }.map { $0 * 1024 }
    }

    /// The soft "Max open files" limit of a `/proc/<pid>/limits` text (+Inf when unlimited).
    static func maxOpenFiles(limits text: String) -> Double? {
        guard let soft = value(after: "Max open files", in: text) else { return nil }
        return soft == "unlimited" ? .infinity : Double(soft)
    }

    /// `btime` (boot time, Unix seconds) of a `/proc/stat` text.
    static func bootTime(stat text: String) -> Double? {
        value(after: "btime", in: text).flatMap { Double($0) }
    }

    /// The first word after `prefix` on the line that starts with it.
    private static func value(after prefix: String, in text: String) -> String? {
        for line in text.split(separator: "\n") where line.hasPrefix(prefix) {
            return line.dropFirst(prefix.count).split(whereSeparator: { $0 == " " || $0 == "\t" }).first.map(
                String.init)
        }
        return nil
    }

    /// The text of a procfs file, or nil if it cannot be read.
    static func read(_ path: String) -> String? {
        // try?: an unreadable file only means its samples are left out (see the type's comment).
        try? String(contentsOfFile: path, encoding: .utf8)
    }

    /// Open file descriptors: the entries of `/proc/self/fd` (counting the one listing it, as
    /// client_golang does).
    static func openFileDescriptors() -> Double? {
        // try?: no procfs, no sample (see the type's comment).
        (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/fd")).map { Double($0.count) }
    }

    /// The compiler's version this binary was built with, major.minor (for `collector_build_info`).
    static let swiftVersion: String = {
        #if compiler(>=6.5)
            return "6.5+"
        #elseif compiler(>=6.4)
            return "6.4"
        #elseif compiler(>=6.3)
            return "6.3"
        #elseif compiler(>=6.2)
            return "6.2"
        #elseif compiler(>=6.1)
            return "6.1"
        #else
            return "6.0"
        #endif
    }()
}

extension MetricsRegistry {
    /// Registers `collector_build_info{version,swift}` (always 1) and the standard `process_*`
    /// families (see `ProcessMetrics`), each computed when `render()` runs.
    ///
    /// Call once per process, on the registry its `/metrics` serves. Rendering then reads a few
    /// small procfs files on the rendering thread (never call `render()` on the event loop).
    public func registerStandardMetrics(version: String) {
        gauge(
            "collector_build_info", help: "Build information: the collector's version and the Swift compiler's.",
            labels: [("version", version), ("swift", ProcessMetrics.swiftVersion)]
        ).set(1)
        @Sendable func stat() -> ProcessMetrics.Stat? { ProcessMetrics.read("/proc/self/stat").flatMap { .init($0) } }
        @Sendable func sample(_ value: Double?) -> [Sample] { value.map { [Sample([], $0)] } ?? [] }
        // Boot time and the start tick never change: read once.
        let startTime = ProcessMetrics.read("/proc/stat").flatMap { ProcessMetrics.bootTime(stat: $0) }
            .flatMap { boot in stat().map { boot + Double($0.startTicks) / ProcessMetrics.ticksPerSecond } }
        registerCollector(
            "process_cpu_seconds_total", help: "Total user and system CPU time spent in seconds.", kind: .counter
        ) { sample(stat().map { Double($0.cpuTicks) / ProcessMetrics.ticksPerSecond }) }
        registerCollector(
            "process_resident_memory_bytes", help: "Resident memory size in bytes.", kind: .gauge
        ) { sample(ProcessMetrics.read("/proc/self/status").flatMap { ProcessMetrics.residentBytes(status: $0) }) }
        registerCollector(
            "process_virtual_memory_bytes", help: "Virtual memory size in bytes.", kind: .gauge
        ) { sample(stat().map { Double($0.virtualBytes) }) }
        registerCollector("process_open_fds", help: "Number of open file descriptors.", kind: .gauge) {
            sample(ProcessMetrics.openFileDescriptors())
        }
        registerCollector("process_max_fds", help: "Maximum number of open file descriptors.", kind: .gauge) {
            sample(ProcessMetrics.read("/proc/self/limits").flatMap { ProcessMetrics.maxOpenFiles(limits: $0) })
        }
        registerCollector(
            "process_start_time_seconds", help: "Start time of the process since unix epoch in seconds.", kind: .gauge
        ) { sample(startTime) }
    }
}
