import HTTP1Protocol
import MarketData
import Runtime
import WireCore

/// REST order books (PROTOCOLS.md §1.8), the book oracle and the book fault switches, all read
/// from the same `BookModel` as the WebSocket pushes.
extension SimulatorState {
    /// `GET /api/v5/market/books` serves 1…400 levels per side (OKX: `sz` up to 400, default 1).
    static let maxRESTBookDepth = BookModel.maxDepth

    /// The model of `symbol` (a configured one), made on first use.
    func bookModel(_ symbol: String) -> BookModel {
        withTimeline(symbol) { $0.model }
    }

    /// Brings every model in use to the current step, so that no request replays more than the
    /// steps of one feed tick (a REST call after an hour of quiet would otherwise replay millions).
    func advanceBookTimelines(virtualNow: Int64) {
        for symbol in Array(bookTimelines.keys) {
            withTimeline(symbol) { timeline in _ = timeline.state(at: timeline.model.step(at: virtualNow)) }
        }
    }

    /// The book of `symbol` after `step`.
    func bookState(_ symbol: String, step: Int64) -> BookState {
        withTimeline(symbol) { $0.state(at: step) }
    }

    private func withTimeline<T>(_ symbol: String, _ body: (inout BookTimeline) -> T) -> T {
        precondition(configuration.symbols.contains(symbol), "book models exist for configured symbols only")
        if bookTimelines[symbol] == nil {
            let model = BookModel(
                symbol: symbol, candles: model, priceDecimals: trades.priceDecimals(symbol), origin: trades.origin,
                stepMicroseconds: Int64(max(1, configuration.bookStepMilliseconds)) * 1000)
            bookTimelines[symbol] = BookTimeline(model: model)
        }
        // Force-unwrap: made just above when missing.
        return body(&bookTimelines[symbol]!)
    }

    /// `GET /api/v5/market/books?instId=&sz=1…400`: the book at the current step, best first,
    /// with the `seqId` the newer OKX API returns (PROTOCOLS.md §1.6 point 2). 40 requests / 2 s.
    func restBook(_ query: [String: String]) -> HTTPResponse {
        if configuration.enforceRateLimits && booksBucket.take(now: loop.now()) != nil { return rateLimited }
        let instrument: String
        switch marketInstrument(query) {
        case .success(let name): instrument = name
        case .failure(let refusal): return refusal.response
        }
        guard let depth = Int(query["sz"] ?? "1"), depth >= 1, depth <= Self.maxRESTBookDepth else {
            return okxError(400, "51000", "Parameter sz error.")
        }
        let model = bookModel(instrument)
        let state = bookState(instrument, step: model.step(at: virtualNow))
        return json(200, "{\"code\":\"0\",\"msg\":\"\",\"data\":[\(model.restRow(state, depth: depth))]}")
    }

    /// `GET /control/book?instId=[&seqId=]`: the model's whole book at that seqId (the newest
    /// step with it, up to now) or now, best first, with its true checksum; 404 when no step
    /// since the model's origin has that seqId.
    func oracleBook(_ query: [String: String]) -> HTTPResponse {
        let instrument: String
        switch controlInstrument(query) {
        case .success(let name): instrument = name
        case .failure(let refusal): return refusal.response
        }
        let head = bookModel(instrument).step(at: virtualNow)
        let state: BookState
        if let text = query["seqId"] {
            guard let seqId = Int64(text) else { return json(400, "{\"error\":\"seqId must be an integer\"}") }
            guard let found = withTimeline(instrument, { $0.state(seqId: seqId, through: head) }) else {
                return json(404, "{\"error\":\"seqId \(seqId) is not a step of the model\"}")
            }
            state = found
        } else {
            state = bookState(instrument, step: head)
        }
        return json(200, bookModel(instrument).oracleJSON(state))
    }

    /// `POST /control/book-fault?instId=&kind=checksum|skip-seq|reset`: see `BookFault`. The first
    /// two arm every current `books` subscriber of the symbol once; `reset` changes the model
    /// itself (every client, REST and the oracle see it) at the step after the current one.
    func bookFault(_ query: [String: String]) -> HTTPResponse {
        let instrument: String
        switch controlInstrument(query) {
        case .success(let name): instrument = name
        case .failure(let refusal): return refusal.response
        }
        guard let kind = query["kind"].flatMap(BookFault.init(rawValue:)) else {
            return json(400, "{\"error\":\"kind must be checksum, skip-seq or reset\"}")
        }
        let name = JSONText.quoted(instrument)
        switch kind {
        case .checksum, .skipSeq:
            let armed = sessions.values.filter { $0.armBookFault(kind, symbol: instrument) }.count
            return json(200, "{\"instId\":\(name),\"kind\":\"\(kind.rawValue)\",\"subscribers\":\(armed)}")
        case .reset:
            let model = bookModel(instrument)
            let step = model.step(at: virtualNow) + 1
            let prevSeqId = bookState(instrument, step: step - 1).seqId
            let seqId: Int64
            if let pending = model.resets[step] {
                seqId = pending
            } else {
                guard prevSeqId >= 2 else {
                    return json(409, "{\"error\":\"seqId \(prevSeqId) is too small to reset below\"}")
                }
                // A small number, like OKX's documented example (15 → 3), always below prevSeqId.
                seqId = 1 + Int64(bookMix(model.hash, step, 2) % UInt64(min(9, prevSeqId - 1)))
                withTimeline(instrument) { $0.addReset(at: step, seqId: seqId) }
            }
            return json(
                200,
                "{\"instId\":\(name),\"kind\":\"reset\",\"step\":\(step),\"prevSeqId\":\(prevSeqId),\"seqId\":\(seqId)}"
            )
        }
    }
}
