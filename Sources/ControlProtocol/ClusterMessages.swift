import Crypto
import WireCore

/// Messages after the handshake (DESIGN.md §3). Every coordinator message carries its term; a worker
/// ignores a lower term than the highest it has seen. Durations travel as milliseconds, never as
/// wall-clock instants; `cutoverAt` and event times are exchange times (µs), not clocks.
public enum ClusterMessage: Hashable, Sendable {
    /// Worker → coordinator, every heartbeat interval: renews the lease; `shards` holds only what
    /// changed since the last beat, or everything when `full`.
    case heartbeat(sequence: UInt64, full: Bool, shards: [ShardReport])
    /// Coordinator → worker: the lease, renewed for `leaseMilliseconds` from when the beat was sent,
    /// and how many workers share its egress group (it takes that share of each exchange's per-IP
    /// budgets; absent from older coordinators: 1).
    case heartbeatAck(term: UInt64, sequence: UInt64, leaseMilliseconds: Int64, groupSize: Int = 1)
    case assign(Assignment)
    case revoke(term: UInt64, shard: String, epoch: UInt64)
    /// Coordinator → the old owner of a moved shard: store rows with event time before `until` (the
    /// move's cutover, µs), then stop; the new owner stores from `until` on.
    case handOver(term: UInt64, shard: String, epoch: UInt64, until: Int64)
    /// Worker → coordinator: an assign or revoke was applied.
    case acknowledged(shard: String, epoch: UInt64, revoked: Bool)
    /// The exchange confirmed the subscription (books: synchronised).
    case shardLive(shard: String, epoch: UInt64)
    /// The worker cannot run the shard; `permanent` for an exchange refusal of the instrument or channel.
    case shardFailed(shard: String, epoch: UInt64, permanent: Bool, code: String, reason: String)
    /// Worker → coordinator (version 2): it is shutting down; move its shards away make-before-break
    /// (a drain), after which it flushes and exits.
    case leaving(reason: String)

    public static let typeBase: UInt8 = 10
}

/// Where the new owner resumes: the shard's last stored event (time µs, and the exchange's trade id
/// or sequence where the feed has one).
public struct ResumePoint: Hashable, Sendable {
    public var time: Int64
    public var id: String?
    public init(time: Int64, id: String? = nil) {
        self.time = time
        self.id = id
    }
}

public struct Assignment: Hashable, Sendable {
    public var term: UInt64
    public var shard: String
    public var epoch: UInt64
    /// Rows with event time before it belong to the previous owner (make-before-break), if moving.
    public var cutoverAt: Int64?
    public var resumeFrom: ResumePoint?

    public init(term: UInt64, shard: String, epoch: UInt64, cutoverAt: Int64? = nil, resumeFrom: ResumePoint? = nil) {
        self.term = term
        self.shard = shard
        self.epoch = epoch
        self.cutoverAt = cutoverAt
        self.resumeFrom = resumeFrom
    }
}

/// One shard's status in a heartbeat: state and counters as deltas since the last beat.
public struct ShardReport: Hashable, Sendable {
    public enum State: String, Sendable { case starting, live, failed, stopping }
    public var shard: String
    public var epoch: UInt64
    public var state: State
    public var eventsDelta: Int64
    public var lastEventTime: Int64?
    /// The last stored event's trade id or sequence, where the feed has one.
    public var lastEventID: String?

    public init(
        shard: String, epoch: UInt64, state: State, eventsDelta: Int64, lastEventTime: Int64? = nil,
        lastEventID: String? = nil
    ) {
        self.shard = shard
        self.epoch = epoch
        self.state = state
        self.eventsDelta = eventsDelta
        self.lastEventTime = lastEventTime
        self.lastEventID = lastEventID
    }
}

extension ClusterMessage {
    /// The frame carrying this message (JSON body).
    public func frame() -> ControlFrame {
        var w = JSONObjectWriter()
        let index: UInt8
        switch self {
        case .heartbeat(let sequence, let full, let shards):
            index = 0
            w.number("seq", sequence)
            w.bool("full", full)
            w.raw(
                "shards",
                "["
                    + shards.map { r in
                        var o = JSONObjectWriter()
                        o.string("shard", r.shard)
                        o.number("epoch", r.epoch)
                        o.string("state", r.state.rawValue)
                        o.number("events", r.eventsDelta)
                        if let t = r.lastEventTime { o.number("last_event_time", t) }
                        if let id = r.lastEventID { o.string("last_event_id", id) }
                        return o.result
                    }.joined(separator: ",") + "]")
        case .heartbeatAck(let term, let sequence, let lease, let groupSize):
            index = 1
            w.number("term", term)
            w.number("seq", sequence)
            w.number("lease_ms", lease)
            w.number("group_size", groupSize)
        case .assign(let a):
            index = 2
            w.number("term", a.term)
            w.string("shard", a.shard)
            w.number("epoch", a.epoch)
            if let c = a.cutoverAt { w.number("cutover_at", c) }
            if let r = a.resumeFrom {
                w.number("resume_time", r.time)
                if let id = r.id { w.string("resume_id", id) }
            }
        case .revoke(let term, let shard, let epoch):
            index = 3
            w.number("term", term)
            w.string("shard", shard)
            w.number("epoch", epoch)
        case .handOver(let term, let shard, let epoch, let until):
            index = 7
            w.number("term", term)
            w.string("shard", shard)
            w.number("epoch", epoch)
            w.number("until", until)
        case .acknowledged(let shard, let epoch, let revoked):
            index = 4
            w.string("shard", shard)
            w.number("epoch", epoch)
            w.bool("revoked", revoked)
        case .shardLive(let shard, let epoch):
            index = 5
            w.string("shard", shard)
            w.number("epoch", epoch)
        case .shardFailed(let shard, let epoch, let permanent, let code, let reason):
            index = 6
            w.string("shard", shard)
            w.number("epoch", epoch)
            w.bool("permanent", permanent)
            w.string("code", code)
            w.string("reason", reason)
        case .leaving(let reason):
            index = 8
            w.string("reason", reason)
        }
        return ControlFrame(type: Self.typeBase + index, body: Array(w.result.utf8))
    }

