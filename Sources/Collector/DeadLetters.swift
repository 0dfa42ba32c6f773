import Foundation
public import MarketData
import Synchronization
import WireCore

/// Unparseable or invalid messages, kept with their raw text and the reason (DESIGN.md §4):
/// `<data>/dead-letters/<YYYY-MM-DD>.jsonl`, one JSON object per line. Writes happen on a private
/// queue, never on the event loop.
public final class DeadLetters: Sendable {
    public let directory: String
    private let queue = DispatchQueue(label: "collector.dead-letters")
    private let counter = Atomic<Int>(0)

    public init(directory: String) throws {
        self.directory = directory
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    /// How many records were written.
    public var count: Int { counter.load(ordering: .relaxed) }

    /// Records `raw` (as received) with `reason`.
    public func record(exchange: ExchangeName, raw: String, reason: String, at time: Int64) {
        counter.add(1, ordering: .relaxed)
        let line =
            "{\"time\":\(JSONText.quoted(UTCCalendar.iso8601(microseconds: time))),\"exchange\":\"\(exchange)\",\"reason\":\(JSONText.quoted(reason)),\"raw\":\(JSONText.quoted(raw))}\n"
        let date = UTCCalendar.iso8601(microseconds: time).prefix(10)
        let path = "\(directory)/\(date).jsonl"
        queue.async {
            if !FileManager.default.fileExists(atPath: path) {
                _ = FileManager.default.createFile(atPath: path, contents: nil)  // failure shows in the open below
            }
            // A dead-letter write failure must not take the collector down; it is counted above.
            guard let handle = FileHandle(forWritingAtPath: path) else { return }
            defer { try? handle.close() }  // closing a file we only appended to cannot lose data already written
            _ = try? handle.seekToEnd()
            try? handle.write(contentsOf: Data(line.utf8))
        }
    }

    /// Waits until queued records are on disk (tests and shutdown).
    public func flush() { queue.sync {} }
}
