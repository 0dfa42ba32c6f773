public import CollectorCore
public import MarketData

extension ExchangeSession {
    /// A frame arrived at `now` (monotonic) and `receivedAt` (µs since the epoch, the events'
    /// `timestamp_collector`). Actions are appended to `actions` (the driver reuses one array, so the
    /// hot path does not allocate per frame).
    public mutating func frame(
        _ payload: UnsafeRawBufferPointer, isText: Bool, receivedAt: Int64, now: Instant,
        into actions: inout [SessionAction]
    ) {
        switch phase {
        case .open, .closing: break  // a closing connection's last frames are still real data
        case .idle, .waiting, .connecting, .stopped: return
        }
        link?.lastReceived = now
        link?.pingSent = false
        var parsed = messages
        messages = []
        parsed.removeAll(keepingCapacity: true)
        defer {
            parsed.removeAll(keepingCapacity: true)
            messages = parsed
        }
        do {
            try adapter.parse(payload, isText: isText, receivedAt: receivedAt, state: &connectionState, into: &parsed)
            link?.parseErrors = 0
        } catch {
            let errors = (link?.parseErrors ?? 0) + 1
            link?.parseErrors = errors
            actions.append(.log(.debug, "unparseable frame", ["error": error.reason]))
            actions.append(.count(.parseError))
            actions.append(.deadLetter(raw: String(decoding: payload, as: UTF8.self), reason: error.reason))
            if errors >= configuration.parseErrorLimit {
                let reason = "circuit breaker: \(errors) malformed messages in a row"
                for stream in entries.keys.sorted() { actions.append(.streamError(stream, reason)) }
                recycle(immediately: false, reason: reason, into: &actions)
            }
            return
        }
        Self.orderFillsByID(&parsed)
        for message in parsed { handle(message, raw: payload, now: now, into: &actions) }
        assertInvariants()
    }

    /// Fills of one frame in ascending id order (an exchange may list them newest first), the other
    /// messages left where they are; numeric ids only.
    static func orderFillsByID(_ messages: inout [ExchangeMessage]) {
        var positions: [Int] = []
        var fills: [(Int64, ExchangeMessage)] = []
        for (i, message) in messages.enumerated() {
            guard case .event(.trade(let t)) = message, let id = Int64(t.tradeID) else { continue }
            positions.append(i)
            fills.append((id, message))
        }
        guard fills.count > 1, !zip(fills, fills.dropFirst()).allSatisfy({ $0.0 < $1.0 }) else { return }
        fills.sort { $0.0 < $1.0 }
        for (position, fill) in zip(positions, fills) { messages[position] = fill.1 }
    }

    private mutating func handle(
        _ message: ExchangeMessage, raw: UnsafeRawBufferPointer, now: Instant, into actions: inout [SessionAction]
    ) {
        switch message {
        case .event(let event):
            accept(event, raw: raw, into: &actions)
        case .subscribed(let stream):
            guard entries[stream] != nil else { return }  // unsubscribed meanwhile
            confirm(stream, into: &actions)
        case .subscribedRequest(let requestID):
            for stream in pendingRequests[requestID] ?? [] {
                guard case .pending = entries[stream]?.subscription else { continue }
                confirm(stream, into: &actions)
            }
        case .unsubscribed:
            break  // the stream left `entries` when it was removed
        case .subscriptionRejected(let stream, let requestID, let code, let text):
            var affected: [StreamID] = []
            if let stream, entries[stream] != nil {
                affected = [stream]
            } else if let requestID {
                affected = (pendingRequests[requestID] ?? []).filter { entries[$0]?.subscription != .live }
            } else if stream == nil {
                // Neither stream nor request named: every stream still waiting for an answer.
                affected = entries.keys.sorted().filter {
                    if case .pending = entries[$0]?.subscription { true } else { false }
                }
            }
            for stream in affected { refuse(stream, code: code, message: text, now: now, into: &actions) }
        case .error(let code, let text):
            for stream in entries.keys.sorted() { actions.append(.streamError(stream, "\(code): \(text)")) }
        case .notice(_, _, let reconnectSoon):
            // OKX 64008: the server will drop us for an upgrade; reconnect now rather than lose data later.
            if reconnectSoon {
                recycle(immediately: true, reason: "service upgrade notice: reconnecting early", into: &actions)
            }
        case .pong:
            break
        case .unhandled:
            actions.append(.count(.unhandled))
        }
    }

