/// Every setting of a collector process (DESIGN.md §7): file, then environment, then flags.
public struct Settings: Equatable, Sendable {
    /// A subscription pinned by the configuration file (`[[markets]]`): always desired.
    public struct Market: Equatable, Sendable {
        public var exchange: String
        public var symbols: [String]
        public var timeframes: [String]
        public var feeds: [String]
        /// Distinct workers that collect each of these streams at once (cluster mode; 1...5).
        public var replicas: Int
        public init(exchange: String, symbols: [String], timeframes: [String], feeds: [String], replicas: Int = 1) {
            self.exchange = exchange
            self.symbols = symbols
            self.timeframes = timeframes
            self.feeds = feeds
            self.replicas = replicas
        }
    }

    public var httpPort = 8000
    /// The numeric address the HTTP API listens on (`HTTP_ADDR`, `--http-addr`, `[collector]
    /// http_addr`); nil: the process's default (see ``effectiveHTTPAddress(tokenSet:)``).
    public var httpAddress: String?
    /// `text` or `json` (`LOG_FORMAT`, `--log-format`, `[collector] log_format`); nil: text when
    /// stderr is a terminal, JSON lines otherwise.
    public var logFormat: String?
    /// Instruments from `MARKETS` / `--markets` (OKX candle streams of ``timeframeKeys``).
    public var marketSymbols: [String]?
    /// Candle timeframes from `TIMEFRAMES` / `--timeframes` for ``marketSymbols`` (default `1m`).
    public var timeframeKeys: [String]?
    public var controlPort = 7070
    public var dataDirectory = "./data"
    public var logLevel = "info"
    /// Requests per second per client on the HTTP API (burst twice that); 0 turns limiting off.
    public var apiRateLimit = 50.0
    public var batchSize = 1000
    /// Seconds.
    public var batchTimeout = 1.0
    public var spoolMaxBytes = 1 << 30
    /// Seconds a graceful shutdown may take before the process exits non-zero (`[collector]
    /// shutdown_deadline`, `SHUTDOWN_DEADLINE`; 1...3600).
    public var shutdownDeadline = 25.0
    /// Seconds a database call may take before it is abandoned (`[storage] database_timeout`,
    /// `DATABASE_TIMEOUT`; 1...600).
    public var databaseTimeout = 30.0
    /// Seconds of exchange time between whole-book snapshot rows of a book stream, besides the one
    /// at every synchronisation (`[storage] book_snapshot_interval`, `BOOK_SNAPSHOT_INTERVAL`;
    /// 0 = only at synchronisations; up to a day).
    public var bookSnapshotInterval = 600.0
    /// Where batches are stored (`[storage] sinks`), in order; one of `Settings.sinkNames` each.
    public var sinks = ["postgres"]
    /// Days to keep each data type, keyed by feed (`candles`, `trades`, `book`, `ticker`); a feed
    /// without an entry is kept forever. File only, one whole number of days (1...36500) per feed:
    ///
    ///     [storage.retention]
    ///     candles = 3650
    ///     trades = 30
    public var retentionDays: [String: Int] = [:]
    /// Seconds of silence before a connection is recycled (`message_timeout`).
    public var messageTimeout = 30.0
    /// Seconds.
    public var connectTimeout = 10.0
    /// Seconds.
    public var leaseTTL = 5.0
    /// Seconds.
    public var heartbeatInterval = 1.0
    /// Control handshakes in progress at once from one address (0: no bound per address).
    public var handshakesPerAddress = 32
    public var okxPublicURL = "wss://ws.okx.com/ws/v5/public"
    public var okxBusinessURL = "wss://ws.okx.com/ws/v5/business"
    public var okxRESTURL = "https://www.okx.com"
    public var markets: [Market] = []

    public init() {}
}

/// A setting that stops start-up, named with where it came from (file line, variable or flag).
public struct SettingsError: Error, Equatable, Sendable, CustomStringConvertible {
    public var message: String
    public init(_ message: String) { self.message = message }
    public var description: String { message }
}

extension Settings {
    static let levels = ["debug", "info", "notice", "warning", "error"]
    /// The log formats `LOG_FORMAT` may name.
    public static let logFormats = ["text", "json"]

