import CollectorCore
import ControlProtocol
import Coordination
import Crypto
import Testing

/// Today's coordinator serving a version-1 worker from frozen bytes: the worker's side is the frozen
/// v1 transcript (the handshake of `Tests/Fixtures/control/v1-handshake.txt`, proofs by Python's
/// hmac; the steady-state frames of `ControlProtocolTests/VersionOneTranscriptTests`, the same bytes),
/// and every frame the coordinator sends that worker must be the frozen one, byte for byte. The
/// bodies are spelled out in the comments; the hex is authoritative.
@Suite struct VersionOneWorkerServiceTests {
    static let secret = Array("frozen-v1-secret".utf8)
    static let coordinatorNonce = [UInt8](0x20...0x3f)
    /// Wall-clock µs at `now` 0 (cutovers are wall time; leases are `now`).
    static let wallBase: Int64 = 1_700_000_000_000_000

    /// One frame's bytes on the wire (length, type, body), compared byte for byte and shown in a
    /// failure as its length, type and body text.
    struct Wire: Hashable, Sendable, CustomStringConvertible, CustomDebugStringConvertible {
        var bytes: [UInt8]

        init(_ bytes: [UInt8]) { self.bytes = bytes }

        /// From hex; whitespace is ignored. Not hex: no bytes (`everyFrozenFrameIsWellFormed` says so).
        init(hex: String) {
            bytes = Hex.decode(String(hex.filter { !$0.isWhitespace })) ?? []
        }

        /// Whether the length prefix covers exactly the type byte and a JSON object body.
        var isWellFormed: Bool {
            bytes.count > 6 && bytes[0..<4].reduce(0) { $0 << 8 | Int($1) } == bytes.count - 4
                && bytes[5] == UInt8(ascii: "{") && bytes.last == UInt8(ascii: "}")
        }

        /// The frame as the decoder hands it over.
        var frame: ControlFrame? { isWellFormed ? ControlFrame(type: bytes[4], body: Array(bytes[5...])) : nil }

        var description: String {
            guard let frame else { return "not a frame: \(bytes)" }
            return "type \(frame.type): \(String(decoding: frame.body, as: UTF8.self))"
        }
        /// What a failed comparison of arrays of frames shows for each.
        var debugDescription: String { description }
    }

    // MARK: The version-1 worker's frames (worker → coordinator)

