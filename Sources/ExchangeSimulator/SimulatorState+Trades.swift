import HTTP1Protocol
import MarketData
import Runtime
import WireCore

/// REST trades (PROTOCOLS.md §1.8) and the trade oracle, all read from the same `TradeModel` as the
/// WebSocket pushes, so every source agrees on every fill.
extension SimulatorState {
    /// Most fills one `/control/trades` answer holds (~1 MB of JSON).
    static let oracleLimit = 10_000
    /// Largest epoch-ms time accepted in `after`/`before` with `type=2` (year 2286), so µs fit Int64.
    private static let maxMilliseconds: Int64 = 10_000_000_000_000
    /// Largest trade id accepted in `after`/`before` with `type=1`, so ±1 cannot overflow.
    private static let maxTradeID: Int64 = 1_000_000_000_000_000_000

    var rateLimited: HTTPResponse {
        okxError(
            429, "50011", "Rate limit reached. Please refer to API documentation and throttle requests accordingly.")
    }

    /// A request refused with this answer.
    struct Refusal: Error {
        let response: HTTPResponse
    }

    /// The instrument a market-data request names, or the OKX error for it.
    func marketInstrument(_ query: [String: String]) -> Result<String, Refusal> {
        guard let instrument = query["instId"], !instrument.isEmpty else {
            return .failure(Refusal(response: okxError(400, "50014", "Parameter instId can not be empty.")))
        }
        guard configuration.symbols.contains(instrument) else {
            return .failure(Refusal(response: okxError(200, "51001", "Instrument ID does not exist.")))
        }
        return .success(instrument)
    }

    /// `GET /api/v5/market/history-trades?instId=&type=1|2&after=&before=&limit=1…100`: newest
    /// first. `type=1` (the default) pages by tradeId: `after` returns fills with smaller ids,
    /// `before` larger; `type=2` reads `after`/`before` as epoch ms. Only fills that have happened
    /// (virtual time) are served; the model begins `tradeHistoryMinutes` before the start.
    func historyTrades(_ query: [String: String]) -> HTTPResponse {
        if configuration.enforceRateLimits && historyTradesBucket.take(now: loop.now()) != nil { return rateLimited }
        let instrument: String
        switch marketInstrument(query) {
        case .success(let name): instrument = name
        case .failure(let refusal): return refusal.response
        }
        let type = query["type"] ?? "1"
        guard type == "1" || type == "2" else { return okxError(400, "51000", "Parameter type error.") }
        guard let limit = Int(query["limit"] ?? "100"), limit >= 1, limit <= 100 else {
            return okxError(400, "51000", "Parameter limit error.")
        }
        var bounds: [String: Int64] = [:]
        for name in ["after", "before"] {
            guard let text = query[name] else { continue }
            guard let value = Int64(text), value >= 0, value <= (type == "1" ? Self.maxTradeID : Self.maxMilliseconds)
            else {
                return okxError(400, "51000", "Parameter \(name) error.")
            }
            bounds[name] = value
        }
        let now = virtualNow
        var newest = trades.lastID(instrument, asOf: now)
        var oldest = trades.firstID(instrument)
        if type == "1" {
            if let after = bounds["after"] { newest = min(newest, after - 1) }
            if let before = bounds["before"] { oldest = max(oldest, before + 1) }
        } else {
            if let after = bounds["after"] { newest = min(newest, trades.lastID(instrument, asOf: after * 1000 - 1)) }
            if let before = bounds["before"] {
                oldest = max(oldest, trades.lastID(instrument, asOf: (before + 1) * 1000 - 1) + 1)
            }
        }
        return tradesPage(instrument, newest: newest, oldest: oldest, limit: limit)
    }

    /// `GET /api/v5/market/trades?instId=&limit=1…500`: the newest fills, newest first.
    func recentTrades(_ query: [String: String]) -> HTTPResponse {
        if configuration.enforceRateLimits && recentTradesBucket.take(now: loop.now()) != nil { return rateLimited }
        let instrument: String
        switch marketInstrument(query) {
        case .success(let name): instrument = name
        case .failure(let refusal): return refusal.response
        }
        guard let limit = Int(query["limit"] ?? "100"), limit >= 1, limit <= 500 else {
            return okxError(400, "51000", "Parameter limit error.")
        }
        return tradesPage(
            instrument, newest: trades.lastID(instrument, asOf: virtualNow), oldest: trades.firstID(instrument),
            limit: limit)
    }