    /// Where the HTTP API listens when nothing says: loopback for a process whose API can change
    /// what is collected unless an API token guards it, every address otherwise.
    public func effectiveHTTPAddress(mutatingAPI: Bool, tokenSet: Bool) -> String {
        if let httpAddress { return httpAddress }
        return mutatingAPI && !tokenSet ? "127.0.0.1" : "0.0.0.0"
    }

    /// Whether `text` is a numeric IPv4 or IPv6 address (what a listener binds to; no names).
    static func isNumericAddress(_ text: String) -> Bool {
        if text.contains(":") {
            let allowed = Set("0123456789abcdefABCDEF:.")
            return text.count <= 45 && text.allSatisfy { allowed.contains($0) }
                && text.split(separator: ":", omittingEmptySubsequences: false).count <= 8
        }
        let parts = text.split(separator: ".", omittingEmptySubsequences: false)
        return parts.count == 4
            && parts.allSatisfy { part in
                !part.isEmpty && part.count <= 3 && part.allSatisfy(\.isNumber) && Int(part).map { $0 <= 255 } == true
            }
    }
    /// The data types a retention can be set for (the feeds of `[[markets]]`).
    public static let feedNames = ["candles", "trades", "book", "ticker"]
    /// The sinks `[storage] sinks` may name.
    public static let sinkNames = ["postgres"]
    /// Longest retention in days: 100 years. Longer means "forever", which is the default (no entry).
    static let maxRetentionDays = 36_500

    /// Builds settings from an optional TOML file, the environment and flags (flags win).
    /// `flags` maps long option names without dashes (`http-port`) to values.
    /// `base`: the defaults a file, the environment and flags override (a worker listens on 8081).
    public static func load(
        file: (path: String, text: String)?, environment: [String: String], flags: [String: String],
        base: Settings = Settings()
    ) throws(SettingsError) -> Settings {
        var settings = base
        if let file { try settings.apply(fileText: file.text, path: file.path) }
        try settings.applyEnvironment(environment)
        try settings.applyFlags(flags)
        return settings
    }

    // MARK: File