    /// {"version":1,"id":"w-1","incarnation":7,"capacity":100,
    ///  "nonce":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f",
    ///  "shards":[{"shard":"okx/trades/BTC-USDT","epoch":3,"last_event_time":1700000000000000}]}
    /// (no `egress_group`: version 1)
    static let hello = Wire(
        hex: """
            000000db 01
            7b2276657273696f6e223a312c226964223a22772d31222c22696e6361726e61
            74696f6e223a372c226361706163697479223a3130302c226e6f6e6365223a22
            3030303130323033303430353036303730383039306130623063306430653066
            3130313131323133313431353136313731383139316131623163316431653166
            222c22736861726473223a5b7b227368617264223a226f6b782f747261646573
            2f4254432d55534454222c2265706f6368223a332c226c6173745f6576656e74
            5f74696d65223a313730303030303030303030303030307d5d7d
            """)
    /// {"proof":"496dcf8ea12789411324ab1f1ee539b35e8726bcc713a6e8ab7d35b8a536f6a5"}
    static let proof = Wire(
        hex: """
            0000004d 03
            7b2270726f6f66223a2234393664636638656131323738393431313332346162
            3166316565353339623335653837323662636337313361366538616237643335
            62386135333666366135227d
            """)
    /// {"seq":1,"full":true,"shards":[{"shard":"okx/trades/BTC-USDT","epoch":3,"state":"live","events":0,
    ///  "last_event_time":1700000000000000}]}
    static let fullHeartbeat = Wire(
        hex: """
            00000088 0a
            7b22736571223a312c2266756c6c223a747275652c22736861726473223a5b7b
            227368617264223a226f6b782f7472616465732f4254432d55534454222c2265
            706f6368223a332c227374617465223a226c697665222c226576656e7473223a
            302c226c6173745f6576656e745f74696d65223a313730303030303030303030
            303030307d5d7d
            """)
    /// {"shard":"okx/trades/ETH-USDT","epoch":4,"revoked":false}
    static let acknowledgedETH = Wire(
        hex: """
            0000003a 0e
            7b227368617264223a226f6b782f7472616465732f4554482d55534454222c22
            65706f6368223a342c227265766f6b6564223a66616c73657d
            """)
    /// {"shard":"okx/trades/ETH-USDT","epoch":4}
    static let liveETH = Wire(
        hex: """
            0000002a 0f
            7b227368617264223a226f6b782f7472616465732f4554482d55534454222c22
            65706f6368223a347d
            """)
    /// {"seq":2,"full":false,"shards":[{"shard":"okx/trades/BTC-USDT","epoch":3,"state":"live","events":1200,
    ///  "last_event_time":1700000001000000,"last_event_id":"130640001"},{"shard":"okx/trades/ETH-USDT",
    ///  "epoch":4,"state":"live","events":300,"last_event_time":1700000000990000,"last_event_id":"552001"}]}
    static let deltaHeartbeat = Wire(
        hex: """
            0000012a 0a
            7b22736571223a322c2266756c6c223a66616c73652c22736861726473223a5b
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a332c227374617465223a226c697665222c226576656e747322
            3a313230302c226c6173745f6576656e745f74696d65223a3137303030303030
            30313030303030302c226c6173745f6576656e745f6964223a22313330363430
            303031227d2c7b227368617264223a226f6b782f7472616465732f4554482d55
            534454222c2265706f6368223a342c227374617465223a226c697665222c2265
            76656e7473223a3330302c226c6173745f6576656e745f74696d65223a313730
            303030303030303939303030302c226c6173745f6576656e745f6964223a2235
            3532303031227d5d7d
            """)
    /// {"shard":"okx/trades/BTC-USDT","epoch":3,"permanent":false,"code":"50011","reason":"Too Many Requests"}
    static let failedBTC = Wire(
        hex: """
            00000068 10
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a332c227065726d616e656e74223a66616c73652c22636f6465
            223a223530303131222c22726561736f6e223a22546f6f204d616e7920526571
            7565737473227d
            """)
    /// {"shard":"okx/trades/BTC-USDT","epoch":5,"revoked":false}
    static let acknowledgedBTC = Wire(
        hex: """
            0000003a 0e
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a352c227265766f6b6564223a66616c73657d
            """)
    /// {"shard":"okx/trades/BTC-USDT","epoch":5}
    static let liveBTC = Wire(
        hex: """
            0000002a 0f
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a357d
            """)
    /// {"seq":3,"full":false,"shards":[]}
    static let idleHeartbeat = Wire(
        hex: """
            00000023 0a
            7b22736571223a332c2266756c6c223a66616c73652c22736861726473223a5b
            5d7d
            """)
    /// {"shard":"okx/trades/ETH-USDT","epoch":4,"revoked":true}
    static let revokedETH = Wire(
        hex: """
            00000039 0e
            7b227368617264223a226f6b782f7472616465732f4554482d55534454222c22
            65706f6368223a342c227265766f6b6564223a747275657d
            """)
    /// {"shard":"okx/trades/BTC-USDT","epoch":5,"revoked":true}
    static let handedOverBTC = Wire(
        hex: """
            00000039 0e
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a352c227265766f6b6564223a747275657d
            """)

    // MARK: What the coordinator must send it (coordinator → worker)

