import Cluster
import CollectorCore
import ControlProtocol
import Coordination
import Foundation
import Gateway
import HTTP1Protocol
import Locking
import MarketData
import Observability
import Runtime
import Synchronization
import Testing

/// The control protocol over real loopback TCP: `ControlServer` (the coordinator's driver) and
/// `ControlClient`s (the worker's), and hostile peers that send bad frames, wrong secrets and
/// versions, random bytes and a flood of idle connections, while every honest peer is served.
@Suite struct ControlOverTCPTests {
    static let secret = Array("tcp-test-cluster-secret".utf8)

    /// A coordinator on a free port with short leases, and what it logged.
    struct Fixture {
        let loop: EventLoop
        let server: ControlServer
        let logs: InMemoryLogHandler
        let directory: String

        static func start(
            leaseMilliseconds: Int64 = 1500, maxPendingHandshakes: Int = 256, maxShards: Int = 1_000_000,
            handshakeTimeout: Duration = .seconds(1), perAddress: Int? = nil, epochBlock: UInt64 = 1000
        ) async throws -> Fixture {
            let loop = try EventLoop.start(name: "control-test")
            let logs = InMemoryLogHandler()
            let directory = NSTemporaryDirectory() + "control-\(UUID().uuidString)"
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            var settings = ControlServer.Settings()
            settings.host = "127.0.0.1"
            settings.port = 0
            settings.service.core.leaseTTL = .milliseconds(leaseMilliseconds)
            settings.service.core.heartbeatInterval = .milliseconds(200)
            settings.service.core.weightWindow = nil
            settings.service.handshakeTimeout = handshakeTimeout
            settings.service.maxPendingHandshakes = maxPendingHandshakes
            // Every peer here is 127.0.0.1: the per-address bound has its own transcript test.
            settings.service.maxPendingHandshakesPerAddress = perAddress
            settings.service.core.maxShards = maxShards
            settings.service.core.epochBlock = epochBlock
            let server = try await ControlServer.start(
                settings: settings, secret: ControlOverTCPTests.secret,
                state: CoordinatorStateStore(directory: directory), loop: loop,
                logger: Logger(label: "control", handler: logs, minimumLevel: .debug))
            return Fixture(loop: loop, server: server, logs: logs, directory: directory)
        }

        var endpoint: Endpoint { Endpoint(host: "127.0.0.1", port: server.port) }

        /// A worker whose data plane reports every started shard live at once.
        func worker(_ id: String, secret: [UInt8] = ControlOverTCPTests.secret) async -> ControlClient {
            let box = ClientBox()
            let client = await ControlClient.start(
                endpoint: endpoint,
                configuration: WorkerSession.Configuration(workerID: id, incarnation: 1, capacity: 1000),
                secret: secret, loop: loop, logger: .disabled
            ) { action in
                box.started(action)
            }
            box.attach(client, on: loop)
            return client
        }

        func stop() async {
            await server.shutdown()
            await loop.shutdown()
            try? FileManager.default.removeItem(atPath: directory)  // try?: a leftover temp dir is harmless
        }

        func logged(_ text: String) -> Bool { logs.all.contains { "\($0.message) \($0.metadata)".contains(text) } }
    }

    /// A test data plane that reports every started shard live. An assignment can arrive before
    /// `ControlClient.start` returns the client: it is held and reported once `attach` runs.
    final class ClientBox: @unchecked Sendable {
        // @unchecked Sendable: both fields are touched only on the client's loop (`started` is its
        // data-plane callback, `attach` posts itself there).
        private var client: ControlClient?
        private var pending: [Assignment] = []

        func started(_ action: WorkerSession.Action) {
            guard case .start(let a) = action else { return }
            if let client { client.report(.shardLive(shard: a.shard, epoch: a.epoch)) } else { pending.append(a) }
        }

