public import MarketData
import WireCore

/// OKX API v5 (PROTOCOLS.md §1): candles on `/ws/v5/business`, everything else on `/ws/v5/public`.
public struct OKXAdapter: ExchangeAdapter {
    /// Endpoints, overridable for the simulator (`OKX_WS_PUBLIC_URL`, `OKX_WS_BUSINESS_URL`, `OKX_REST_URL`).
    public struct Endpoints: Sendable, Equatable {
        public var publicURL: String
        public var businessURL: String
        public var restURL: String

        /// The real hosts on port 443 (8443 reportedly closed on 2026-10-31; PROTOCOLS.md §1.1).
        public static let production = Endpoints(
            publicURL: "wss://ws.okx.com/ws/v5/public", businessURL: "wss://ws.okx.com/ws/v5/business",
            restURL: "https://www.okx.com")

        public init(publicURL: String, businessURL: String, restURL: String) {
            self.publicURL = publicURL
            self.businessURL = businessURL
            self.restURL = restURL
        }
    }

    public let name = ExchangeName.okx
    public let endpoints: Endpoints

    /// OKX limits (PROTOCOLS.md §1.3): 3 connections/s per IP; 480 subscribe requests per hour per
    /// connection; args per request bounded by the 64 KB request size (≈ 100 args of ~60 bytes, with room).
    /// Messages: the largest real one is a 400-level `books` snapshot, ~100 KiB; 1 MiB leaves 10× room.
    public let limits = ExchangeLimits(
        maxStreamsPerConnection: 200, maxStreamsPerSubscribeMessage: 100,
        subscribeMessages: TokenBucket(capacity: 20, refillPerSecond: 480.0 / 3600.0),
        connections: TokenBucket(requests: 3, per: 1), maxMessageBytes: 1 << 20)

    /// Text `ping` after 20 s of silence (OKX drops connections silent for 30 s).
    public let keepalive = KeepalivePolicy.textPing("ping", reply: "pong", idle: .seconds(20))

    public var restBudgets: [String: TokenBucket] { Self.restBudgets }

    /// REST budgets: candles 40 requests / 2 s, history-candles 20 requests / 2 s (per IP).
    public static let restBudgets: [String: TokenBucket] = [
        "candles": TokenBucket(requests: 40, per: 2), "history-candles": TokenBucket(requests: 20, per: 2),
        "history-trades": TokenBucket(requests: 20, per: 2), "books": TokenBucket(requests: 40, per: 2),
    ]

    /// `books`: 400 levels chained by `prevSeqId` with the CRC-32 checksum; `books5` and `bbo-tbt`:
    /// whole 5- and 1-level books (PROTOCOLS.md §1.6).
    public func bookRules(for stream: StreamID) -> BookRules {
        guard case .book(let depth) = stream.feed, let depth else {
            return BookRules(maxDepth: 400, sequencing: .previousSequence, checksum: .okxCRC32)
        }
        return BookRules(maxDepth: depth, sequencing: .wholeBooks, checksum: .none)
    }

    /// `GET /api/v5/market/books?instId=…&sz=400` (40 requests / 2 s): since OKX's 2026 change it
    /// carries the book's `seqId`, which seeds a `books` stream (§1.6 point 2).
    public func bookSnapshotRequest(for stream: StreamID) -> RESTRequest? {
        guard case .book(nil) = stream.feed else { return nil }
        return RESTRequest(
            target: "/api/v5/market/books?instId=\(stream.symbol)&sz=400", budget: "books",
            pageLimit: 1)
    }

    public func parseBookSnapshot(
        _ body: UnsafeRawBufferPointer, request: RESTRequest, stream: StreamID, receivedAt: Int64
    ) throws(RESTError) -> BookMessage? {
        guard case .book(let depth) = stream.feed else {
            throw RESTError(code: nil, message: "\(stream) is not a book stream", isRetryable: false)
        }
        return try OKXParser.parseRESTBook(body, symbol: stream.symbol, depth: depth, receivedAt: receivedAt)
    }

    /// The recent-candles endpoint covers the latest 1,440 bars.
    public static let recentCandlesWindow = 1440

