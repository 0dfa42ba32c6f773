import Collector
import ExchangeSimulator
import Foundation
import Gateway
import HTTP1Protocol
import MarketData
import Observability
import PostgresClient
import Runtime
import TestSupport
import Testing

/// The API served over real HTTP in front of a harness (real PostgreSQL + exchange-sim).
struct APIFixture {
    let harness: Harness
    let server: HTTPServer
    let connection: HTTPClientConnection
    let subscriptionsPath: String

    static func start(
        conninfo: String, token: String? = nil, pinned: [StreamID] = [], requestsPerSecond: Double = 1000
    ) async throws -> APIFixture {
        let harness = try await Harness.start(conninfo: conninfo, symbols: ["BTC-USDT", "ETH-USDT"])
        let path = harness.dataDirectory + "/subscriptions.json"
        let registry = try SubscriptionRegistry(path: path, pinned: pinned)
        await harness.engine.subscribe(registry.all.map(\.stream))
        let api = GatewayAPI(
            plane: StandalonePlane(engine: harness.engine, workerID: "test-worker"), subscriptions: registry,
            reader: PostgresReader(
                executors: [harness.executor, PGExecutor(conninfo: conninfo)], versions: harness.versions),
            apiToken: token,
            registry: MetricsRegistry(), requestsPerSecond: requestsPerSecond
        ) { (true, nil) }
        let server = try await HTTPServer.start(
            configuration: HTTPServerConfiguration(host: "127.0.0.1", port: 0), loop: harness.loop
        ) { await api.handle($0) }
        let connection = try await HTTPClientConnection.connect(
            to: Endpoint(host: "127.0.0.1", port: server.port), loop: harness.loop)
        return APIFixture(harness: harness, server: server, connection: connection, subscriptionsPath: path)
    }

    func send(
        _ method: String, _ target: String, json: String? = nil, headers: HTTPHeaders = [:]
    ) async throws
        -> (status: Int, body: [String: Any], response: HTTPResponse)
    {
        var h = headers
        if json != nil && h["Content-Type"] == nil { h.add(name: "Content-Type", value: "application/json") }
        let request = HTTPRequest(
            head: HTTPRequestHead(method: method, target: target, headers: h), body: Array((json ?? "").utf8))
        let response = try await connection.execute(request)
        let object = (try? JSONSerialization.jsonObject(with: Data(response.body))) as? [String: Any] ?? [:]
        return (response.status, object, response)
    }

    func stop() async {
        connection.close()
        await server.shutdown(deadline: .seconds(1))
        await harness.stop()
    }
}