    /// A wanted stream's subscription was accepted.
    private mutating func confirm(_ stream: StreamID, into actions: inout [SessionAction]) {
        provedHealthy(into: &actions)
        settle(stream)
        guard var entry = entries[stream] else { return }
        if let refusal = entry.refusal {
            actions.append(
                .log(
                    .notice, "subscription accepted after refusals",
                    ["stream": "\(stream)", "exchange.code": refusal.code, "refusals": "\(refusal.times)"]))
            entry.refusal = nil
        }
        entry.subscription = .live
        entries[stream] = entry
        actions.append(.phase(stream, .live, detail: nil))
    }

    /// An event of a wanted stream inside its window: quality-checked, continuity-tracked, emitted.
    private mutating func accept(_ event: MarketEvent, raw: UnsafeRawBufferPointer, into actions: inout [SessionAction])
    {
        let stream = event.stream
        // One hash lookup; the entry is then read and changed in place through its index.
        guard var index = entries.index(forKey: stream) else { return }  // not (or no longer) wanted here
        if link?.isHealthy == false { provedHealthy(into: &actions) }
        if adapter.acknowledgement != .explicit && entries.values[index].subscription != .live {
            // No acknowledgement from this exchange: the first message is the confirmation (also for a
            // stream refused for silence whose data arrives late).
            confirm(stream, into: &actions)
            guard let refreshed = entries.index(forKey: stream) else { return }  // `confirm` keeps the entry
            index = refreshed
        }
        // Trade continuity follows every fill, inside the window or not, so the window's edge is not
        // mistaken for a hole (holes wholly outside the window are not fetched).
        if case .trade(let trade) = event {
            if let problem = trade.qualityProblem() {
                actions.append(.deadLetter(raw: String(decoding: raw, as: UTF8.self), reason: problem))
                actions.append(.streamError(stream, "data quality: \(problem)"))
                return
            }
            checkTradeContinuity(trade, entry: &entries.values[index], into: &actions)
        }
        // The first event at or past a closing window's end: every earlier one of this stream has
        // come through this session, so the hand-over may end (`ShardRunner`).
        if let until = entries.values[index].window?.until, event.windowTime >= until,
            entries.values[index].passedUntil.map({ $0 < until }) ?? true
        {
            entries.values[index].passedUntil = until
            actions.append(.windowPassed(stream, until: until))
        }
        if case .book(let message) = event {
            synchronize(message, index: index, into: &actions)
            return
        }
        if case .ticker(let ticker) = event {
            let entry = entries.values[index]
            if let gap = entry.pendingGap, ticker.timestampExchange > gap.from {
                actions.append(
                    .recordGaps(
                        stream,
                        [
                            Gap(
                                from: gap.from, to: ticker.timestampExchange, missing: 0, cause: gap.cause,
                                reason: gap.reason)
                        ]))
            }
            entries.values[index].pendingGap = nil
            entries.values[index].lastEventTime = ticker.timestampExchange
        }
        if let window = entries.values[index].window, !window.admits(event.windowTime) { return }
        if case .candle(let candle) = event {
            if let problem = candle.qualityProblem() {
                actions.append(.deadLetter(raw: String(decoding: raw, as: UTF8.self), reason: problem))
                actions.append(.streamError(stream, "data quality: \(problem)"))
                return
            }
            checkContinuity(candle, entry: &entries.values[index], into: &actions)
        }
        actions.append(.emit(event))
    }

    /// A book message: applied to the stream's book, which decides what is stored (DESIGN.md §4:
    /// sequencing, checksums and resynchronisation are per symbol, never the whole connection).
    private mutating func synchronize(
        _ message: BookMessage, index: Dictionary<StreamID, SessionEntry>.Index, into actions: inout [SessionAction]
    ) {
        let stream = message.stream
        var outputs: [BookSynchronizer.Output] = []
        // One in-place access to the entry: reading a field through `entries.values[index]` copies the
        // whole entry (its book included) first, once per message.
        if !Self.receive(message, in: &entries.values[index], into: &outputs) {
            let interval = configuration.bookSnapshotInterval.map { Self.microseconds($0) }
            entries.values[index].book = BookSynchronizer(
                rules: adapter.bookRules(for: stream), snapshotInterval: interval)
            Self.receive(message, in: &entries.values[index], into: &outputs)
        }
        perform(outputs, for: stream, into: &actions)
    }

    /// Applies `message` to the entry's book, admitting rows inside the entry's window; false (nothing
    /// done) when the entry has no book yet. Changed in place (through the optional), so the book's
    /// arrays are not copied.
    @discardableResult
    private static func receive(
        _ message: BookMessage, in entry: inout SessionEntry, into outputs: inout [BookSynchronizer.Output]
    ) -> Bool {
        guard entry.book != nil else { return false }
        entry.book?.isAdmitting = entry.window?.admits(message.timestampExchange) ?? true
        entry.book?.receive(message, into: &outputs)
        return true
    }