    public init(endpoints: Endpoints = .production) { self.endpoints = endpoints }

    /// OKX's candle channels (the `candle` + key names in §1.5): every key we know.
    public static let candleTimeframes: Set<String> = Set(Timeframe.all.map(\.key))

    /// Bars the REST candle endpoints serve (§1.8): no `5D`/`5Dutc`; `1s` from history-candles only.
    public static let restTimeframes: Set<String> = [
        "1m", "3m", "5m", "15m", "30m", "1H", "2H", "4H", "6H", "12H", "1D", "2D", "3D", "1W", "1M", "3M", "6Hutc",
        "12Hutc", "1Dutc", "2Dutc", "3Dutc", "1Wutc", "1Mutc", "3Mutc",
    ]

    public func validate(_ stream: StreamID) -> String? {
        guard stream.exchange == .okx else { return "not an OKX stream" }
        switch stream.feed {
        case .candles(let tf):
            guard Self.candleTimeframes.contains(tf.key) else { return "OKX has no candle channel for \(tf.key)" }
        case .trades, .ticker:
            break
        case .book(let depth):
            guard depth == nil || depth == 5 || depth == 1 else {
                return
                    "OKX has no public book channel of depth \(depth ?? 0): book (books, 400 levels), book:5 (books5) or book:1 (bbo-tbt)"
            }
        }
        guard Self.isValidInstrument(stream.symbol) else {
            return "'\(stream.symbol)' is not an OKX instrument id (e.g. BTC-USDT)"
        }
        return nil
    }

    /// OKX instrument ids: upper-case letters, digits and dashes, e.g. `BTC-USDT`, `BTC-USDT-SWAP`.
    static func isValidInstrument(_ symbol: String) -> Bool {
        !symbol.isEmpty && symbol.count <= 40 && symbol.utf8.contains(UInt8(ascii: "-"))
            && symbol.utf8.allSatisfy {
                ($0 >= 65 && $0 <= 90) || ($0 >= 48 && $0 <= 57) || $0 == UInt8(ascii: "-")
            }
    }

    /// Candles and per-fill trades (`trades-all`) are on `/ws/v5/business`; the rest on `/public`.
    public func webSocketURL(for feed: Feed) -> String {
        switch feed {
        case .candles, .trades: endpoints.businessURL
        case .book, .ticker: endpoints.publicURL
        }
    }

    /// OKX's channel name for a feed.
    public static func channel(for feed: Feed) -> String {
        switch feed {
        case .candles(let tf): "candle" + tf.key
        // One message per fill (PROTOCOLS.md §1.4). The `trades` channel on /public aggregates a taker
        // order's fills into one message (`tradeId` the last, `count` how many), which cannot be split
        // into fills (sizes per fill are not sent): it is not used, so one id space holds fills only.
        case .trades: "trades-all"
        case .book(nil): "books"
        case .book(let depth?): depth == 1 ? "bbo-tbt" : "books\(depth)"
        case .ticker: "tickers"
        }
    }

    /// The stream a channel/instId pair names, if it is one we collect.
    public static func stream(channel: String, instrument: String) -> StreamID? {
        switch channel {
        case "trades-all": return StreamID(exchange: .okx, feed: .trades, symbol: instrument)
        case "tickers": return StreamID(exchange: .okx, feed: .ticker, symbol: instrument)
        case "books": return StreamID(exchange: .okx, feed: .fullBook, symbol: instrument)
        case "books5": return StreamID(exchange: .okx, feed: .book(depth: 5), symbol: instrument)
        case "bbo-tbt": return StreamID(exchange: .okx, feed: .book(depth: 1), symbol: instrument)
        default:
            guard channel.hasPrefix("candle"), let tf = Timeframe(String(channel.dropFirst(6))) else { return nil }
            return StreamID(exchange: .okx, feed: .candles(tf), symbol: instrument)
        }
    }

    /// OKX answers every subscribe request (`event: subscribe` or `event: error` with the request id).
    public let acknowledgement = AcknowledgementPolicy.explicit

    public func webSocketURL(for stream: StreamID) -> String { webSocketURL(for: stream.feed) }

