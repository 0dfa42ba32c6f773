public import Collector
import CollectorCore
import Crypto
import Exchanges
import Foundation
public import HTTP1Protocol
import Locking
public import MarketData
public import Observability
import Runtime
import Synchronization
import WireCore

/// The REST API (DESIGN.md §6). `handle` never throws: every failure becomes a JSON response.
public final class GatewayAPI: Sendable {
    /// Largest `limit` for data queries, and the default.
    public static let maxLimit = 5000
    public static let defaultLimit = 500

    public let plane: any StreamPlane
    public let subscriptions: SubscriptionRegistry
    private let reader: (any MarketDataReader)?
    private let logger: Logger
    private let apiToken: String?
    /// Where each pinned stream was pinned ("the configuration file c.toml line 4", "--markets"), for the 409.
    private let pinnedOrigin: [StreamID: String]
    private let registry: MetricsRegistry
    private let isReady: @Sendable () -> (Bool, String?)
    private let router: HTTPRouter<Route>
    private let limiter: ClientRateLimiter?
    private let pages = PageCache(maxEntries: 2048, maxBytes: 128 << 20)

    enum Route: String, Sendable {
        case subscribe = "/api/v1/subscribe"
        case unsubscribe = "/api/v1/subscribe (DELETE)"
        case subscriptions = "/api/v1/subscriptions"
        case data = "/api/v1/data/{symbol}/{feed}"
        case stored = "/api/v1/data"
        case status = "/api/v1/status/{symbol}"
        case cluster = "/api/v1/cluster"
        case workerOperation = "/api/v1/cluster/workers/{id}/{operation}"
        case rebalance = "/api/v1/cluster/rebalance/{operation}"
        case move = "/api/v1/cluster/move"
        case health = "/health"
        case ready = "/ready"
        case metrics = "/metrics"

        var label: String { self == .unsubscribe ? "/api/v1/subscribe" : rawValue }
    }

    public init(
        plane: any StreamPlane, subscriptions: SubscriptionRegistry, reader: (any MarketDataReader)?,
        apiToken: String?, registry: MetricsRegistry, requestsPerSecond: Double = 50,
        logger: Logger = .disabled, pinnedOrigin: [StreamID: String] = [:],
        isReady: @escaping @Sendable () -> (Bool, String?)
    ) {
        self.plane = plane
        self.pinnedOrigin = pinnedOrigin
        self.subscriptions = subscriptions
        self.reader = reader
        self.logger = logger
        self.apiToken = apiToken
        self.registry = registry
        self.isReady = isReady
        self.limiter =
            requestsPerSecond > 0 ? ClientRateLimiter(perSecond: requestsPerSecond, burst: requestsPerSecond * 2) : nil
        var router = HTTPRouter<Route>()
        router.add("POST", "/api/v1/subscribe", .subscribe)
        router.add("DELETE", "/api/v1/subscribe", .unsubscribe)
        router.add("GET", "/api/v1/subscriptions", .subscriptions)
        router.add("GET", "/api/v1/data/{symbol}/{feed}", .data)
        router.add("GET", "/api/v1/data", .stored)
        router.add("GET", "/api/v1/status/{symbol}", .status)
        router.add("GET", "/api/v1/cluster", .cluster)
        router.add("POST", "/api/v1/cluster/workers/{id}/{operation}", .workerOperation)
        router.add("POST", "/api/v1/cluster/rebalance/{operation}", .rebalance)
        router.add("POST", "/api/v1/cluster/move", .move)
        router.add("GET", "/health", .health)
        router.add("GET", "/ready", .ready)
        router.add("GET", "/metrics", .metrics)
        self.router = router
    }

    /// A JSON error response naming the offending field.
    struct Failure: Error {
        var status: Int
        var message: String
        var field: String?
        var headers: HTTPHeaders = [:]
    }