    /// The REST reply to a `fetchBookSnapshot`: the book is seeded from it (or asked for again).
    public mutating func bookSnapshotFetched(
        _ stream: StreamID, snapshot: BookMessage?, error: String?, now: Instant
    ) -> [SessionAction] {
        var actions: [SessionAction] = []
        guard let index = entries.index(forKey: stream), entries.values[index].book != nil else { return actions }
        var outputs: [BookSynchronizer.Output] = []
        if let snapshot {
            let admits = entries.values[index].window?.admits(snapshot.timestampExchange) ?? true
            entries.values[index].book?.isAdmitting = admits
        }
        entries.values[index].book?.snapshotFetched(snapshot, error: error, into: &outputs)
        perform(outputs, for: stream, into: &actions)
        return actions
    }

    private func perform(
        _ outputs: [BookSynchronizer.Output], for stream: StreamID, into actions: inout [SessionAction]
    ) {
        for output in outputs {
            switch output {
            case .row(let row): actions.append(.emit(.book(row)))
            case .gap(let gap): actions.append(.recordGaps(stream, [gap]))
            case .fetchSnapshot: actions.append(.fetchBookSnapshot(stream))
            case .error(let text):
                actions.append(.streamError(stream, text))
                actions.append(.bookSynchronised(stream, false))
                actions.append(.log(.warning, "book resynchronising", ["stream": "\(stream)", "error": text]))
            case .synchronised: actions.append(.bookSynchronised(stream, true))
            }
        }
    }

    static func microseconds(_ duration: Duration) -> Int64 {
        duration.components.seconds * 1_000_000 + duration.components.attoseconds / 1_000_000_000_000
    }

    /// Bars strictly between the last confirmed one and this one have not been confirmed to us: ask
    /// for them from REST (once per hole).
    private func checkContinuity(_ candle: Candle, entry: inout SessionEntry, into actions: inout [SessionAction]) {
        guard let last = entry.lastConfirmed else {
            if candle.isConfirmed { entry.lastConfirmed = candle.openTime }
            return
        }
        let upper = candle.openTime
        if candle.timeframe.nextOpenTime(after: last) < upper, entry.backfillingUntil.map({ $0 < upper }) ?? true {
            entry.backfillingUntil = upper
            let hole = candle.timeframe.openTimes(strictlyBetween: last, and: upper)
            if let first = hole.first, let end = hole.last {
                // In the ledger at once (a restart before the backfill ends leaves it on record).
                let gap = Gap(
                    from: first, to: end, missing: 0, cause: entry.openHole(from: first),
                    reason: "REST backfill of \(hole.count) bars running")
                actions.append(.recordGaps(candle.stream, [gap]))
            }
            actions.append(.backfill(candle.stream, after: last, before: upper))
        } else if candle.openTime > last {
            entry.lossCause = nil  // the bar after the loss follows on: nothing was lost
        }
        if candle.isConfirmed && candle.openTime > last { entry.lastConfirmed = candle.openTime }
    }

    /// Fill ids strictly between the last one seen and this one never reached us (a reconnect, or a
    /// restart since the stored watermark): ask REST for them, once per hole. Non-numeric ids (other
    /// exchanges) carry no such order and are not checked.
    private func checkTradeContinuity(_ trade: Trade, entry: inout SessionEntry, into actions: inout [SessionAction]) {
        guard let id = Int64(trade.tradeID) else { return }
        guard let last = entry.lastTradeID else {
            entry.lastTradeID = id
            entry.lastTradeTime = trade.timestampExchange
            return
        }
        guard id > last else { return }  // an older fill (a frame newest first is sorted before this)
        defer {
            entry.lastTradeID = id
            entry.lastTradeTime = trade.timestampExchange
        }
        guard id > last + 1 else {
            entry.lossCause = nil  // the fill after the loss follows on: nothing was lost
            return
        }
        let from = entry.lastTradeTime ?? trade.timestampExchange
        // A hole wholly outside the stream's window holds nothing it would store.
        if let window = entry.window {
            if let start = window.from, trade.timestampExchange < start { return }
            if let end = window.until, from >= end { return }
        }
        let gap = Gap(
            from: from, to: trade.timestampExchange, missing: 0, cause: entry.openHole(from: from),
            reason: "REST backfill of \(id - last - 1) fills running")
        actions.append(.recordGaps(trade.stream, [gap]))
        actions.append(.backfillTrades(trade.stream, after: last, before: id, from: from, to: trade.timestampExchange))
    }