    public func subscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        subscribeMessages(for: streams, requestID: requestID).map(OutgoingFrame.text)
    }

    public func unsubscribeMessages(
        for streams: [StreamID], requestID: String, context: SubscribeContext
    ) -> [OutgoingFrame] {
        unsubscribeMessages(for: streams, requestID: requestID).map(OutgoingFrame.text)
    }

    /// The subscribe message's text (one request; the session keeps it within the per-message limit).
    public func subscribeMessages(for streams: [StreamID], requestID: String) -> [String] {
        operationMessages("subscribe", streams, requestID: requestID)
    }

    public func unsubscribeMessages(for streams: [StreamID], requestID: String) -> [String] {
        operationMessages("unsubscribe", streams, requestID: requestID)
    }

    public func parse(
        _ frame: UnsafeRawBufferPointer, isText: Bool, receivedAt: Int64, state: inout NoConnectionState,
        into out: inout [ExchangeMessage]
    ) throws(ExchangeParseError) {
        try parse(frame, receivedAt: receivedAt, into: &out)
    }

    /// One request for `streams` (the session splits to `maxStreamsPerSubscribeMessage`).
    private func operationMessages(_ op: String, _ streams: [StreamID], requestID: String) -> [String] {
        let args = streams.map {
            "{\"channel\":\(JSONText.quoted(Self.channel(for: $0.feed))),\"instId\":\(JSONText.quoted($0.symbol))}"
        }
        return ["{\"id\":\(JSONText.quoted(requestID)),\"op\":\"\(op)\",\"args\":[\(args.joined(separator: ","))]}"]
    }

    /// Parses one text frame (OKX sends text only; state-free).
    public func parse(
        _ frame: UnsafeRawBufferPointer, receivedAt: Int64, into out: inout [ExchangeMessage]
    )
        throws(ExchangeParseError)
    {
        if frame.count == 4 && frame[0] == UInt8(ascii: "p") && frame[1] == UInt8(ascii: "o")
            && frame[2] == UInt8(ascii: "n") && frame[3] == UInt8(ascii: "g")
        {
            out.append(.pong)
            return
        }
        do {
            try OKXParser.parse(frame, receivedAt: receivedAt, into: &out)
        } catch {
            throw ExchangeParseError(error.description)
        }
    }
}

/// The OKX v5 push/event parser (pure, allocation-light).
enum OKXParser {
    enum Failure: Error, CustomStringConvertible {
        case json(JSONError)
        case shape(String)
        var description: String {
            switch self {
            case .json(let e): "\(e)"
            case .shape(let s): s
            }
        }
    }