    /// {"version":2,"nonce":"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",
    ///  "proof":"e107394cfb33446752aea3069d8fc56dd00dd650a9112c6cb081f222e184678a"}
    static let challenge = Wire(
        hex: """
            000000a4 02
            7b2276657273696f6e223a322c226e6f6e6365223a2232303231323232333234
            3235323632373238323932613262326332643265326633303331333233333334
            33353336333733383339336133623363336433653366222c2270726f6f66223a
            2265313037333934636662333334343637353261656133303639643866633536
            6464303064643635306139313132633663623038316632323265313834363738
            61227d
            """)
    /// {"term":1,"lease_ms":5000,"heartbeat_ms":1000}
    static let welcome = Wire(
        hex: """
            0000002f 04
            7b227465726d223a312c226c656173655f6d73223a353030302c226865617274
            626561745f6d73223a313030307d
            """)
    /// {"term":1,"shard":"okx/trades/ETH-USDT","epoch":4}
    static let assignETH = Wire(
        hex: """
            00000033 0c
            7b227465726d223a312c227368617264223a226f6b782f7472616465732f4554
            482d55534454222c2265706f6368223a347d
            """)
    /// {"term":1,"seq":1,"lease_ms":5000,"group_size":1}
    static let firstAck = Wire(
        hex: """
            00000032 0b
            7b227465726d223a312c22736571223a312c226c656173655f6d73223a353030
            302c2267726f75705f73697a65223a317d
            """)
    /// {"term":1,"seq":2,"lease_ms":5000,"group_size":1}
    static let secondAck = Wire(
        hex: """
            00000032 0b
            7b227465726d223a312c22736571223a322c226c656173655f6d73223a353030
            302c2267726f75705f73697a65223a317d
            """)
    /// {"term":1,"shard":"okx/trades/BTC-USDT","epoch":5,"resume_time":1700000001000000,"resume_id":"130640001"}
    static let assignBTC = Wire(
        hex: """
            0000006a 0c
            7b227465726d223a312c227368617264223a226f6b782f7472616465732f4254
            432d55534454222c2265706f6368223a352c22726573756d655f74696d65223a
            313730303030303030313030303030302c22726573756d655f6964223a223133
            30363430303031227d
            """)
    /// {"term":1,"seq":3,"lease_ms":5000,"group_size":1}
    static let thirdAck = Wire(
        hex: """
            00000032 0b
            7b227465726d223a312c22736571223a332c226c656173655f6d73223a353030
            302c2267726f75705f73697a65223a317d
            """)
    /// {"term":1,"shard":"okx/trades/ETH-USDT","epoch":4}
    static let revokeETH = Wire(
        hex: """
            00000033 0d
            7b227465726d223a312c227368617264223a226f6b782f7472616465732f4554
            482d55534454222c2265706f6368223a347d
            """)
    /// {"term":1,"shard":"okx/trades/BTC-USDT","epoch":5,"until":1700000013000000}
    static let handOverBTC = Wire(
        hex: """
            0000004c 11
            7b227465726d223a312c227368617264223a226f6b782f7472616465732f4254
            432d55534454222c2265706f6368223a352c22756e74696c223a313730303030
            303031333030303030307d
            """)

    /// The service, one v1 worker on connection 1 fed from frozen bytes, and what it sent back.
    struct Harness {
        var service: CoordinatorService
        var now: Int64 = 0
        /// Every frame the service sent, per connection, as bytes.
        var sent: [UInt64: [Wire]] = [:]
        var closed: Set<UInt64> = []
        var logs: [(message: String, fields: [String: String])] = []
        /// The worker's byte stream as the driver reads it.
        var decoder = ControlFrameDecoder()

        init() {
            var core = CoordinatorCore.Configuration()
            // Only the drain moves shards here (no rebalancing), and weights stay as configured.
            core.maxConcurrentMoves = 0
            core.weightWindow = nil
            var configuration = CoordinatorService.Configuration()
            configuration.core = core
            service = CoordinatorService(
                configuration: configuration, secret: VersionOneWorkerServiceTests.secret,
                core: CoordinatorCore(configuration: core, term: 1, persistedEpochs: 0))
        }

        /// Runs one input; epoch blocks are persisted at once (as the driver's file write would).
        /// Returns the frames sent on each connection by it.
        @discardableResult
        mutating func handle(_ input: CoordinatorService.Input) -> [UInt64: [Wire]] {
            var frames: [UInt64: [Wire]] = [:]
            var pending = [input]
            while !pending.isEmpty {
                let next = pending.removeFirst()
                let outputs = service.handle(
                    next, now: Instant(nanoseconds: now * 1_000_000),
                    wallClock: VersionOneWorkerServiceTests.wallBase + now * 1000)
                for output in outputs {
                    switch output {
                    case .send(let c, let frame):
                        frames[c, default: []].append(Wire(frame.encoded()))
                        sent[c, default: []].append(Wire(frame.encoded()))
                    case .close(let c):
                        closed.insert(c)
                    case .persistEpochs(let upTo):
                        pending.append(.epochsPersisted(upTo: upTo))
                    case .admitted:
                        break
                    case .log(_, let message, let fields):
                        logs.append((message, fields))
                    }
                }
            }
            return frames
        }