        func attach(_ client: ControlClient, on loop: EventLoop) {
            loop.execute {
                self.client = client
                for a in self.pending { client.report(.shardLive(shard: a.shard, epoch: a.epoch)) }
                self.pending = []
            }
        }
    }

    /// Polls `condition` every 20 ms until it holds or `timeout` passes.
    static func eventually(
        _ what: String, timeout: Duration = .seconds(20), _ condition: () async -> Bool
    ) async throws {
        let deadline = ContinuousClock.now + timeout
        while ContinuousClock.now < deadline {
            if await condition() { return }
            try await Task.sleep(for: .milliseconds(20))
        }
        Issue.record("timed out waiting until \(what)")
        throw CancellationError()
    }

    @Test func workersJoinRunShardsAndTakeOverWhenOneDies() async throws {
        let f = try await Fixture.start()
        let a = await f.worker("a")
        let b = await f.worker("b")
        try await Self.eventually("both workers joined") { await f.server.snapshot().core.workers.count == 2 }
        let names = (0..<6).map { "okx/trades/S\($0)-USDT" }
        await f.server.request(.subscribe(names.map { CoordinatorCore.DesiredShard(shard: $0, weight: 10) }))
        try await Self.eventually("every shard live") {
            let core = await f.server.snapshot().core
            return names.allSatisfy { core.shards[$0]?.owners.first?.state == .live }
        }
        let before = await f.server.snapshot().core
        #expect(Set(names.compactMap { before.shards[$0]?.owners.first?.workerID }) == ["a", "b"])
        // The document the API serves names both workers and every shard.
        let document = ClusterPlane.document(await f.server.snapshot())
        #expect(document.contains("\"healthy\":true"))
        #expect(document.contains("\"id\":\"a\"") && document.contains("okx/trades/S5-USDT"))
        let parsed = try #require(
            try JSONSerialization.jsonObject(with: Data(document.utf8)) as? [String: Any], "the document is JSON")
        #expect((parsed["shards"] as? [[String: Any]])?.count == names.count)
        #expect((parsed["workers"] as? [[String: Any]])?.compactMap { $0["id"] as? String } == ["a", "b"])
        // `a` dies (its connection closes; its lease runs out): `b` runs everything with new epochs.
        await a.stop()
        try await Self.eventually("b runs every shard") {
            let core = await f.server.snapshot().core
            return names.allSatisfy { core.shards[$0]?.owners.map(\.workerID) == ["b"] }
                && core.shards.values.allSatisfy { $0.owners.first?.state == .live }
        }
        let status = await b.status()
        #expect(Set(status.running.keys) == Set(names))
        #expect(f.logged("worker lease expired"))
        #expect(f.server.summary.leaseExpiries == 1)
        await b.stop()
        await f.stop()
    }

    @Test func aRestartedCoordinatorContinuesTheTermAndEpochs() async throws {
        let f = try await Fixture.start()
        let w = await f.worker("w")
        await f.server.request(.subscribe([CoordinatorCore.DesiredShard(shard: "okx/ticker/X-USDT", weight: 5)]))
        try await Self.eventually("the shard is live") {
            await f.server.snapshot().core.shards["okx/ticker/X-USDT"]?.owners.first?.state == .live
        }
        let epoch = await f.server.snapshot().core.shards["okx/ticker/X-USDT"]?.owners.first?.epoch ?? 0
        await w.stop()
        await f.server.shutdown()
        let stored = try CoordinatorStateStore(directory: f.directory).load()
        #expect(stored?.term == 1)
        #expect((stored?.epochsReserved ?? 0) >= epoch)
        var settings = ControlServer.Settings()
        settings.host = "127.0.0.1"
        settings.port = 0
        let second = try await ControlServer.start(
            settings: settings, secret: Self.secret,
            state: CoordinatorStateStore(directory: f.directory), loop: f.loop, logger: .disabled,
            desired: [CoordinatorCore.DesiredShard(shard: "okx/ticker/X-USDT", weight: 5)])
        #expect(second.term == 2)
        // The saved subscriptions are in the map before the port opens: a worker that comes back
        // running the shard keeps it rather than being told it is unknown.
        #expect(await second.snapshot().core.shards["okx/ticker/X-USDT"] != nil)
        #expect(await second.snapshot().core.nextEpoch > (stored?.epochsReserved ?? 0))
        await second.shutdown()
        await f.loop.shutdown()
    }

    /// The epoch file cannot be written: nothing is assigned (no epoch above the durable mark), the
    /// error is logged once however long it lasts, and once the file can be written again the
    /// shard is placed and the recovery logged.
    @Test func anUnwritableEpochFileHoldsAssignmentsAndIsLoggedOnce() async throws {
        // Blocks of two epochs; the first is reserved at start-up, before anything is subscribed.
        let f = try await Fixture.start(epochBlock: 2)
        try await Self.eventually("the first block durable") { await f.server.snapshot().core.reservedUpTo == 2 }
        // The data directory becomes a file: every write of coordinator.json fails.
        let moved = f.directory + ".away"
        try FileManager.default.moveItem(atPath: f.directory, toPath: moved)
        #expect(FileManager.default.createFile(atPath: f.directory, contents: Data("not a directory".utf8)))
        let w = await f.worker("w")
        try await Self.eventually("w joined") { await w.status().established }
        let names = ["okx/trades/E-USDT", "okx/trades/F-USDT", "okx/trades/G-USDT"]
        await f.server.request(.subscribe(names.map { CoordinatorCore.DesiredShard(shard: $0, weight: 10) }))
        try await Self.eventually("the failure is logged") { f.logged("cannot persist the coordinator state") }
        // Three retries later: still one error line; the two durable epochs are used, the third
        // shard waits for the next block.
        try await Task.sleep(for: .milliseconds(3200))
        #expect(f.logs.all.filter { $0.message.contains("cannot persist the coordinator state") }.count == 1)
        let held = await f.server.snapshot().core
        #expect(names.filter { held.shards[$0]?.owners.isEmpty == true }.count == 1, "one shard has no epoch")
        #expect(held.reservedUpTo == 2 && held.nextEpoch == 3)
        // Writable again: the reservation lands, every shard is placed and goes live.
        try FileManager.default.removeItem(atPath: f.directory)
        try FileManager.default.moveItem(atPath: moved, toPath: f.directory)
        try await Self.eventually("every shard is live") {
            let core = await f.server.snapshot().core
            return names.allSatisfy { core.shards[$0]?.owners.first?.state == .live }
        }
        #expect(f.logged("the coordinator state is persisted again"))
        await w.stop()
        await f.stop()
    }

    @Test func aSubscriptionBeyondTheMapsBoundIsRefusedWholeAndNothingChanges() async throws {
        let f = try await Fixture.start(maxShards: 3)
        let registry = try SubscriptionRegistry(path: f.directory + "/subscriptions.json", pinned: [])
        let api = GatewayAPI(
            plane: ClusterPlane(server: f.server), subscriptions: registry, reader: nil, apiToken: nil,
            registry: MetricsRegistry()
        ) { (true, nil) }
        func subscribe(_ symbols: [String]) async -> (Int, String) {
            let body =
                "{\"symbols\":[" + symbols.map { "\"\($0)\"" }.joined(separator: ",") + "],\"feeds\":[\"trades\"]}"
            let response = await api.handle(
                HTTPRequest(
                    head: HTTPRequestHead(
                        method: "POST", target: "/api/v1/subscribe", headers: ["Content-Type": "application/json"]),
                    body: Array(body.utf8)))
            return (response.status, String(decoding: response.body, as: UTF8.self))
        }
        let first = await subscribe(["A-USDT", "B-USDT"])
        #expect(first.0 == 200, "\(first.1)")
        // Two more do not fit in a map of three: neither is subscribed, saved or placed.
        let over = await subscribe(["C-USDT", "D-USDT"])
        #expect(over.0 == 422, "\(over.1)")
        #expect(over.1.contains("okx/trades/D-USDT") && over.1.contains("maximum"), "\(over.1)")
        #expect(Set(registry.all.map(\.stream.description)) == ["okx/trades/A-USDT", "okx/trades/B-USDT"])
        #expect(Set(await f.server.snapshot().core.shards.keys) == ["okx/trades/A-USDT", "okx/trades/B-USDT"])
        // One more fits.
        let third = await subscribe(["C-USDT"])
        #expect(third.0 == 200, "\(third.1)")
        #expect(await f.server.snapshot().core.shards.count == 3)
        await f.stop()
    }

    /// A raw peer: writes bytes, records whether the server closed on it and what it sent.
    final class RawPeer: TransportHandler, @unchecked Sendable {
        let received = Locked<[UInt8]>([])
        let closed = Atomic<Bool>(false)
        var transport: (any Transport)?

        func transportDidReceive(_ bytes: UnsafeRawBufferPointer) { received.withLock { $0 += Array(bytes) } }
        func transportDidClose(error: (any Error)?) { closed.store(true, ordering: .relaxed) }

        static func connect(_ f: Fixture) async throws -> RawPeer {
            let peer = RawPeer()
            let failure: String? = await withCheckedContinuation { continuation in
                f.loop.execute {
                    Connector.connect(to: f.endpoint, loop: f.loop, timeout: .seconds(5)) { result in
                        switch result {
                        case .success(let t):
                            t.handler = peer
                            peer.transport = t
                            continuation.resume(returning: nil)
                        case .failure(let error):
                            continuation.resume(returning: "\(error)")
                        }
                    }
                }
            }
            if let failure { throw TransportError(failure) }
            return peer
        }

        /// `count` peers whose connects all start at once (so they arrive in one burst).
        static func connectMany(_ f: Fixture, _ count: Int) async throws -> [RawPeer] {
            let peers = (0..<count).map { _ in RawPeer() }
            let failures: Int = await withCheckedContinuation { continuation in
                f.loop.execute {
                    var pending = count
                    var failed = 0
                    for peer in peers {
                        Connector.connect(to: f.endpoint, loop: f.loop, timeout: .seconds(10)) { result in
                            switch result {
                            case .success(let t):
                                t.handler = peer
                                peer.transport = t
                            case .failure:
                                failed += 1
                            }
                            pending -= 1
                            if pending == 0 { continuation.resume(returning: failed) }
                        }
                    }
                }
            }
            if failures > 0 { throw TransportError("\(failures) of \(count) connects failed") }
            return peers
        }

        func send(_ bytes: [UInt8], loop: EventLoop) {
            loop.execute { self.transport?.write(bytes) }
        }

        func close(loop: EventLoop) {
            loop.execute { self.transport?.close() }
        }

        var isClosed: Bool { closed.load(ordering: .relaxed) }
    }

    @Test func hostilePeersAreRefusedWithReasonsWhileAnHonestWorkerIsServed() async throws {
        // 3 s to finish a handshake: on a loaded 2-core machine a hostile peer's bytes must be read
        // (and refused with their reason) before the idle flood's timeout closes everything.
        let f = try await Fixture.start(
            leaseMilliseconds: 3000, maxPendingHandshakes: 64, handshakeTimeout: .seconds(3))
        let honest = await f.worker("honest")
        try await Self.eventually("the honest worker joined") { await honest.status().established }

        // A zero-length frame, an oversize length, random bytes, a hello of an unknown version.
        let zero = try await RawPeer.connect(f)
        zero.send([0, 0, 0, 0, 1], loop: f.loop)
        let oversize = try await RawPeer.connect(f)
        oversize.send([0x7f, 0xff, 0xff, 0xff, 1], loop: f.loop)
        // Just over 1 MiB before proving the secret: refused at the length, nothing buffered (a
        // proven worker may send frames as large as a full sync of every shard).
        let unproven = try await RawPeer.connect(f)
        let big = UInt32(ControlFrameDecoder.minimumLimit + 1)
        unproven.send(
            [UInt8(big >> 24), UInt8(big >> 16 & 0xff), UInt8(big >> 8 & 0xff), UInt8(big & 0xff), 1], loop: f.loop)
        let random = try await RawPeer.connect(f)
        var rng = SeededRNG(seed: 42)
        random.send((0..<4096).map { _ in UInt8(truncatingIfNeeded: rng.next()) }, loop: f.loop)
        let version = try await RawPeer.connect(f)
        version.send(
            HandshakeMessage.hello(
                Hello(
                    version: 99, workerID: "future", incarnation: 1, capacity: 1,
                    nonce: [UInt8](repeating: 1, count: 32))
            ).frame().encoded(), loop: f.loop)
        // A truncated frame: the length says 100 bytes, 10 arrive, then the peer closes.
        let truncated = try await RawPeer.connect(f)
        truncated.send([0, 0, 0, 100, 1] + [UInt8](repeating: 65, count: 10), loop: f.loop)
        truncated.close(loop: f.loop)
        // Each malformed peer's bytes are read and refused with their reason before the flood below
        // takes the handshake slots (on a loaded machine the flood could otherwise be read first and
        // the slot bound, not the frame, close a malformed peer).
        try await Self.eventually("the malformed frames refused with their reasons") {
            f.logged("of length 0") && f.logged("bad-version") && zero.isClosed && oversize.isClosed
                && unproven.isClosed && random.isClosed
        }
        // A worker with the wrong secret.
        let intruder = await f.worker("intruder", secret: Array("the-wrong-cluster-secret".utf8))
        // A flood of idle connections at once, more than may handshake at once.
        let flood = try await RawPeer.connectMany(f, 100)

        try await Self.eventually("each hostile peer is closed") {
            zero.isClosed && oversize.isClosed && unproven.isClosed && random.isClosed && version.isClosed
                && flood.allSatisfy(\.isClosed)
        }
        #expect(
            f.logged("bad framing") && f.logged("of length 0"),
            "\(f.logs.all.filter { !$0.message.contains("handshake") }.map { "\($0.message) \($0.metadata)" })")
        #expect(f.logged("above the limit"))
        #expect(
            f.logged(
                "of \(ControlFrameDecoder.minimumLimit + 1) bytes is above the limit of \(ControlFrameDecoder.minimumLimit)"
            ))
        #expect(f.logged("bad-version"), "\(f.logs.all.map { "\($0.message) \($0.metadata)" }.suffix(40))")
        #expect(f.logged("too many handshakes in progress"))
        #expect(f.logged("control handshake timed out"))
        #expect(f.logged("control handshake abandoned"))
        // The version peer got a Reject frame that says why.
        let answer = version.received.withLock { $0 }
        #expect(String(decoding: answer, as: UTF8.self).contains("bad-version"))
        let intruderStatus = await intruder.status()
        #expect(!intruderStatus.established)
        #expect(await f.server.snapshot().core.workers["intruder"] == nil)
        // No log line carries either secret.
        let everything = f.logs.all.map { "\($0.message) \($0.metadata)" }.joined()
        #expect(!everything.contains("tcp-test-cluster-secret") && !everything.contains("the-wrong-cluster-secret"))
        // Through all of it the honest worker kept its lease, and a new one can join.
        #expect(await honest.status().established)
        #expect(await f.server.snapshot().core.workers["honest"] != nil)
        let late = await f.worker("late")
        try await Self.eventually("a new worker joins after the flood") { await late.status().established }
        #expect(f.server.summary.rejectedHandshakes >= 100)
        await intruder.stop()
        await honest.stop()
        await late.stop()
        await f.stop()
    }
}
