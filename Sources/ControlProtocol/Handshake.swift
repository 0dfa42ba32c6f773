import Crypto
import WireCore

/// Control-protocol versions. A coordinator speaks `current` and accepts workers one version behind
/// (rolling upgrades, DESIGN.md §3). Version 1's `Hello` has no egress group (the worker's id is its
/// group); version 2 adds it.
public enum ControlVersion {
    public static let current = 2
    public static let oldestAccepted = current - 1
}

/// Message types (the frame's type byte).
public enum ControlMessageType: UInt8, Sendable {
    case hello = 1, challenge = 2, proof = 3, welcome = 4, reject = 5
}

/// Why a handshake was refused (sent in `Reject` and logged; never the secret or a proof).
public enum RejectReason: String, Sendable, Hashable {
    case badVersion = "bad-version"
    case badProof = "bad-proof"
    case duplicateID = "duplicate-id"
    case malformed
    case unexpected
}

/// A shard the worker runs now, as it reports it in `Hello`.
public struct ReportedShard: Hashable, Sendable {
    public var shard: String
    public var epoch: UInt64
    /// The last stored event's exchange time (µs), if any.
    public var lastEventTime: Int64?
    /// The last stored event's trade id or sequence, where the feed has one.
    public var lastEventID: String?
    /// Handed over: the worker no longer owns it but still stores it up to this cutover (wall µs),
    /// so a coordinator that restarted mid-move does not place a second writer before then.
    public var handingOverUntil: Int64?
    /// Running as a move's new owner: it stores only from this cutover (wall µs), its old owner up to
    /// it, so a coordinator hearing of it again does not count it as storing before then.
    public var storesFrom: Int64?
    /// Whether the exchange confirmed it (books: synchronised); `nil` from a version-1 worker, which
    /// reports only what is live.
    public var live: Bool?

    public init(
        shard: String, epoch: UInt64, lastEventTime: Int64?, lastEventID: String? = nil, handingOverUntil: Int64? = nil,
        storesFrom: Int64? = nil, live: Bool? = nil
    ) {
        self.shard = shard
        self.epoch = epoch
        self.lastEventTime = lastEventTime
        self.lastEventID = lastEventID
        self.handingOverUntil = handingOverUntil
        self.storesFrom = storesFrom
        self.live = live
    }
}

/// The worker's first message.
public struct Hello: Hashable, Sendable {
    public var version: Int
    public var workerID: String
    /// Distinguishes process lifetimes with the same id (a restart is a new incarnation).
    public var incarnation: UInt64
    public var capacity: Int
    /// Workers behind one egress address share exchange per-IP budgets (version 2; v1: the id).
    public var egressGroup: String
    public var nonce: [UInt8]
    public var shards: [ReportedShard]

    public init(
        version: Int = ControlVersion.current, workerID: String, incarnation: UInt64, capacity: Int,
        egressGroup: String? = nil, nonce: [UInt8], shards: [ReportedShard] = []
    ) {
        self.version = version
        self.workerID = workerID
        self.incarnation = incarnation
        self.capacity = capacity
        self.egressGroup = egressGroup ?? workerID
        self.nonce = nonce
        self.shards = shards
    }
}

/// A handshake message, decoded.
public enum HandshakeMessage: Hashable, Sendable {
    case hello(Hello)
    /// The coordinator's nonce and its proof over both nonces.
    case challenge(version: Int, nonce: [UInt8], proof: [UInt8])
    case proof([UInt8])
    /// Accepted: the coordinator's term, the lease length and heartbeat interval as durations (ms).
    case welcome(term: UInt64, leaseMilliseconds: Int64, heartbeatMilliseconds: Int64)
    case reject(RejectReason, message: String)
}

/// A body that is not a valid handshake message.
public struct HandshakeDecodeError: Error, Hashable, Sendable, CustomStringConvertible {
    public var reason: String
    public init(_ reason: String) { self.reason = reason }
    public var description: String { reason }
}

/// Limits on what a peer may send before it is authenticated.
public enum HandshakeLimits {
    public static let nonceBytes = 32
    public static let maxIDBytes = 128
    public static let maxReportedShards = 200_000
}