    /// Up to `limit` fills from `newest` down to `oldest`, as an OKX envelope.
    private func tradesPage(_ instrument: String, newest: Int64, oldest: Int64, limit: Int) -> HTTPResponse {
        var rows: [String] = []
        if newest >= oldest {
            let low = max(oldest, newest - Int64(limit) + 1)
            rows = trades.fills(instrument, from: low, through: newest).reversed().map {
                TradeModel.restRow($0, symbol: instrument)
            }
        }
        return json(200, "{\"code\":\"0\",\"msg\":\"\",\"data\":[\(rows.joined(separator: ","))]}")
    }

    /// The known instrument a control request names, or a 404.
    func controlInstrument(_ query: [String: String]) -> Result<String, Refusal> {
        guard let instrument = query["instId"], configuration.symbols.contains(instrument) else {
            return .failure(Refusal(response: json(404, "{\"error\":\"unknown instId\"}")))
        }
        return .success(instrument)
    }

    /// `GET /control/trades?instId=&from=&to=`: the model's fills with `from ≤ tradeId ≤ to`, oldest
    /// first, clipped to fills that have happened and to `oracleLimit` fills (then `truncated`).
    /// `from` defaults to the first fill, `to` to the newest (`lastTradeId`).
    func oracleTrades(_ query: [String: String]) -> HTTPResponse {
        let instrument: String
        switch controlInstrument(query) {
        case .success(let name): instrument = name
        case .failure(let refusal): return refusal.response
        }
        let first = trades.firstID(instrument)
        let head = trades.lastID(instrument, asOf: virtualNow)
        guard let from = query["from"].map({ Int64($0) }) ?? first, let to = query["to"].map({ Int64($0) }) ?? head
        else { return json(400, "{\"error\":\"from and to are trade ids\"}") }
        let low = max(from, first)
        var high = min(to, head)
        var truncated = false
        if low <= high && high - low >= Int64(Self.oracleLimit) {
            high = low + Int64(Self.oracleLimit) - 1
            truncated = true
        }
        let rows = low <= high ? trades.fills(instrument, from: low, through: high).map(TradeModel.oracleRow) : []
        return json(
            200,
            "{\"instId\":\(JSONText.quoted(instrument)),\"firstTradeId\":\"\(first)\",\"lastTradeId\":\"\(head)\",\"truncated\":\(truncated),\"trades\":[\(rows.joined(separator: ","))]}"
        )
    }

    /// `GET /control/emitted-trades?instId=[&from=&to=]`: the distinct fill ids the WebSocket pushed
    /// (`trades-all` and `trades`), ascending, as `tradeIds` and as contiguous `ranges`, within
    /// `from…to` when given. Ids below `forgottenBelow` (null when none) were dropped to stay within
    /// `EmittedTradeLog.capacity`, `evicted` of them; `pushed` counts every copy sent.
    func emittedTradeIDs(_ query: [String: String]) -> HTTPResponse {
        let instrument: String
        switch controlInstrument(query) {
        case .success(let name): instrument = name
        case .failure(let refusal): return refusal.response
        }
        let from = query["from"].flatMap { Int64($0) } ?? Int64.min
        let to = query["to"].flatMap { Int64($0) } ?? Int64.max
        let log = emittedTrades[instrument] ?? EmittedTradeLog()
        var kept: [ClosedRange<Int64>] = []
        for range in log.ranges {
            let low = max(range.lowerBound, from)
            let high = min(range.upperBound, to)
            if low <= high { kept.append(low...high) }
        }
        let ranges = kept.map { "[\($0.lowerBound),\($0.upperBound)]" }
        let list = kept.flatMap { $0 }.map(String.init).joined(separator: ",")
        let count = kept.reduce(0) { $0 + $1.count }
        let floor = log.forgottenBelow.map(String.init) ?? "null"
        return json(
            200,
            "{\"instId\":\(JSONText.quoted(instrument)),\"count\":\(count),\"forgottenBelow\":\(floor),\"evicted\":\(log.evicted),\"pushed\":\(log.pushed),\"messages\":\(log.messages),\"ranges\":[\(ranges.joined(separator: ","))],\"tradeIds\":[\(list)]}"
        )
    }
}
