import Foundation
import Locking
import Synchronization
import WireCore

/// Log severity, lowest first.
public enum LogLevel: Int, Sendable, Comparable, CaseIterable {
    case trace, debug, info, notice, warning, error

    public static func < (lhs: LogLevel, rhs: LogLevel) -> Bool { lhs.rawValue < rhs.rawValue }

    /// Parses `trace`…`error`.
    public init?(name: String) {
        guard let level = Self.allCases.first(where: { "\($0)" == name }) else { return nil }
        self = level
    }
}

/// Where log records go (after swift-log's split: `Logger` is a value, the handler is a protocol).
public protocol LogHandler: Sendable {
    func log(level: LogLevel, label: String, message: String, metadata: [String: String])
}

/// A logging value: label, minimum level and metadata attached once (e.g. per connection).
/// Messages are constant phrases; data goes in metadata under dotted keys (STYLE.md §7).
public struct Logger: Sendable {
    public let label: String
    public var minimumLevel: LogLevel
    public var metadata: [String: String]
    private let handler: any LogHandler

    public init(
        label: String, handler: any LogHandler, minimumLevel: LogLevel = .info, metadata: [String: String] = [:]
    ) {
        self.label = label
        self.handler = handler
        self.minimumLevel = minimumLevel
        self.metadata = metadata
    }

    /// A logger that discards everything (the default for libraries until a process gives one).
    public static let disabled = Logger(label: "disabled", handler: DiscardingLogHandler(), minimumLevel: .error)

    public func log(_ level: LogLevel, _ message: @autoclosure () -> String, _ extra: [String: String] = [:]) {
        guard level >= minimumLevel else { return }
        handler.log(level: level, label: label, message: message(), metadata: metadata.merging(extra) { _, new in new })
    }

    public func trace(_ message: @autoclosure () -> String, _ extra: [String: String] = [:]) {
        log(.trace, message(), extra)
    }
    public func debug(_ message: @autoclosure () -> String, _ extra: [String: String] = [:]) {
        log(.debug, message(), extra)
    }
    public func info(_ message: @autoclosure () -> String, _ extra: [String: String] = [:]) {
        log(.info, message(), extra)
    }
    public func notice(_ message: @autoclosure () -> String, _ extra: [String: String] = [:]) {
        log(.notice, message(), extra)
    }
    public func warning(_ message: @autoclosure () -> String, _ extra: [String: String] = [:]) {
        log(.warning, message(), extra)
    }
    public func error(_ message: @autoclosure () -> String, _ extra: [String: String] = [:]) {
        log(.error, message(), extra)
    }

    /// The same logger with more metadata.
    public func with(_ extra: [String: String]) -> Logger {
        var copy = self
        copy.metadata.merge(extra) { _, new in new }
        return copy
    }
}

struct DiscardingLogHandler: LogHandler {
    func log(level: LogLevel, label: String, message: String, metadata: [String: String]) {}
}

/// One JSON object per line on stderr: `{"ts":…,"level":…,"label":…,"msg":…, metadata…}`.
public struct JSONLineLogHandler: LogHandler {
    public init() {}

    public func log(level: LogLevel, label: String, message: String, metadata: [String: String]) {
        let micros = Int64(Date().timeIntervalSince1970 * 1_000_000)
        var parts = [
            "\"ts\":\(quote(Self.iso8601(micros)))", "\"level\":\"\(level)\"", "\"label\":\(quote(label))",
            "\"msg\":\(quote(message))",
        ]
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) { parts.append("\(quote(key)):\(quote(value))") }
        FileHandle.standardError.write(Data(("{" + parts.joined(separator: ",") + "}\n").utf8))
    }

    private func quote(_ s: String) -> String { JSONText.quoted(s) }

    static func iso8601(_ micros: Int64) -> String {
        let date = Date(timeIntervalSince1970: Double(micros) / 1e6)
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!  // UTC always exists
        let c = calendar.dateComponents([.year, .month, .day, .hour, .minute, .second], from: date)
        return String(
            format: "%04d-%02d-%02dT%02d:%02d:%02d.%06dZ", c.year ?? 0, c.month ?? 0, c.day ?? 0, c.hour ?? 0,
            c.minute ?? 0, c.second ?? 0, Int(micros % 1_000_000))
    }
}

/// Keeps records in memory, for tests (one per test: no global bootstrap).
public final class InMemoryLogHandler: LogHandler {
    public struct Record: Sendable, Equatable {
        public var level: LogLevel
        public var label: String
        public var message: String
        public var metadata: [String: String]
    }
    private let records = Locked<[Record]>([])

    public init() {}

    public func log(level: LogLevel, label: String, message: String, metadata: [String: String]) {
        records.withLock { $0.append(Record(level: level, label: label, message: message, metadata: metadata)) }
    }

    public var all: [Record] { records.withLock { $0 } }
}

/// One human-readable line per record on stderr: `2026-12-04T11:47:43.123Z WARNING label: msg
/// key=value …` (values with spaces or quotes quoted). `LOG_FORMAT=text`, the default on a terminal.
public struct TextLogHandler: LogHandler {
    public init() {}

    public func log(level: LogLevel, label: String, message: String, metadata: [String: String]) {
        FileHandle.standardError.write(
            Data(Self.line(level: level, label: label, message: message, metadata: metadata).utf8))
    }

    /// The line written for a record (with its newline), with the current time.
    public static func line(level: LogLevel, label: String, message: String, metadata: [String: String]) -> String {
        let micros = Int64(Date().timeIntervalSince1970 * 1_000_000)
        let stamp = JSONLineLogHandler.iso8601(micros)
        // Milliseconds are enough to read; JSON lines keep microseconds.
        var out =
            String(stamp.prefix(23)) + "Z " + "\(level)".uppercased().padding(toLength: 7, withPad: " ", startingAt: 0)
        out += " \(label): \(message)"
        for (key, value) in metadata.sorted(by: { $0.key < $1.key }) {
            let plain = !value.isEmpty && value.allSatisfy { !$0.isWhitespace && $0 != "\"" && $0 != "=" }
            out += " \(key)=" + (plain ? value : JSONText.quoted(value))
        }
        return out + "\n"
    }
}

/// The log formats a process offers (`LOG_FORMAT`).
public enum LogFormat: String, Sendable, CaseIterable {
    case text, json

    /// `text` or `json` as asked; nil: text when stderr is a terminal, JSON lines otherwise.
    public static func resolve(_ asked: String?, stderrIsTerminal: Bool? = nil) -> LogFormat {
        asked.flatMap(LogFormat.init(rawValue:)) ?? ((stderrIsTerminal ?? (isatty(2) != 0)) ? .text : .json)
    }

    public var handler: any LogHandler {
        switch self {
        case .text: TextLogHandler()
        case .json: JSONLineLogHandler()
        }
    }
}
