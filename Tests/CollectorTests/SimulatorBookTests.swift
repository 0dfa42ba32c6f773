import ExchangeSimulator
import Foundation
import HTTP1Protocol
import MarketData
import Runtime
import Testing

/// An in-process exchange simulator for order-book tests, with its clock held until `resume()`.
/// One model step per real millisecond (600 ms bars, 100 ms virtual steps), a minute of history.
struct BookSimulator {
    /// 2024-01-01T00:00:00Z: a fixed start, so the model's steps are the same in every run.
    static let start: Int64 = 1_704_067_200_000_000

    let loop: EventLoop
    let simulator: ExchangeSimulator

    static func start(_ configure: (inout SimulatorConfiguration) -> Void = { _ in }) async throws -> BookSimulator {
        let loop = try EventLoop.start(name: "sim-books")
        var configuration = SimulatorConfiguration()
        configuration.symbols = ["BTC-USDT", "ETH-USDT"]
        configuration.barMilliseconds = 600
        configuration.startTime = start
        configuration.startPaused = true
        configuration.tradeHistoryMinutes = 1
        configuration.feedIntervalMilliseconds = 10
        // 100 book steps a real second (the clock runs 100×): a test reader parsing 400-level pushes
        // with JSONSerialization in a debug build keeps up even on a loaded CI machine.
        configuration.bookStepMilliseconds = 1000
        configure(&configuration)
        let simulator = try await ExchangeSimulator.start(configuration: configuration, loop: loop)
        return BookSimulator(loop: loop, simulator: simulator)
    }

    func stop() async {
        await simulator.shutdown()
        await loop.shutdown()
    }

    /// A REST or control request: the status and the decoded JSON object.
    func request(_ method: String, _ target: String) async throws -> (Int, [String: Any]) {
        let response = try await HTTPClient.send(
            HTTPRequest(head: HTTPRequestHead(method: method, target: target)),
            to: Endpoint(host: "127.0.0.1", port: simulator.restPort), loop: loop)
        let object = try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any]
        return (response.status, try #require(object, "not a JSON object: \(response.bodyText)"))
    }

    /// Starts the virtual clock: the model's steps begin to happen.
    func resume() async throws {
        #expect(try await request("POST", "/control/resume").0 == 200)
    }

    /// The oracle's book at `seqId` (or now), as a `Book`.
    func oracle(_ symbol: String, seqId: Int64? = nil) async throws -> OracleBook {
        let (status, object) = try await request(
            "GET", "/control/book?instId=\(symbol)" + (seqId.map { "&seqId=\($0)" } ?? ""))
        #expect(status == 200, "oracle at seqId \(seqId.map(String.init) ?? "now"): \(object)")
        return OracleBook(object)
    }

    func connect(_ path: String = "/ws/v5/public") async throws -> BookClient {
        BookClient(
            socket: try await WebSocketClient.connect(
                to: "ws://127.0.0.1:\(simulator.webSocketPort)\(path)", loop: loop))
    }
}

/// The oracle's answer: levels as [price, size] text, best first.
struct OracleBook {
    let seqId: Int64
    let bids: [[String]]
    let asks: [[String]]
    let checksum: Int64

    init(_ object: [String: Any]) {
        seqId = (object["seqId"] as? NSNumber)?.int64Value ?? -1
        bids = object["bids"] as? [[String]] ?? []
        asks = object["asks"] as? [[String]] ?? []
        checksum = (object["checksum"] as? NSNumber)?.int64Value ?? 0
    }
}

/// One message from the simulator's WebSocket.
struct Push {
    let object: [String: Any]

    var event: String? { object["event"] as? String }
    var channel: String? { (object["arg"] as? [String: Any])?["channel"] as? String }
    var action: String? { object["action"] as? String }
    var data: [String: Any] { (object["data"] as? [[String: Any]])?.first ?? [:] }
    var bids: [[String]] { data["bids"] as? [[String]] ?? [] }
    var asks: [[String]] { data["asks"] as? [[String]] ?? [] }
    var seqId: Int64 { (data["seqId"] as? NSNumber)?.int64Value ?? -2 }
    var prevSeqId: Int64? { (data["prevSeqId"] as? NSNumber)?.int64Value }
    var checksum: Int32? { (data["checksum"] as? NSNumber)?.int32Value }
    var isKeepalive: Bool { bids.isEmpty && asks.isEmpty && prevSeqId == seqId }