    public func handle(_ request: HTTPRequest) async -> HTTPResponse {
        let (response, route) = await respond(request)
        registry.counter(
            "collector_http_requests_total", help: "HTTP requests by route and status.",
            labels: [("route", route), ("status", String(response.status))]
        ).increment()
        return response
    }

    private func respond(_ request: HTTPRequest) async -> (HTTPResponse, String) {
        if let limiter, let client = request.clientAddress, let wait = limiter.take(client) {
            let seconds = max(1, Int((wait.secondsDouble).rounded(.up)))
            return (
                Self.error(
                    Failure(status: 429, message: "too many requests", headers: ["Retry-After": String(seconds)])),
                "rate-limited"
            )
        }
        switch router.match(method: request.head.method, path: request.head.path) {
        case .notFound:
            return (Self.error(Failure(status: 404, message: "no such route: \(request.head.path)")), "unknown")
        case .methodNotAllowed(let allowed):
            var methods = allowed
            if allowed.contains("GET") { methods.append("HEAD") }
            return (
                Self.error(
                    Failure(
                        status: 405, message: "method \(request.head.method) not allowed",
                        headers: ["Allow": methods.joined(separator: ", ")])), "unknown"
            )
        case .found(let route, let parameters):
            do {
                return (try await dispatch(route, parameters, request), route.label)
            } catch let failure as Failure {
                return (Self.error(failure), route.label)
            } catch {
                // The detail may name files or hosts: it goes to the log, not to the client.
                logger.error("request failed", ["route": route.label, "error": "\(error)"])
                return (Self.error(Failure(status: 500, message: "internal error")), route.label)
            }
        }
    }

    private func dispatch(
        _ route: Route, _ parameters: [String: String], _ request: HTTPRequest
    ) async throws
        -> HTTPResponse
    {
        switch route {
        case .health:
            // Liveness never depends on PostgreSQL, S3 or the exchanges (DESIGN.md §8).
            return Self.json(200, ["status": "ok"])
        case .ready:
            let (ready, reason) = isReady()
            return ready ? Self.json(200, ["ready": true]) : Self.json(503, ["ready": false, "reason": reason ?? ""])
        case .metrics:
            return HTTPResponse(
                status: 200, contentType: "text/plain; version=0.0.4; charset=utf-8",
                body: Array(registry.render().utf8))
        case .workerOperation, .rebalance, .move:
            try authorize(request)
            return try await operate(route, parameters, request)
        case .subscribe, .unsubscribe:
            try authorize(request)
            let (streams, replicas) = try parseSubscription(request, allowReplicas: route == .subscribe)
            return route == .subscribe
                ? try await subscribe(streams, replicas: replicas) : try await unsubscribe(streams)
        case .subscriptions:
            let statuses = Dictionary(await plane.statuses().map { ($0.stream, $0) }, uniquingKeysWith: { a, _ in a })
            let list: [[String: Any]] = subscriptions.all.map { entry in
                var item = Self.describe(
                    entry.stream, pinned: entry.isPinned, state: statuses[entry.stream]?.state.rawValue)
                item["replicas"] = entry.replicas
                // A stream the exchange refused stays subscribed (it may become tradable): listed as
                // rejected with the exchange's reason, retried at most every 5 minutes.
                if let status = statuses[entry.stream], status.state == .rejected {
                    if let rejection = status.rejection {
                        item["error"] = "\(rejection.code): \(rejection.message)"
                    } else if let reason = status.lastError {
                        item["error"] = reason
                    }
                }
                return item
            }
            return Self.json(200, ["subscriptions": list, "count": list.count])
        case .data:
            return try await data(parameters, request)
        case .stored:
            return try await stored()
        case .status:
            return try await status(parameters["symbol"] ?? "", request)
        case .cluster:
            return HTTPResponse(status: 200, contentType: "application/json", body: await plane.clusterDocument())
        }
    }

    // MARK: Subscriptions

