public import Collector
import Foundation
import Locking
public import MarketData
import Runtime
import Synchronization

/// The desired streams: pinned ones from the configuration file and API-added ones, the latter
/// persisted as `subscriptions.json` (a `DATA_DIR` file replaced atomically, or a database row;
/// see ``StateDocuments``) so they survive restarts and a standby's take-over. The document is a
/// JSON array: a stream on one worker is its name; one with `replicas` above 1 is
/// `{"stream": name, "replicas": n}`.
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

    /// The document's name in the store: `subscriptions.json` (a file in `DATA_DIR`, or a row of
    /// `coordinator_state`).
    public static let documentName = "subscriptions.json"
    private let store: StateDocumentQueue?
    private let name: String
    /// The writer's coordinator term (a database store refuses a deposed coordinator's writes).
    private let term: UInt64
    private let entries = Locked<[StreamID: Value]>([:])

    /// Loads API-added streams from the file at `path` (if it exists) and adds `pinned`. Without a
    /// path nothing is persisted.
    public convenience init(path: String?, pinned: [StreamID]) throws {
        guard let path else {
            try self.init(store: nil, name: Self.documentName, term: 0, stored: nil, pinned: pinned)
            return
        }
        let url = URL(fileURLWithPath: path)
        let documents = FileStateDocuments(directory: url.deletingLastPathComponent().path)
        let name = url.lastPathComponent
        try self.init(
            store: StateDocumentQueue(documents, label: "collector.subscriptions"), name: name, term: 0,
            stored: try documents.read(name), pinned: pinned)
    }

    /// Loads API-added streams from `documents` (read on its queue) and adds `pinned`; changes are
    /// written there with `term`.
    public static func open(
        documents: StateDocumentQueue, term: UInt64, pinned: [StreamID]
    ) async throws -> SubscriptionRegistry {
        let name = documentName
        let stored = try await documents.run { try $0.read(name) }
        return try SubscriptionRegistry(store: documents, name: name, term: term, stored: stored, pinned: pinned)
    }

    private init(store: StateDocumentQueue?, name: String, term: UInt64, stored: [UInt8]?, pinned: [StreamID]) throws {
        self.store = store
        self.name = name
        self.term = term
        var table: [StreamID: Value] = [:]
        if let stored {
            let source = "\(store?.documents.location ?? "")/\(name)"
            let streams: [StreamID: Int]
            do {
                streams = try SubscriptionFileFormat.decode(stored)
            } catch {
                throw SubscriptionFileFormat.Corrupt(description: "\(source): \(error) (fix it, or move it aside)")
            }
            for (stream, replicas) in streams { table[stream] = Value(pinned: false, replicas: replicas) }
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
    public func add(_ streams: [StreamID], replicas: Int = 1) async throws -> [StreamID] {
        try await mutate { table in
            let new = streams.filter { table[$0] == nil }
            for stream in new { table[stream] = Value(pinned: false, replicas: max(1, replicas)) }
            return new
        }
    }

    /// Removes unpinned streams and persists; returns the ones removed.
    public func remove(_ streams: [StreamID]) async throws -> [StreamID] {
        try await mutate { table in
            let present = streams.filter { table[$0]?.pinned == false }
            for stream in present { table[stream] = nil }
            return present
        }
    }

    /// One change at a time on the store's queue (no lost update between two API calls): the new
    /// table is written first and only then becomes visible, so nothing is half-applied.
    private func mutate(
        _ body: @escaping @Sendable (inout [StreamID: Value]) -> [StreamID]
    ) async throws -> [StreamID] {
        guard let store else { return entries.withLock { body(&$0) } }
        let name = self.name
        let term = self.term
        return try await store.run { documents in
            var copy = self.entries.withLock { $0 }
            let changed = body(&copy)
            if !changed.isEmpty { try documents.write(name, try Self.encode(copy), term: term) }
            self.entries.withLock { $0 = copy }
            return changed
        }
    }

    private static func encode(_ table: [StreamID: Value]) throws -> [UInt8] {
        SubscriptionFileFormat.encode(table.filter { !$0.value.pinned }.mapValues(\.replicas))
    }
}
