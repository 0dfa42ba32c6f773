/// The exchanges we collect from.
public enum ExchangeName: String, CaseIterable, Sendable, Hashable, Comparable, CustomStringConvertible {
    case okx, binance, coinbase, upbit, bybit
    public var description: String { rawValue }
    public static func < (lhs: ExchangeName, rhs: ExchangeName) -> Bool { lhs.rawValue < rhs.rawValue }
}

/// What a stream carries: `candles:<tf>`, `trades`, `book` (the exchange's full-depth book), `book:<N>`
/// (its top-N book channel, e.g. OKX `book:5` = `books5`, `book:1` = `bbo-tbt`) or `ticker`.
public enum Feed: Hashable, Sendable, CustomStringConvertible {
    case candles(Timeframe)
    case trades
    /// `depth` nil: the exchange's full-depth incremental book; N: its top-N channel.
    case book(depth: Int?)
    case ticker

    /// The full-depth book (`book`).
    public static let fullBook = Feed.book(depth: nil)
    /// Book depths a `book:<N>` feed may name.
    public static let bookDepths = 1...1000

    /// The feed's kind without its timeframe, for metric labels (`candles`, `trades`, …).
    public var kind: String {
        switch self {
        case .candles: "candles"
        case .trades: "trades"
        case .book: "book"
        case .ticker: "ticker"
        }
    }

    public var description: String {
        if case .candles(let tf) = self { return "candles:\(tf.key)" }
        if case .book(let depth?) = self { return "book:\(depth)" }
        return kind
    }

    /// Parses `candles:1m`, `trades`, `book`, `book:5`, `ticker`.
    public init?(_ text: String) {
        switch text {
        case "trades": self = .trades
        case "book": self = .fullBook
        case "ticker": self = .ticker
        default:
            if text.hasPrefix("book:") {
                let digits = text.dropFirst(5)
                guard digits.count <= 4, digits.first != "0", let depth = Int(digits), Self.bookDepths.contains(depth)
                else { return nil }
                self = .book(depth: depth)
                return
            }
            guard text.hasPrefix("candles:"), let tf = Timeframe(String(text.dropFirst(8))) else { return nil }
            self = .candles(tf)
        }
    }
}

/// One subscription at one exchange: (exchange, feed, symbol), e.g. `okx/candles:1m/BTC-USDT`.
public struct StreamID: Hashable, Sendable, Comparable, CustomStringConvertible {
    public var exchange: ExchangeName
    public var feed: Feed
    /// The exchange's own symbol spelling (`BTC-USDT`, `btcusdt`, `KRW-BTC`).
    public var symbol: String

    public init(exchange: ExchangeName, feed: Feed, symbol: String) {
        self.exchange = exchange
        self.feed = feed
        self.symbol = symbol
    }

    public var description: String { "\(exchange)/\(feed)/\(symbol)" }

    public static func < (lhs: StreamID, rhs: StreamID) -> Bool { lhs.description < rhs.description }

    /// Parses `exchange/feed/symbol`.
    public init?(_ text: String) {
        let parts = text.split(separator: "/", maxSplits: 2, omittingEmptySubsequences: false)
        guard parts.count == 3, let exchange = ExchangeName(rawValue: String(parts[0])),
            let feed = Feed(String(parts[1])), !parts[2].isEmpty
        else { return nil }
        self.init(exchange: exchange, feed: feed, symbol: String(parts[2]))
    }
}

/// A decimal number exactly as the exchange wrote it (`"42219.9"`), validated, never rounded.
///
/// Prices and sizes keep the exchange's digits end to end (PostgreSQL `numeric`, Parquet decimal text).
public struct DecimalText: Hashable, Sendable, CustomStringConvertible, ExpressibleByStringLiteral {
    public let text: String

    /// Validates `-?digits(.digits)?` (also accepts a leading `+` and exponent forms `1e-8`).
    public init?(_ text: String) {
        guard Self.isValid(text.utf8) else { return nil }
        self.text = text
    }

    /// Validates and copies the bytes once (the parsers' fast path).
    public init?(bytes: UnsafeRawBufferPointer) {
        guard Self.isValid(bytes) else { return nil }
        self.text = String(decoding: bytes, as: UTF8.self)
    }

    public init(stringLiteral value: String) {
        precondition(Self.isValid(value.utf8), "invalid decimal literal \(value)")
        self.text = value
    }

    /// Whether `bytes` spell a finite decimal number.
    public static func isValid(_ bytes: some Collection<UInt8>) -> Bool {
        var it = bytes.makeIterator()
        var c = it.next()
        if c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { c = it.next() }
        var digits = 0
        while let d = c, d >= 48, d <= 57 {
            digits += 1
            c = it.next()
        }
        if c == UInt8(ascii: ".") {
            c = it.next()
            while let d = c, d >= 48, d <= 57 {
                digits += 1
                c = it.next()
            }
        }
        guard digits > 0 else { return false }
        if c == UInt8(ascii: "e") || c == UInt8(ascii: "E") {
            c = it.next()
            if c == UInt8(ascii: "-") || c == UInt8(ascii: "+") { c = it.next() }
            var expDigits = 0
            while let d = c, d >= 48, d <= 57 {
                expDigits += 1
                c = it.next()
            }
            guard expDigits > 0 && expDigits <= 4 else { return false }
        }
        return c == nil && digits <= 60
    }

    /// The value as a `Double` (for sanity checks only, never for storage).
    public var doubleValue: Double { Double(text) ?? .nan }

    public var description: String { text }
}
