import ControlProtocol

// The control protocol a coordinator and its workers speak over TCP: the length-prefixed frame
// codec with its message bodies, and the two handshake machines fed frames from anyone.
extension FuzzTarget {
    static let controlTargets: [FuzzTarget] = [
        FuzzTarget(
            name: "control-frame",
            summary: "frame codec and message bodies: split = whole, bounded buffer, frames and messages round-trip"
        ) { input throws(FuzzFinding) in try ControlFuzz.checkFrames(input) },
        FuzzTarget(
            name: "control-handshake",
            summary: "both handshake machines fed a frame stream: no acceptance without the HMAC, done stays done"
        ) { input throws(FuzzFinding) in try ControlFuzz.checkHandshake(input) },
    ]
}

enum ControlFuzz {
    /// A decoder's outcome: the frames it returned, then the error that stopped it.
    struct Outcome: Equatable {
        var frames: [ControlFrame] = []
        var error: ControlFrameError?
    }

    static func decode(_ pieces: [ArraySlice<UInt8>], target: String) throws(FuzzFinding) -> Outcome {
        var decoder = ControlFrameDecoder()
        var outcome = Outcome()
        var fed: [UInt8] = []
        for piece in pieces {
            fed += piece
            do {
                outcome.frames += try decoder.feed(piece)
            } catch {
                outcome.error = error
                break
            }
            // What is held is the unread tail of the stream, and never a whole frame: fewer bytes
            // than its length prefix promises (a 1 MiB limit cannot be reached by a 16 KiB input).
            let held = decoder.bufferedByteCount
            try require(held <= fed.count, target, "\(held) bytes held of \(fed.count) fed")
            if held >= 4 {
                let tail = fed.suffix(held)
                let length = tail.prefix(4).reduce(0) { $0 << 8 | Int($1) }
                try require(held < 4 + length, target, "a whole \(length)-byte frame held back in \(held) bytes")
            }
        }
        // An error recorded while frames were still returned is thrown by the next call.
        if outcome.error == nil, let error = decoder.error { outcome.error = error }
        return outcome
    }

    // MARK: - control-frame

    static func checkFrames(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "control-frame"
        let whole = try decode([input[...]], target: target)
        let split = try decode(SplitPoints.pieces(of: input), target: target)
        try require(
            whole == split, target, "split at \(SplitPoints.points(for: input)) gave \(split), whole gave \(whole)")
        // The frames are the input's prefix, encoded again.
        let encoded = whole.frames.flatMap { $0.encoded() }
        try require(
            encoded.count <= input.count && Array(input[0..<encoded.count]) == encoded, target,
            "re-encoded frames are not the input's prefix")
        for frame in whole.frames { try roundTrip(frame, target: target) }
    }

    /// A body that decodes as a message decodes again, to the same message, from that message's frame.
    static func roundTrip(_ frame: ControlFrame, target: String) throws(FuzzFinding) {
        if let message = Result(catching: { () throws(HandshakeDecodeError) in try HandshakeMessage.decode(frame) })
            .value
        {
            let again = Result { () throws(HandshakeDecodeError) in try HandshakeMessage.decode(message.frame()) }
            try require(again.value == message, target, "handshake \(message) re-decoded as \(again)")
        }
        if let message = Result(catching: { () throws(HandshakeDecodeError) in try ClusterMessage.decode(frame) })
            .value
        {
            let again = Result { () throws(HandshakeDecodeError) in try ClusterMessage.decode(message.frame()) }
            try require(again.value == message, target, "message \(message) re-decoded as \(again)")
        }
    }

    // MARK: - control-handshake

    static let secret = Array("fuzz-cluster-secret".utf8)
    static let coordinatorNonce = [UInt8](repeating: 0x22, count: 32)
    static let workerHello = Hello(
        version: ControlVersion.current, workerID: "worker-0", incarnation: 2, capacity: 500, egressGroup: "nat-a",
        nonce: [UInt8](repeating: 0x11, count: 32),
        shards: [ReportedShard(shard: "okx/candles/BTC-USDT/1m", epoch: 9, lastEventTime: 1_700_000_000_000_000)])

    static func coordinatorMachine() -> CoordinatorHandshake {
        CoordinatorHandshake(
            secret: secret, nonce: coordinatorNonce, term: 4, leaseMilliseconds: 5000, heartbeatMilliseconds: 1000)
    }

    static func checkHandshake(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "control-handshake"
        let frames = try decode([input[...]], target: target).frames
        try driveCoordinator(frames, target: target)
        try driveWorker(frames, target: target)
    }

    static func driveCoordinator(_ frames: [ControlFrame], target: String) throws(FuzzFinding) {
        var machine = coordinatorMachine()
        var hello: Hello?
        var failed = false
        for frame in frames {
            let wasDone = machine.isDone
            let actions = machine.received(frame)
            try checkFailShape(actions, target: target, side: "coordinator")
            if wasDone {
                let refused = actions.contains { if case .fail = $0 { true } else { false } }
                try require(refused, target, "coordinator: a frame after the end gave \(actions)")
            }
            for action in actions {
                switch action {
                case .acceptedWorker(let accepted):
                    try require(!failed && !wasDone, target, "coordinator: accepted after the end")
                    // Only the worker's HMAC over both nonces admits it.
                    let expected = HandshakeProof.compute(
                        secret: secret, role: .worker, workerID: accepted.workerID, workerNonce: accepted.nonce,
                        coordinatorNonce: coordinatorNonce)
                    let message = Result { () throws(HandshakeDecodeError) in try HandshakeMessage.decode(frame) }
                    try require(
                        message.value == .proof(expected) && hello == accepted, target,
                        "coordinator: accepted \(accepted.workerID) on \(message) without its proof")
                case .send(let sent):
                    if case .challenge? = Result(catching: { () throws(HandshakeDecodeError) in
                        try HandshakeMessage.decode(sent)
                    }).value {
                        let message = Result { () throws(HandshakeDecodeError) in try HandshakeMessage.decode(frame) }
                        if case .hello(let received)? = message.value { hello = received }
                    }
                case .fail:
                    failed = true
                    try require(machine.isDone, target, "coordinator: failed but not done")
                case .welcomed:
                    throw FuzzFinding(target: target, "coordinator: a worker-side action \(action)")
                }
            }
        }
    }

