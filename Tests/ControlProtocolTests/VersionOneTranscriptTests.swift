import CollectorCore
import ControlProtocol
import Crypto
import Testing

/// A version-1 worker's steady-state traffic, frozen as bytes (the handshake's frozen transcript is
/// `HandshakeTests`'s): the coordinator speaks version 2 and accepts version 1, so every frame below
/// must keep decoding to what the v1 worker meant, and every coordinator frame must keep being
/// written byte for byte as the v1 worker reads it. The bytes were derived once, by hand, from the
/// encoders' field order (`ClusterMessage.frame()`) with Python computing the hex, and are not to
/// be regenerated from today's encoder: a change that breaks them breaks deployed v1 workers.
///
/// Version 1 differs from version 2 only in its `Hello` (no `egress_group`); the steady-state
/// messages have one encoding for both, so what a v1 worker sends is what is frozen here. The
/// story: worker `w-1` (v1, as in `Tests/Fixtures/control/v1-handshake.txt`) joins at term 1
/// running `okx/trades/BTC-USDT` at epoch 3, is assigned ETH, reports, fails BTC transiently, gets
/// BTC back with its resume point, has ETH revoked and BTC handed over when it is drained, and is
/// given a move's new side (an assign with a cutover).
@Suite struct VersionOneTranscriptTests {
    /// Which peer wrote a frame.
    enum Direction: Sendable { case toCoordinator, toWorker }

    /// One frame as it crossed the wire: its bytes (length, type, body), the body as text, and the
    /// message today's decoder must read from it.
    struct FrozenFrame: Sendable, CustomTestStringConvertible {
        var name: String
        var direction: Direction
        var type: UInt8
        /// The JSON body, spelled out (checked against the bytes, so it cannot drift from them).
        var body: String
        /// The whole frame in hex: the first line is the 4-byte length and the type byte, then the
        /// body, 32 bytes a line. Whitespace is ignored.
        var hex: String
        var message: ClusterMessage

        var testDescription: String { name }

        /// The frame's bytes (nil only for a typo in `hex`, which the tests report).
        var bytes: [UInt8]? { Hex.decode(String(hex.filter { !$0.isWhitespace })) }
        /// The frame as the frame reader hands it over (a typo in `hex`: an empty frame, which fails
        /// every comparison it is in).
        var frame: ControlFrame { VersionOneTranscriptTests.frame(bytes ?? []) }
    }

    // MARK: The frozen frames, in the order they crossed

