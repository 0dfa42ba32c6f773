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

    /// Validates and copies the bytes once (the parsers' fast path). Valid bytes are ASCII, so they
    /// are copied straight into the string's storage (inline for up to 15 bytes) rather than decoded
    /// as general UTF-8 a second time.
    @inlinable
    public init?(bytes: UnsafeRawBufferPointer) {
        guard Self.isValid(bytes) else { return nil }
        self.text = String(unsafeUninitializedCapacity: bytes.count) { storage in
            UnsafeMutableRawBufferPointer(storage).copyMemory(from: bytes)
            return bytes.count
        }
    }

    public init(stringLiteral value: String) {
        precondition(Self.isValid(value.utf8), "invalid decimal literal \(value)")
        self.text = value
    }

    /// Whether `bytes` spell a finite decimal number.
    public static func isValid(_ bytes: some Collection<UInt8>) -> Bool {
        if let valid = bytes.withContiguousStorageIfAvailable({ isValid(UnsafeRawBufferPointer($0)) }) {
            return valid
        }
        return Array(bytes).withUnsafeBytes { isValid($0) }
    }

    /// Whether `bytes` spell a finite decimal number: `[-+]?digits(.digits)?` with at least one and at
    /// most 60 digits, optionally `e`/`E`, a sign and 1–4 exponent digits. One pass, by index.
    @inlinable
    public static func isValid(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let n = bytes.count
        var i = 0
        if i < n && (bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+")) { i += 1 }
        let integerStart = i
        while i < n && bytes[i] &- 48 < 10 { i += 1 }
        var digits = i - integerStart
        if i < n && bytes[i] == UInt8(ascii: ".") {
            i += 1
            let fractionStart = i
            while i < n && bytes[i] &- 48 < 10 { i += 1 }
            digits += i - fractionStart
        }
        guard digits > 0 && digits <= 60 else { return false }
        if i < n && (bytes[i] == UInt8(ascii: "e") || bytes[i] == UInt8(ascii: "E")) {
            i += 1
            if i < n && (bytes[i] == UInt8(ascii: "-") || bytes[i] == UInt8(ascii: "+")) { i += 1 }
            let exponentStart = i
            while i < n && bytes[i] &- 48 < 10 { i += 1 }
            guard i > exponentStart && i - exponentStart <= 4 else { return false }
        }
        return i == n
    }

    /// The value as a `Double` (for sanity checks only, never for storage).
    public var doubleValue: Double { Double(text) ?? .nan }

    public var description: String { text }
}