    static func driveWorker(_ frames: [ControlFrame], target: String) throws(FuzzFinding) {
        var machine = WorkerHandshake(secret: secret, hello: workerHello)
        let started = machine.start()
        try require(
            started == [.send(HandshakeMessage.hello(workerHello).frame())], target, "worker: started with \(started)")
        var proved = false
        var ended = false
        for frame in frames {
            let actions = machine.received(frame)
            if ended {
                try require(
                    actions.count == 1 && actions.allSatisfy({ if case .fail = $0 { true } else { false } }), target,
                    "worker: a frame after the end gave \(actions)")
                continue
            }
            for action in actions {
                switch action {
                case .send(let sent):
                    // Its proof goes out only after the coordinator proved the secret.
                    let expected = HandshakeProof.compute(
                        secret: secret, role: .coordinator, workerID: workerHello.workerID,
                        workerNonce: workerHello.nonce, coordinatorNonce: coordinatorNonceIn(frame) ?? [])
                    let message = Result { () throws(HandshakeDecodeError) in try HandshakeMessage.decode(frame) }
                    guard case .challenge(_, _, let proof)? = message.value, proof == expected else {
                        throw FuzzFinding(target: target, "worker: sent \(sent.type) on \(message) without the proof")
                    }
                    proved = true
                case .welcomed:
                    try require(proved, target, "worker: welcomed before proving itself")
                    ended = true
                case .fail:
                    ended = true
                case .acceptedWorker:
                    throw FuzzFinding(target: target, "worker: a coordinator-side action \(action)")
                }
            }
        }
    }

    static func coordinatorNonceIn(_ frame: ControlFrame) -> [UInt8]? {
        let message = Result { () throws(HandshakeDecodeError) in try HandshakeMessage.decode(frame) }
        if case .challenge(_, let nonce, _)? = message.value { return nonce }
        return nil
    }

    /// A coordinator that fails sends its `Reject` first, in the same step.
    static func checkFailShape(_ actions: [HandshakeAction], target: String, side: String) throws(FuzzFinding) {
        for (index, action) in actions.enumerated() {
            guard case .fail(let reason, _) = action else { continue }
            let rejected =
                index > 0
                && {
                    guard case .send(let sent) = actions[index - 1] else { return false }
                    let message = Result { () throws(HandshakeDecodeError) in try HandshakeMessage.decode(sent) }
                    if case .reject(let sentReason, _)? = message.value { return sentReason == reason }
                    return false
                }()
            try require(rejected, target, "\(side): failed with \(reason) without sending a reject: \(actions)")
        }
    }

    /// Seeds for the corpus (`FuzzRegressionTests` keeps `Fuzz/corpus` in step with them): the two
    /// sides of a successful handshake, and a session's first messages after it.
    static var seeds: [(target: String, name: String, bytes: [UInt8])] {
        var coordinator = coordinatorMachine()
        var worker = WorkerHandshake(secret: secret, hello: workerHello)
        var toCoordinator: [ControlFrame] = []
        var toWorker: [ControlFrame] = []
        var pending = sent(worker.start())
        while !pending.isEmpty {
            toCoordinator += pending
            let replies = pending.flatMap { sent(coordinator.received($0)) }
            toWorker += replies
            pending = replies.flatMap { sent(worker.received($0)) }
        }
        let workerStream = toCoordinator.flatMap { $0.encoded() }
        let coordinatorStream = toWorker.flatMap { $0.encoded() }
        let session: [ClusterMessage] = [
            .heartbeat(
                sequence: 1, full: true,
                shards: []),
            .heartbeatAck(term: 4, sequence: 1, leaseMilliseconds: 5000, groupSize: 2),
            .revoke(term: 4, shard: "okx/trades/BTC-USDT", epoch: 3),
            .handOver(term: 4, shard: "okx/trades/BTC-USDT", epoch: 3, until: 1_700_000_000_000_000),
            .acknowledged(shard: "okx/trades/BTC-USDT", epoch: 3, revoked: true),
            .shardLive(shard: "okx/book/ETH-USDT", epoch: 7),
            .shardFailed(shard: "okx/book/X", epoch: 1, permanent: true, code: "60018", reason: "no such instrument"),
            .leaving(reason: "SIGTERM"),
        ]
        let sessionStream = session.flatMap { $0.frame().encoded() }
        return [
            ("control-handshake", "worker-side", workerStream),
            ("control-handshake", "coordinator-side", coordinatorStream),
            ("control-frame", "handshake", workerStream + coordinatorStream),
            ("control-frame", "session", sessionStream),
        ]
    }

    static func sent(_ actions: [HandshakeAction]) -> [ControlFrame] {
        actions.compactMap { if case .send(let frame) = $0 { frame } else { nil } }
    }
}

extension Result {
    /// The success value, or nil.
    var value: Success? {
        if case .success(let value) = self { return value }
        return nil
    }
}