    private func authorize(_ request: HTTPRequest) throws {
        guard let apiToken else { return }
        let header = request.head.headers["Authorization"] ?? ""
        let presented = header.hasPrefix("Bearer ") ? String(header.dropFirst(7)) : ""
        guard HMAC.constantTimeEquals(Array(presented.utf8), Array(apiToken.utf8)) else {
            throw Failure(
                status: 401, message: "missing or wrong API token (Authorization: Bearer …)", field: "Authorization",
                headers: ["WWW-Authenticate": "Bearer"])
        }
    }

    /// `POST /api/v1/cluster/workers/{id}/drain|cordon|uncordon`, `/rebalance/pause|resume`, and
    /// `/move` with `{"shard": "okx/trades/BTC-USDT", "to": "worker-1"}`: 202 once applied.
    private func operate(
        _ route: Route, _ parameters: [String: String], _ request: HTTPRequest
    ) async throws
        -> HTTPResponse
    {
        let operation: ClusterOperation
        switch route {
        case .workerOperation:
            let id = parameters["id"] ?? ""
            switch parameters["operation"] {
            case "drain": operation = .drain(worker: id)
            case "cordon": operation = .cordon(worker: id)
            case "uncordon": operation = .uncordon(worker: id)
            default:
                throw Failure(
                    status: 404, message: "no such operation: use drain, cordon or uncordon", field: "operation")
            }
        case .rebalance:
            switch parameters["operation"] {
            case "pause": operation = .pauseRebalance(true)
            case "resume": operation = .pauseRebalance(false)
            default: throw Failure(status: 404, message: "no such operation: use pause or resume", field: "operation")
            }
        default:
            let type = (request.head.headers["Content-Type"] ?? "").lowercased()
            guard type.hasPrefix("application/json") else {
                throw Failure(status: 415, message: "Content-Type must be application/json", field: "Content-Type")
            }
            guard let object = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] else {
                throw Failure(status: 400, message: "body must be a JSON object", field: "body")
            }
            guard let shard = object["shard"] as? String, !shard.isEmpty else {
                throw Failure(
                    status: 400, message: "'shard' must be a shard id such as okx/trades/BTC-USDT", field: "shard")
            }
            guard let to = object["to"] as? String, !to.isEmpty else {
                throw Failure(status: 400, message: "'to' must be a worker id", field: "to")
            }
            operation = .move(shard: shard, to: to)
        }
        if let refusal = await plane.operate(operation) {
            throw Failure(status: refusal.notFound ? 404 : 409, message: refusal.message)
        }
        logger.notice("cluster operation", ["operation": "\(operation)"])
        return Self.json(202, ["accepted": true, "operation": "\(operation)"])
    }

    /// Validates the whole body before anything changes.
    private func parseSubscription(_ request: HTTPRequest, allowReplicas: Bool) throws -> ([StreamID], Int) {
        let type = (request.head.headers["Content-Type"] ?? "").lowercased()
        guard type.hasPrefix("application/json") else {
            throw Failure(status: 415, message: "Content-Type must be application/json", field: "Content-Type")
        }
        guard let object = (try? JSONSerialization.jsonObject(with: Data(request.body))) as? [String: Any] else {
            throw Failure(status: 400, message: "body must be a JSON object", field: "body")
        }
        for key in object.keys where !["symbols", "timeframes", "exchange", "feeds", "replicas"].contains(key) {
            throw Failure(status: 400, message: "unknown field '\(key)'", field: key)
        }
        var replicas = 1
        if let value = object["replicas"] {
            guard allowReplicas else {
                throw Failure(status: 400, message: "replicas is not used when unsubscribing", field: "replicas")
            }
            guard let n = value as? Int, !(value is Bool), (1...Self.maxReplicas).contains(n) else {
                throw Failure(
                    status: 422, message: "replicas must be an integer from 1 to \(Self.maxReplicas)", field: "replicas"
                )
            }
            replicas = n
        }
        func strings(_ key: String) throws -> [String]? {
            guard let value = object[key] else { return nil }
            guard let list = value as? [String], list.allSatisfy({ !$0.isEmpty }) else {
                throw Failure(status: 400, message: "\(key) must be an array of non-empty strings", field: key)
            }
            return list
        }
        guard let symbols = try strings("symbols"), !symbols.isEmpty else {
            throw Failure(status: 422, message: "symbols must list at least one symbol", field: "symbols")
        }
        guard symbols.count <= 500 else {
            throw Failure(status: 422, message: "at most 500 symbols per request", field: "symbols")
        }
        let exchangeText =
            try object["exchange"].map { value -> String in
                guard let s = value as? String else {
                    throw Failure(status: 400, message: "exchange must be a string", field: "exchange")
                }
                return s
            } ?? "okx"
        guard let exchange = ExchangeName(rawValue: exchangeText) else {
            throw Failure(status: 422, message: "unknown exchange '\(exchangeText)'", field: "exchange")
        }
        var feedNames = try strings("feeds") ?? ["candles"]
        let timeframes = try strings("timeframes") ?? []
        // Timeframes name candle streams: given beside other feeds, they add candles
        // (`{"feeds":["trades","book","ticker"],"timeframes":["1m"]}` is four feeds).
        if !timeframes.isEmpty && !feedNames.contains("candles") { feedNames.append("candles") }
        var streams: [StreamID] = []
        for feedName in feedNames {
            switch feedName {
            case "candles":
                guard !timeframes.isEmpty else {
                    throw Failure(status: 422, message: "timeframes is required for candle feeds", field: "timeframes")
                }
                for key in timeframes {
                    guard let tf = Timeframe(key) else {
                        throw Failure(
                            status: 422, message: "unknown timeframe '\(key)' (keys are case-sensitive)",
                            field: "timeframes")
                    }
                    streams += symbols.map { StreamID(exchange: exchange, feed: .candles(tf), symbol: $0) }
                }
            default:
                guard let feed = Feed(feedName), feedName != "candles" else {
                    throw Failure(
                        status: 422,
                        message: "unknown feed '\(feedName.prefix(40))' (candles, trades, book, book:<depth>, ticker)",
                        field: "feeds")
                }
                streams += symbols.map { StreamID(exchange: exchange, feed: feed, symbol: $0) }
            }
        }
        let adapter = OKXAdapter()
        for stream in streams {
            if stream.exchange != .okx {
                throw Failure(
                    status: 422, message: "\(stream.exchange) collection is not implemented yet", field: "exchange")
            }
            if let problem = adapter.validate(stream) {
                let field: String
                if problem.contains("instrument") {
                    field = "symbols"
                } else if case .candles = stream.feed {
                    field = "timeframes"
                } else {
                    field = "feeds"
                }
                throw Failure(status: 422, message: "\(stream): \(problem)", field: field)
            }
        }
        return (streams, replicas)
    }

    /// The most distinct workers one stream may run on.
    public static let maxReplicas = 5

    private func subscribe(_ streams: [StreamID], replicas: Int) async throws -> HTTPResponse {
        let added: [StreamID]
        do {
            added = try await subscriptions.add(streams, replicas: replicas)
        } catch {
            logger.error("cannot persist subscriptions", ["error": "\(error)"])
            throw Failure(status: 500, message: "cannot persist subscriptions (see the server log)")
        }
        if !added.isEmpty {
            let refused = await plane.subscribe(added, replicas: replicas)
            if !refused.isEmpty {
                // All or nothing: the accepted ones are withdrawn and the registry is as before.
                let accepted = added.filter { refused[$0] == nil }
                if !accepted.isEmpty { await plane.unsubscribe(accepted) }
                do {
                    _ = try await subscriptions.remove(added)
                } catch {
                    logger.error("cannot persist subscriptions", ["error": "\(error)"])
                    throw Failure(status: 500, message: "cannot persist subscriptions (see the server log)")
                }
                let reasons = refused.sorted { $0.key < $1.key }.map { "\($0.key): \($0.value)" }
                throw Failure(
                    status: 422, message: "refused, nothing subscribed: " + reasons.joined(separator: "; "),
                    field: "symbols")
            }
        }
        return Self.json(
            200,
            [
                "subscribed": added.map(\.description),
                "already_subscribed": streams.filter { !added.contains($0) }.map(\.description),
            ])
    }

    private func unsubscribe(_ streams: [StreamID]) async throws -> HTTPResponse {
        if let pinned = streams.first(where: { subscriptions.isPinned($0) }) {
            throw Failure(
                status: 409,
                message:
                    "\(pinned) is pinned by \(pinnedOrigin[pinned] ?? "the process's configuration") and cannot be removed",
                field: "symbols")
        }
        let present = streams.filter { subscriptions.contains($0) }
        guard !present.isEmpty else {
            throw Failure(status: 404, message: "none of these streams is subscribed", field: "symbols")
        }
        let removed: [StreamID]
        do {
            removed = try await subscriptions.remove(present)
        } catch {
            logger.error("cannot persist subscriptions", ["error": "\(error)"])
            throw Failure(status: 500, message: "cannot persist subscriptions (see the server log)")
        }
        await plane.unsubscribe(removed)
        return Self.json(200, ["unsubscribed": removed.map(\.description)])
    }

    // MARK: Data and status

    private func data(_ parameters: [String: String], _ request: HTTPRequest) async throws -> HTTPResponse {
        guard let reader else {
            throw Failure(status: 501, message: "no database configured: data queries need DATABASE_URL in this build")
        }
        let symbol = parameters["symbol"] ?? ""
        let feedText = parameters["feed"] ?? ""
        let feed: Feed
        if let named = Feed(feedText) {
            feed = named
        } else {
            // A timeframe key (`1m`, `1H`) or `candles:<key>` means candles.
            let key = feedText.hasPrefix("candles:") ? String(feedText.dropFirst(8)) : feedText
            guard let timeframe = Timeframe(key) else {
                throw Failure(
                    status: 422,
                    message:
                        "unknown feed '\(feedText.prefix(40))': a timeframe key (case-sensitive, e.g. 1m, 1H), trades, book or ticker",
                    field: "feed")
            }
            feed = .candles(timeframe)
        }
        let query = try Self.query(request)
        let exchangeText = query["exchange"] ?? "okx"
        guard let exchange = ExchangeName(rawValue: exchangeText) else {
            throw Failure(status: 422, message: "unknown exchange '\(exchangeText.prefix(40))'", field: "exchange")
        }
        let start = try query["start"].map { try Self.timestamp($0, field: "start") } ?? 0
        let end = try query["end"].map { try Self.timestamp($0, field: "end") } ?? DataQuery.validTimes.upperBound
        for (value, field) in [(start, "start"), (end, "end")] where !DataQuery.validTimes.contains(value) {
            throw Failure(status: 422, message: "\(field) must be between 1970-01-01 and 9999-12-31", field: field)
        }
        guard start <= end else { throw Failure(status: 422, message: "start must not be after end", field: "start") }
        var limit = Self.defaultLimit
        if let text = query["limit"] {
            guard let n = Int(text), (1...Self.maxLimit).contains(n) else {
                throw Failure(
                    status: 422, message: "limit must be an integer from 1 to \(Self.maxLimit)", field: "limit")
            }
            limit = n
        }
        // Pages are cached until their stream is written again (versions are read before querying).
        let stream = StreamID(exchange: exchange, feed: feed, symbol: symbol)
        let cacheKey = "\(stream)|\(start)|\(end)|\(limit)"
        let version = reader.version(of: stream)
        if let cached = pages.get(cacheKey, version: version) {
            return HTTPResponse(status: 200, contentType: "application/json", body: cached)
        }
        let events: [MarketEvent]
        do {
            events = try await reader.events(DataQuery(stream: stream, start: start, end: end, limit: limit))
        } catch {
            switch error.kind {
            case .invalid:
                // The reader refuses only the window's times; name the one that is out of range.
                let field = DataQuery.validTimes.contains(start) ? "end" : "start"
                throw Failure(status: 422, message: error.message, field: field)
            case .unavailable:
                // libpq's text can name the host, port and user: log it, answer without it.
                logger.warning("data query failed", ["stream": "\(stream)", "error": error.message])
                throw Failure(
                    status: 503, message: "database unavailable: try again later", headers: ["Retry-After": "5"])
            }
        }
        // Nothing in the window: a stream neither subscribed nor stored is unknown (404, like /status).
        if events.isEmpty, !subscriptions.contains(stream) {
            let known: [StoredStream]
            do {
                known = try await reader.stored(only: stream)
            } catch {
                logger.warning("data query failed", ["stream": "\(stream)", "error": error.message])
                throw Failure(
                    status: 503, message: "database unavailable: try again later", headers: ["Retry-After": "5"])
            }
            if known.isEmpty {
                throw Failure(status: 404, message: "no stream \(stream) is subscribed or stored", field: "symbol")
            }
        }
        let body = Array(DataPage.render(events, stream: stream).utf8)
        pages.put(cacheKey, version: version, body: body)
        return HTTPResponse(status: 200, contentType: "application/json", body: body)
    }

    /// Every stored stream with its row count and first and last time (`GET /api/v1/data`).
    private func stored() async throws -> HTTPResponse {
        guard let reader else {
            throw Failure(status: 501, message: "no database configured: data queries need DATABASE_URL in this build")
        }
        let streams: [StoredStream]
        do {
            streams = try await reader.stored(only: nil)
        } catch {
            logger.info("stored-stream listing failed", ["error": error.message])
            throw Failure(status: 503, message: "database unavailable: try again later", headers: ["Retry-After": "5"])
        }
        let rows: [[String: Any]] = streams.map { s in
            [
                "stream": s.stream.description, "exchange": s.stream.exchange.rawValue,
                "feed": s.stream.feed.description, "symbol": s.stream.symbol, "rows": s.rows,
                "first": UTCCalendar.iso8601(microseconds: s.first), "last": UTCCalendar.iso8601(microseconds: s.last),
                "subscribed": subscriptions.contains(s.stream),
            ]
        }
        return Self.json(200, ["streams": rows])
    }

    private func status(_ symbol: String, _ request: HTTPRequest) async throws -> HTTPResponse {
        let query = try Self.query(request)
        let exchange = query["exchange"] ?? "okx"
        guard ExchangeName(rawValue: exchange) != nil else {
            throw Failure(status: 422, message: "unknown exchange '\(exchange)'", field: "exchange")
        }
        let now = WallClock.microseconds()
        let owners = await plane.owners()
        let matching = await plane.statuses().filter {
            $0.stream.symbol == symbol && $0.stream.exchange.rawValue == exchange
        }
        guard !matching.isEmpty else {
            throw Failure(status: 404, message: "no stream of \(exchange) \(symbol) is subscribed", field: "symbol")
        }
        let stored: [StreamID: [Gap]]
        do {
            stored = try await plane.storedGaps(of: matching.map(\.stream))
        } catch {
            logger.error("gap ledger unavailable", ["error": "\(error)"])
            throw Failure(
                status: 503, message: "database unavailable: try again later", headers: ["Retry-After": "5"])
        }
        let streams: [[String: Any]] = matching.map { s in
            var item: [String: Any] = [
                "stream": s.stream.description, "feed": s.stream.feed.description,
                "owners": (owners[s.stream] ?? []).map { ["worker": $0.worker, "epoch": $0.epoch] },
                "state": s.state.rawValue,
                "messages": s.messages, "errors": s.errors, "reconnects": s.reconnects,
                "backfilled_bars": s.backfilledBars,
                "gaps": (s.gaps.isEmpty ? stored[s.stream] ?? [] : s.gaps).map {
                    [
                        "from": UTCCalendar.iso8601(microseconds: $0.from),
                        "to": UTCCalendar.iso8601(microseconds: $0.to), "missing": $0.missing,
                        "cause": $0.cause.rawValue, "recovered": $0.recovered, "reason": $0.reason,
                    ]
                },
            ]
            item["older_gaps"] = s.olderGaps
            item["last_event_time"] = s.lastEventTime.map { UTCCalendar.iso8601(microseconds: $0) } ?? NSNull()
            item["last_candle_open_time"] =
                s.lastCandleOpenTime.map { UTCCalendar.iso8601(microseconds: $0) } ?? NSNull()
            item["lag_seconds"] = s.lastEventTime.map { Double(now - $0) / 1e6 } ?? NSNull()
            item["last_error"] = s.lastError ?? NSNull()
            if let rejection = s.rejection {
                item["rejection"] = ["code": rejection.code, "message": rejection.message]
            }
            return item
        }
        return Self.json(200, ["symbol": symbol, "exchange": exchange, "streams": streams])
    }

    // MARK: Helpers

    static func query(_ request: HTTPRequest) throws -> [String: String] {
        guard let items = PercentDecoding.queryItems(request.head.query) else {
            throw Failure(status: 400, message: "malformed query string", field: "query")
        }
        return Dictionary(items.map { ($0.name, $0.value) }, uniquingKeysWith: { a, _ in a })
    }

    /// Epoch milliseconds (digits) or ISO-8601 (`2024-01-02T03:04:05Z`, fractions and ±HH:MM offsets).
    static func timestamp(_ text: String, field: String) throws -> Int64 {
        if !text.isEmpty, text.allSatisfy(\.isNumber), let ms = Int64(text), ms < 100_000_000_000_000 {
            return ms * 1000
        }
        if let t = ISO8601.parse(text) { return t }
        throw Failure(
            status: 400, message: "\(field) must be epoch milliseconds or ISO-8601, got '\(text.prefix(40))'",
            field: field)
    }

    static func describe(_ stream: StreamID, pinned: Bool, state: String?) -> [String: Any] {
        var item: [String: Any] = [
            "stream": stream.description, "exchange": stream.exchange.rawValue, "feed": stream.feed.description,
            "symbol": stream.symbol, "pinned": pinned,
        ]
        if case .candles(let tf) = stream.feed { item["timeframe"] = tf.key }
        item["state"] = state ?? "pending"
        return item
    }

    static func json(_ status: Int, _ object: [String: Any]) -> HTTPResponse {
        // try?: every value we put in is a JSON type, so serialization cannot fail.
        let data =
            (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
            ?? Data("{}".utf8)
        return HTTPResponse(status: status, contentType: "application/json", body: Array(data))
    }

    static func error(_ failure: Failure) -> HTTPResponse {
        var object: [String: Any] = ["error": failure.message, "status": failure.status]
        if let field = failure.field { object["field"] = field }
        var response = json(failure.status, object)
        for header in failure.headers { response.head.headers.replaceOrAdd(name: header.name, value: header.value) }
        return response
    }
}