        /// The shard's owners as `worker@epoch state`.
        func owners(of shard: String) -> [String]? {
            service.core.shards[shard]?.owners.map { "\($0.workerID)@\($0.epoch) \($0.state.rawValue)" }
        }

        /// Frozen bytes from the v1 worker on connection 1, read as the driver reads a socket;
        /// returns what the service sent that worker in reply.
        @discardableResult
        mutating func fromWorker(_ wire: Wire, sourceLocation: SourceLocation = #_sourceLocation) -> [Wire] {
            let frames: [ControlFrame]
            do {
                frames = try decoder.feed(wire.bytes)
            } catch {
                Issue.record("frozen bytes do not frame: \(error)", sourceLocation: sourceLocation)
                return []
            }
            guard frames.count == 1 else {
                Issue.record("frozen bytes hold \(frames.count) frames, not one", sourceLocation: sourceLocation)
                return []
            }
            return handle(.frame(1, frames[0]))[1] ?? []
        }
    }

    @Test func theCoordinatorServesAVersionOneWorkerFromItsFrozenTranscript() throws {
        var h = Harness()
        let btc = "okx/trades/BTC-USDT"
        let eth = "okx/trades/ETH-USDT"
        h.handle(
            .request(
                .subscribe([
                    CoordinatorCore.DesiredShard(shard: btc, weight: 10),
                    CoordinatorCore.DesiredShard(shard: eth, weight: 10),
                ])))

        // The frozen v1 handshake: the challenge and the welcome are byte for byte what v1 reads.
        h.handle(.opened(1, remote: "10.0.0.1", nonce: Self.coordinatorNonce))
        #expect(h.fromWorker(Self.hello) == [Self.challenge])
        // Admitted: the welcome, then (once the epoch block is durable) ETH; BTC, which it reports
        // running at epoch 3, stays its own.
        #expect(h.fromWorker(Self.proof) == [Self.welcome, Self.assignETH])
        let worker = try #require(h.service.core.workers["w-1"])
        #expect(worker.hello.version == 1)
        #expect(worker.hello.egressGroup == "w-1", "version 1: the id is the egress group")
        #expect(h.service.core.groupSizes["w-1"] == 1)
        #expect(
            h.logs.contains {
                $0.message == "worker joined" && $0.fields["version"] == "1" && $0.fields["worker"] == "w-1"
            }
        )
        #expect(h.owners(of: btc) == ["w-1@3 live"])

        // Its heartbeats renew the lease and are acknowledged with the frozen acks.
        #expect(h.fromWorker(Self.fullHeartbeat) == [Self.firstAck])
        #expect(h.fromWorker(Self.acknowledgedETH) == [])
        #expect(h.fromWorker(Self.liveETH) == [])
        #expect(h.owners(of: eth) == ["w-1@4 live"])
        h.now = 1000
        #expect(h.fromWorker(Self.deltaHeartbeat) == [Self.secondAck])
        #expect(h.service.core.workers["w-1"]?.leaseUntil == Instant(nanoseconds: 6_000 * 1_000_000))
        #expect(h.service.core.shards[btc]?.resumePoint == ResumePoint(time: 1_700_000_001_000_000, id: "130640001"))
        #expect(h.service.core.shards[btc]?.eventsTotal == 1200)
        #expect(h.service.core.shards[eth]?.eventsTotal == 300)

        // A transient failure: BTC is retried a second later, on it, from where its data ends.
        #expect(h.fromWorker(Self.failedBTC) == [])
        #expect(h.owners(of: btc) == [])
        #expect(h.logs.contains { $0.message == "shard failed" && $0.fields["exchange.code"] == "50011" })
        h.now = 2000
        #expect(h.handle(.tick)[1] == [Self.assignBTC])
        #expect(h.fromWorker(Self.acknowledgedBTC) == [])
        #expect(h.fromWorker(Self.liveBTC) == [])
        #expect(h.fromWorker(Self.idleHeartbeat) == [Self.thirdAck])