    /// Levels as the oracle writes them ([price, size]).
    var bidPairs: [[String]] { bids.map { Array($0.prefix(2)) } }
    var askPairs: [[String]] { asks.map { Array($0.prefix(2)) } }
}

/// A WebSocket client that reads JSON messages with a deadline.
struct BookClient {
    let socket: WebSocketClient

    func subscribe(_ channels: [String], _ symbol: String = "BTC-USDT") {
        let args = channels.map { "{\"channel\":\"\($0)\",\"instId\":\"\(symbol)\"}" }
        socket.send(text: "{\"op\":\"subscribe\",\"args\":[\(args.joined(separator: ","))]}")
    }

    /// The next message; fails the test (and throws) after `timeout` with none.
    func next(timeout: Duration = .seconds(5), sourceLocation: SourceLocation = #_sourceLocation) async throws -> Push {
        let events = socket.events
        let event = await withTaskGroup(of: WebSocketClient.Event?.self) { group in
            group.addTask { await events.next() }
            group.addTask {
                // try?: cancellation (the message came first) just ends the timer early.
                try? await Task.sleep(for: timeout)
                return nil
            }
            let first = await group.next() ?? nil
            group.cancelAll()
            return first
        }
        guard case .text(let text) = event else {
            Issue.record("no message within \(timeout): \(String(describing: event))", sourceLocation: sourceLocation)
            throw BookTestFailure()
        }
        let object = try JSONSerialization.jsonObject(with: Data(text.utf8)) as? [String: Any]
        return Push(object: try #require(object, "not a JSON object: \(text)", sourceLocation: sourceLocation))
    }

    func close() { socket.close() }
}

struct BookTestFailure: Error {}

/// A client's book merged from pushes with the collector's `OrderBook`.
struct LocalBook {
    var book = OrderBook(maxDepth: 400)

    static func levels(_ rows: [[String]]) throws -> [BookLevel] {
        try rows.map { row in
            BookLevel(price: try #require(DecimalText(row[0])), size: try #require(DecimalText(row[1])))
        }
    }

    mutating func seed(bids: [[String]], asks: [[String]]) throws {
        book.applySnapshot(bids: try Self.levels(bids), asks: try Self.levels(asks))
    }

    mutating func apply(_ push: Push) throws {
        book.applyUpdate(bids: try Self.levels(push.bids), asks: try Self.levels(push.asks))
    }

    var bidPairs: [[String]] { book.bids.map { [$0.price.text, $0.size.text] } }
    var askPairs: [[String]] { book.asks.map { [$0.price.text, $0.size.text] } }

    /// The best `depth` levels as [price, size] text.
    func top(_ depth: Int) -> [[String]] { Array(bidPairs.prefix(depth)) + Array(askPairs.prefix(depth)) }

    func matches(_ oracle: OracleBook) -> Bool { bidPairs == oracle.bids && askPairs == oracle.asks }
}

/// What a `books` subscriber saw, counted: each fault must show up as exactly one of these.
struct BooksTally {
    var updates = 0
    var keepalives = 0
    var wrongChecksums = 0
    var chainBreaks = 0
    var resets = 0
    var increments: Set<Int64> = []
    var lastSeqId: Int64 = -1
}

/// OKX's number text: no exponent, no leading '+', no trailing fractional zeros.
func isOKXNumberText(_ text: String) -> Bool {
    guard !text.isEmpty, text.allSatisfy({ $0.isASCII && ($0.isNumber || $0 == ".") }) else { return false }
    return !text.contains(".") || (!text.hasSuffix("0") && !text.hasSuffix("."))
}

@Suite struct SimulatorBookTests {
    /// Reads `books` updates into `book`, checking each against the chain and its checksum. A
    /// break in the chain is repaired from the oracle (the book after the update's prevSeqId).
    func readUpdates(
        _ client: BookClient, _ sim: BookSimulator, into book: inout LocalBook, tally: inout BooksTally,
        checksumsAreZero: Bool = false, until done: (BooksTally) -> Bool
    ) async throws {
        while !done(tally) {
            let push = try await client.next()
            #expect(push.channel == "books" && push.action == "update", "\(push.object)")
            let prev = try #require(push.prevSeqId)
            if prev != tally.lastSeqId {
                tally.chainBreaks += 1
                let missed = try await sim.oracle("BTC-USDT", seqId: prev)
                try book.seed(bids: missed.bids, asks: missed.asks)
            }
            if push.seqId < prev {
                tally.resets += 1
            } else {
                tally.increments.insert(push.seqId - prev)
            }
            if push.isKeepalive { tally.keepalives += 1 }
            try book.apply(push)
            let expected = checksumsAreZero ? 0 : book.book.okxChecksum()
            if push.checksum != expected { tally.wrongChecksums += 1 }
            #expect(book.book.bids.count <= 400 && book.book.asks.count <= 400)
            if let bid = book.book.bids.first, let ask = book.book.asks.first {
                #expect(DecimalText.compare(bid.price, ask.price) < 0, "crossed book at seqId \(push.seqId)")
            }
            for row in push.bids + push.asks {
                #expect(row.count == 4 && row[2] == "0" && isOKXNumberText(row[0]) && isOKXNumberText(row[1]))
            }
            tally.updates += 1
            tally.lastSeqId = push.seqId
        }
    }