/// Per-client token buckets (bounded: the oldest clients are forgotten beyond `maxClients`).
final class ClientRateLimiter: Sendable {
    private let buckets = Locked<[String: TokenBucket]>([:])
    private let perSecond: Double
    private let burst: Double
    private let clock = ContinuousClock()
    private let origin: ContinuousClock.Instant
    /// Distinct clients tracked at once; a flood of addresses cannot grow memory without bound.
    static let maxClients = 10_000

    /// `perSecond` must be positive; `burst` below one token is raised to one (see `TokenBucket`), so
    /// fractional rates such as `API_RATE_LIMIT=0.2` admit a request and then one every 5 s.
    init(perSecond: Double, burst: Double) {
        self.perSecond = perSecond
        self.burst = max(1, burst)
        origin = clock.now
    }

    /// Takes a token for `client`; returns how long to wait when none is left.
    func take(_ client: String) -> Duration? {
        let now = Instant(nanoseconds: (clock.now - origin).nanosecondsClamped)
        return buckets.withLock { buckets in
            if buckets.count >= Self.maxClients && buckets[client] == nil { buckets.removeAll(keepingCapacity: true) }
            var bucket = buckets[client] ?? TokenBucket(ratePerSecond: perSecond, burst: burst)
            let wait = bucket.take(now: now)
            buckets[client] = bucket
            return wait
        }
    }
}

