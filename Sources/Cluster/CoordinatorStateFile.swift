import Foundation
import Runtime

/// The coordinator's durable state in `DATA_DIR` (issue 10; issue 11 adds the registry and the map
/// and the exclusive lock): its term and the reserved epoch mark. Written whole to a temporary
/// file, fsynced and renamed, so a crash leaves the old or the new contents, never a mix.
public struct CoordinatorStateFile: Sendable {
    public struct Contents: Sendable, Equatable {
        public var term: UInt64
        /// No epoch at or below it is issued again: a restart continues above it.
        public var epochsReserved: UInt64
        public init(term: UInt64, epochsReserved: UInt64) {
            self.term = term
            self.epochsReserved = epochsReserved
        }
    }

    public struct Corrupt: Error, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String {
            "coordinator state file \(path) is unreadable (\(reason)); restore it or move it away to start a new cluster"
        }
    }

    public let path: String

    public init(path: String) { self.path = path }

    /// The stored contents, or nil when there is none yet (a new cluster).
    public func load() throws -> Contents? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        let data: Data
        do {
            data = try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw Corrupt(path: path, reason: "cannot read: \(error.localizedDescription)")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw Corrupt(path: path, reason: "not a JSON object")
        }
        guard let term = (object["term"] as? NSNumber)?.uint64Value, term > 0,
            let epochs = (object["epochs_reserved"] as? NSNumber)?.uint64Value
        else {
            throw Corrupt(path: path, reason: "needs a positive term and epochs_reserved")
        }
        return Contents(term: term, epochsReserved: epochs)
    }

    public func store(_ contents: Contents) throws {
        let text = "{\"term\":\(contents.term),\"epochs_reserved\":\(contents.epochsReserved)}\n"
        try DurableFile.write(Array(text.utf8), to: path)
    }
}
