import CollectorCore
import MarketData
import Runtime
import WireCore

/// The trade and ticker channels the simulator serves (PROTOCOLS.md §1.4, §1.7).
enum FeedChannel: String, Sendable {
    /// One row per fill.
    case tradesAll = "trades-all"
    /// One message per taker order and price, `tradeId` = its last fill, `count` = its fills.
    case trades
    /// At most one ticker per 100 ms, when a fill happened since the last one.
    case tickers

    /// OKX serves `trades-all` on /business; the simulator takes it on either path. `trades` and
    /// `tickers` are /public channels, refused elsewhere with 60018 as OKX does.
    func isServed(onBusiness: Bool) -> Bool {
        switch self {
        case .tradesAll: true
        case .trades, .tickers: !onBusiness
        }
    }
}

/// One trade or ticker subscription of a session.
struct FeedSubscription {
    let channel: FeedChannel
    let symbol: String
    /// Trades: the last fill id pushed (a new subscription starts at the newest fill, like candles
    /// start at the forming bar). Tickers: the last fill the last ticker showed, nil before the first.
    var cursor: Int64?
    /// Real time (ns) of the last ticker push.
    var lastPushAt: Int64?
}

extension Session {
    enum FeedLimits {
        /// Fills per `trades-all` message, so a backlog (after `/control/silence`, or a client too
        /// slow to read) goes out as many small frames, never one huge one.
        static let maxFillsPerMessage = 100
        /// Fills pushed per subscription per tick; a larger backlog waits for the next tick.
        static let maxFillsPerTick = 10_000
        /// OKX pushes tickers at most every 100 ms (PROTOCOLS.md §1.7).
        static let tickerIntervalNanoseconds: Int64 = 100_000_000
    }

    var hasFeeds: Bool { !feeds.isEmpty }

    /// Subscribe or unsubscribe one trade or ticker channel; the ack has the candle channels' shape.
    func handleFeedRequest(op: String, id: String?, feed: FeedChannel, instrument: String, argJSON: String) {
        guard feed.isServed(onBusiness: isBusiness), simulator.configuration.symbols.contains(instrument) else {
            sendError(
                id: id, code: "60018",
                message: "Subscribe failed, wrong URL or channel:\(feed.rawValue),instId:\(instrument) doesn't exist."
                    + simulator.configuration.unknownInstrumentHint(instrument))
            return
        }
        let key = "\(feed.rawValue)|\(instrument)"
        if op == "subscribe" {
            if feeds[key] == nil {
                let head = simulator.trades.lastID(instrument, asOf: simulator.virtualNow)
                feeds[key] = FeedSubscription(
                    channel: feed, symbol: instrument, cursor: feed == .tickers ? nil : head, lastPushAt: nil)
            }
        } else {
            feeds[key] = nil
        }
        let idField = id.map { "\"id\":\(JSONText.quoted($0))," } ?? ""
        connection.send(text: "{\(idField)\"event\":\"\(op)\",\"arg\":\(argJSON),\"connId\":\"sim\(connectionID)\"}")
    }

    /// Pushes the fills that happened since the last tick, and tickers that are due. A connection
    /// that is not writable (its output queue is full) gets nothing this tick and catches up later:
    /// the cursor, not a queue, remembers where it was.
    func feedTick(virtualNow: Int64, heads: inout [String: Int64]) {
        guard connection.isOpen, floodRemaining == 0, !simulator.isSilent, connection.isWritable else { return }
        let realNow = simulator.loop.now().nanoseconds
        var pushed = false
        for (key, sub) in feeds {
            let head: Int64
            if let known = heads[sub.symbol] {
                head = known
            } else {
                head = simulator.trades.lastID(sub.symbol, asOf: virtualNow)
                heads[sub.symbol] = head
            }
            switch sub.channel {
            case .tradesAll, .trades:
                // Force-unwrap: trade subscriptions start with a cursor (`handleFeedRequest`).
                let cursor = sub.cursor!
                guard head > cursor else { continue }
                let end = min(head, cursor + Int64(FeedLimits.maxFillsPerTick))
                var fills = simulator.trades.fills(sub.symbol, from: cursor + 1, through: end)
                if sub.channel == .trades && end < head {
                    // Capped: keep an aggregation whole, sending its start with the next tick.
                    let next = simulator.trades.fill(sub.symbol, id: end + 1)
                    while let last = fills.last, TradeModel.sameAggregation(last, next) { fills.removeLast() }
                }
                guard let first = fills.first, let last = fills.last else { continue }
                let messages =
                    sub.channel == .trades ? pushAggregated(fills, symbol: sub.symbol) : push(fills, sub.symbol)
                simulator.emittedTrades[sub.symbol, default: EmittedTradeLog()].record(
                    first.id...last.id, messages: messages)
                feeds[key]?.cursor = last.id
                pushed = true
            case .tickers:
                guard head >= simulator.trades.firstID(sub.symbol), head != sub.cursor else { continue }
                if let at = sub.lastPushAt, realNow - at < FeedLimits.tickerIntervalNanoseconds { continue }
                guard let row = simulator.trades.ticker(sub.symbol, at: virtualNow) else { continue }
                connection.send(
                    text:
                        "{\"arg\":{\"channel\":\"tickers\",\"instId\":\(JSONText.quoted(sub.symbol))},\"data\":[\(row)]}"
                )
                feeds[key]?.cursor = head
                feeds[key]?.lastPushAt = realNow
                pushed = true
            }
        }
        if pushed { lastActivity = realNow }
    }

    /// `trades-all`: the fills in messages of at most `maxFillsPerMessage`. Returns the message count.
    private func push(_ fills: [Fill], _ symbol: String) -> Int {
        let prefix = "{\"arg\":{\"channel\":\"trades-all\",\"instId\":\(JSONText.quoted(symbol))},\"data\":["
        var messages = 0
        var start = 0
        while start < fills.count {
            let end = min(fills.count, start + FeedLimits.maxFillsPerMessage)
            let rows = fills[start..<end].map { TradeModel.webSocketRow($0, symbol: symbol) }
            connection.send(text: prefix + rows.joined(separator: ",") + "]}")
            messages += 1
            start = end
        }
        return messages
    }

    /// `trades`: one message per aggregation. Returns the message count.
    private func pushAggregated(_ fills: [Fill], symbol: String) -> Int {
        let prefix = "{\"arg\":{\"channel\":\"trades\",\"instId\":\(JSONText.quoted(symbol))},\"data\":["
        let aggregated = TradeModel.aggregate(fills)
        for trade in aggregated {
            connection.send(text: prefix + TradeModel.webSocketRow(trade, symbol: symbol) + "]}")
        }
        return aggregated.count
    }
}