    /// Worker, type 10: the first beat after the welcome is a full one, with what it runs.
    static let fullHeartbeat = FrozenFrame(
        name: "heartbeat 1 (full)", direction: .toCoordinator, type: 10,
        body: #"""
            {"seq":1,"full":true,"shards":[{"shard":"okx/trades/BTC-USDT","epoch":3,"state":"live","events":0,\#
            "last_event_time":1700000000000000}]}
            """#,
        hex: """
            00000088 0a
            7b22736571223a312c2266756c6c223a747275652c22736861726473223a5b7b
            227368617264223a226f6b782f7472616465732f4254432d55534454222c2265
            706f6368223a332c227374617465223a226c697665222c226576656e7473223a
            302c226c6173745f6576656e745f74696d65223a313730303030303030303030
            303030307d5d7d
            """,
        message: .heartbeat(
            sequence: 1, full: true,
            shards: [
                ShardReport(
                    shard: "okx/trades/BTC-USDT", epoch: 3, state: .live, eventsDelta: 0,
                    lastEventTime: 1_700_000_000_000_000)
            ]))

    /// Coordinator, type 11: beat 1 acknowledged; `group_size` 1 (a v1 worker's group is its id).
    static let firstAck = FrozenFrame(
        name: "heartbeat ack 1", direction: .toWorker, type: 11,
        body: #"{"term":1,"seq":1,"lease_ms":5000,"group_size":1}"#,
        hex: """
            00000032 0b
            7b227465726d223a312c22736571223a312c226c656173655f6d73223a353030
            302c2267726f75705f73697a65223a317d
            """,
        message: .heartbeatAck(term: 1, sequence: 1, leaseMilliseconds: 5000, groupSize: 1))

    /// Coordinator, type 12: a new shard, no resume point and no cutover.
    static let assignFresh = FrozenFrame(
        name: "assign ETH@4 (fresh)", direction: .toWorker, type: 12,
        body: #"{"term":1,"shard":"okx/trades/ETH-USDT","epoch":4}"#,
        hex: """
            00000033 0c
            7b227465726d223a312c227368617264223a226f6b782f7472616465732f4554
            482d55534454222c2265706f6368223a347d
            """,
        message: .assign(Assignment(term: 1, shard: "okx/trades/ETH-USDT", epoch: 4)))

    /// Worker, type 14: the assignment applied.
    static let acknowledgedETH = FrozenFrame(
        name: "acknowledged ETH@4", direction: .toCoordinator, type: 14,
        body: #"{"shard":"okx/trades/ETH-USDT","epoch":4,"revoked":false}"#,
        hex: """
            0000003a 0e
            7b227368617264223a226f6b782f7472616465732f4554482d55534454222c22
            65706f6368223a342c227265766f6b6564223a66616c73657d
            """,
        message: .acknowledged(shard: "okx/trades/ETH-USDT", epoch: 4, revoked: false))

    /// Worker, type 15: the exchange confirmed the subscription.
    static let liveETH = FrozenFrame(
        name: "shard live ETH@4", direction: .toCoordinator, type: 15,
        body: #"{"shard":"okx/trades/ETH-USDT","epoch":4}"#,
        hex: """
            0000002a 0f
            7b227368617264223a226f6b782f7472616465732f4554482d55534454222c22
            65706f6368223a347d
            """,
        message: .shardLive(shard: "okx/trades/ETH-USDT", epoch: 4))

    /// Worker, type 10: a delta beat, each shard with its events since the last beat and where its
    /// stored data ends (time µs and trade id).
    static let deltaHeartbeat = FrozenFrame(
        name: "heartbeat 2 (delta)", direction: .toCoordinator, type: 10,
        body: #"""
            {"seq":2,"full":false,"shards":[{"shard":"okx/trades/BTC-USDT","epoch":3,"state":"live","events":1200,\#
            "last_event_time":1700000001000000,"last_event_id":"130640001"},{"shard":"okx/trades/ETH-USDT",\#
            "epoch":4,"state":"live","events":300,"last_event_time":1700000000990000,"last_event_id":"552001"}]}
            """#,
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
            """,
        message: .heartbeat(
            sequence: 2, full: false,
            shards: [
                ShardReport(
                    shard: "okx/trades/BTC-USDT", epoch: 3, state: .live, eventsDelta: 1200,
                    lastEventTime: 1_700_000_001_000_000, lastEventID: "130640001"),
                ShardReport(
                    shard: "okx/trades/ETH-USDT", epoch: 4, state: .live, eventsDelta: 300,
                    lastEventTime: 1_700_000_000_990_000, lastEventID: "552001"),
            ]))

    /// Coordinator, type 11: beat 2 acknowledged.
    static let secondAck = FrozenFrame(
        name: "heartbeat ack 2", direction: .toWorker, type: 11,
        body: #"{"term":1,"seq":2,"lease_ms":5000,"group_size":1}"#,
        hex: """
            00000032 0b
            7b227465726d223a312c22736571223a322c226c656173655f6d73223a353030
            302c2267726f75705f73697a65223a317d
            """,
        message: .heartbeatAck(term: 1, sequence: 2, leaseMilliseconds: 5000, groupSize: 1))

    /// Worker, type 16: a transient failure (the exchange's rate limit).
    static let failedBTC = FrozenFrame(
        name: "shard failed BTC@3 (transient)", direction: .toCoordinator, type: 16,
        body:
            #"{"shard":"okx/trades/BTC-USDT","epoch":3,"permanent":false,"code":"50011","reason":"Too Many Requests"}"#,
        hex: """
            00000068 10
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a332c227065726d616e656e74223a66616c73652c22636f6465
            223a223530303131222c22726561736f6e223a22546f6f204d616e7920526571
            7565737473227d
            """,
        message: .shardFailed(
            shard: "okx/trades/BTC-USDT", epoch: 3, permanent: false, code: "50011", reason: "Too Many Requests"))

