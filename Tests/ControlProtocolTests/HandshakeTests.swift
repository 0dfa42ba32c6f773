import CollectorCore
import ControlProtocol
import Crypto
import Foundation
import TestSupport
import Testing

/// The mutual handshake as transcripts of the two pure machines, and against hostile input.
@Suite struct HandshakeTests {
    static let secret = Array("cluster-secret".utf8)
    static let workerNonce = [UInt8](repeating: 0x11, count: 32)
    static let coordinatorNonce = [UInt8](repeating: 0x22, count: 32)

    static func coordinator(secret: [UInt8] = secret) -> CoordinatorHandshake {
        CoordinatorHandshake(
            secret: secret, nonce: coordinatorNonce, term: 4, leaseMilliseconds: 5000, heartbeatMilliseconds: 1000)
    }

    static func worker(secret: [UInt8] = secret, version: Int = ControlVersion.current) -> WorkerHandshake {
        WorkerHandshake(
            secret: secret,
            hello: Hello(
                version: version, workerID: "worker-0", incarnation: 2, capacity: 500, egressGroup: "nat-a",
                nonce: workerNonce,
                shards: [ReportedShard(shard: "okx/book/BTC-USDT", epoch: 9, lastEventTime: 1_700_000_000_000_000)]))
    }

    static func sent(_ actions: [HandshakeAction]) -> [ControlFrame] {
        actions.compactMap { if case .send(let f) = $0 { f } else { nil } }
    }

    /// Runs both machines against each other until neither sends; returns both sides' actions.
    static func run(
        _ c: inout CoordinatorHandshake, _ w: inout WorkerHandshake
    ) -> (
        coordinator: [HandshakeAction], worker: [HandshakeAction]
    ) {
        var coordinatorActions: [HandshakeAction] = []
        var workerActions = w.start()
        var toCoordinator = sent(workerActions)
        var toWorker: [ControlFrame] = []
        while !toCoordinator.isEmpty || !toWorker.isEmpty {
            for f in toCoordinator {
                let a = c.received(f)
                coordinatorActions += a
                toWorker += sent(a)
            }
            toCoordinator = []
            for f in toWorker {
                let a = w.received(f)
                workerActions += a
                toCoordinator += sent(a)
            }
            toWorker = []
        }
        return (coordinatorActions, workerActions)
    }

    @Test func bothSidesProveTheSecretAndTheWorkerIsWelcomedWithDurations() {
        var c = Self.coordinator()
        var w = Self.worker()
        let (coordinator, worker) = Self.run(&c, &w)
        #expect(coordinator.contains(.acceptedWorker(w.hello)))
        #expect(worker.last == .welcomed(term: 4, leaseMilliseconds: 5000, heartbeatMilliseconds: 1000))
        #expect(c.isDone)
        // The secret never crosses the wire.
        let wire = (Self.sent(coordinator) + Self.sent(worker)).flatMap(\.body)
        #expect(!String(decoding: wire, as: UTF8.self).contains("cluster-secret"))
    }