        // Unsubscribed: the frozen revoke.
        #expect(h.handle(.request(.unsubscribe([eth])))[1] == [Self.revokeETH])
        #expect(h.fromWorker(Self.revokedETH) == [])

        // A second worker joins; draining the v1 worker moves BTC to it, make-before-break, and the
        // v1 worker is handed over with the frozen hand-over once the new owner is live.
        h.now = 3000
        try join(&h, connection: 2, id: "w-2")
        let moved = h.handle(.request(.drain(workerID: "w-1")))
        // The cutover is the drain's wall time plus the default `cutoverLead` of 10 s (µs).
        let cutover = Self.wallBase + 3_000_000 + 10_000_000
        #expect(
            try moved[2]?.map { try ClusterMessage.decode(try #require($0.frame)) } == [
                .assign(
                    Assignment(
                        term: 1, shard: btc, epoch: 6, cutoverAt: cutover,
                        resumeFrom: ResumePoint(time: 1_700_000_001_000_000, id: "130640001")))
            ])
        #expect(moved[1] == nil, "the old owner keeps storing until the new one is live")
        let live = h.handle(.frame(2, ClusterMessage.shardLive(shard: btc, epoch: 6).frame()))
        #expect(live[1] == [Self.handOverBTC])
        #expect(h.logs.contains { $0.message == "worker drained" && $0.fields["worker"] == "w-1" })
        #expect(h.fromWorker(Self.handedOverBTC) == [])
        #expect(h.owners(of: btc) == ["w-2@6 live"])

        // Everything it was sent, in order, is the frozen transcript; it was never closed.
        #expect(
            h.sent[1] == [
                Self.challenge, Self.welcome, Self.assignETH, Self.firstAck, Self.secondAck, Self.assignBTC,
                Self.thirdAck, Self.revokeETH, Self.handOverBTC,
            ])
        #expect(h.closed.isEmpty)
        #expect(h.service.connection(of: "w-1") == 1)
    }

    static let frozen: [Wire] = [
        hello, proof, fullHeartbeat, acknowledgedETH, liveETH, deltaHeartbeat, failedBTC, acknowledgedBTC, liveBTC,
        idleHeartbeat, revokedETH, handedOverBTC, challenge, welcome, assignETH, firstAck, secondAck, assignBTC,
        thirdAck, revokeETH, handOverBTC,
    ]

    @Test func everyFrozenFrameIsWellFormed() {
        for wire in Self.frozen { #expect(wire.isWellFormed, "\(wire.bytes)") }
    }

    /// Another version-1 worker (not frozen: built with today's codec) joins on `connection`.
    func join(_ h: inout Harness, connection c: UInt64, id: String) throws {
        let workerNonce = [UInt8](repeating: 0x40, count: 32)
        let coordinatorNonce = [UInt8](repeating: 0x50, count: 32)
        h.handle(.opened(c, remote: "10.0.0.\(c)", nonce: coordinatorNonce))
        let hello = Hello(version: 1, workerID: id, incarnation: 1, capacity: 100, nonce: workerNonce)
        let challenge = try #require(h.handle(.frame(c, HandshakeMessage.hello(hello).frame()))[c]?.first)
        guard case .challenge(_, let nonce, _) = try HandshakeMessage.decode(try #require(challenge.frame)) else {
            Issue.record("no challenge for \(id)")
            return
        }
        let proof = HandshakeProof.compute(
            secret: Self.secret, role: .worker, workerID: id, workerNonce: workerNonce, coordinatorNonce: nonce)
        let welcomed = h.handle(.frame(c, HandshakeMessage.proof(proof).frame()))[c] ?? []
        #expect(try welcomed.map { try HandshakeMessage.decode(try #require($0.frame)) }.first?.kind == "welcome")
        #expect(h.service.core.workers[id] != nil)
    }
}
