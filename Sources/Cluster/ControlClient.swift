import CollectorCore
public import ControlProtocol
import Crypto
public import Observability
public import Runtime

/// The worker's control connection: the thin driver around `WorkerSession` (the socket, the 100 ms
/// tick, nonces and the reconnect seed from `SecureRandom`). What the session decides for the data
/// plane (start, stop, orphaned) goes to `dataPlane`, on the loop; the data plane's reports come
/// back through `report`.
public final class ControlClient: Sendable {
    /// Called on the loop with every `.start`, `.stop`, `.orphaned` and `.egressShare` action.
    public typealias DataPlane = @Sendable (WorkerSession.Action) -> Void

    public struct Status: Sendable {
        public var established: Bool
        public var orphaned: Bool
        public var term: UInt64?
        public var running: [String: WorkerSession.Running]
    }

    private let state: LoopBound<ClientState>

    private init(state: LoopBound<ClientState>) { self.state = state }

    /// Starts connecting to `endpoint` at once.
    public static func start(
        endpoint: Endpoint, configuration: WorkerSession.Configuration, secret: [UInt8], loop: EventLoop,
        logger: Logger, tick: Duration = .milliseconds(100), dataPlane: @escaping DataPlane
    ) async -> ControlClient {
        let seed = SecureRandom.bytes(8).reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
        let bound: LoopBound<ClientState> = await withCheckedContinuation { continuation in
            loop.execute {
                let state = ClientState(
                    endpoint: endpoint,
                    session: WorkerSession(configuration: configuration, secret: secret, seed: seed, now: loop.now()),
                    loop: loop, logger: logger, tick: tick, dataPlane: dataPlane)
                state.begin()
                continuation.resume(returning: LoopBound(state, loop: loop))
            }
        }
        return ControlClient(state: bound)
    }

    /// A data-plane report (`shardLive`, `shardFailed`, `stored`).
    public func report(_ input: WorkerSession.Input) {
        let state = self.state
        state.loop.execute { state.value.input(input) }
    }

    public func status() async -> Status {
        let state = self.state
        return await withCheckedContinuation { continuation in
            state.loop.execute {
                let s = state.value.session
                continuation.resume(
                    returning: Status(
                        established: s.isEstablished, orphaned: s.isOrphaned, term: s.term, running: s.running))
            }
        }
    }

    /// Closes the connection and stops reconnecting.
    public func stop() async {
        let state = self.state
        await withCheckedContinuation { (continuation: CheckedContinuation<Void, Never>) in
            state.loop.execute {
                state.value.stop()
                continuation.resume()
            }
        }
    }
}

/// The loop-confined half of `ControlClient`.
final class ClientState: TransportHandler {
    let endpoint: Endpoint
    var session: WorkerSession
    let loop: EventLoop
    private let logger: Logger
    private let tickInterval: Duration
    private let dataPlane: ControlClient.DataPlane
    private var transport: (any Transport)?
    private var decoder = ControlFrameDecoder()
    private var timer: TimerHandle?
    private var stopped = false
    /// Bumped per connection: a late callback of an abandoned attempt is ignored.
    private var attempt = 0

    init(
        endpoint: Endpoint, session: WorkerSession, loop: EventLoop, logger: Logger, tick: Duration,
        dataPlane: @escaping ControlClient.DataPlane
    ) {
        self.endpoint = endpoint
        self.session = session
        self.loop = loop
        self.logger = logger
        self.tickInterval = tick
        self.dataPlane = dataPlane
    }

    func begin() {
        input(.tick)
        scheduleTick()
    }

    private func scheduleTick() {
        timer = loop.scheduleTimer(after: tickInterval) { [weak self] in
            guard let self, !self.stopped else { return }
            self.input(.tick)
            self.scheduleTick()
        }
    }

    func input(_ input: WorkerSession.Input) {
        guard !stopped else { return }
        for action in session.handle(input, now: loop.now()) { perform(action) }
    }

    private func perform(_ action: WorkerSession.Action) {
        switch action {
        case .connect:
            attempt += 1
            let mine = attempt
            Connector.connect(to: endpoint, loop: loop, timeout: session.configuration.handshakeTimeout) {
                [weak self] result in
                guard let self, mine == self.attempt, !self.stopped else {
                    if case .success(let t) = result { t.close() }
                    return
                }
                switch result {
                case .success(let t):
                    self.transport = t
                    self.decoder = ControlFrameDecoder()
                    t.handler = self
                    self.input(.connected(nonce: SecureRandom.bytes(HandshakeLimits.nonceBytes)))
                case .failure(let error):
                    self.input(.disconnected("cannot connect to \(self.endpoint.host):\(self.endpoint.port): \(error)"))
                }
            }
        case .send(let frame):
            transport?.write(frame.encoded())
        case .close(let reason):
            attempt += 1
            if let t = transport {
                transport = nil
                t.handler = nil
                t.close()
                logger.info("control connection closed", ["reason": reason])
            }
        case .start, .stop, .orphaned, .egressShare:
            dataPlane(action)
        case .log(let level, let message, let fields):
            logger.log(LogLevel(name: level) ?? .info, message, fields)
        }
    }

    func transportDidReceive(_ bytes: UnsafeRawBufferPointer) {
        guard decoder.error == nil else { return }
        do {
            for frame in try decoder.feed(bytes) {
                input(.frame(frame))
                guard transport != nil else { return }
            }
        } catch {
            drop("bad framing from the coordinator: \(error)")
        }
    }

    func transportDidClose(error: (any Error)?) {
        guard transport != nil else { return }
        transport = nil
        input(.disconnected(error.map { "\($0)" } ?? "closed by the coordinator"))
    }

    private func drop(_ reason: String) {
        if let t = transport {
            transport = nil
            t.handler = nil
            t.abort(error: nil)
        }
        input(.disconnected(reason))
    }

    func stop() {
        stopped = true
        if let timer { loop.cancelTimer(timer) }
        if let t = transport {
            transport = nil
            t.handler = nil
            t.close()
        }
    }
}