    /// The REST reply to a `backfillTrades`: the fills of the hole inside the stream's window are
    /// emitted in id order; fills REST did not return are recorded as one gap (`from`…`to`, exchange
    /// times; its count is the number of missing fills).
    public mutating func tradeBackfillFinished(
        _ stream: StreamID, after: Int64, before: Int64, from: Int64, to: Int64, trades: [Trade], error: String?,
        now: Instant
    ) -> [SessionAction] {
        var actions: [SessionAction] = []
        guard var entry = entries[stream], case .trades = stream.feed else { return actions }
        let cause = entry.closeHole(from: from)
        entries[stream] = entry
        var seen = Set<Int64>()
        var fills: [(Int64, Trade)] = []
        for trade in trades where trade.stream == stream {
            guard let id = Int64(trade.tradeID), id > after, id < before, seen.insert(id).inserted else { continue }
            fills.append((id, trade))
        }
        fills.sort { $0.0 < $1.0 }
        let window = entry.window
        for (_, trade) in fills where window?.admits(trade.timestampExchange) ?? true {
            // The same quality rule as a pushed fill: a bad one is dead-lettered, not stored.
            if let problem = trade.qualityProblem() {
                actions.append(.deadLetter(raw: "REST fill of \(stream): \(trade)", reason: problem))
                actions.append(.streamError(stream, "data quality: \(problem)"))
                continue
            }
            actions.append(.emit(.trade(trade)))
        }
        if !fills.isEmpty { actions.append(.backfilled(stream, bars: fills.count)) }
        let missing = Int(before - after - 1) - fills.count
        let reason: String
        if missing > 0 {
            reason = error ?? "fills not returned by REST"
            actions.append(
                .log(
                    .info, "fills missing after trade backfill",
                    ["stream": "\(stream)", "gap.fills": "\(missing)", "gap.reason": reason]))
        } else {
            reason = "\(fills.count) fills backfilled from REST"
        }
        // The hole's ledger entry (recorded when it was found) is closed: recovered, or what is missing.
        let gap = Gap(
            from: from, to: to, missing: max(0, missing), cause: cause, recovered: missing <= 0, reason: reason)
        actions.append(.recordGaps(stream, [gap]))
        return actions
    }

    /// The REST reply to a `backfill`: the confirmed bars inside the stream's window are emitted, the
    /// rest of the hole is recorded as gaps with `error` (or "not returned by REST") as the reason.
    public mutating func backfillFinished(
        _ stream: StreamID, after: Int64, before: Int64, candles: [Candle], error: String?, now: Instant
    ) -> [SessionAction] {
        var actions: [SessionAction] = []
        guard var entry = entries[stream], case .candles(let tf) = stream.feed else { return actions }
        entry.backfillingUntil = nil
        let window = entry.window
        let hole = tf.openTimes(strictlyBetween: after, and: before)
        let expected = hole.filter { window?.admits(tf.nextOpenTime(after: $0)) ?? true }
        // The hole is accounted for now (stored or recorded as gaps): continuity goes on from its end,
        // so later pushes do not ask for it, or record it, again.
        if let end = hole.last, entry.lastConfirmed ?? .min < end { entry.lastConfirmed = end }
        let wanted = Set(expected)
        let confirmed = candles.filter { $0.isConfirmed && $0.stream == stream && wanted.contains($0.openTime) }
        for candle in confirmed { actions.append(.emit(.candle(candle))) }
        if let newest = confirmed.map(\.openTime).max(), entry.lastConfirmed ?? .min < newest {
            entry.lastConfirmed = newest
        }
        let cause = hole.first.map { entry.closeHole(from: $0) } ?? .reconnect
        entries[stream] = entry
        if !confirmed.isEmpty { actions.append(.backfilled(stream, bars: confirmed.count)) }
        let got = Set(confirmed.map(\.openTime))
        let missing = expected.filter { !got.contains($0) }.count
        guard let first = hole.first, let end = hole.last else { return actions }
        let reason: String
        if missing > 0 {
            reason = error ?? "not returned by REST"
            actions.append(
                .log(
                    .info, "bars missing after backfill",
                    ["stream": "\(stream)", "gap.bars": "\(missing)", "gap.reason": reason]))
        } else {
            reason = "\(confirmed.count) bars backfilled from REST"
        }
        // The hole's ledger entry (recorded when it was found) is closed: recovered, or what is missing.
        let gap = Gap(
            from: first, to: end, missing: missing, cause: cause, recovered: missing == 0, reason: reason)
        actions.append(.recordGaps(stream, [gap]))
        return actions
    }
}
