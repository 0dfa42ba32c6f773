import MarketData
import WireCore

extension OKXParser {
    /// The book channels we collect and the stream depth each one serves (PROTOCOLS.md §1.6).
    static func bookDepth(channel: JSONScanner.RawString, _ scanner: JSONScanner) -> Int?? {
        if scanner.equals(channel, "books") { return .some(nil) }
        if scanner.equals(channel, "books5") { return .some(5) }
        if scanner.equals(channel, "bbo-tbt") { return .some(1) }
        return nil
    }

    /// Book rows (PROTOCOLS.md §1.6): `{"asks":[[px, sz, "0", orders],…],"bids":…,"ts","checksum",
    /// "prevSeqId","seqId"}`. `books` rows are a snapshot or an update as `action` says; `books5` and
    /// `bbo-tbt` rows are whole top-N books (snapshots) without `prevSeqId` or checksum. A checksum of
    /// 0 (OKX's 2026 change) or none is kept as nil: there is nothing to verify.
    @discardableResult
    static func parseBooks(
        _ rows: UnsafeRawBufferPointer, symbol: String, depth: Int?, action: BookMessage.Action, receivedAt: Int64,
        requireSequence: Bool = false, into out: inout [ExchangeMessage]
    ) throws(Failure) -> Int {
        var scanner = JSONScanner(rows)
        do {
            try scanner.readArray { _, s throws(JSONError) in
                var bids: [BookLevel] = []
                var asks: [BookLevel] = []
                var time: JSONScanner.RawString?
                var sequence: Int64?
                var previous: Int64?
                var checksum: Int64?
                try s.readObject { key, s2 throws(JSONError) in
                    if s2.equals(key, "asks") {
                        asks = try readLevels(&s2)
                    } else if s2.equals(key, "bids") {
                        bids = try readLevels(&s2)
                    } else if s2.equals(key, "ts") {
                        time = try s2.readRawString()
                    } else if s2.equals(key, "seqId") {
                        sequence = try s2.readInt64()
                    } else if s2.equals(key, "prevSeqId") {
                        previous = try s2.readInt64()
                    } else if s2.equals(key, "checksum") {
                        checksum = try s2.readInt64()
                    } else {
                        try s2.skipValue()
                    }
                }
                guard let time, let ms = milliseconds(s.bytes(of: time)) else {
                    throw JSONError(offset: s.offset, reason: "book ts is not a millisecond time")
                }
                // Pushes before OKX added `seqId` (older captures) carry none: the event time stands in
                // for the key, and only the checksum checks them.
                let hasSequence = sequence != nil
                if !hasSequence && requireSequence {
                    throw JSONError(offset: s.offset, reason: "book row without seqId")
                }
                if let checksum, checksum < Int64(Int32.min) || checksum > Int64(UInt32.max) {
                    throw JSONError(offset: s.offset, reason: "book checksum is not a 32-bit integer")
                }
                let isFull = depth != nil  // books5 / bbo-tbt: every push is the whole top-N book
                out.append(
                    .event(
                        .book(
                            BookMessage(
                                exchange: .okx, symbol: symbol, sequence: sequence ?? ms * 1000,
                                previousSequence: isFull || !hasSequence ? nil : previous,
                                action: isFull ? .snapshot : action,
                                bids: bids, asks: asks, checksum: checksum == 0 ? nil : checksum,
                                timestampExchange: ms * 1000, timestampCollector: receivedAt, depth: depth))))
            }
        } catch {
            throw .shape("bad book data: \(error.reason)")
        }
        return scanner.offset
    }

    /// `[[px, sz, …], …]`: price and size must be decimals; later fields (the deprecated "0", the
    /// order count) are skipped. OKX's own layout is read by `readLevelsInOKXLayout`; anything else
    /// (whitespace, escapes, numbers) by the general scanner from the same offset.
    static func readLevels(_ s: inout JSONScanner) throws(JSONError) -> [BookLevel] {
        let start = s.offset
        if let levels = readLevelsInOKXLayout(&s) { return levels }
        s.rewind(to: start)
        return try readLevelsInAnyLayout(&s)
    }