    /// Decodes a post-handshake frame; an unknown type, a malformed body or a missing field throws.
    public static func decode(_ frame: ControlFrame) throws(HandshakeDecodeError) -> ClusterMessage {
        guard frame.type >= typeBase, frame.type <= typeBase + 8 else {
            throw HandshakeDecodeError("unknown message type \(frame.type)")
        }
        let f = try BodyFields.parse(frame.body, what: "message type \(frame.type)")
        switch frame.type - typeBase {
        case 0:
            return .heartbeat(sequence: try f.unsigned("seq"), full: try f.bool("full"), shards: try f.reports())
        case 1:
            let groupSize = f.numbers["group_size"] ?? 1
            guard groupSize >= 1, groupSize <= 1_000_000 else {
                throw HandshakeDecodeError("group_size must be 1…1000000")
            }
            return .heartbeatAck(
                term: try f.unsigned("term"), sequence: try f.unsigned("seq"),
                leaseMilliseconds: try f.positive("lease_ms"), groupSize: Int(groupSize))
        case 2:
            let resume = f.numbers["resume_time"].map { ResumePoint(time: $0, id: f.strings["resume_id"]) }
            return .assign(
                Assignment(
                    term: try f.unsigned("term"), shard: try f.string("shard"), epoch: try f.unsigned("epoch"),
                    cutoverAt: f.numbers["cutover_at"], resumeFrom: resume))
        case 3:
            return .revoke(term: try f.unsigned("term"), shard: try f.string("shard"), epoch: try f.unsigned("epoch"))
        case 4:
            return .acknowledged(
                shard: try f.string("shard"), epoch: try f.unsigned("epoch"), revoked: try f.bool("revoked"))
        case 5:
            return .shardLive(shard: try f.string("shard"), epoch: try f.unsigned("epoch"))
        case 7:
            guard let until = f.numbers["until"] else { throw HandshakeDecodeError("missing integer field 'until'") }
            return .handOver(
                term: try f.unsigned("term"), shard: try f.string("shard"), epoch: try f.unsigned("epoch"), until: until
            )
        case 8:
            return .leaving(reason: try f.string("reason"))
        default:
            return .shardFailed(
                shard: try f.string("shard"), epoch: try f.unsigned("epoch"), permanent: try f.bool("permanent"),
                code: try f.string("code"), reason: try f.string("reason"))
        }
    }
}

/// Builds one flat JSON object.
struct JSONObjectWriter {
    private var text = "{"
    private var first = true

    private mutating func key(_ name: String) {
        if !first { text += "," }
        first = false
        text += JSONText.quoted(name) + ":"
    }
    mutating func string(_ name: String, _ value: String) {
        key(name)
        text += JSONText.quoted(value)
    }
    mutating func number(_ name: String, _ value: some BinaryInteger) {
        key(name)
        text += "\(value)"
    }
    mutating func bool(_ name: String, _ value: Bool) {
        key(name)
        text += value ? "true" : "false"
    }
    mutating func raw(_ name: String, _ json: String) {
        key(name)
        text += json
    }
    /// The finished object.
    var result: String { text + "}" }
}

/// The flat fields of a control message body (strings, integers, booleans) and its `shards` array,
/// read once; the decoders of the handshake and of the steady-state messages share it.
struct BodyFields {
    /// One element of `shards`, as sent (each decoder requires what its message needs).
    struct ShardEntry {
        var shard: String
        var epoch: UInt64
        var state: String?
        var events: Int64
        var lastEventTime: Int64?
        var lastEventID: String?
        var handingOverUntil: Int64?
        var storesFrom: Int64?
        var live: Bool?
    }

    var strings: [String: String] = [:]
    var numbers: [String: Int64] = [:]
    var bools: [String: Bool] = [:]
    var shards: [ShardEntry] = []