    mutating func apply(fileText: String, path: String) throws(SettingsError) {
        let root: TOMLTable
        do {
            root = try TOML.parse(fileText)
        } catch {
            throw SettingsError("\(path) \(error)")
        }
        let known = ["collector", "storage", "websocket", "cluster", "aws", "exchanges", "markets"]
        for key in root.keys where !known.contains(key) {
            throw SettingsError(
                "\(path) line \(root.line(of: key) ?? 0): unknown key '\(key)' (expected tables \(known.joined(separator: ", ")))"
            )
        }
        let reader = FileReader(path: path)
        if let t = try reader.table(root, "collector") {
            try reader.only(
                t, "collector",
                [
                    "http_port", "http_addr", "control_port", "data_dir", "log_level", "log_format", "api_rate_limit",
                    "shutdown_deadline",
                ])
            if let v = try reader.seconds(t, "collector", "api_rate_limit", 0...1_000_000) { apiRateLimit = v }
            if let v = try reader.seconds(t, "collector", "shutdown_deadline", 1...3600) { shutdownDeadline = v }
            if let v = try reader.int(t, "collector", "http_port", 0...65535) { httpPort = v }
            if let v = try reader.int(t, "collector", "control_port", 1...65535) { controlPort = v }
            if let v = try reader.string(t, "collector", "data_dir") { dataDirectory = v }
            if let v = try reader.string(t, "collector", "http_addr") {
                guard Self.isNumericAddress(v) else {
                    throw reader.error(t, "http_addr", "must be a numeric IPv4 or IPv6 address, got '\(v)'")
                }
                httpAddress = v
            }
            if let v = try reader.string(t, "collector", "log_format") {
                guard Self.logFormats.contains(v) else {
                    throw reader.error(t, "log_format", "must be text or json, got '\(v)'")
                }
                logFormat = v
            }
            if let v = try reader.string(t, "collector", "log_level") {
                guard Self.levels.contains(v) else {
                    throw reader.error(
                        t, "log_level", "must be one of \(Self.levels.joined(separator: ", ")), got '\(v)'")
                }
                logLevel = v
            }
        }
        if let t = try reader.table(root, "storage") {
            try reader.only(
                t, "storage",
                [
                    "batch_size", "batch_timeout", "spool_max_bytes", "database_timeout",
                    "book_snapshot_interval", "sinks", "retention",
                ])
            if let v = try reader.seconds(t, "storage", "book_snapshot_interval", 0...86_400) {
                bookSnapshotInterval = v
            }
            if let v = try reader.int(t, "storage", "batch_size", 1...100_000) { batchSize = v }
            if let v = try reader.seconds(t, "storage", "batch_timeout", 0.001...60) { batchTimeout = v }
            if let v = try reader.int(t, "storage", "spool_max_bytes", (1 << 20)...(1 << 40)) { spoolMaxBytes = v }
            if let v = try reader.seconds(t, "storage", "database_timeout", 1...600) { databaseTimeout = v }
            if let names = try reader.strings(t, "storage", "sinks") {
                let expected = "(expected \(Self.sinkNames.joined(separator: ", ")))"
                guard !names.isEmpty else { throw reader.error(t, "sinks", "must name at least one sink \(expected)") }
                for (index, name) in names.enumerated() {
                    guard Self.sinkNames.contains(name) else {
                        throw reader.error(t, "sinks", "unknown sink '\(name)' \(expected)")
                    }
                    guard !names[..<index].contains(name) else {
                        throw reader.error(t, "sinks", "lists '\(name)' twice")
                    }
                }
                sinks = names
            }
            if let retention = try reader.table(t, "retention", parent: "storage") {
                try reader.only(retention, "storage.retention", Self.feedNames)
                for feed in Self.feedNames {
                    if let days = try reader.days(retention, feed, 1...Self.maxRetentionDays) {
                        retentionDays[feed] = days
                    }
                }
            }
        }
        if let t = try reader.table(root, "websocket") {
            try reader.only(t, "websocket", ["message_timeout", "connect_timeout"])
            if let v = try reader.seconds(t, "websocket", "message_timeout", 1...3600) { messageTimeout = v }
            if let v = try reader.seconds(t, "websocket", "connect_timeout", 0.1...600) { connectTimeout = v }
        }
        if let t = try reader.table(root, "cluster") {
            try reader.only(t, "cluster", ["lease_ttl", "heartbeat_interval", "handshakes_per_address"])
            if let v = try reader.int(t, "cluster", "handshakes_per_address", 0...100_000) { handshakesPerAddress = v }
            if let v = try reader.seconds(t, "cluster", "lease_ttl", 0.1...3600) { leaseTTL = v }
            if let v = try reader.seconds(t, "cluster", "heartbeat_interval", 0.05...600) { heartbeatInterval = v }
        }
        if root["aws"] != nil {
            // Accepted and ignored would be a lie: S3 arrives in a later release.
            throw SettingsError(
                "\(path) line \(root.line(of: "aws") ?? 0): [aws] is not used yet (S3 storage arrives in a later release): remove it"
            )
        }
        if let exchanges = try reader.table(root, "exchanges") {
            try reader.only(exchanges, "exchanges", ["okx"])
            if let okx = try reader.table(exchanges, "okx", parent: "exchanges") {
                try reader.only(okx, "exchanges.okx", ["ws_public_url", "ws_business_url", "rest_url"])
                if let v = try reader.url(okx, "exchanges.okx", "ws_public_url", schemes: ["ws", "wss"]) {
                    okxPublicURL = v
                }
                if let v = try reader.url(okx, "exchanges.okx", "ws_business_url", schemes: ["ws", "wss"]) {
                    okxBusinessURL = v
                }
                if let v = try reader.url(okx, "exchanges.okx", "rest_url", schemes: ["http", "https"]) {
                    okxRESTURL = v
                }
            }
        }
        switch root["markets"] {
        case nil: break
        case .tableArray(let tables)?:
            for t in tables {
                try reader.only(t, "markets", ["exchange", "symbols", "timeframes", "feeds", "replicas"])
                let replicas = try reader.int(t, "markets", "replicas", 1...5) ?? 1
                let exchange = try reader.string(t, "markets", "exchange") ?? "okx"
                guard ["okx", "binance", "coinbase", "upbit", "bybit"].contains(exchange) else {
                    throw reader.error(t, "exchange", "unknown exchange '\(exchange)'")
                }
                guard let symbols = try reader.strings(t, "markets", "symbols"), !symbols.isEmpty else {
                    throw SettingsError("\(path) line \(t.line): [[markets]] needs a non-empty 'symbols' array")
                }
                let givenTimeframes = try reader.strings(t, "markets", "timeframes")
                let timeframes = givenTimeframes ?? ["1m"]
                var feeds = try reader.strings(t, "markets", "feeds") ?? ["candles"]
                for feed in feeds where !Self.isFeedName(feed) {
                    throw reader.error(
                        t, "feeds", "unknown feed '\(feed)' (candles, trades, book, book:<depth>, ticker)")
                }
                // Timeframes name candle streams: given beside other feeds, they add candles, as the
                // API's subscribe does.
                if givenTimeframes != nil && !feeds.contains("candles") { feeds.append("candles") }
                markets.append(
                    Market(
                        exchange: exchange, symbols: symbols, timeframes: timeframes, feeds: feeds, replicas: replicas))
            }
        case let other?:
            throw SettingsError(
                "\(path) line \(root.line(of: "markets") ?? 0): 'markets' must be [[markets]] tables, not a \(other.typeName)"
            )
        }
    }