@Suite struct GatewayTests {
    @Test func subscribeQueryStatusAndUnsubscribeOverHTTP() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let api = try await APIFixture.start(conninfo: database.conninfo)
        let body = #"{"symbols": ["BTC-USDT"], "timeframes": ["1m"]}"#
        let first = try await api.send("POST", "/api/v1/subscribe", json: body)
        #expect(first.status == 200)
        #expect(first.body["subscribed"] as? [String] == ["okx/candles:1m/BTC-USDT"])
        let again = try await api.send("POST", "/api/v1/subscribe", json: body)
        #expect(again.body["already_subscribed"] as? [String] == ["okx/candles:1m/BTC-USDT"])
        try await api.harness.waitUntil("3 stored bars") {
            try await api.harness.storedConfirmed("BTC-USDT").count >= 3
        }
        let list = try await api.send("GET", "/api/v1/subscriptions")
        let entries = list.body["subscriptions"] as? [[String: Any]] ?? []
        #expect(
            entries.count == 1 && entries.first?["pinned"] as? Bool == false
                && entries.first?["timeframe"] as? String == "1m")
        // Data: ascending, exact digits, bounded by limit, filtered by time.
        let stored = try await api.harness.storedConfirmed("BTC-USDT")
        let data = try await api.send("GET", "/api/v1/data/BTC-USDT/1m?limit=2&exchange=okx")
        let candles = data.body["candles"] as? [[String: Any]] ?? []
        #expect(data.status == 200 && candles.count == 2)
        #expect(candles.first?["open"] as? String == stored.first?[1])
        #expect(candles.first?["close"] as? String == stored.first?[4])
        let startMs = try #require(stored.dropFirst().first?[0])
        let later = try await api.send("GET", "/api/v1/data/BTC-USDT/1m?start=\(startMs)&limit=1")
        let firstLater = (later.body["candles"] as? [[String: Any]])?.first?["open_time"] as? String
        #expect(
            firstLater
                == UTCCalendar.iso8601(microseconds: Int64(startMs)! * 1000).replacingOccurrences(
                    of: ".000Z", with: ".000000Z"))
        let status = try await api.send("GET", "/api/v1/status/BTC-USDT?exchange=okx")
        let streams = status.body["streams"] as? [[String: Any]] ?? []
        #expect(
            status.status == 200 && streams.first?["state"] as? String == "live"
                && (streams.first?["owners"] as? [[String: Any]])?.first?["worker"] as? String == "test-worker")
        let cluster = try await api.send("GET", "/api/v1/cluster")
        #expect(cluster.body["mode"] as? String == "standalone" && (cluster.body["shards"] as? [Any])?.count == 1)
        let removed = try await api.send("DELETE", "/api/v1/subscribe", json: body)
        #expect(
            removed.status == 200 && removed.body["unsubscribed"] as? [String] == ["okx/candles:1m/BTC-USDT"],
            "\(removed.status) \(removed.body)")
        #expect(try await api.send("GET", "/api/v1/status/BTC-USDT").status == 404)
        await api.stop()
    }

    @Test func subscriptionsSurviveARestartAndPinnedOnesCannotBeRemoved() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let pinned = StreamID("okx/candles:1H/ETH-USDT")!
        let api = try await APIFixture.start(conninfo: database.conninfo, pinned: [pinned])
        #expect(
            try await api.send(
                "POST", "/api/v1/subscribe", json: #"{"symbols":["BTC-USDT"],"timeframes":["5m","1Dutc"]}"#
            ).status == 200)
        // The issue's own example: feeds beside timeframes are four feeds, candles included.
        let everything = try await api.send(
            "POST", "/api/v1/subscribe",
            json: #"{"symbols": ["SOL-USDT"], "feeds": ["trades", "book", "ticker"], "timeframes": ["1m"]}"#)
        #expect(everything.status == 200, "\(everything.body)")
        #expect(
            Set(everything.body["subscribed"] as? [String] ?? []) == [
                "okx/trades/SOL-USDT", "okx/book/SOL-USDT", "okx/ticker/SOL-USDT", "okx/candles:1m/SOL-USDT",
            ])
        #expect(
            try await api.send(
                "DELETE", "/api/v1/subscribe",
                json: #"{"symbols":["SOL-USDT"],"feeds":["trades","book","ticker","candles"],"timeframes":["1m"]}"#
            ).status == 200)
        let refused = try await api.send(
            "DELETE", "/api/v1/subscribe", json: #"{"symbols":["ETH-USDT"],"timeframes":["1H"]}"#)
        #expect(refused.status == 409 && refused.body["field"] as? String == "symbols")
        // A new process reads the same file: API-added streams come back, pinned ones come from config.
        let reloaded = try SubscriptionRegistry(path: api.subscriptionsPath, pinned: [])
        #expect(
            Set(reloaded.all.map(\.stream.description)) == ["okx/candles:5m/BTC-USDT", "okx/candles:1Dutc/BTC-USDT"])
        await api.stop()
    }

    @Test(
        arguments: [
            (
                "POST", "/api/v1/subscribe", #"{"symbols":["BTC-USDT"],"timeframes":["1m"]}"#,
                ["Content-Type": "text/plain"], 415, "Content-Type"
            ),
            ("POST", "/api/v1/subscribe", "{not json", [:], 400, "body"),
            (
                "POST", "/api/v1/subscribe", #"{"symbols":["BTC-USDT"],"timeframes":["1m"],"colour":1}"#, [:], 400,
                "colour"
            ),
            ("POST", "/api/v1/subscribe", #"{"symbols":"BTC-USDT","timeframes":["1m"]}"#, [:], 400, "symbols"),
            ("POST", "/api/v1/subscribe", #"{"symbols":[],"timeframes":["1m"]}"#, [:], 422, "symbols"),
            ("POST", "/api/v1/subscribe", #"{"symbols":["BTC-USDT"]}"#, [:], 422, "timeframes"),
            (
                "POST", "/api/v1/subscribe", #"{"symbols":["BTC-USDT"],"timeframes":["1m","1h"]}"#, [:], 422,
                "timeframes"
            ),
            (
                "POST", "/api/v1/subscribe", #"{"symbols":["BTC-USDT"],"timeframes":["1m"],"exchange":"kraken"}"#, [:],
                422, "exchange"
            ),
            ("POST", "/api/v1/subscribe", #"{"symbols":["btc usdt"],"timeframes":["1m"]}"#, [:], 422, "symbols"),
            ("POST", "/api/v1/subscribe", #"{"symbols":["BTC-USDT"],"feeds":["klines"]}"#, [:], 422, "feeds"),
            (
                "POST", "/api/v1/subscribe", #"{"symbols":["BTC-USDT"],"feeds":["trades"],"timeframes":["1x"]}"#, [:],
                422, "timeframes"
            ),
            ("POST", "/api/v1/subscribe", #"{"symbols":["BTC-USDT"],"feeds":["book:50"]}"#, [:], 422, "feeds"),
            ("DELETE", "/api/v1/subscribe", #"{"symbols":["SOL-USDT"],"timeframes":["1m"]}"#, [:], 404, "symbols"),
            ("GET", "/api/v1/data/BTC-USDT/1h", nil, [:], 422, "feed"),
            ("GET", "/api/v1/data/BTC-USDT/candles:1h", nil, [:], 422, "feed"),
            // A year PostgreSQL cannot hold is the client's mistake, not a database outage.
            ("GET", "/api/v1/data/BTC-USDT/1m?start=0000-01-01T00:00:00Z", nil, [:], 422, "start"),
            ("GET", "/api/v1/data/BTC-USDT/trades?end=99999-01-01T00:00:00Z", nil, [:], 400, "end"),
            ("GET", "/api/v1/data/BTC-USDT/1m?limit=0", nil, [:], 422, "limit"),
            ("GET", "/api/v1/data/BTC-USDT/1m?limit=99999", nil, [:], 422, "limit"),
            ("GET", "/api/v1/data/BTC-USDT/1m?start=yesterday", nil, [:], 400, "start"),
            (
                "GET", "/api/v1/data/BTC-USDT/1m?start=2025-02-01T00:00:00Z&end=2025-01-01T00:00:00Z", nil, [:], 422,
                "start"
            ),
            ("GET", "/api/v1/data/BTC-USDT/1m?exchange=nasdaq", nil, [:], 422, "exchange"),
            ("GET", "/api/v1/status/NOPE-USDT", nil, [:], 404, "symbol"),
        ] as [(String, String, String?, [String: String], Int, String)])
    func badRequestsGetA4xxNamingTheFieldAndChangeNothing(
        method: String, target: String, body: String?, headers: [String: String], status: Int, field: String
    ) async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let api = try await APIFixture.start(conninfo: database.conninfo)
        let result = try await api.send(
            method, target, json: body, headers: HTTPHeaders(headers.map { ($0.key, $0.value) }))
        #expect(result.status == status, "\(method) \(target) → \(result.status) \(result.body)")
        #expect(result.body["field"] as? String == field)
        #expect(result.body["error"] is String)
        #expect(result.response.head.headers["Content-Type"] == "application/json")
        let list = try await api.send("GET", "/api/v1/subscriptions")
        #expect(list.body["count"] as? Int == 0, "a refused request must not subscribe anything")
        await api.stop()
    }

    @Test func tradesBookMessagesAndTickersAreServedWithTheirShapes() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let api = try await APIFixture.start(conninfo: database.conninfo)
        let t = UTCCalendar.microseconds(year: 2025, month: 3, day: 4) + 1_234_567
        try await PostgresSink(executor: api.harness.executor, versions: api.harness.versions).write(
            makeMixedEvents(at: t))
        let trades = try await api.send("GET", "/api/v1/data/BTC-USDT/trades?start=2025-03-01T00:00:00Z")
        #expect(trades.status == 200 && trades.body["count"] as? Int == 1 && trades.body["feed"] as? String == "trades")
        let trade = (trades.body["trades"] as? [[String: Any]])?.first
        #expect(trade?["trade_id"] as? String == "242720720" && trade?["price"] as? String == "42219.9")
        #expect(trade?["size"] as? String == "0.00012" && trade?["side"] as? String == "sell")
        #expect(trade?["timestamp_exchange"] as? String == "2025-03-04T00:00:01.234568Z")
        let book = try await api.send("GET", "/api/v1/data/BTC-USDT/book")
        let messages = book.body["book"] as? [[String: Any]] ?? []
        #expect(book.status == 200 && messages.count == 2)
        #expect(messages.first?["action"] as? String == "update" && messages.first?["seq"] as? Int == 123_456)
        #expect(messages.first?["prev_seq"] as? Int == 123_455 && messages.first?["checksum"] as? Int == -1_234_567)
        #expect(messages.first?["bids"] as? [[String]] == [["41006.8", "0.60038921"]])
        #expect(messages.first?["asks"] as? [[String]] == [])
        #expect(messages.last?["action"] as? String == "snapshot" && messages.last?["prev_seq"] is NSNull)
        // numeric keeps every digit and trailing zero; only exponent notation comes back expanded.
        #expect(messages.last?["bids"] as? [[String]] == [["1", "2"], ["0.5", "0.00000001"]])
        let tickers = try await api.send("GET", "/api/v1/data/BTC-USDT/ticker")
        let ticker = (tickers.body["tickers"] as? [[String: Any]])?.first
        #expect(tickers.status == 200 && ticker?["bid_price"] as? String == "41006.8")
        #expect(ticker?["last_price"] as? String == "41006.85" && ticker?["high_24h"] is NSNull)
        // `candles:<tf>` names the same candle feed as the bare timeframe key.
        let candles = try await api.send("GET", "/api/v1/data/BTC-USDT/candles:1m?start=2025-03-01T00:00:00Z")
        #expect(candles.status == 200 && candles.body["timeframe"] as? String == "1m")
        await api.stop()
    }

    @Test func aDatabaseOutageAnswers503WithoutTheDatabaseDetails() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"])
        let api = GatewayAPI(
            plane: StandalonePlane(engine: harness.engine, workerID: "w"),
            subscriptions: try SubscriptionRegistry(
                path: harness.dataDirectory + "/subscriptions.json", pinned: []),
            reader: PostgresReader(
                executors: [PGExecutor(conninfo: "postgresql://secretuser:pw@127.0.0.1:1/secretdb")],
                versions: StreamVersions()),
            apiToken: nil, registry: MetricsRegistry()
        ) { (true, nil) }
        let response = await api.handle(
            HTTPRequest(head: HTTPRequestHead(method: "GET", target: "/api/v1/data/BTC-USDT/1m")))
        let text = String(decoding: response.body, as: UTF8.self)
        #expect(response.status == 503)
        #expect(response.head.headers["Retry-After"] != nil)
        #expect(!text.contains("127.0.0.1") && !text.contains("secretuser") && !text.contains("secretdb"), "\(text)")
        await harness.stop()
    }

    @Test func unknownRoutesMethodsTokensAndRateLimits() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let api = try await APIFixture.start(conninfo: database.conninfo, token: "s3cret", requestsPerSecond: 5)
        let body = #"{"symbols":["BTC-USDT"],"timeframes":["1m"]}"#
        let missing = try await api.send("POST", "/api/v1/subscribe", json: body)
        #expect(missing.status == 401 && missing.response.head.headers["WWW-Authenticate"] == "Bearer")
        let wrong = try await api.send(
            "POST", "/api/v1/subscribe", json: body, headers: ["Authorization": "Bearer nope"])
        #expect(wrong.status == 401)
        let right = try await api.send(
            "POST", "/api/v1/subscribe", json: body, headers: ["Authorization": "Bearer s3cret"])
        #expect(right.status == 200)
        let wrongMethod = try await api.send("PUT", "/api/v1/subscriptions")
        #expect(wrongMethod.status == 405 && wrongMethod.response.head.headers["Allow"] == "GET, HEAD")
        #expect(try await api.send("GET", "/api/v2/nothing").status == 404)
        #expect(try await api.send("GET", "/health").status == 200)
        // A body over the server's 1 MiB limit is refused from its Content-Length, naming the body.
        let huge = "{\"symbols\":[\"" + String(repeating: "A", count: 2 << 20) + "\"]}"
        let tooLarge = try await HTTPClient.send(
            HTTPRequest(
                head: HTTPRequestHead(
                    method: "POST", target: "/api/v1/subscribe", headers: ["Content-Type": "application/json"]),
                body: Array(huge.utf8)),
            to: Endpoint(host: "127.0.0.1", port: api.server.port), loop: api.harness.loop)
        #expect(tooLarge.status == 413 && tooLarge.bodyText.contains(#""field":"body""#))
        // Burst of 10 allowed at 5/s; past it, 429 with Retry-After. (Requests until the first 429,
        // at most 100: only a server slower than 5 requests/s could refill faster than we ask.)
        var limited: HTTPResponse?
        for _ in 0..<100 {
            let answer = try await api.send("GET", "/ready")
            if answer.status == 429 {
                limited = answer.response
                break
            }
        }
        #expect(limited?.head.headers["Retry-After"] != nil, "no 429 in 100 requests at 5/s")
        await api.stop()
    }
}

@Suite struct OpenAPIConformanceTests {
    @Test func schemathesisFindsNoServerErrorAndNoSchemaMismatch() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let api = try await APIFixture.start(
            conninfo: database.conninfo, pinned: [StreamID("okx/candles:1m/BTC-USDT")!], requestsPerSecond: 100_000)
        try await api.harness.waitUntil("a stored bar") { try await api.harness.storedConfirmed("BTC-USDT").count >= 1 }
        let schemathesis = (TestEnvironment.python as NSString).deletingLastPathComponent + "/schemathesis"
        let result = try await ExternalProcess.run(
            schemathesis,
            [
                "run", TestEnvironment.repositoryRoot + "/openapi.yaml", "--url", "http://127.0.0.1:\(api.server.port)",
                "-c",
                "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,response_headers_conformance",
                "-n", "40", "--seed", "7", "-w", "1",
            ])
        #expect(
            result.status == 0, "schemathesis failed:\n\(result.stdout.suffix(4000))\n\(result.stderr.suffix(1000))")
        #expect(result.stdout.contains("passed"))
        #expect(!result.stdout.contains("failed"), "\(result.stdout.suffix(3000))")
        await api.stop()
    }
}

@Suite struct DataPageCacheTests {
    @Test func cachedPagesAreReplacedAfterTheStreamIsWritten() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let api = try await APIFixture.start(
            conninfo: database.conninfo, pinned: [StreamID("okx/candles:1m/BTC-USDT")!])
        try await api.harness.waitUntil("3 bars") { try await api.harness.storedConfirmed("BTC-USDT").count >= 3 }
        let first = try await api.send("GET", "/api/v1/data/BTC-USDT/1m?limit=5000")
        let count = first.body["count"] as? Int ?? 0
        try await api.harness.waitUntil("more bars") {
            try await api.harness.storedConfirmed("BTC-USDT").count >= count + 2
        }
        let later = try await api.send("GET", "/api/v1/data/BTC-USDT/1m?limit=5000")
        #expect((later.body["count"] as? Int ?? 0) > count, "a write must invalidate the cached page")
        await api.stop()
    }
}