    /// Subscribes `books` and reads the ack and the snapshot into a fresh book.
    func subscribeBooks(
        _ client: BookClient, checksumsAreZero: Bool = false
    ) async throws -> (LocalBook, BooksTally) {
        client.subscribe(["books"])
        let ack = try await client.next()
        #expect(ack.event == "subscribe" && ack.channel == "books")
        let snapshot = try await client.next()
        #expect(snapshot.action == "snapshot" && snapshot.prevSeqId == -1)
        #expect(snapshot.bids.count == 400 && snapshot.asks.count == 400)
        #expect((snapshot.data["ts"] as? String).flatMap { Int64($0) } != nil)
        var book = LocalBook()
        try book.seed(bids: snapshot.bids, asks: snapshot.asks)
        #expect(snapshot.checksum == (checksumsAreZero ? 0 : book.book.okxChecksum()))
        var tally = BooksTally()
        tally.lastSeqId = snapshot.seqId
        return (book, tally)
    }

    @Test func booksSnapshotThenUpdatesKeepEveryChecksumAndTheSeqIdChainAndEndAtTheOraclesBook() async throws {
        let sim = try await BookSimulator.start()
        let client = try await sim.connect()
        var (book, tally) = try await subscribeBooks(client)
        try await sim.resume()
        try await readUpdates(client, sim, into: &book, tally: &tally) { $0.updates >= 300 }
        #expect(tally.wrongChecksums == 0 && tally.chainBreaks == 0 && tally.resets == 0)
        // Keepalives (seqId == prevSeqId) happen, and seqIds grow by varying amounts.
        #expect(tally.keepalives >= 1)
        #expect(tally.increments.isSuperset(of: [0, 1, 2, 3]) && tally.increments.count == 4)
        let oracle = try await sim.oracle("BTC-USDT", seqId: tally.lastSeqId)
        #expect(oracle.seqId == tally.lastSeqId)
        #expect(book.matches(oracle))
        #expect(oracle.checksum == Int64(book.book.okxChecksum()))
        client.close()
        await sim.stop()
    }

    @Test func checksumZeroModePushesZeroChecksums() async throws {
        let sim = try await BookSimulator.start { $0.bookChecksumZero = true }
        let client = try await sim.connect()
        var (book, tally) = try await subscribeBooks(client, checksumsAreZero: true)
        try await sim.resume()
        try await readUpdates(client, sim, into: &book, tally: &tally, checksumsAreZero: true) { $0.updates >= 50 }
        #expect(tally.wrongChecksums == 0 && tally.chainBreaks == 0)
        // The oracle still knows the true checksum.
        let oracle = try await sim.oracle("BTC-USDT", seqId: tally.lastSeqId)
        #expect(book.matches(oracle) && oracle.checksum == Int64(book.book.okxChecksum()) && oracle.checksum != 0)
        client.close()
        await sim.stop()
    }