    /// `candles`, `trades`, `book`, `book:<1-1000>` (a top-N book channel) or `ticker`.
    static func isFeedName(_ name: String) -> Bool {
        if ["candles", "trades", "book", "ticker"].contains(name) { return true }
        guard name.hasPrefix("book:") else { return false }
        let digits = name.dropFirst(5)
        guard digits.count <= 4, digits.first != "0", let depth = Int(digits) else { return false }
        return (1...1000).contains(depth)
    }

    /// Reads typed values from TOML tables with errors naming the file, line, table and key.
    struct FileReader {
        let path: String

        func error(_ table: TOMLTable, _ key: String, _ problem: String) -> SettingsError {
            SettingsError("\(path) line \(table.line(of: key) ?? table.line): \(key) \(problem)")
        }

        func table(
            _ parent: TOMLTable, _ key: String, parent parentName: String? = nil
        ) throws(SettingsError) -> TOMLTable? {
            switch parent[key] {
            case nil: return nil
            case .table(let t)?: return t
            case let other?:
                let name = parentName.map { "\($0).\(key)" } ?? key
                throw SettingsError(
                    "\(path) line \(parent.line(of: key) ?? 0): '\(name)' must be a table, not a \(other.typeName)")
            }
        }

        func only(_ table: TOMLTable, _ name: String, _ allowed: [String]) throws(SettingsError) {
            for key in table.keys where !allowed.contains(key) {
                throw SettingsError(
                    "\(path) line \(table.line(of: key) ?? table.line): unknown key '\(key)' in [\(name)] (expected \(allowed.joined(separator: ", ")))"
                )
            }
        }

        func int(
            _ table: TOMLTable, _ name: String, _ key: String, _ range: ClosedRange<Int>
        ) throws(SettingsError) -> Int? {
            guard let value = table[key] else { return nil }
            guard case .integer(let v) = value else {
                throw error(table, key, "must be an integer, not a \(value.typeName)")
            }
            guard let n = Int(exactly: v), range.contains(n) else {
                throw error(table, key, "must be between \(range.lowerBound) and \(range.upperBound), got \(v)")
            }
            return n
        }

        func seconds(
            _ table: TOMLTable, _ name: String, _ key: String, _ range: ClosedRange<Double>
        ) throws(SettingsError) -> Double? {
            guard let value = table[key] else { return nil }
            let v: Double
            switch value {
            case .integer(let i): v = Double(i)
            case .float(let f): v = f
            default: throw error(table, key, "must be a number of seconds, not a \(value.typeName)")
            }
            guard range.contains(v) else {
                throw error(table, key, "must be between \(range.lowerBound) and \(range.upperBound) seconds, got \(v)")
            }
            return v
        }

