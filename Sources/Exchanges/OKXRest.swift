public import MarketData
import WireCore

/// Why a REST reply could not be used.
public struct RESTError: Error, Sendable, Equatable, CustomStringConvertible {
    /// The exchange's error code (`50011` rate limit, `51001` unknown instrument…), or nil for transport/shape errors.
    public var code: String?
    public var message: String
    /// Whether waiting and retrying may help (rate limits, server errors).
    public var isRetryable: Bool

    public init(code: String?, message: String, isRetryable: Bool) {
        self.code = code
        self.message = message
        self.isRetryable = isRetryable
    }

    public var description: String { code.map { "REST error \($0): \(message)" } ?? "REST error: \(message)" }
}

extension OKXAdapter {
    /// Page sizes: 300 for the recent-candles endpoint, 100 for history-candles (PROTOCOLS.md §1.8).
    public static let recentPageLimit = 300
    public static let historyPageLimit = 100

    /// Whether bars as old as `openTime` are still on the recent endpoint (the latest 1,440 bars) at `now`.
    public static func isRecent(_ openTime: Int64, timeframe: Timeframe, now: Int64) -> Bool {
        timeframe.key != "1s" && now - openTime < Int64(recentCandlesWindow - 2) * timeframe.approximateMicroseconds
    }

    /// One page of bars with open time strictly between `newerThan` and `olderThan` (µs), newest first.
    /// Nil when OKX offers no REST source for the timeframe (then the bars are reported as gaps).
    public func candlePage(_ stream: StreamID, newerThan: Int64, olderThan: Int64, now: Int64) -> RESTRequest? {
        guard case .candles(let tf) = stream.feed, Self.restTimeframes.contains(tf.key) || tf.key == "1s" else {
            return nil
        }
        let recent = Self.isRecent(newerThan, timeframe: tf, now: now)
        let path = recent ? "/api/v5/market/candles" : "/api/v5/market/history-candles"
        let limit = recent ? Self.recentPageLimit : Self.historyPageLimit
        // `after` returns records earlier than it, `before` records newer than it (ms).
        let target =
            "\(path)?instId=\(stream.symbol)&bar=\(tf.key)&after=\(olderThan / 1000)&before=\(newerThan / 1000)&limit=\(limit)"
        return RESTRequest(target: target, budget: recent ? "candles" : "history-candles", pageLimit: limit)
    }

    public func backfillPage(for stream: StreamID, newerThan: Int64, olderThan: Int64, now: Int64) -> RESTRequest? {
        candlePage(stream, newerThan: newerThan, olderThan: olderThan, now: now)
    }

    public func parseBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BackfillPage {
        BackfillPage(candles: try Self.parseCandlesReply(body, stream: stream, receivedAt: receivedAt))
    }

