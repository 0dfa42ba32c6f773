public import Collector
import Foundation

/// The coordinator's durable state (issues 10 and 11): its term, the reserved epoch mark and
/// whether the operator paused rebalancing, as the document `coordinator.json` in
/// ``StateDocuments`` — a `DATA_DIR` file without a database (replaced whole: a crash leaves the
/// old or the new contents), a `coordinator_state` row with one, where a standby on another host
/// reads it when it takes over. The shard map itself is not stored: workers re-report what they
/// run when they re-register (DESIGN.md §3).
///
/// `load` and `store` block: they run on the caller's dedicated queue.
public struct CoordinatorStateStore: Sendable {
    public static let documentName = "coordinator.json"

    public struct Contents: Sendable, Equatable {
        public var term: UInt64
        /// No epoch at or below it is issued again: a restart continues above it.
        public var epochsReserved: UInt64
        /// The operator's `coordinator rebalance pause`, kept across restarts and take-overs.
        public var rebalancePaused: Bool
        public init(term: UInt64, epochsReserved: UInt64, rebalancePaused: Bool = false) {
            self.term = term
            self.epochsReserved = epochsReserved
            self.rebalancePaused = rebalancePaused
        }
    }

    /// What a starting coordinator continues from.
    public struct Beginning: Sendable, Equatable {
        /// This process's term: one above the stored one, already written.
        public var term: UInt64
        public var epochsReserved: UInt64
        public var rebalancePaused: Bool
        /// A previous coordinator ran: workers may hold shards, so the first lease is a recovery hold.
        public var recovering: Bool
    }

    public struct Corrupt: Error, CustomStringConvertible {
        public var location: String
        public var reason: String
        public var description: String {
            "coordinator state \(location) is unreadable (\(reason)); restore it or move it away to start a new cluster"
        }
    }

    public let documents: any StateDocuments

    public init(_ documents: any StateDocuments) { self.documents = documents }

    /// A store of files in `directory`.
    public init(directory: String) { self.init(FileStateDocuments(directory: directory)) }

    public var location: String { documents.location + "/" + Self.documentName }

    /// The stored contents, or nil when there is none yet (a new cluster).
    public func load() throws -> Contents? {
        let bytes: [UInt8]
        do {
            guard let stored = try documents.read(Self.documentName) else { return nil }
            bytes = stored
        } catch {
            throw Corrupt(location: location, reason: "cannot read: \(error)")
        }
        return try Self.decode(bytes, location: location)
    }

    static func decode(_ bytes: [UInt8], location: String) throws(Corrupt) -> Contents {
        // try?: any parse failure is reported as the one corruption error below.
        guard let object = (try? JSONSerialization.jsonObject(with: Data(bytes))) as? [String: Any] else {
            throw Corrupt(location: location, reason: "not a JSON object")
        }
        guard let term = (object["term"] as? NSNumber)?.uint64Value, term > 0,
            let epochs = (object["epochs_reserved"] as? NSNumber)?.uint64Value
        else {
            throw Corrupt(location: location, reason: "needs a positive term and epochs_reserved")
        }
        let paused = object["rebalance_paused"]
        guard paused == nil || paused as? Bool != nil else {
            throw Corrupt(location: location, reason: "rebalance_paused must be true or false")
        }
        return Contents(term: term, epochsReserved: epochs, rebalancePaused: (paused as? Bool) ?? false)
    }

    /// Replaces the document; refused (``StateDocumentFenced``) where a newer term wrote it.
    public func store(_ contents: Contents) throws {
        let text =
            "{\"term\":\(contents.term),\"epochs_reserved\":\(contents.epochsReserved),"
            + "\"rebalance_paused\":\(contents.rebalancePaused)}\n"
        try documents.write(Self.documentName, Array(text.utf8), term: contents.term)
    }

    /// Reads the stored state and writes the next term durably (on a queue of its own): the
    /// state a starting coordinator continues from.
    public func begin() async throws -> Beginning {
        let store = self
        return try await StateDocumentQueue(documents, label: "coordinator.state-begin").run { _ in
            let previous = try store.load()
            let next = Contents(
                term: (previous?.term ?? 0) + 1, epochsReserved: previous?.epochsReserved ?? 0,
                rebalancePaused: previous?.rebalancePaused ?? false)
            try store.store(next)
            return Beginning(
                term: next.term, epochsReserved: next.epochsReserved, rebalancePaused: next.rebalancePaused,
                recovering: previous != nil)
        }
    }
}