    /// Levels an update carries are few; a snapshot's grow the array from there.
    static let expectedLevelCount = 8

    /// The layout fast path (JSONScanner's "Layout fast paths"): `[["px","sz","0","1"],…]` exactly,
    /// every field a plain string, price and size valid decimals. Nil on any difference, including
    /// a field that is not a decimal: the general path then reads the same bytes and names the
    /// error. It opens no nesting level (`take` only): the two array levels are within the
    /// scanner's limit, as they are for the general path at this depth.
    static func readLevelsInOKXLayout(_ s: inout JSONScanner) -> [BookLevel]? {
        guard s.take("[") else { return nil }
        var levels: [BookLevel] = []
        if s.take("]") { return levels }
        levels.reserveCapacity(expectedLevelCount)
        while true {
            guard s.take("[\""), let price = s.readPlainString(), s.take(",\""), let size = s.readPlainString(),
                let priceText = DecimalText(bytes: s.bytes(of: price)),
                let sizeText = DecimalText(bytes: s.bytes(of: size))
            else { return nil }
            // Later fields: OKX's are strings ("0", the order count).
            while s.take(",\"") {
                guard s.readPlainString() != nil else { return nil }
            }
            guard s.take("]") else { return nil }
            levels.append(BookLevel(price: priceText, size: sizeText))
            if s.take(",") { continue }
            return s.take("]") ? levels : nil
        }
    }

    static func readLevelsInAnyLayout(_ s: inout JSONScanner) throws(JSONError) -> [BookLevel] {
        var levels: [BookLevel] = []
        try s.readArray { _, row throws(JSONError) in
            var price: DecimalText?
            var size: DecimalText?
            try row.readArray { i, field throws(JSONError) in
                switch i {
                case 0, 1:
                    let raw = try field.readRawString()
                    guard !raw.hasEscapes, let value = DecimalText(bytes: field.bytes(of: raw)) else {
                        throw JSONError(
                            offset: field.offset, reason: "book level \(i == 0 ? "price" : "size") is not a decimal")
                    }
                    if i == 0 { price = value } else { size = value }
                default:
                    try field.skipValue()
                }
            }
            guard let price, let size else { throw JSONError(offset: row.offset, reason: "book level without size") }
            levels.append(BookLevel(price: price, size: size))
        }
        return levels
    }

    /// The REST book (`GET /api/v5/market/books`): one row with `asks`, `bids`, `ts` and, since
    /// OKX's 2026 change, `seqId` (nil when the reply has none: it cannot seed a book).
    static func parseRESTBook(
        _ body: UnsafeRawBufferPointer, symbol: String, depth: Int?, receivedAt: Int64
    ) throws(RESTError) -> BookMessage? {
        var result: BookMessage?
        var code: String?
        var message = ""
        var scanner = JSONScanner(body)
        do {
            try scanner.readObject { key, s throws(JSONError) in
                if s.equals(key, "code") {
                    code = try s.readString()
                } else if s.equals(key, "msg") {
                    message = try s.readString()
                } else if s.equals(key, "data") {
                    var out: [ExchangeMessage] = []
                    let start = s.offset
                    do throws(Failure) {
                        let end = try parseBooks(
                            UnsafeRawBufferPointer(rebasing: body[start...]), symbol: symbol, depth: nil,
                            action: .snapshot, receivedAt: receivedAt, requireSequence: true, into: &out)
                        s.skip(to: start + end)
                    } catch {
                        throw JSONError(offset: start, reason: error.description)
                    }
                    if case .event(.book(var book))? = out.first {
                        book.depth = depth
                        book.previousSequence = nil
                        result = book
                    }
                } else {
                    try s.skipValue()
                }
            }
            try scanner.expectEnd()
        } catch {
            if error.reason.contains("without seqId") { return nil }
            throw RESTError(code: nil, message: "malformed books reply: \(error.reason)", isRetryable: false)
        }
        guard code == "0" else {
            throw RESTError(code: code, message: message, isRetryable: code == "50011")
        }
        return result
    }
}