    static func parse(
        _ frame: UnsafeRawBufferPointer, receivedAt: Int64, into out: inout [ExchangeMessage]
    )
        throws(Failure)
    {
        if try parsePushFast(frame, receivedAt: receivedAt, into: &out) { return }
        var scanner = JSONScanner(frame)
        var event: JSONScanner.RawString?
        var channel: JSONScanner.RawString?
        var instrument: JSONScanner.RawString?
        var code: JSONScanner.RawString?
        var message: JSONScanner.RawString?
        var requestID: JSONScanner.RawString?
        var action: JSONScanner.RawString?
        var dataStart: Int? = nil
        var dataParsed = false
        var dataFailure: Failure?
        // Events read from `data` go straight into `out`; a frame that turns out malformed later throws,
        // and callers drop what a failed parse appended.
        let mark = out.count
        do {
            guard scanner.peek() == UInt8(ascii: "{") else { throw Failure.shape("not a JSON object") }
            try scanner.readObject { key, s throws(JSONError) in
                if s.equals(key, "arg") {
                    try s.readObject { k, s2 throws(JSONError) in
                        if s2.equals(k, "channel") {
                            channel = try s2.readRawString()
                        } else if s2.equals(k, "instId") {
                            instrument = try s2.readRawString()
                        } else {
                            try s2.skipValue()
                        }
                    }
                } else if s.equals(key, "data") {
                    if let channel, event == nil {
                        // `arg` came first (OKX's order): read the rows now, in one pass.
                        do throws(Failure) {
                            let end = try parseData(
                                frame, channel: channel, instrument: instrument, action: action,
                                dataStart: s.offset, receivedAt: receivedAt, into: &out)
                            s.skip(to: end)
                            dataParsed = true
                        } catch {
                            dataFailure = error
                            throw JSONError(offset: s.offset, reason: "bad data")
                        }
                    } else {
                        // Data may come before "arg": remember where it starts and read it afterwards.
                        dataStart = s.offset
                        try s.skipValue()
                    }
                } else if s.equals(key, "event") {
                    event = try s.readRawString()
                } else if s.equals(key, "action") {
                    action = try s.readRawString()
                } else if s.equals(key, "code") {
                    code = try s.peek() == UInt8(ascii: "\"") ? s.readRawString() : numberAsRaw(&s)
                } else if s.equals(key, "msg") {
                    message = try s.readRawString()
                } else if s.equals(key, "id") {
                    requestID = try s.readRawString()
                } else {
                    try s.skipValue()
                }
            }
            try scanner.expectEnd()
        } catch let error as JSONError {
            if let dataFailure { throw dataFailure }
            throw .json(error)
        } catch let error as Failure {
            throw error
        } catch {
            throw .shape("\(error)")
        }

        func text(_ raw: JSONScanner.RawString?) -> String { raw.map { scanner.string($0) } ?? "" }
        if dataParsed && event != nil { out.removeSubrange(mark...) }  // an event frame: its data is not ours

        if let event {
            let stream = channel.flatMap { c in
                OKXAdapter.stream(channel: scanner.string(c), instrument: text(instrument))
            }
            if scanner.equals(event, "subscribe") {
                guard let stream else {
                    out.append(.unhandled(kind: "subscribe:\(text(channel))"))
                    return
                }
                out.append(.subscribed(stream))
            } else if scanner.equals(event, "unsubscribe") {
                guard let stream else {
                    out.append(.unhandled(kind: "unsubscribe:\(text(channel))"))
                    return
                }
                out.append(.unsubscribed(stream))
            } else if scanner.equals(event, "error") {
                let msg = text(message)
                let codeText = text(code)
                // Subscribe failures name the channel and instId in the message (PROTOCOLS.md §1.2).
                if let named = streamNamed(inErrorMessage: msg) ?? stream {
                    out.append(
                        .subscriptionRejected(
                            stream: named, requestID: requestID.map { scanner.string($0) }, code: codeText, message: msg
                        ))
                } else if let requestID {
                    out.append(
                        .subscriptionRejected(
                            stream: nil, requestID: scanner.string(requestID), code: codeText, message: msg))
                } else {
                    out.append(.error(code: codeText, message: msg))
                }
            } else if scanner.equals(event, "notice") {
                let codeText = text(code)
                out.append(.notice(code: codeText, message: text(message), reconnectSoon: codeText == "64008"))
            } else {
                out.append(.unhandled(kind: "event:\(text(event))"))
            }
            return
        }
        if dataParsed {
            // Read as it came, `arg` having come first; an `action` after `data` still applies.
            if let action, scanner.equals(action, "snapshot") {
                for i in mark..<out.count {
                    guard case .event(.book(var book)) = out[i], book.depth == nil else { continue }
                    book.action = .snapshot
                    out[i] = .event(.book(book))
                }
            }
            return
        }
        guard let channel, let dataStart else {
            throw .shape("neither an event nor a data push")
        }
        _ = try parseData(
            frame, channel: channel, instrument: instrument, action: action, dataStart: dataStart,
            receivedAt: receivedAt, into: &out)
    }