    /// OKX's procedure without the initial snapshot (PROTOCOLS.md §1.6 point 2): buffer the
    /// updates, fetch REST (retrying while its seqId is below the first prevSeqId), drop updates
    /// up to its seqId, and the first one applied straddles it.
    @Test func withoutASnapshotTheFirstPushIsAnUpdateAndRESTSeedsTheBook() async throws {
        let sim = try await BookSimulator.start { $0.sendsBookSnapshot = false }
        let client = try await sim.connect()
        client.subscribe(["books"])
        #expect(try await client.next().event == "subscribe")
        try await sim.resume()
        let first = try await client.next()
        #expect(first.action == "update" && first.prevSeqId != -1)
        var rest: [String: Any] = [:]
        var restSeqId: Int64 = -1
        while restSeqId < (first.prevSeqId ?? 0) {
            let (status, object) = try await sim.request("GET", "/api/v5/market/books?instId=BTC-USDT&sz=400")
            #expect(status == 200 && object["code"] as? String == "0")
            rest = (object["data"] as? [[String: Any]])?.first ?? [:]
            restSeqId = try #require((rest["seqId"] as? NSNumber)?.int64Value)
        }
        let restPush = Push(object: ["data": [rest]])
        #expect((rest["ts"] as? String).flatMap { Int64($0) } != nil)
        // REST's levels are the oracle's at that seqId: 400 a side, or all of a side the random walk
        // has thinned below that (it happened in CI: asks at 399).
        let oracle = try await sim.oracle("BTC-USDT", seqId: restSeqId)
        #expect(
            restPush.bids.count == min(400, oracle.bids.count) && restPush.asks.count == min(400, oracle.asks.count))
        #expect(restPush.bids.count > 300 && restPush.asks.count > 300)
        #expect(restPush.bidPairs == oracle.bids && restPush.askPairs == oracle.asks)
        var book = LocalBook()
        try book.seed(bids: restPush.bids, asks: restPush.asks)
        var push = first
        while push.seqId <= restSeqId { push = try await client.next() }
        #expect(try #require(push.prevSeqId) <= restSeqId && restSeqId < push.seqId)
        var tally = BooksTally()
        tally.lastSeqId = try #require(push.prevSeqId)
        try book.apply(push)
        #expect(push.checksum == book.book.okxChecksum())
        tally.lastSeqId = push.seqId
        try await readUpdates(client, sim, into: &book, tally: &tally) { $0.updates >= 100 }
        #expect(tally.wrongChecksums == 0 && tally.chainBreaks == 0)
        #expect(book.matches(try await sim.oracle("BTC-USDT", seqId: tally.lastSeqId)))
        client.close()
        await sim.stop()
    }

    @Test func restBooksServeTheRequestedDepthAndOKXErrors() async throws {
        let sim = try await BookSimulator.start()
        let (status, object) = try await sim.request("GET", "/api/v5/market/books?instId=ETH-USDT")
        #expect(status == 200)
        let row = Push(object: ["data": object["data"] ?? []])
        #expect(row.bids.count == 1 && row.asks.count == 1 && row.bids[0].count == 4)
        let oracle = try await sim.oracle("ETH-USDT", seqId: row.seqId)
        #expect(row.bidPairs == Array(oracle.bids.prefix(1)) && row.askPairs == Array(oracle.asks.prefix(1)))
        for (target, code) in [
            ("/api/v5/market/books?instId=ETH-USDT&sz=0", "51000"),
            ("/api/v5/market/books?instId=ETH-USDT&sz=401", "51000"),
            ("/api/v5/market/books?instId=NOPE-USDT", "51001"),
            ("/api/v5/market/books", "50014"),
        ] {
            #expect(try await sim.request("GET", target).1["code"] as? String == code, "\(target)")
        }
        // 40 requests / 2 s (5 were made above): a burst of 100 at once is refused with 50011 once the
        // bucket is empty, not before (it refills at 20 a second meanwhile, so at least 35 pass).
        let codes = try await withThrowingTaskGroup(of: String.self) { group in
            for _ in 0..<100 {
                group.addTask {
                    try await sim.request("GET", "/api/v5/market/books?instId=BTC-USDT").1["code"] as? String ?? ""
                }
            }
            return try await group.reduce(into: [String]()) { $0.append($1) }
        }
        #expect(codes.contains("50011") && codes.filter { $0 == "0" }.count >= 35, "\(codes)")
        #expect(codes.allSatisfy { $0 == "0" || $0 == "50011" }, "\(codes)")
        // The oracle and the fault switch refuse what they do not know.
        #expect(try await sim.request("GET", "/control/book?instId=BTC-USDT&seqId=1").0 == 404)
        #expect(try await sim.request("GET", "/control/book?instId=NOPE-USDT").0 == 404)
        #expect(try await sim.request("POST", "/control/book-fault?instId=BTC-USDT&kind=bogus").0 == 400)
        #expect(try await sim.request("POST", "/control/book-fault?instId=NOPE-USDT&kind=reset").0 == 404)
        await sim.stop()
    }

