import Foundation
public import MarketData
import Runtime
import Synchronization

/// The desired streams: pinned ones from the configuration file and API-added ones, the latter
/// persisted to `subscriptions.json` (written to a temporary file, fsynced, renamed) so they
/// survive restarts.
public final class SubscriptionRegistry: Sendable {
    public struct Entry: Sendable, Equatable {
        public var stream: StreamID
        public var isPinned: Bool
    }

    private let path: String?
    private let entries = Mutex<[StreamID: Bool]>([:])

    /// Loads API-added streams from `path` (if it exists) and adds `pinned`.
    public init(path: String?, pinned: [StreamID]) throws {
        self.path = path
        var table: [StreamID: Bool] = [:]
        if let path, FileManager.default.fileExists(atPath: path) {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let list = try JSONSerialization.jsonObject(with: data) as? [String] else {
                throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: path])
            }
            for text in list {
                guard let stream = StreamID(text) else { continue }  // a stream we no longer know is dropped
                table[stream] = false
            }
        }
        for stream in pinned { table[stream] = true }
        entries.withLock { $0 = table }
    }

    public var all: [Entry] {
        entries.withLock { $0.map { Entry(stream: $0.key, isPinned: $0.value) } }.sorted { $0.stream < $1.stream }
    }

    public func contains(_ stream: StreamID) -> Bool { entries.withLock { $0[stream] != nil } }

    public func isPinned(_ stream: StreamID) -> Bool { entries.withLock { $0[stream] == true } }

    /// Adds streams (all or nothing) and persists; returns the ones that were new.
    public func add(_ streams: [StreamID]) throws -> [StreamID] {
        try mutate { table in
            let new = streams.filter { table[$0] == nil }
            for stream in new { table[stream] = false }
            return new
        }
    }

    /// Removes unpinned streams and persists; returns the ones removed.
    public func remove(_ streams: [StreamID]) throws -> [StreamID] {
        try mutate { table in
            let present = streams.filter { table[$0] == false }
            for stream in present { table[stream] = nil }
            return present
        }
    }

    private func mutate(_ body: (inout [StreamID: Bool]) -> [StreamID]) throws -> [StreamID] {
        try entries.withLock { table in
            var copy = table
            let changed = body(&copy)
            if !changed.isEmpty { try persist(copy) }
            table = copy  // only after the file is safely written: nothing half-applied
            return changed
        }
    }

    private func persist(_ table: [StreamID: Bool]) throws {
        guard let path else { return }
        let list = table.filter { !$0.value }.keys.map(\.description).sorted()
        let data = try JSONSerialization.data(withJSONObject: list, options: [.prettyPrinted, .sortedKeys])
        try DurableFile.write(Array(data), to: path)
    }
}