    @Test func aWrongSecretIsRefusedOnEitherSide() {
        // A worker with the wrong secret: it refuses the coordinator's proof and proves nothing.
        var c1 = Self.coordinator()
        var w1 = Self.worker(secret: Array("wrong".utf8))
        let (c1Actions, w1Actions) = Self.run(&c1, &w1)
        #expect(w1Actions.contains { if case .fail(.badProof, _) = $0 { true } else { false } })
        #expect(!c1Actions.contains { if case .acceptedWorker = $0 { true } else { false } })
        // A forged proof sent to the coordinator: rejected with a reason, and the connection closes.
        var c2 = Self.coordinator()
        _ = c2.received(HandshakeMessage.hello(Self.worker().hello).frame())
        let refused = c2.received(HandshakeMessage.proof([UInt8](repeating: 0, count: 32)).frame())
        #expect(
            Self.sent(refused).first.map { try? HandshakeMessage.decode($0) }
                == .reject(.badProof, message: "worker worker-0 did not prove the cluster secret"))
        #expect(refused.last == .fail(.badProof, "worker worker-0 did not prove the cluster secret"))
        // The coordinator's own proof echoed back is no worker proof (the role is in the MAC).
        var c3 = Self.coordinator()
        let challenge = c3.received(HandshakeMessage.hello(Self.worker().hello).frame())
        guard let frame = Self.sent(challenge).first,
            case .challenge(_, _, let echoed)? = try? HandshakeMessage.decode(frame)
        else {
            Issue.record("no challenge: \(challenge)")
            return
        }
        #expect(c3.received(HandshakeMessage.proof(echoed).frame()).last?.isBadProof == true)
    }

    @Test(arguments: [0, ControlVersion.oldestAccepted - 1, ControlVersion.current + 1])
    func aVersionOutsideTheWindowIsRejected(version: Int) {
        var c = Self.coordinator()
        var w = Self.worker(version: version)
        let (coordinator, worker) = Self.run(&c, &w)
        #expect(coordinator.contains { if case .fail(.badVersion, _) = $0 { true } else { false } })
        #expect(
            worker.contains { if case .fail(.badVersion, let text) = $0 { text.contains("refused") } else { false } })
    }

    /// A version-1 worker's frozen transcript (proofs computed by Python's hmac): the current
    /// coordinator accepts it, reading its missing egress group as its id.
    @Test func aWorkerOneVersionBehindIsAcceptedFromAFrozenTranscript() throws {
        let text = try String(
            contentsOfFile: TestEnvironment.repositoryRoot + "/Tests/Fixtures/control/v1-handshake.txt", encoding: .utf8
        )
        var values: [String: String] = [:]
        for line in text.split(separator: "\n") where !line.hasPrefix("#") {
            guard let eq = line.firstIndex(of: "=") else { continue }
            values[String(line[..<eq])] = String(line[line.index(after: eq)...])
        }
        let secret = Array(try #require(values["secret"]).utf8)
        let coordinatorNonce = try #require(values["coordinator_nonce"].flatMap(Hex.decode))
        var c = CoordinatorHandshake(
            secret: secret, nonce: coordinatorNonce, term: 1, leaseMilliseconds: 5000, heartbeatMilliseconds: 1000)
        let challenge = c.received(ControlFrame(type: 1, body: Array(try #require(values["hello"]).utf8)))
        let sentChallenge = try HandshakeMessage.decode(try #require(Self.sent(challenge).first))
        #expect(
            sentChallenge
                == .challenge(
                    version: ControlVersion.current, nonce: coordinatorNonce,
                    proof: try #require(values["coordinator_proof"].flatMap(Hex.decode))))
        let proof = try #require(values["worker_proof"].flatMap(Hex.decode))
        let accepted = c.received(HandshakeMessage.proof(proof).frame())
        let hello = try #require(accepted.compactMap { if case .acceptedWorker(let h) = $0 { h } else { nil } }.first)
        #expect(hello.version == 1 && hello.workerID == "w-1" && hello.egressGroup == "w-1" && hello.incarnation == 7)
        #expect(
            hello.shards == [
                ReportedShard(shard: "okx/trades/BTC-USDT", epoch: 3, lastEventTime: 1_700_000_000_000_000)
            ])
    }

    /// Bad input before authentication: each gets a specific reason and a close, never a crash.
    @Test(arguments: [
        (ControlFrame(type: 9, body: []), "unknown message type 9"),
        (ControlFrame(type: 1, body: Array("not json".utf8)), "malformed hello body"),
        (ControlFrame(type: 1, body: Array(#"{"version":2}"#.utf8)), "missing string field 'id'"),
        (
            ControlFrame(
                type: 1,
                body: Array(
                    #"{"version":2,"id":"w","egress_group":"g","incarnation":1,"capacity":1,"nonce":"00"}"#.utf8)),
            "field 'nonce' must be 32 bytes in hex"
        ),
        (
            ControlFrame(
                type: 1,
                body: Array(
                    #"{"version":2,"id":"w","egress_group":"g","incarnation":-1,"capacity":1,"nonce":"00"}"#.utf8)),
            "missing non-negative field 'incarnation'"
        ),
        (ControlFrame(type: 3, body: Array(#"{"proof":"00"}"#.utf8)), "field 'proof' must be 32 bytes in hex"),
        (HandshakeMessage.proof([UInt8](repeating: 7, count: 32)).frame(), "unexpected proof during the handshake"),
    ])
    func badHandshakeInputIsRefusedWithAReason(frame: ControlFrame, reason: String) {
        var c = Self.coordinator()
        let actions = c.received(frame)
        guard case .fail(_, let text)? = actions.last else {
            Issue.record("not refused: \(actions)")
            return
        }
        #expect(text.contains(reason), "\(text)")
        #expect(c.isDone)
    }

    /// Random bytes as frames never crash either machine and always end the handshake.
    @Test func randomFramesAreRefused() {
        var rng = SeededRNG(seed: 7070)
        for _ in 0..<2000 {
            let body = (0..<Int.random(in: 0..<64, using: &rng)).map { _ in UInt8.random(in: 0...255, using: &rng) }
            let frame = ControlFrame(type: UInt8.random(in: 0...6, using: &rng), body: body)
            var c = Self.coordinator()
            #expect(c.received(frame).contains { if case .fail = $0 { true } else { false } })
            var w = Self.worker()
            #expect(w.received(frame).contains { if case .fail = $0 { true } else { false } })
        }
    }
}

extension HandshakeAction {
    var isBadProof: Bool { if case .fail(.badProof, _) = self { true } else { false } }
}