    /// Parses a candles/history-candles reply: `{"code":"0","msg":"","data":[[ts,o,h,l,c,vol,volCcy,volCcyQuote,confirm],…]}`.
    public static func parseCandlesReply(
        _ body: UnsafeRawBufferPointer, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> [Candle] {
        guard case .candles(let tf) = stream.feed else {
            throw RESTError(code: nil, message: "not a candle stream", isRetryable: false)
        }
        let dataStart = try Self.envelope(body)
        guard let dataStart else { return [] }
        var rows = JSONScanner(UnsafeRawBufferPointer(rebasing: body[dataStart...]))
        var candles: [Candle] = []
        do {
            try rows.readArray { _, s throws(JSONError) in
                var fields: [JSONScanner.RawString] = []
                try s.readArray { i, s2 throws(JSONError) in
                    guard i < 12 else { throw JSONError(offset: s2.offset, reason: "row too long") }
                    fields.append(try s2.readRawString())
                }
                guard fields.count == 9 || fields.count == 8,
                    // Bounded like the pushes' times (found by the okx-rest fuzz target: an absurd
                    // `ts` overflowed the conversion to µs and trapped).
                    let ms = OKXParser.milliseconds(s.bytes(of: fields[0])),
                    let o = DecimalText(bytes: s.bytes(of: fields[1])),
                    let h = DecimalText(bytes: s.bytes(of: fields[2])),
                    let l = DecimalText(bytes: s.bytes(of: fields[3])),
                    let c = DecimalText(bytes: s.bytes(of: fields[4])),
                    let v = DecimalText(bytes: s.bytes(of: fields[5])),
                    let q = DecimalText(bytes: s.bytes(of: fields[fields.count == 9 ? 7 : 6]))
                else { throw JSONError(offset: s.offset, reason: "malformed candle row") }
                let confirmed = s.equals(fields[fields.count - 1], "1")
                candles.append(
                    Candle(
                        exchange: .okx, symbol: stream.symbol, timeframe: tf, openTime: ms * 1000, open: o, high: h,
                        low: l, close: c, volume: v, quoteVolume: q, isConfirmed: confirmed,
                        timestampExchange: ms * 1000, timestampCollector: receivedAt))
            }
        } catch {
            throw RESTError(code: nil, message: "malformed candle data: \(error.reason)", isRetryable: false)
        }
        return candles
    }

    /// The `{"code","msg","data"}` envelope: where `data` starts (nil: none), or the exchange's error
    /// (rate limits and server-side errors are retryable).
    static func envelope(_ body: UnsafeRawBufferPointer) throws(RESTError) -> Int? {
        var code: String?
        var message = ""
        var dataStart: Int?
        var scanner = JSONScanner(body)
        do {
            try scanner.readObject { key, s throws(JSONError) in
                if s.equals(key, "code") {
                    code = try s.peek() == UInt8(ascii: "\"") ? s.readString() : String(try s.readInt64())
                } else if s.equals(key, "msg") {
                    message = try s.readString()
                } else if s.equals(key, "data") {
                    dataStart = s.offset
                    try s.skipValue()
                } else {
                    try s.skipValue()
                }
            }
            // Bytes after the object mean a garbled or concatenated body: refuse it whole.
            try scanner.expectEnd()
        } catch {
            throw RESTError(code: nil, message: "malformed reply: \(error)", isRetryable: true)
        }
        guard code == "0" else {
            let retryable = code == "50011" || code == "50001" || code == "50004" || code == "50013"
            throw RESTError(code: code ?? "?", message: message, isRetryable: retryable)
        }
        return dataStart
    }

    /// Trades budget: history-trades 20 requests / 2 s per IP (PROTOCOLS.md §1.8).
    public static let historyTradesPageLimit = 100

    /// One page of fills with ids strictly between `newerThanID` and `olderThanID`, newest first
    /// (`history-trades`, `type=1`: paginated by trade id; the last three months).
    public func tradeBackfillPage(for stream: StreamID, newerThanID: Int64, olderThanID: Int64) -> RESTRequest? {
        guard case .trades = stream.feed, olderThanID - newerThanID > 1 else { return nil }
        // Only `after` (ids below it): how OKX reads `after` and `before` together is not documented
        // (PROTOCOLS.md §1.8), and the fetch keeps just the ids inside the hole anyway.
        let target =
            "/api/v5/market/history-trades?instId=\(stream.symbol)&type=1&after=\(olderThanID)&limit=\(Self.historyTradesPageLimit)"
        return RESTRequest(target: target, budget: "history-trades", pageLimit: Self.historyTradesPageLimit)
    }

    public func parseTradeBackfill(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> [Trade] {
        guard let dataStart = try Self.envelope(body) else { return [] }
        var messages: [ExchangeMessage] = []
        do {
            try OKXParser.parseTrades(
                UnsafeRawBufferPointer(rebasing: body[dataStart...]), symbol: stream.symbol, receivedAt: receivedAt,
                into: &messages)
        } catch {
            throw RESTError(code: nil, message: "malformed trades data: \(error)", isRetryable: false)
        }
        return messages.compactMap { if case .event(.trade(let t)) = $0 { t } else { nil } }
    }
}