    /// Coordinator, type 12: the shard placed again, resuming from the last stored event.
    static let assignResuming = FrozenFrame(
        name: "assign BTC@5 (resume point)", direction: .toWorker, type: 12,
        body:
            #"{"term":1,"shard":"okx/trades/BTC-USDT","epoch":5,"resume_time":1700000001000000,"resume_id":"130640001"}"#,
        hex: """
            0000006a 0c
            7b227465726d223a312c227368617264223a226f6b782f7472616465732f4254
            432d55534454222c2265706f6368223a352c22726573756d655f74696d65223a
            313730303030303030313030303030302c22726573756d655f6964223a223133
            30363430303031227d
            """,
        message: .assign(
            Assignment(
                term: 1, shard: "okx/trades/BTC-USDT", epoch: 5,
                resumeFrom: ResumePoint(time: 1_700_000_001_000_000, id: "130640001"))))

    /// Worker, type 14.
    static let acknowledgedBTC = FrozenFrame(
        name: "acknowledged BTC@5", direction: .toCoordinator, type: 14,
        body: #"{"shard":"okx/trades/BTC-USDT","epoch":5,"revoked":false}"#,
        hex: """
            0000003a 0e
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a352c227265766f6b6564223a66616c73657d
            """,
        message: .acknowledged(shard: "okx/trades/BTC-USDT", epoch: 5, revoked: false))

    /// Worker, type 15.
    static let liveBTC = FrozenFrame(
        name: "shard live BTC@5", direction: .toCoordinator, type: 15,
        body: #"{"shard":"okx/trades/BTC-USDT","epoch":5}"#,
        hex: """
            0000002a 0f
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a357d
            """,
        message: .shardLive(shard: "okx/trades/BTC-USDT", epoch: 5))

    /// Worker, type 10: a delta beat with nothing changed.
    static let idleHeartbeat = FrozenFrame(
        name: "heartbeat 3 (delta, empty)", direction: .toCoordinator, type: 10,
        body: #"{"seq":3,"full":false,"shards":[]}"#,
        hex: """
            00000023 0a
            7b22736571223a332c2266756c6c223a66616c73652c22736861726473223a5b
            5d7d
            """,
        message: .heartbeat(sequence: 3, full: false, shards: []))

    /// Coordinator, type 11.
    static let thirdAck = FrozenFrame(
        name: "heartbeat ack 3", direction: .toWorker, type: 11,
        body: #"{"term":1,"seq":3,"lease_ms":5000,"group_size":1}"#,
        hex: """
            00000032 0b
            7b227465726d223a312c22736571223a332c226c656173655f6d73223a353030
            302c2267726f75705f73697a65223a317d
            """,
        message: .heartbeatAck(term: 1, sequence: 3, leaseMilliseconds: 5000, groupSize: 1))

    /// Coordinator, type 13: the shard was unsubscribed.
    static let revokeETH = FrozenFrame(
        name: "revoke ETH@4", direction: .toWorker, type: 13,
        body: #"{"term":1,"shard":"okx/trades/ETH-USDT","epoch":4}"#,
        hex: """
            00000033 0d
            7b227465726d223a312c227368617264223a226f6b782f7472616465732f4554
            482d55534454222c2265706f6368223a347d
            """,
        message: .revoke(term: 1, shard: "okx/trades/ETH-USDT", epoch: 4))

    /// Worker, type 14: the revoke applied.
    static let revokedETH = FrozenFrame(
        name: "acknowledged ETH@4 (revoked)", direction: .toCoordinator, type: 14,
        body: #"{"shard":"okx/trades/ETH-USDT","epoch":4,"revoked":true}"#,
        hex: """
            00000039 0e
            7b227368617264223a226f6b782f7472616465732f4554482d55534454222c22
            65706f6368223a342c227265766f6b6564223a747275657d
            """,
        message: .acknowledged(shard: "okx/trades/ETH-USDT", epoch: 4, revoked: true))