    @Test func bookChannelsAreRefusedOnBusinessAndForUnknownInstruments() async throws {
        let sim = try await BookSimulator.start()
        let business = try await sim.connect("/ws/v5/business")
        business.subscribe(["books"])
        let refused = try await business.next()
        #expect(refused.event == "error" && refused.object["code"] as? String == "60018")
        let publicClient = try await sim.connect()
        publicClient.subscribe(["bbo-tbt"], "NOPE-USDT")
        #expect(try await publicClient.next().object["code"] as? String == "60018")
        business.close()
        publicClient.close()
        await sim.stop()
    }

    /// Each fault switch does exactly one thing to a `books` subscriber.
    @Test(arguments: ["checksum", "skip-seq", "reset"])
    func bookFaultSwitchDoesExactlyOneThing(kind: String) async throws {
        let sim = try await BookSimulator.start()
        let client = try await sim.connect()
        var (book, tally) = try await subscribeBooks(client)
        try await sim.resume()
        try await readUpdates(client, sim, into: &book, tally: &tally) { $0.updates >= 30 }
        let (status, answer) = try await sim.request("POST", "/control/book-fault?instId=BTC-USDT&kind=\(kind)")
        #expect(status == 200)
        if kind == "reset" {
            let seqId = try #require((answer["seqId"] as? NSNumber)?.int64Value)
            let prevSeqId = try #require((answer["prevSeqId"] as? NSNumber)?.int64Value)
            #expect(seqId < prevSeqId)
        } else {
            #expect((answer["subscribers"] as? NSNumber)?.intValue == 1)
        }
        // Until the fault shows, then 100 updates more: nothing else may go wrong.
        try await readUpdates(client, sim, into: &book, tally: &tally) {
            $0.wrongChecksums + $0.chainBreaks + $0.resets > 0
        }
        let seen = tally.updates
        try await readUpdates(client, sim, into: &book, tally: &tally) { $0.updates >= seen + 100 }
        let expected =
            switch kind {
            case "checksum": [1, 0, 0]
            case "skip-seq": [0, 1, 0]
            default: [0, 0, 1]
            }
        #expect([tally.wrongChecksums, tally.chainBreaks, tally.resets] == expected)
        // The levels stayed right throughout: the book is the oracle's.
        let oracle = try await sim.oracle("BTC-USDT", seqId: tally.lastSeqId)
        #expect(book.matches(oracle))
        if kind == "reset" {
            // Everyone sees the reset: REST's seqId continues from the small number.
            let rest = try await sim.request("GET", "/api/v5/market/books?instId=BTC-USDT").1
            let seqId = (((rest["data"] as? [[String: Any]])?.first)?["seqId"] as? NSNumber)?.int64Value ?? -1
            #expect(seqId >= tally.lastSeqId && seqId < (answer["prevSeqId"] as? NSNumber)?.int64Value ?? 0)
        }
        client.close()
        await sim.stop()
    }

