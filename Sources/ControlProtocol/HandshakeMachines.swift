/// What a handshake machine asks its driver to do.
public enum HandshakeAction: Hashable, Sendable {
    case send(ControlFrame)
    /// The peer is authenticated (coordinator side: its `Hello`; worker side: the welcome's values).
    case acceptedWorker(Hello)
    case welcomed(term: UInt64, leaseMilliseconds: Int64, heartbeatMilliseconds: Int64)
    /// Log `reason` (never a secret or proof) and close the connection.
    case fail(RejectReason, String)
}

/// The coordinator's side of one connection's handshake (pure; DESIGN.md §3): `Hello` →
/// `Challenge` (its nonce, its proof) → the worker's `Proof` → `Welcome`, or a `Reject` and a close.
/// The nonce is drawn by the driver (`SecureRandom`) and passed in.
public struct CoordinatorHandshake: Sendable {
    enum State: Sendable {
        case awaitingHello
        case awaitingProof(Hello)
        case done
    }

    private var state = State.awaitingHello
    private let secret: [UInt8]
    private let nonce: [UInt8]
    public let term: UInt64
    public let leaseMilliseconds: Int64
    public let heartbeatMilliseconds: Int64

    public init(
        secret: [UInt8], nonce: [UInt8], term: UInt64, leaseMilliseconds: Int64, heartbeatMilliseconds: Int64
    ) {
        precondition(
            nonce.count == HandshakeLimits.nonceBytes, "a handshake nonce is \(HandshakeLimits.nonceBytes) bytes")
        self.secret = secret
        self.nonce = nonce
        self.term = term
        self.leaseMilliseconds = leaseMilliseconds
        self.heartbeatMilliseconds = heartbeatMilliseconds
    }

    public var isDone: Bool { if case .done = state { true } else { false } }

    /// A frame from the worker.
    public mutating func received(_ frame: ControlFrame) -> [HandshakeAction] {
        let message: HandshakeMessage
        do {
            message = try HandshakeMessage.decode(frame)
        } catch {
            return reject(.malformed, error.reason)
        }
        switch (state, message) {
        case (.awaitingHello, .hello(let hello)):
            guard hello.version >= ControlVersion.oldestAccepted && hello.version <= ControlVersion.current else {
                return reject(
                    .badVersion,
                    "protocol version \(hello.version) not accepted (\(ControlVersion.oldestAccepted)…\(ControlVersion.current))"
                )
            }
            state = .awaitingProof(hello)
            let proof = HandshakeProof.compute(
                secret: secret, role: .coordinator, workerID: hello.workerID, workerNonce: hello.nonce,
                coordinatorNonce: nonce)
            return [
                .send(HandshakeMessage.challenge(version: ControlVersion.current, nonce: nonce, proof: proof).frame())
            ]
        case (.awaitingProof(let hello), .proof(let proof)):
            let expected = HandshakeProof.compute(
                secret: secret, role: .worker, workerID: hello.workerID, workerNonce: hello.nonce,
                coordinatorNonce: nonce)
            guard HandshakeProof.matches(proof, expected) else {
                return reject(.badProof, "worker \(hello.workerID) did not prove the cluster secret")
            }
            state = .done
            return [
                .acceptedWorker(hello),
                .send(
                    HandshakeMessage.welcome(
                        term: term, leaseMilliseconds: leaseMilliseconds, heartbeatMilliseconds: heartbeatMilliseconds
                    ).frame()),
            ]
        case (.awaitingHello, _), (.awaitingProof, _), (.done, _):
            // Every state listed (STYLE: no `default:` over state): a new one must be placed here.
            return reject(.unexpected, "unexpected \(message.kind) during the handshake")
        }
    }

    /// Refuses the worker after authentication (e.g. `duplicate-id` from the coordinator core).
    public mutating func refuse(_ reason: RejectReason, _ text: String) -> [HandshakeAction] { reject(reason, text) }

    private mutating func reject(_ reason: RejectReason, _ text: String) -> [HandshakeAction] {
        state = .done
        return [.send(HandshakeMessage.reject(reason, message: text).frame()), .fail(reason, text)]
    }
}

/// The worker's side: sends `Hello`, checks the coordinator's proof before proving itself (so a
/// peer without the secret learns nothing usable), then waits for `Welcome`.
public struct WorkerHandshake: Sendable {
    enum State: Sendable { case awaitingChallenge, awaitingWelcome, done }

    private var state = State.awaitingChallenge
    private let secret: [UInt8]
    public let hello: Hello

    public init(secret: [UInt8], hello: Hello) {
        precondition(
            hello.nonce.count == HandshakeLimits.nonceBytes, "a handshake nonce is \(HandshakeLimits.nonceBytes) bytes")
        self.secret = secret
        self.hello = hello
    }

    /// The first frame to send.
    public func start() -> [HandshakeAction] { [.send(HandshakeMessage.hello(hello).frame())] }

    public mutating func received(_ frame: ControlFrame) -> [HandshakeAction] {
        let message: HandshakeMessage
        do {
            message = try HandshakeMessage.decode(frame)
        } catch {
            return fail(.malformed, error.reason)
        }
        switch (state, message) {
        case (_, .reject(let reason, let text)):
            state = .done
            return [.fail(reason, "coordinator refused: \(text)")]
        case (.awaitingChallenge, .challenge(let version, let coordinatorNonce, let proof)):
            guard version >= hello.version else {
                return fail(.badVersion, "coordinator speaks version \(version), older than ours (\(hello.version))")
            }
            let expected = HandshakeProof.compute(
                secret: secret, role: .coordinator, workerID: hello.workerID, workerNonce: hello.nonce,
                coordinatorNonce: coordinatorNonce)
            guard HandshakeProof.matches(proof, expected) else {
                return fail(.badProof, "the coordinator did not prove the cluster secret")
            }
            state = .awaitingWelcome
            let mine = HandshakeProof.compute(
                secret: secret, role: .worker, workerID: hello.workerID, workerNonce: hello.nonce,
                coordinatorNonce: coordinatorNonce)
            return [.send(HandshakeMessage.proof(mine).frame())]
        case (.awaitingWelcome, .welcome(let term, let lease, let heartbeat)):
            state = .done
            return [.welcomed(term: term, leaseMilliseconds: lease, heartbeatMilliseconds: heartbeat)]
        case (.awaitingChallenge, _), (.awaitingWelcome, _), (.done, _):
            return fail(.unexpected, "unexpected \(message.kind) during the handshake")
        }
    }

    private mutating func fail(_ reason: RejectReason, _ text: String) -> [HandshakeAction] {
        state = .done
        return [.fail(reason, text)]
    }
}

extension HandshakeMessage {
    /// The message's name, for logs.
    public var kind: String {
        switch self {
        case .hello: "hello"
        case .challenge: "challenge"
        case .proof: "proof"
        case .welcome: "welcome"
        case .reject: "reject"
        }
    }
}