/// ISO-8601 date-times with `Z` or a numeric offset.
enum ISO8601 {
    static func parse(_ text: String) -> Int64? {
        let chars = Array(text.utf8)
        func number(_ from: Int, _ count: Int) -> Int? {
            guard from + count <= chars.count else { return nil }
            var v = 0
            for c in chars[from..<from + count] {
                guard c >= 48 && c <= 57 else { return nil }
                v = v * 10 + Int(c - 48)
            }
            return v
        }
        guard chars.count >= 10, let y = number(0, 4), chars[4] == 45, let m = number(5, 2), chars[7] == 45,
            let d = number(8, 2), (1...12).contains(m), (1...31).contains(d)
        else { return nil }
        var t = UTCCalendar.microseconds(year: y, month: m, day: d)
        if chars.count == 10 { return t }
        guard chars.count >= 20, chars[10] == 84 || chars[10] == 32, let hh = number(11, 2), chars[13] == 58,
            let mm = number(14, 2), chars[16] == 58, let ss = number(17, 2), hh < 24, mm < 60, ss < 61
        else { return nil }
        t += Int64(hh * 3600 + mm * 60 + ss) * 1_000_000
        var i = 19
        if i < chars.count && chars[i] == 46 {
            i += 1
            var fraction: Int64 = 0
            var digits = 0
            while i < chars.count, chars[i] >= 48, chars[i] <= 57 {
                if digits < 6 {
                    fraction = fraction * 10 + Int64(chars[i] - 48)
                    digits += 1
                }
                i += 1
            }
            guard digits > 0 else { return nil }
            for _ in digits..<6 { fraction *= 10 }
            t += fraction
        }
        guard i < chars.count else { return nil }
        if chars[i] == 90 && i == chars.count - 1 { return t }
        guard chars[i] == 43 || chars[i] == 45, chars.count == i + 6, let oh = number(i + 1, 2), chars[i + 3] == 58,
            let om = number(i + 4, 2)
        else { return nil }
        let offset = Int64(oh * 3600 + om * 60) * 1_000_000
        return chars[i] == 43 ? t - offset : t + offset
    }
}

/// Rendered data pages by query, valid while their stream's write version is unchanged. Bounded by
/// entry count and bytes (cleared wholesale when full: simple, and refilled by the next requests).
final class PageCache: Sendable {
    private struct Entry {
        var version: UInt64
        var body: [UInt8]
    }
    private let state = Locked<(entries: [String: Entry], bytes: Int)>(([:], 0))
    private let maxEntries: Int
    private let maxBytes: Int

    init(maxEntries: Int, maxBytes: Int) {
        self.maxEntries = maxEntries
        self.maxBytes = maxBytes
    }

    func get(_ key: String, version: UInt64) -> [UInt8]? {
        state.withLock { s in
            guard let entry = s.entries[key], entry.version == version else { return nil }
            return entry.body
        }
    }

    func put(_ key: String, version: UInt64, body: [UInt8]) {
        guard body.count <= maxBytes / 4 else { return }
        state.withLock { s in
            if s.entries.count >= maxEntries || s.bytes + body.count > maxBytes {
                s.entries.removeAll(keepingCapacity: true)
                s.bytes = 0
            }
            if let old = s.entries[key] { s.bytes -= old.body.count }
            s.entries[key] = Entry(version: version, body: body)
            s.bytes += body.count
        }
    }
}