    /// Coordinator, type 17: drained, the worker stores rows before the cutover (µs), then stops.
    static let handOverBTC = FrozenFrame(
        name: "hand over BTC@5", direction: .toWorker, type: 17,
        body: #"{"term":1,"shard":"okx/trades/BTC-USDT","epoch":5,"until":1700000013000000}"#,
        hex: """
            0000004c 11
            7b227465726d223a312c227368617264223a226f6b782f7472616465732f4254
            432d55534454222c2265706f6368223a352c22756e74696c223a313730303030
            303031333030303030307d
            """,
        message: .handOver(term: 1, shard: "okx/trades/BTC-USDT", epoch: 5, until: 1_700_000_013_000_000))

    /// Worker, type 14: the hand-over applied (acknowledged as a revoke).
    static let handedOverBTC = FrozenFrame(
        name: "acknowledged BTC@5 (handed over)", direction: .toCoordinator, type: 14,
        body: #"{"shard":"okx/trades/BTC-USDT","epoch":5,"revoked":true}"#,
        hex: """
            00000039 0e
            7b227368617264223a226f6b782f7472616465732f4254432d55534454222c22
            65706f6368223a352c227265766f6b6564223a747275657d
            """,
        message: .acknowledged(shard: "okx/trades/BTC-USDT", epoch: 5, revoked: true))

