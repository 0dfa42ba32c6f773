import Foundation

/// The cluster secret both sides prove in the handshake, from `CLUSTER_SECRET` or
/// `CLUSTER_SECRET_FILE` (never a flag: it would show in `ps`; never logged).
public enum ClusterSecret {
    public static let minimumBytes = 16

    public struct Unusable: Error, CustomStringConvertible {
        public var description: String
    }

    public static func load(from environment: [String: String]) throws(Unusable) -> [UInt8] {
        var secret = environment["CLUSTER_SECRET"].flatMap { $0.isEmpty ? nil : Array($0.utf8) }
        if secret == nil, let file = environment["CLUSTER_SECRET_FILE"] {
            guard let data = FileManager.default.contents(atPath: file) else {
                throw Unusable(description: "cannot read CLUSTER_SECRET_FILE \(file)")
            }
            // A trailing newline (as `echo` writes) is not part of the secret.
            var bytes = Array(data)
            while let last = bytes.last, last == 10 || last == 13 { bytes.removeLast() }
            secret = bytes
        }
        guard let secret else {
            throw Unusable(description: "the cluster secret is missing: set CLUSTER_SECRET or CLUSTER_SECRET_FILE")
        }
        guard secret.count >= minimumBytes else {
            throw Unusable(
                description:
                    "the cluster secret is \(secret.count) bytes; use at least \(minimumBytes) (e.g. openssl rand -hex 32)"
            )
        }
        return secret
    }
}