    static func parse(_ body: [UInt8], what: String) throws(HandshakeDecodeError) -> BodyFields {
        let result = body.withUnsafeBytes { raw -> Result<BodyFields, JSONError> in
            var s = JSONScanner(raw)
            var f = BodyFields()
            do throws(JSONError) {
                try s.readObject { key, s2 throws(JSONError) in
                    let name = s2.string(key)
                    switch s2.peek() {
                    case UInt8(ascii: "\"")?: f.strings[name] = try s2.readString()
                    case UInt8(ascii: "t")?, UInt8(ascii: "f")?: f.bools[name] = try s2.readBool()
                    case UInt8(ascii: "[")? where name == "shards": f.shards = try readShards(&s2)
                    case let b? where b == UInt8(ascii: "-") || (b >= 48 && b <= 57):
                        f.numbers[name] = try s2.readInt64()
                    default: try s2.skipValue()
                    }
                }
                try s.expectEnd()
            } catch {
                return .failure(error)
            }
            return .success(f)
        }
        switch result {
        case .success(let f): return f
        case .failure(let error): throw HandshakeDecodeError("malformed \(what) body: \(error.reason)")
        }
    }

    private static func readShards(_ s: inout JSONScanner) throws(JSONError) -> [ShardEntry] {
        var entries: [ShardEntry] = []
        try s.readArray { index, s2 throws(JSONError) in
            guard index < HandshakeLimits.maxReportedShards else {
                throw JSONError(offset: s2.offset, reason: "more than \(HandshakeLimits.maxReportedShards) shards")
            }
            var entry = ShardEntry(shard: "", epoch: 0, state: nil, events: 0, lastEventTime: nil, lastEventID: nil)
            var epoch: Int64 = -1
            try s2.readObject { k, s3 throws(JSONError) in
                if s3.equals(k, "shard") {
                    entry.shard = try s3.readString()
                } else if s3.equals(k, "epoch") {
                    epoch = try s3.readInt64()
                } else if s3.equals(k, "state") {
                    entry.state = try s3.readString()
                } else if s3.equals(k, "events") {
                    entry.events = try s3.readInt64()
                } else if s3.equals(k, "last_event_time") {
                    entry.lastEventTime = try s3.readInt64()
                } else if s3.equals(k, "last_event_id") {
                    entry.lastEventID = try s3.readString()
                } else if s3.equals(k, "handing_over_until") {
                    entry.handingOverUntil = try s3.readInt64()
                } else if s3.equals(k, "stores_from") {
                    entry.storesFrom = try s3.readInt64()
                } else if s3.equals(k, "live") {
                    entry.live = try s3.readBool()
                } else {
                    try s3.skipValue()
                }
            }
            guard !entry.shard.isEmpty, epoch >= 0 else {
                throw JSONError(offset: s2.offset, reason: "a shard needs a name and an epoch")
            }
            entry.epoch = UInt64(epoch)
            entries.append(entry)
        }
        return entries
    }

    /// The heartbeat's reports: each needs a known state.
    func reports() throws(HandshakeDecodeError) -> [ShardReport] {
        var out: [ShardReport] = []
        for e in shards {
            guard let state = e.state.flatMap(ShardReport.State.init(rawValue:)) else {
                throw HandshakeDecodeError("a shard report needs shard, epoch and a known state (\(e.shard))")
            }
            out.append(
                ShardReport(
                    shard: e.shard, epoch: e.epoch, state: state, eventsDelta: e.events, lastEventTime: e.lastEventTime,
                    lastEventID: e.lastEventID))
        }
        return out
    }

    /// A `Hello`'s shards.
    var reported: [ReportedShard] {
        shards.map {
            ReportedShard(
                shard: $0.shard, epoch: $0.epoch, lastEventTime: $0.lastEventTime, lastEventID: $0.lastEventID,
                handingOverUntil: $0.handingOverUntil, storesFrom: $0.storesFrom, live: $0.live)
        }
    }

    func string(_ name: String, allowEmpty: Bool = false) throws(HandshakeDecodeError) -> String {
        guard let v = strings[name], allowEmpty || !v.isEmpty else {
            throw HandshakeDecodeError("missing string field '\(name)'")
        }
        return v
    }
    func int(_ name: String) throws(HandshakeDecodeError) -> Int {
        guard let v = numbers[name], let i = Int(exactly: v) else {
            throw HandshakeDecodeError("missing integer field '\(name)'")
        }
        return i
    }
    func unsigned(_ name: String) throws(HandshakeDecodeError) -> UInt64 {
        guard let v = numbers[name], v >= 0 else { throw HandshakeDecodeError("missing non-negative field '\(name)'") }
        return UInt64(v)
    }
    func positive(_ name: String) throws(HandshakeDecodeError) -> Int64 {
        guard let v = numbers[name], v > 0 else { throw HandshakeDecodeError("missing positive field '\(name)'") }
        return v
    }
    func bool(_ name: String) throws(HandshakeDecodeError) -> Bool {
        guard let v = bools[name] else { throw HandshakeDecodeError("missing boolean field '\(name)'") }
        return v
    }
    func hexBytes(_ name: String, count: Int) throws(HandshakeDecodeError) -> [UInt8] {
        guard let text = strings[name], let bytes = Hex.decode(text), bytes.count == count else {
            throw HandshakeDecodeError("field '\(name)' must be \(count) bytes in hex")
        }
        return bytes
    }
}
