import CollectorCore
import ControlProtocol
import Testing

@Suite struct ClusterMessageTests {
    static let messages: [ClusterMessage] = [
        .heartbeat(sequence: 0, full: true, shards: []),
        .heartbeat(
            sequence: 41, full: false,
            shards: [
                ShardReport(shard: "okx/trades/BTC-USDT", epoch: 7, state: .live, eventsDelta: 1200, lastEventTime: 17),
                ShardReport(shard: "okx/book/ETH-USDT", epoch: 8, state: .starting, eventsDelta: 0),
            ]),
        .heartbeatAck(term: 3, sequence: 41, leaseMilliseconds: 5000),
        .assign(Assignment(term: 3, shard: "okx/trades/BTC-USDT", epoch: 9)),
        .assign(
            Assignment(
                term: 3, shard: "okx/trades/BTC-USDT", epoch: 10, cutoverAt: 1_700_000_060_000_000,
                resumeFrom: ResumePoint(time: 1_700_000_000_000_000, id: "130639474"))),
        .assign(
            Assignment(term: 3, shard: "okx/candles:1m/BTC-USDT", epoch: 11, resumeFrom: ResumePoint(time: 60_000_000))),
        .revoke(term: 3, shard: "okx/trades/BTC-USDT", epoch: 9),
        .handOver(term: 3, shard: "okx/trades/BTC-USDT", epoch: 9, until: 1_700_000_060_000_000),
        .acknowledged(shard: "okx/trades/BTC-USDT", epoch: 9, revoked: true),
        .shardLive(shard: "okx/book/ETH-USDT", epoch: 8),
        .shardFailed(
            shard: "okx/candles:1m/NOPE-USDT", epoch: 2, permanent: true, code: "60018",
            reason: "instId \"NOPE-USDT\" doesn't exist"),
        .leaving(reason: "shutting down"),
    ]

    @Test(arguments: messages)
    func everyMessageSurvivesTheWire(message: ClusterMessage) throws {
        var decoder = ControlFrameDecoder()
        let frames = try decoder.feed(message.frame().encoded())
        #expect(frames.count == 1)
        #expect(try ClusterMessage.decode(try #require(frames.first)) == message)
    }

    @Test(arguments: [
        (ControlFrame(type: 1, body: []), "unknown message type 1"),
        (ControlFrame(type: 19, body: Array("{}".utf8)), "unknown message type 19"),
        (ControlFrame(type: 18, body: Array("{}".utf8)), "missing string field 'reason'"),
        (ControlFrame(type: 10, body: Array("{".utf8)), "malformed"),
        (ControlFrame(type: 10, body: Array(#"{"seq":1}"#.utf8)), "missing boolean field 'full'"),
        (
            ControlFrame(type: 11, body: Array(#"{"term":1,"seq":1,"lease_ms":0}"#.utf8)),
            "missing positive field 'lease_ms'"
        ),
        (ControlFrame(type: 12, body: Array(#"{"term":1,"epoch":2}"#.utf8)), "missing string field 'shard'"),
        (
            ControlFrame(type: 13, body: Array(#"{"term":-1,"shard":"s","epoch":2}"#.utf8)),
            "missing non-negative field 'term'"
        ),
        (
            ControlFrame(
                type: 10, body: Array(#"{"seq":1,"full":true,"shards":[{"shard":"s","epoch":1,"state":"odd"}]}"#.utf8)),
            "a shard report needs"
        ),
    ])
    func badMessagesNameWhatIsWrong(frame: ControlFrame, reason: String) {
        #expect {
            try ClusterMessage.decode(frame)
        } throws: { error in
            (error as? HandshakeDecodeError)?.reason.contains(reason) == true
        }
    }

    @Test func randomBodiesNeverDecodeSilentlyWrong() throws {
        var rng = SeededRNG(seed: 10)
        for _ in 0..<3000 {
            let body = (0..<Int(rng.next() % 80)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
            let frame = ControlFrame(type: UInt8(10 + rng.next() % 8), body: body)
            if let decoded = try? ClusterMessage.decode(frame) {
                // Whatever decodes must encode back to a frame that decodes to the same message.
                #expect(try ClusterMessage.decode(decoded.frame()) == decoded)
            }
        }
    }
}

/// The worker's lease and term rules as transcripts on a simulated clock.
@Suite struct WorkerLeaseTests {
    static func at(_ ms: Int64) -> Instant { Instant(nanoseconds: ms * 1_000_000) }

    @Test func theLeaseRunsFromWhenTheBeatWasSentMinusTheMargin() {
        var lease = WorkerLease(safetyMargin: .milliseconds(500))
        #expect(!lease.holds(at: Self.at(0)), "no lease before the first ack")
        lease.sent(sequence: 1, now: Self.at(1000))
        // The ack arrives 300 ms later; the 5 s lease still counts from 1000.
        let r1 = lease.acknowledged(term: 1, sequence: 1, lease: .seconds(5))
        #expect(r1)
        #expect(lease.expiresAt == Self.at(5500))
        #expect(lease.holds(at: Self.at(5499)) && !lease.holds(at: Self.at(5500)))
    }

    @Test func aLateAckOfAnOlderBeatNeverShortensTheLease() {
        var lease = WorkerLease(safetyMargin: .zero)
        lease.sent(sequence: 1, now: Self.at(0))
        lease.sent(sequence: 2, now: Self.at(1000))
        let r2 = lease.acknowledged(term: 1, sequence: 2, lease: .seconds(5))
        #expect(r2)
        let r3 = lease.acknowledged(term: 1, sequence: 1, lease: .seconds(5))
        #expect(!r3, "beat 1 was superseded")
        #expect(lease.expiresAt == Self.at(6000))
        let r4 = lease.acknowledged(term: 1, sequence: 99, lease: .seconds(5))
        #expect(!r4, "never sent")
    }

    @Test func aLowerTermIsIgnored() {
        var lease = WorkerLease(safetyMargin: .zero)
        let r5 = lease.admits(term: 5)
        #expect(r5)
        lease.sent(sequence: 1, now: Self.at(0))
        let r6 = lease.acknowledged(term: 4, sequence: 1, lease: .seconds(5))
        #expect(!r6, "a deposed coordinator's ack")
        #expect(!lease.holds(at: Self.at(1)))
        let r7 = lease.acknowledged(term: 5, sequence: 1, lease: .seconds(5))
        #expect(r7)
        #expect(lease.highestTerm == 5)
        let old = lease.admits(term: 4)
        let newer = lease.admits(term: 6)
        #expect(!old && newer && lease.highestTerm == 6)
    }

    @Test func pendingBeatsAreBounded() {
        var lease = WorkerLease(safetyMargin: .zero)
        for s in 0..<UInt64(WorkerLease.maxPendingBeats + 10) { lease.sent(sequence: s, now: Self.at(Int64(s))) }
        let r8 = lease.acknowledged(term: 1, sequence: 0, lease: .seconds(1))
        #expect(!r8, "the oldest beats are forgotten")
        let newest = lease.acknowledged(term: 1, sequence: UInt64(WorkerLease.maxPendingBeats + 9), lease: .seconds(1))
        #expect(newest)
    }
}