    /// books5 and bbo-tbt beside books on one connection: within a step bbo-tbt comes before books
    /// and books before books5; each pushes exactly on the steps that change its levels, and its
    /// levels are the oracle's top 5 / top 1 at its seqId.
    @Test func books5AndBBOFollowTheTopOfTheBookInOKXsPushOrder() async throws {
        let sim = try await BookSimulator.start()
        let client = try await sim.connect()
        client.subscribe(["bbo-tbt", "books", "books5"])
        // Each ack is followed by that channel's first push.
        var initial: [String: Push] = [:]
        for channel in ["bbo-tbt", "books", "books5"] {
            let ack = try await client.next()
            #expect(ack.event == "subscribe" && ack.channel == channel)
            let push = try await client.next()
            #expect(push.event == nil && push.channel == channel)
            initial[channel] = push
        }
        let snapshot = try #require(initial["books"])
        var book = LocalBook()
        try book.seed(bids: snapshot.bids, asks: snapshot.asks)
        for (channel, depth) in [("bbo-tbt", 1), ("books5", 5)] {
            let push = try #require(initial[channel])
            #expect(push.seqId == snapshot.seqId && push.bidPairs + push.askPairs == book.top(depth))
        }
        try await sim.resume()
        var checked: [String: Int] = [:]
        var pendingBBO: Push?
        var lastSeqId = snapshot.seqId
        var oracleChecks = 0
        while (checked["books5"] ?? 0) < 30 || (checked["bbo-tbt"] ?? 0) < 30 {
            let push = try await client.next()
            switch push.channel {
            case "bbo-tbt":
                #expect(pendingBBO == nil, "two bbo-tbt pushes without books between")
                #expect(push.object["action"] == nil && push.data["prevSeqId"] == nil && push.data["checksum"] == nil)
                #expect(push.bids.count == 1 && push.asks.count == 1)
                pendingBBO = push
            case "books":
                #expect(push.prevSeqId == lastSeqId)
                let before = book.top(5)
                try book.apply(push)
                #expect(push.checksum == book.book.okxChecksum())
                lastSeqId = push.seqId
                // bbo-tbt came just before iff the best level changed, with the new one.
                if book.top(1) != Array(before.prefix(1)) + [before[5]] {
                    let bbo = try #require(pendingBBO, "the best level changed at \(push.seqId) without bbo-tbt")
                    #expect(bbo.seqId == push.seqId && bbo.bidPairs + bbo.askPairs == book.top(1))
                    checked["bbo-tbt", default: 0] += 1
                } else {
                    #expect(pendingBBO == nil, "bbo-tbt without a change of the best level")
                }
                pendingBBO = nil
                // books5 comes right after iff the top 5 changed.
                if book.top(5) != before {
                    let books5 = try await client.next()
                    #expect(books5.channel == "books5" && books5.seqId == push.seqId)
                    #expect(books5.object["action"] == nil && books5.data["prevSeqId"] == nil)
                    #expect(books5.data["checksum"] == nil && books5.data["instId"] as? String == "BTC-USDT")
                    #expect(books5.bids.count == 5 && books5.asks.count == 5)
                    #expect(books5.bidPairs + books5.askPairs == book.top(5))
                    checked["books5", default: 0] += 1
                    if oracleChecks < 10 {
                        oracleChecks += 1
                        let oracle = try await sim.oracle("BTC-USDT", seqId: books5.seqId)
                        #expect(books5.bidPairs == Array(oracle.bids.prefix(5)))
                        #expect(books5.askPairs == Array(oracle.asks.prefix(5)))
                    }
                }
            default:
                Issue.record("unexpected push \(push.object)")
            }
        }
        client.close()
        await sim.stop()
    }

    /// The model replays from its checkpoints: the book 6,000 steps after the origin (10 virtual
    /// minutes of history) is whole and well-formed. (Its speed is not asserted here: timing belongs
    /// to benchmarks.)
    @Test func theBookManyStepsOnIsComputedWhole() async throws {
        let sim = try await BookSimulator.start {
            $0.tradeHistoryMinutes = 10
            $0.bookStepMilliseconds = 100
        }
        let (status, object) = try await sim.request("GET", "/control/book?instId=BTC-USDT")
        // Step 6,000 happens a seeded jitter after its grid time, so the head may be one before it.
        #expect(status == 200 && (object["step"] as? NSNumber)?.intValue ?? 0 >= 5_999)
        let now = OracleBook(object)
        #expect(now.bids.count == 400 && now.asks.count == 400)
        #expect(now.bids.allSatisfy { isOKXNumberText($0[0]) && isOKXNumberText($0[1]) })
        await sim.stop()
    }
}