        func days(_ table: TOMLTable, _ key: String, _ range: ClosedRange<Int>) throws(SettingsError) -> Int? {
            guard let value = table[key] else { return nil }
            let expected = "must be a whole number of days from \(range.lowerBound) to \(range.upperBound)"
            guard case .integer(let v) = value else { throw error(table, key, "\(expected), not a \(value.typeName)") }
            guard let n = Int(exactly: v), range.contains(n) else { throw error(table, key, "\(expected), got \(v)") }
            return n
        }

        func string(_ table: TOMLTable, _ name: String, _ key: String) throws(SettingsError) -> String? {
            guard let value = table[key] else { return nil }
            guard case .string(let s) = value else {
                throw error(table, key, "must be a string, not a \(value.typeName)")
            }
            return s
        }

        func strings(_ table: TOMLTable, _ name: String, _ key: String) throws(SettingsError) -> [String]? {
            guard let value = table[key] else { return nil }
            guard case .array(let items) = value else {
                throw error(table, key, "must be an array of strings, not a \(value.typeName)")
            }
            var out: [String] = []
            for item in items {
                guard case .string(let s) = item, !s.isEmpty else {
                    throw error(table, key, "must contain only non-empty strings")
                }
                out.append(s)
            }
            return out
        }

        func url(_ table: TOMLTable, _ name: String, _ key: String, schemes: [String]) throws(SettingsError) -> String?
        {
            guard let s = try string(table, name, key) else { return nil }
            guard schemes.contains(where: { s.hasPrefix($0 + "://") }) else {
                throw error(table, key, "must be a \(schemes.joined(separator: " or ")) URL, got '\(s)'")
            }
            return s
        }
    }

    // MARK: Environment and flags

    mutating func applyEnvironment(_ env: [String: String]) throws(SettingsError) {
        try applyValues(
            [
                ("HTTP_PORT", env["HTTP_PORT"]), ("CONTROL_PORT", env["CONTROL_PORT"]), ("DATA_DIR", env["DATA_DIR"]),
                ("LOG_LEVEL", env["LOG_LEVEL"]), ("BATCH_SIZE", env["BATCH_SIZE"]),
                ("BATCH_TIMEOUT", env["BATCH_TIMEOUT"]),
                ("LEASE_TTL", env["LEASE_TTL"]), ("HEARTBEAT_INTERVAL", env["HEARTBEAT_INTERVAL"]),
                ("HANDSHAKES_PER_ADDRESS", env["HANDSHAKES_PER_ADDRESS"]),
                ("OKX_WS_PUBLIC_URL", env["OKX_WS_PUBLIC_URL"]), ("OKX_WS_BUSINESS_URL", env["OKX_WS_BUSINESS_URL"]),
                ("OKX_REST_URL", env["OKX_REST_URL"]), ("API_RATE_LIMIT", env["API_RATE_LIMIT"]),
                ("SHUTDOWN_DEADLINE", env["SHUTDOWN_DEADLINE"]), ("DATABASE_TIMEOUT", env["DATABASE_TIMEOUT"]),
                ("BOOK_SNAPSHOT_INTERVAL", env["BOOK_SNAPSHOT_INTERVAL"]), ("HTTP_ADDR", env["HTTP_ADDR"]),
                ("LOG_FORMAT", env["LOG_FORMAT"]), ("MARKETS", env["MARKETS"]), ("TIMEFRAMES", env["TIMEFRAMES"]),
            ], naming: { $0 })
    }

    mutating func applyFlags(_ flags: [String: String]) throws(SettingsError) {
        let map = [
            "http-port": "HTTP_PORT", "control-port": "CONTROL_PORT", "data-dir": "DATA_DIR", "log-level": "LOG_LEVEL",
            "http-addr": "HTTP_ADDR", "log-format": "LOG_FORMAT", "markets": "MARKETS", "timeframes": "TIMEFRAMES",
        ]
        var values: [(String, String?)] = []
        for (flag, value) in flags.sorted(by: { $0.key < $1.key }) {
            guard let key = map[flag] else { throw SettingsError("--\(flag): unknown option") }
            values.append((key, value))
        }
        let reverse = Dictionary(uniqueKeysWithValues: map.map { ($1, "--\($0)") })
        try applyValues(values, naming: { reverse[$0] ?? $0 })
    }