    /// Coordinator, type 12: the new side of a move: store from `cutover_at`, resume from a time
    /// with no id (a book has no trade id).
    static let assignMoving = FrozenFrame(
        name: "assign SOL@6 (cutover, resume time only)", direction: .toWorker, type: 12,
        body: #"""
            {"term":1,"shard":"okx/book/SOL-USDT","epoch":6,"cutover_at":1700000013000000,\#
            "resume_time":1700000002500000}
            """#,
        hex: """
            0000006e 0c
            7b227465726d223a312c227368617264223a226f6b782f626f6f6b2f534f4c2d
            55534454222c2265706f6368223a362c226375746f7665725f6174223a313730
            303030303031333030303030302c22726573756d655f74696d65223a31373030
            3030303030323530303030307d
            """,
        message: .assign(
            Assignment(
                term: 1, shard: "okx/book/SOL-USDT", epoch: 6, cutoverAt: 1_700_000_013_000_000,
                resumeFrom: ResumePoint(time: 1_700_000_002_500_000))))

    /// Worker, type 10: a shard still starting, with a time but no id.
    static let startingHeartbeat = FrozenFrame(
        name: "heartbeat 4 (delta, starting)", direction: .toCoordinator, type: 10,
        body: #"""
            {"seq":4,"full":false,"shards":[{"shard":"okx/book/SOL-USDT","epoch":6,"state":"starting","events":0,\#
            "last_event_time":1700000002500000}]}
            """#,
        hex: """
            0000008b 0a
            7b22736571223a342c2266756c6c223a66616c73652c22736861726473223a5b
            7b227368617264223a226f6b782f626f6f6b2f534f4c2d55534454222c226570
            6f6368223a362c227374617465223a227374617274696e67222c226576656e74
            73223a302c226c6173745f6576656e745f74696d65223a313730303030303030
            323530303030307d5d7d
            """,
        message: .heartbeat(
            sequence: 4, full: false,
            shards: [
                ShardReport(
                    shard: "okx/book/SOL-USDT", epoch: 6, state: .starting, eventsDelta: 0,
                    lastEventTime: 1_700_000_002_500_000)
            ]))

    /// Worker, type 16: the exchange refused the instrument (permanent), with an escaped quote.
    static let refusedNOPE = FrozenFrame(
        name: "shard failed NOPE@7 (permanent)", direction: .toCoordinator, type: 16,
        body: #"""
            {"shard":"okx/candles:1m/NOPE-USDT","epoch":7,"permanent":true,"code":"51001",\#
            "reason":"Instrument ID \"NOPE-USDT\" doesn't exist"}
            """#,
        hex: """
            00000084 10
            7b227368617264223a226f6b782f63616e646c65733a316d2f4e4f50452d5553
            4454222c2265706f6368223a372c227065726d616e656e74223a747275652c22
            636f6465223a223531303031222c22726561736f6e223a22496e737472756d65
            6e74204944205c224e4f50452d555344545c2220646f65736e27742065786973
            74227d
            """,
        message: .shardFailed(
            shard: "okx/candles:1m/NOPE-USDT", epoch: 7, permanent: true, code: "51001",
            reason: #"Instrument ID "NOPE-USDT" doesn't exist"#))

    static let transcript: [FrozenFrame] = [
        fullHeartbeat, firstAck, assignFresh, acknowledgedETH, liveETH, deltaHeartbeat, secondAck, failedBTC,
        assignResuming, acknowledgedBTC, liveBTC, idleHeartbeat, thirdAck, revokeETH, revokedETH, handOverBTC,
        handedOverBTC, assignMoving, startingHeartbeat, refusedNOPE,
    ]

    /// The type byte of each message, as version 1 numbered them (`ClusterMessage.typeBase` 10 on).
    static func versionOneType(of message: ClusterMessage) -> UInt8 {
        switch message {
        case .heartbeat: 10
        case .heartbeatAck: 11
        case .assign: 12
        case .revoke: 13
        case .acknowledged: 14
        case .shardLive: 15
        case .shardFailed: 16
        case .handOver: 17
        case .leaving: 18  // version 2 only: never in this transcript
        }
    }

    // MARK: The codec against the frozen bytes

    @Test(arguments: transcript)
    func aFrozenFrameDecodesToWhatTheVersionOneWorkerMeant(frozen: FrozenFrame) throws {
        let bytes = try #require(frozen.bytes, "hex of \(frozen.name) is not hex")
        try #require(bytes.count > 5)
        // Framing: a 4-byte big-endian length (type byte plus body), the type, the JSON body.
        let length = bytes[0..<4].reduce(0) { $0 << 8 | Int($1) }
        #expect(length == bytes.count - 4)
        #expect(bytes[4] == frozen.type)
        #expect(frozen.type == Self.versionOneType(of: frozen.message))
        #expect(String(decoding: bytes[5...], as: UTF8.self) == frozen.body)
        // Today's decoders: the frame reader, then the message with every field.
        var decoder = ControlFrameDecoder()
        let frames = try decoder.feed(bytes)
        #expect(decoder.bufferedByteCount == 0)
        let frame = try #require(frames.count == 1 ? frames.first : nil, "\(frames.count) frames")
        #expect(try ClusterMessage.decode(frame) == frozen.message)
    }

    /// What the coordinator sends a v1 worker must not drift: today's encoder, byte for byte.
    @Test(arguments: transcript.filter { $0.direction == .toWorker })
    func todaysEncoderWritesTheFrozenCoordinatorFrameByteForByte(frozen: FrozenFrame) throws {
        let bytes = try #require(frozen.bytes, "hex of \(frozen.name) is not hex")
        let encoded = frozen.message.frame().encoded()
        #expect(encoded == bytes, "\(Hex.encode(encoded))")
    }

    @Test func theTranscriptHoldsEveryMessageTypeAndBothDirections() {
        let types = Set(Self.transcript.map { Self.versionOneType(of: $0.message) })
        #expect(types == Set(10...17))
        // Each direction holds only its own side's messages.
        for frozen in Self.transcript {
            let fromCoordinator: Bool
            switch frozen.message {
            case .heartbeatAck, .assign, .revoke, .handOver: fromCoordinator = true
            case .heartbeat, .acknowledged, .shardLive, .shardFailed, .leaving: fromCoordinator = false
            }
            #expect(fromCoordinator == (frozen.direction == .toWorker), "\(frozen.name)")
        }
    }

    /// The worker's side as the coordinator reads it from TCP: one stream, cut anywhere.
    @Test(arguments: [1, 7, 64, Int.max])
    func theWorkerSideDecodesFromOneStreamCutAnywhere(chunk: Int) throws {
        let sent = Self.transcript.filter { $0.direction == .toCoordinator }
        var stream: [UInt8] = []
        for frozen in sent { stream += try #require(frozen.bytes) }
        var decoder = ControlFrameDecoder()
        var frames: [ControlFrame] = []
        var start = 0
        while start < stream.count {
            let end = start + min(chunk, stream.count - start)
            frames += try decoder.feed(stream[start..<end])
            start = end
        }
        #expect(decoder.bufferedByteCount == 0)
        #expect(try frames.map(ClusterMessage.decode) == sent.map(\.message))
    }

    // MARK: Today's worker session speaking version 1

    /// The frozen handshake of `Tests/Fixtures/control/v1-handshake.txt` (proofs by Python's hmac),
    /// with a `Hello` that reports nothing yet (the proofs cover the id and nonces, not the shards).
    static let secret = Array("frozen-v1-secret".utf8)
    static let workerNonce = [UInt8](0x00...0x1f)

    /// Worker, type 1: version 1, so no `egress_group`.
    static let hello = FrozenHandshakeFrame(
        body: #"""
            {"version":1,"id":"w-1","incarnation":7,"capacity":100,\#
            "nonce":"000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f","shards":[]}
            """#,
        hex: """
            0000008f 01
            7b2276657273696f6e223a312c226964223a22772d31222c22696e6361726e61
            74696f6e223a372c226361706163697479223a3130302c226e6f6e6365223a22
            3030303130323033303430353036303730383039306130623063306430653066
            3130313131323133313431353136313731383139316131623163316431653166
            222c22736861726473223a5b5d7d
            """)

    /// Coordinator, type 2: its version (2), its nonce, its proof.
    static let challenge = FrozenHandshakeFrame(
        body: #"""
            {"version":2,"nonce":"202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f",\#
            "proof":"e107394cfb33446752aea3069d8fc56dd00dd650a9112c6cb081f222e184678a"}
            """#,
        hex: """
            000000a4 02
            7b2276657273696f6e223a322c226e6f6e6365223a2232303231323232333234
            3235323632373238323932613262326332643265326633303331333233333334
            33353336333733383339336133623363336433653366222c2270726f6f66223a
            2265313037333934636662333334343637353261656133303639643866633536
            6464303064643635306139313132633663623038316632323265313834363738
            61227d
            """)

    /// Worker, type 3.
    static let proof = FrozenHandshakeFrame(
        body: #"{"proof":"496dcf8ea12789411324ab1f1ee539b35e8726bcc713a6e8ab7d35b8a536f6a5"}"#,
        hex: """
            0000004d 03
            7b2270726f6f66223a2234393664636638656131323738393431313332346162
            3166316565353339623335653837323662636337313361366538616237643335
            62386135333666366135227d
            """)

    /// Coordinator, type 4: term 1, a 5 s lease, a 1 s heartbeat.
    static let welcome = FrozenHandshakeFrame(
        body: #"{"term":1,"lease_ms":5000,"heartbeat_ms":1000}"#,
        hex: """
            0000002f 04
            7b227465726d223a312c226c656173655f6d73223a353030302c226865617274
            626561745f6d73223a313030307d
            """)

    /// A handshake frame, frozen the same way (no `ClusterMessage` to compare with).
    struct FrozenHandshakeFrame: Sendable {
        var body: String
        var hex: String
        var bytes: [UInt8]? { Hex.decode(String(hex.filter { !$0.isWhitespace })) }
        var frame: ControlFrame { VersionOneTranscriptTests.frame(bytes ?? []) }
    }

    @Test func theFrozenHandshakeFramesSpellTheirBodies() throws {
        for frozen in [Self.hello, Self.challenge, Self.proof, Self.welcome] {
            let bytes = try #require(frozen.bytes)
            try #require(bytes.count > 5)
            #expect(bytes[0..<4].reduce(0) { $0 << 8 | Int($1) } == bytes.count - 4)
            #expect(String(decoding: bytes[5...], as: UTF8.self) == frozen.body)
        }
    }

    /// The frame in `bytes` (length, type, body) as the frame reader hands it over.
    static func frame(_ bytes: [UInt8]) -> ControlFrame {
        ControlFrame(type: bytes.count > 4 ? bytes[4] : 0, body: Array(bytes.dropFirst(5)))
    }

    /// Today's `WorkerSession` configured for version 1 says what the frozen v1 worker says: its
    /// `Hello` and proof byte for byte, and the frozen acknowledgements for the frozen assign,
    /// revoke and hand-over, with the data-plane actions those mean.
    @Test func aVersionOneSessionSpeaksTheFrozenTranscript() throws {
        var configuration = WorkerSession.Configuration(workerID: "w-1", incarnation: 7, capacity: 100)
        configuration.version = 1
        let t0 = Instant(nanoseconds: 0)
        var session = WorkerSession(configuration: configuration, secret: Self.secret, seed: 1, now: t0)
        #expect(session.handle(.tick, now: t0) == [.connect])
        // Its `Hello` (no egress group) and, having checked the coordinator's proof, its own proof.
        #expect(session.handle(.connected(nonce: Self.workerNonce), now: t0) == [.send(Self.hello.frame)])
        #expect(session.handle(.frame(Self.challenge.frame), now: t0) == [.send(Self.proof.frame)])
        // Welcomed: the first beat goes at once, full, with nothing to report yet.
        let welcomed = session.handle(.frame(Self.welcome.frame), now: t0)
        let beats = try welcomed.compactMap { action -> ClusterMessage? in
            guard case .send(let f) = action else { return nil }
            return try ClusterMessage.decode(f)
        }
        #expect(beats == [.heartbeat(sequence: 1, full: true, shards: [])])
        #expect(session.isEstablished && session.term == 1)

        func obey(_ frozen: FrozenFrame) -> [WorkerSession.Action] { session.handle(.frame(frozen.frame), now: t0) }
        #expect(obey(Self.firstAck) == [])
        #expect(
            obey(Self.assignFresh)
                == [
                    .start(Assignment(term: 1, shard: "okx/trades/ETH-USDT", epoch: 4)),
                    .send(Self.acknowledgedETH.frame),
                ])
        #expect(
            obey(Self.assignResuming)
                == [
                    .start(
                        Assignment(
                            term: 1, shard: "okx/trades/BTC-USDT", epoch: 5,
                            resumeFrom: ResumePoint(time: 1_700_000_001_000_000, id: "130640001"))),
                    .send(Self.acknowledgedBTC.frame),
                ])
        #expect(session.running["okx/trades/BTC-USDT"]?.lastEventID == "130640001")
        #expect(
            obey(Self.revokeETH)
                == [
                    .stop(shard: "okx/trades/ETH-USDT", epoch: 4, until: nil),
                    .send(Self.revokedETH.frame),
                ])
        #expect(
            obey(Self.handOverBTC)
                == [
                    .stop(shard: "okx/trades/BTC-USDT", epoch: 5, until: 1_700_000_013_000_000),
                    .send(Self.handedOverBTC.frame),
                ])
        #expect(
            obey(Self.assignMoving)
                == [
                    .start(
                        Assignment(
                            term: 1, shard: "okx/book/SOL-USDT", epoch: 6, cutoverAt: 1_700_000_013_000_000,
                            resumeFrom: ResumePoint(time: 1_700_000_002_500_000))),
                    .send(ClusterMessage.acknowledged(shard: "okx/book/SOL-USDT", epoch: 6, revoked: false).frame()),
                ])
        // The next beat is a delta reporting the new shard from its resume point.
        let next = session.handle(.tick, now: t0.advanced(by: .seconds(1)))
        #expect(
            next == [
                .send(
                    ClusterMessage.heartbeat(
                        sequence: 2, full: false,
                        shards: [
                            ShardReport(
                                shard: "okx/book/SOL-USDT", epoch: 6, state: .starting, eventsDelta: 0,
                                lastEventTime: 1_700_000_002_500_000)
                        ]
                    ).frame())
            ])
    }
}
