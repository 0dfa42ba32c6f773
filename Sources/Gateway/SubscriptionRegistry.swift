import Foundation
public import MarketData
import Runtime
import Synchronization

/// The desired streams: pinned ones from the configuration file and API-added ones, the latter
/// persisted to `subscriptions.json` (written to a temporary file, fsynced, renamed) so they
/// survive restarts. The file is a JSON array: a stream on one worker is its name; one with
/// `replicas` above 1 is `{"stream": name, "replicas": n}`.
public final class SubscriptionRegistry: Sendable {
    public struct Entry: Sendable, Equatable {
        public var stream: StreamID
        public var isPinned: Bool
        /// How many distinct workers run it.
        public var replicas = 1
    }

    struct Value: Sendable, Equatable {
        var pinned: Bool
        var replicas = 1
    }

    private let path: String?
    private let entries = Mutex<[StreamID: Value]>([:])

    /// Loads API-added streams from `path` (if it exists) and adds `pinned`.
    public init(path: String?, pinned: [StreamID]) throws {
        self.path = path
        var table: [StreamID: Value] = [:]
        if let path, FileManager.default.fileExists(atPath: path) {
            let data = try Data(contentsOf: URL(fileURLWithPath: path))
            guard let list = try JSONSerialization.jsonObject(with: data) as? [Any] else {
                throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: path])
            }
            for item in list {
                let text: String?
                var replicas = 1
                if let name = item as? String {
                    text = name
                } else if let object = item as? [String: Any], let name = object["stream"] as? String {
                    text = name
                    replicas = max(1, object["replicas"] as? Int ?? 1)
                } else {
                    text = nil
                }
                guard let text, let stream = StreamID(text) else {
                    throw CocoaError(.fileReadCorruptFile, userInfo: [NSFilePathErrorKey: path])
                }
                table[stream] = Value(pinned: false, replicas: replicas)
            }
        }
        for stream in pinned { table[stream] = Value(pinned: true) }
        entries.withLock { $0 = table }
    }

    public var all: [Entry] {
        entries.withLock { $0.map { Entry(stream: $0.key, isPinned: $0.value.pinned, replicas: $0.value.replicas) } }
            .sorted { $0.stream < $1.stream }
    }

    public func contains(_ stream: StreamID) -> Bool { entries.withLock { $0[stream] != nil } }

    public func isPinned(_ stream: StreamID) -> Bool { entries.withLock { $0[stream]?.pinned == true } }

    /// Adds streams (all or nothing) and persists; returns the ones that were new.
    public func add(_ streams: [StreamID], replicas: Int = 1) throws -> [StreamID] {
        try mutate { table in
            let new = streams.filter { table[$0] == nil }
            for stream in new { table[stream] = Value(pinned: false, replicas: max(1, replicas)) }
            return new
        }
    }

    /// Removes unpinned streams and persists; returns the ones removed.
    public func remove(_ streams: [StreamID]) throws -> [StreamID] {
        try mutate { table in
            let present = streams.filter { table[$0]?.pinned == false }
            for stream in present { table[stream] = nil }
            return present
        }
    }

    private func mutate(_ body: (inout [StreamID: Value]) -> [StreamID]) throws -> [StreamID] {
        try entries.withLock { table in
            var copy = table
            let changed = body(&copy)
            if !changed.isEmpty { try persist(copy) }
            table = copy  // only after the file is safely written: nothing half-applied
            return changed
        }
    }

    private func persist(_ table: [StreamID: Value]) throws {
        guard let path else { return }
        let list: [Any] = table.filter { !$0.value.pinned }.sorted { $0.key < $1.key }.map {
            $0.value.replicas == 1
                ? $0.key.description as Any : ["stream": $0.key.description, "replicas": $0.value.replicas] as Any
        }
        let data = try JSONSerialization.data(withJSONObject: list, options: [.prettyPrinted, .sortedKeys])
        try DurableFile.write(Array(data), to: path)
    }
}