extension HandshakeMessage {
    /// The frame carrying this message (JSON body).
    public func frame() -> ControlFrame {
        func hex(_ b: [UInt8]) -> String { JSONText.quoted(Hex.encode(b)) }
        let type: ControlMessageType
        var body: String
        switch self {
        case .hello(let h):
            type = .hello
            let shards = h.shards.map { s in
                "{\"shard\":\(JSONText.quoted(s.shard)),\"epoch\":\(s.epoch)"
                    + (s.lastEventTime.map { ",\"last_event_time\":\($0)" } ?? "")
                    + (s.lastEventID.map { ",\"last_event_id\":\(JSONText.quoted($0))" } ?? "")
                    + (s.handingOverUntil.map { ",\"handing_over_until\":\($0)" } ?? "")
                    + (s.storesFrom.map { ",\"stores_from\":\($0)" } ?? "")
                    + (s.live.map { ",\"live\":\($0)" } ?? "") + "}"
            }
            body =
                "{\"version\":\(h.version),\"id\":\(JSONText.quoted(h.workerID)),\"incarnation\":\(h.incarnation),"
                + "\"capacity\":\(h.capacity),"
            if h.version >= 2 { body += "\"egress_group\":\(JSONText.quoted(h.egressGroup))," }
            body += "\"nonce\":\(hex(h.nonce)),\"shards\":[\(shards.joined(separator: ","))]}"
        case .challenge(let version, let nonce, let proof):
            type = .challenge
            body = "{\"version\":\(version),\"nonce\":\(hex(nonce)),\"proof\":\(hex(proof))}"
        case .proof(let proof):
            type = .proof
            body = "{\"proof\":\(hex(proof))}"
        case .welcome(let term, let lease, let heartbeat):
            type = .welcome
            body = "{\"term\":\(term),\"lease_ms\":\(lease),\"heartbeat_ms\":\(heartbeat)}"
        case .reject(let reason, let message):
            type = .reject
            body = "{\"reason\":\(JSONText.quoted(reason.rawValue)),\"message\":\(JSONText.quoted(message))}"
        }
        return ControlFrame(type: type.rawValue, body: Array(body.utf8))
    }

    /// Decodes a handshake frame; any other type, a malformed body or a field out of bounds throws.
    public static func decode(_ frame: ControlFrame) throws(HandshakeDecodeError) -> HandshakeMessage {
        guard let type = ControlMessageType(rawValue: frame.type) else {
            throw HandshakeDecodeError("unknown message type \(frame.type)")
        }
        let fields = try BodyFields.parse(frame.body, what: "\(type)")
        switch type {
        case .hello:
            let version = try fields.int("version")
            let id = try fields.string("id")
            guard !id.isEmpty, id.utf8.count <= HandshakeLimits.maxIDBytes else {
                throw HandshakeDecodeError("hello id must be 1…\(HandshakeLimits.maxIDBytes) bytes")
            }
            let group = version >= 2 ? try fields.string("egress_group") : id
            guard !group.isEmpty, group.utf8.count <= HandshakeLimits.maxIDBytes else {
                throw HandshakeDecodeError("hello egress_group must be 1…\(HandshakeLimits.maxIDBytes) bytes")
            }
            let capacity = try fields.int("capacity")
            guard capacity > 0 else { throw HandshakeDecodeError("hello capacity must be positive") }
            return .hello(
                Hello(
                    version: version, workerID: id, incarnation: try fields.unsigned("incarnation"), capacity: capacity,
                    egressGroup: group, nonce: try fields.hexBytes("nonce", count: HandshakeLimits.nonceBytes),
                    shards: fields.reported))
        case .challenge:
            return .challenge(
                version: try fields.int("version"),
                nonce: try fields.hexBytes("nonce", count: HandshakeLimits.nonceBytes),
                proof: try fields.hexBytes("proof", count: 32))
        case .proof:
            return .proof(try fields.hexBytes("proof", count: 32))
        case .welcome:
            let lease = try fields.int("lease_ms")
            let heartbeat = try fields.int("heartbeat_ms")
            guard lease > 0, heartbeat > 0 else { throw HandshakeDecodeError("welcome durations must be positive") }
            return .welcome(
                term: try fields.unsigned("term"), leaseMilliseconds: Int64(lease),
                heartbeatMilliseconds: Int64(heartbeat))
        case .reject:
            let reason = RejectReason(rawValue: try fields.string("reason")) ?? .unexpected
            return .reject(reason, message: try fields.string("message", allowEmpty: true))
        }
    }
}

/// The mutual proof: HMAC-SHA256 under the cluster secret over the role, the worker's id and both
/// nonces, so neither side's proof can be replayed into another handshake or role.
public enum HandshakeProof {
    public enum Role: String, Sendable { case coordinator, worker }

    public static func compute(
        secret: [UInt8], role: Role, workerID: String, workerNonce: [UInt8], coordinatorNonce: [UInt8]
    ) -> [UInt8] {
        let message =
            "collector-control|\(role.rawValue)|\(workerID)|\(Hex.encode(workerNonce))|\(Hex.encode(coordinatorNonce))"
        return HMAC.sha256(key: secret, message: Array(message.utf8))
    }

    /// Constant-time equality (no early exit on the first differing byte).
    public static func matches(_ a: [UInt8], _ b: [UInt8]) -> Bool {
        guard a.count == b.count else { return false }
        var difference: UInt8 = 0
        for i in 0..<a.count { difference |= a[i] ^ b[i] }
        return difference == 0
    }
}