    /// Applies string values keyed by environment-variable name; errors use `naming` for the source.
    mutating func applyValues(_ values: [(String, String?)], naming: (String) -> String) throws(SettingsError) {
        for (key, raw) in values {
            guard let raw else { continue }
            let name = naming(key)
            func integer(_ range: ClosedRange<Int>) throws(SettingsError) -> Int {
                guard let n = Int(raw), range.contains(n) else {
                    throw SettingsError(
                        "\(name): expected an integer from \(range.lowerBound) to \(range.upperBound), got '\(raw)'")
                }
                return n
            }
            func seconds(_ range: ClosedRange<Double>) throws(SettingsError) -> Double {
                guard let v = Double(raw), range.contains(v) else {
                    throw SettingsError(
                        "\(name): expected seconds from \(range.lowerBound) to \(range.upperBound), got '\(raw)'")
                }
                return v
            }
            func url(_ schemes: [String]) throws(SettingsError) -> String {
                guard schemes.contains(where: { raw.hasPrefix($0 + "://") }) else {
                    throw SettingsError("\(name): expected a \(schemes.joined(separator: " or ")) URL, got '\(raw)'")
                }
                return raw
            }
            switch key {
            case "HTTP_PORT": httpPort = try integer(0...65535)
            case "CONTROL_PORT": controlPort = try integer(1...65535)
            case "DATA_DIR":
                guard !raw.isEmpty else { throw SettingsError("\(name): must not be empty") }
                dataDirectory = raw
            case "LOG_LEVEL":
                guard Self.levels.contains(raw) else {
                    throw SettingsError("\(name): expected one of \(Self.levels.joined(separator: ", ")), got '\(raw)'")
                }
                logLevel = raw
            case "HTTP_ADDR":
                guard Self.isNumericAddress(raw) else {
                    throw SettingsError("\(name): expected a numeric IPv4 or IPv6 address, got '\(raw)'")
                }
                httpAddress = raw
            case "LOG_FORMAT":
                guard Self.logFormats.contains(raw) else {
                    throw SettingsError("\(name): expected text or json, got '\(raw)'")
                }
                logFormat = raw
            case "MARKETS":
                let symbols = raw.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                guard !symbols.contains(where: \.isEmpty) else {
                    throw SettingsError("\(name): expected instruments separated by commas, got '\(raw)'")
                }
                marketSymbols = symbols
            case "TIMEFRAMES":
                let keys = raw.split(separator: ",", omittingEmptySubsequences: false).map(String.init)
                guard !keys.contains(where: \.isEmpty) else {
                    throw SettingsError("\(name): expected timeframes separated by commas, got '\(raw)'")
                }
                timeframeKeys = keys
            case "BATCH_SIZE": batchSize = try integer(1...100_000)
            case "BATCH_TIMEOUT": batchTimeout = try seconds(0.001...60)
            case "LEASE_TTL": leaseTTL = try seconds(0.1...3600)
            case "HEARTBEAT_INTERVAL": heartbeatInterval = try seconds(0.05...600)
            case "HANDSHAKES_PER_ADDRESS": handshakesPerAddress = try integer(0...100_000)
            case "SHUTDOWN_DEADLINE": shutdownDeadline = try seconds(1...3600)
            case "DATABASE_TIMEOUT": databaseTimeout = try seconds(1...600)
            case "BOOK_SNAPSHOT_INTERVAL": bookSnapshotInterval = try seconds(0...86_400)
            case "OKX_WS_PUBLIC_URL": okxPublicURL = try url(["ws", "wss"])
            case "OKX_WS_BUSINESS_URL": okxBusinessURL = try url(["ws", "wss"])
            case "OKX_REST_URL": okxRESTURL = try url(["http", "https"])
            case "API_RATE_LIMIT":
                guard let v = Double(raw), v >= 0, v <= 1_000_000 else {
                    throw SettingsError("\(name): expected requests per second from 0 to 1000000, got '\(raw)'")
                }
                apiRateLimit = v
            default: break
            }
        }
        if heartbeatInterval >= leaseTTL {
            throw SettingsError(
                "heartbeat_interval (\(heartbeatInterval) s) must be shorter than lease_ttl (\(leaseTTL) s)")
        }
    }
}