    /// A data push in OKX's own layout, byte for byte (PROTOCOLS.md §1.4–§1.6):
    /// `{"arg":{"channel":"…","instId":"…"},["action":"…",]"data":[…]}`. True when read; false
    /// (nothing appended) for any other layout, which `parse` then reads with the general, order-free
    /// path — so a frame is accepted or refused the same way whichever path reads it.
    @inline(__always)
    private static func parsePushFast(
        _ frame: UnsafeRawBufferPointer, receivedAt: Int64, into out: inout [ExchangeMessage]
    ) throws(Failure) -> Bool {
        var scanner = JSONScanner(frame)
        guard scanner.take(#"{"arg":{"channel":""#), let channel = scanner.readPlainString(),
            scanner.take(#","instId":""#), let instrument = scanner.readPlainString(), scanner.take("},")
        else { return false }
        var action: JSONScanner.RawString?
        if scanner.take(#""action":""#) {
            guard let a = scanner.readPlainString(), scanner.take(",") else { return false }
            action = a
        }
        guard scanner.take(#""data":"#) else { return false }
        let mark = out.count
        // A malformed `data` fails here exactly as in the general path, which reads it the same way
        // as soon as it has seen `arg`.
        let end = try parseData(
            frame, channel: channel, instrument: instrument, action: action, dataStart: scanner.offset,
            receivedAt: receivedAt, into: &out)
        scanner.skip(to: end)
        guard scanner.take("}"), scanner.offset == frame.count else {
            // More members (or whitespace) after `data`: the general path decides what the frame is.
            out.removeSubrange(mark...)
            return false
        }
        return true
    }

    /// The `data` array at `dataStart` of a push on `channel` (ranges in `frame`): its events appended
    /// to `out`; returns the offset just past the array.
    static func parseData(
        _ frame: UnsafeRawBufferPointer, channel: JSONScanner.RawString, instrument: JSONScanner.RawString?,
        action: JSONScanner.RawString?, dataStart: Int, receivedAt: Int64, into out: inout [ExchangeMessage]
    ) throws(Failure) -> Int {
        let scanner = JSONScanner(frame)
        if let depth = bookDepth(channel: channel, scanner) {
            guard let instrument, !instrument.range.isEmpty else { throw .shape("book push without instId") }
            // An `action` after `data` is applied by the caller.
            var kind = BookMessage.Action.update
            if let action {
                if scanner.equals(action, "snapshot") {
                    kind = .snapshot
                } else if !scanner.equals(action, "update") {
                    throw .shape("unknown book action \(scanner.string(action))")
                }
            }
            let rows = UnsafeRawBufferPointer(rebasing: frame[dataStart...])
            return dataStart
                + (try parseBooks(
                    rows, symbol: scanner.string(instrument), depth: depth, action: kind, receivedAt: receivedAt,
                    into: &out))
        }
        if scanner.equals(channel, "trades-all") || scanner.equals(channel, "tickers") {
            guard let instrument, !instrument.range.isEmpty else { throw .shape("push without instId") }
            let symbol = scanner.string(instrument)
            let rows = UnsafeRawBufferPointer(rebasing: frame[dataStart...])
            if scanner.equals(channel, "trades-all") {
                return dataStart + (try parseTrades(rows, symbol: symbol, receivedAt: receivedAt, into: &out))
            }
            return dataStart + (try parseTickers(rows, symbol: symbol, receivedAt: receivedAt, into: &out))
        }
        guard scanner.hasPrefix(channel, "candle") else {
            out.append(.unhandled(kind: "channel:\(scanner.string(channel))"))
            var rest = JSONScanner(UnsafeRawBufferPointer(rebasing: frame[dataStart...]))
            do {
                try rest.skipValue()
            } catch {
                throw .json(error)
            }
            return dataStart + rest.offset
        }
        let channelBytes = scanner.bytes(of: channel)
        guard !channel.hasEscapes,
            let timeframe = Timeframe.matching(UnsafeRawBufferPointer(rebasing: channelBytes[6...]))
        else {
            throw .shape("unknown candle channel \(scanner.string(channel))")
        }
        guard let instrument, !instrument.range.isEmpty else { throw .shape("candle push without instId") }
        let symbol = scanner.string(instrument)
        var rows = JSONScanner(UnsafeRawBufferPointer(rebasing: frame[dataStart...]))
        do {
            try rows.readArray { _, s throws(JSONError) in
                // Up to 9 fields, kept on the stack (no per-row array).
                var fields = FieldList()
                try s.readArray { i, s2 throws(JSONError) in
                    guard i < FieldList.capacity else {
                        throw JSONError(
                            offset: s2.offset, reason: "candle row longer than \(FieldList.capacity) fields")
                    }
                    fields.append(try s2.readRawString())
                }
                guard
                    let candle = makeCandle(
                        fields, scanner: s, symbol: symbol, timeframe: timeframe, receivedAt: receivedAt)
                else { throw JSONError(offset: s.offset, reason: "malformed candle row") }
                out.append(.event(.candle(candle)))
            }
        } catch {
            throw .shape("bad candle data: \(error.reason)")
        }
        return dataStart + rows.offset
    }

    /// A fixed-capacity list of row fields (avoids a heap allocation per candle).
    struct FieldList {
        static let capacity = 9
        private var storage:
            (
                JSONScanner.RawString, JSONScanner.RawString, JSONScanner.RawString, JSONScanner.RawString,
                JSONScanner.RawString, JSONScanner.RawString, JSONScanner.RawString, JSONScanner.RawString,
                JSONScanner.RawString
            )
        private(set) var count = 0

        init() {
            let empty = JSONScanner.RawString(range: 0..<0, hasEscapes: false)
            storage = (empty, empty, empty, empty, empty, empty, empty, empty, empty)
        }

        mutating func append(_ value: JSONScanner.RawString) {
            withUnsafeMutableBytes(of: &storage) {
                $0.baseAddress!.assumingMemoryBound(to: JSONScanner.RawString.self)[count] = value
            }
            count += 1
        }

        subscript(_ i: Int) -> JSONScanner.RawString {
            precondition(i < count, "field index out of range")
            return withUnsafeBytes(of: storage) {
                $0.baseAddress!.assumingMemoryBound(to: JSONScanner.RawString.self)[i]
            }
        }
    }

    private static func numberAsRaw(_ s: inout JSONScanner) throws(JSONError) -> JSONScanner.RawString {
        JSONScanner.RawString(range: try s.readNumberText(), hasEscapes: false)
    }

    /// Builds a candle from `[ts, o, h, l, c, vol, volCcy, volCcyQuote, confirm]` (8 fields: no volCcyQuote).
    private static func makeCandle(
        _ f: FieldList, scanner: JSONScanner, symbol: String, timeframe: Timeframe, receivedAt: Int64
    ) -> Candle? {
        guard f.count == 9 || f.count == 8 else { return nil }
        guard let ms = OKXParser.milliseconds(scanner.bytes(of: f[0])) else { return nil }
        func decimal(_ i: Int) -> DecimalText? { DecimalText(bytes: scanner.bytes(of: f[i])) }
        guard let o = decimal(1), let h = decimal(2), let l = decimal(3), let c = decimal(4), let v = decimal(5),
            let q = decimal(f.count == 9 ? 7 : 6)
        else { return nil }
        let confirm = f[f.count - 1]
        let confirmed: Bool
        if scanner.equals(confirm, "1") {
            confirmed = true
        } else if scanner.equals(confirm, "0") {
            confirmed = false
        } else {
            return nil
        }
        return Candle(
            exchange: .okx, symbol: symbol, timeframe: timeframe, openTime: ms * 1000, open: o, high: h, low: l,
            close: c, volume: v, quoteVolume: q, isConfirmed: confirmed, timestampExchange: ms * 1000,
            timestampCollector: receivedAt)
    }

    /// Finds `channel:X,instId:Y` in an OKX error message.
    static func streamNamed(inErrorMessage message: String) -> StreamID? {
        guard let afterChannel = message.substring(after: "channel:") else { return nil }
        let channel = afterChannel.prefix { $0 != "," && $0 != " " }
        guard let afterInstrument = afterChannel.substring(after: "instId:") else { return nil }
        let instrument = afterInstrument.prefix { $0 != "," && $0 != " " }
        return OKXAdapter.stream(channel: String(channel), instrument: String(instrument))
    }
}

extension StringProtocol {
    /// The text after the first occurrence of `marker`, or nil (no Foundation in pure targets).
    func substring(after marker: String) -> SubSequence? {
        let m = Array(marker.utf8)
        let u = Array(utf8)
        guard !m.isEmpty, u.count >= m.count else { return nil }
        for start in 0...(u.count - m.count) where u[start] == m[0] && Array(u[start..<start + m.count]) == m {
            let index = utf8.index(utf8.startIndex, offsetBy: start + m.count)
            return self[index...]
        }
        return nil
    }
}
