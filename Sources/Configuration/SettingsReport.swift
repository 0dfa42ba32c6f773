/// One setting as `config check` shows it: its name, the value in effect and where that came from.
public struct SettingReport: Equatable, Sendable {
    /// The file key (`storage.batch_size`), or the variable for settings only the environment has.
    public var name: String
    /// The value in effect; a secret shows only `set` or `unset`.
    public var value: String
    /// `default`, `FILE line N`, `environment NAME` or `flag --name`.
    public var source: String

    public init(name: String, value: String, source: String) {
        self.name = name
        self.value = value
        self.source = source
    }
}

extension Settings {
    /// A setting with its file key, variable and flag (any may be absent) and how its value prints.
    struct Descriptor: Sendable {
        var table: [String]
        var key: String
        var environment: String?
        var flag: String?
        var value: @Sendable (Settings) -> String
    }

    static func seconds(_ v: Double) -> String {
        v == v.rounded() && abs(v) < 1e15 ? "\(Int(v)) s" : "\(v) s"
    }

    /// Every setting `Settings` holds, in the order `config check` prints them.
    static let descriptors: [Descriptor] =
        [
            Descriptor(table: ["collector"], key: "http_port", environment: "HTTP_PORT", flag: "http-port") {
                "\($0.httpPort)"
            },
            Descriptor(table: ["collector"], key: "http_addr", environment: "HTTP_ADDR", flag: "http-addr") {
                $0.httpAddress ?? "(the process's default)"
            },
            Descriptor(table: ["collector"], key: "control_port", environment: "CONTROL_PORT", flag: "control-port") {
                "\($0.controlPort)"
            },
            Descriptor(table: ["collector"], key: "data_dir", environment: "DATA_DIR", flag: "data-dir") {
                $0.dataDirectory
            },
            Descriptor(table: ["collector"], key: "log_level", environment: "LOG_LEVEL", flag: "log-level") {
                $0.logLevel
            },
            Descriptor(table: ["collector"], key: "log_format", environment: "LOG_FORMAT", flag: "log-format") {
                $0.logFormat ?? "text on a terminal, else json"
            },
            Descriptor(table: ["collector"], key: "api_rate_limit", environment: "API_RATE_LIMIT", flag: nil) {
                $0.apiRateLimit == 0 ? "off" : "\($0.apiRateLimit) requests/s per client"
            },
            Descriptor(table: ["collector"], key: "shutdown_deadline", environment: "SHUTDOWN_DEADLINE", flag: nil) {
                seconds($0.shutdownDeadline)
            },
            Descriptor(table: ["storage"], key: "batch_size", environment: "BATCH_SIZE", flag: nil) {
                "\($0.batchSize)"
            },
            Descriptor(table: ["storage"], key: "batch_timeout", environment: "BATCH_TIMEOUT", flag: nil) {
                seconds($0.batchTimeout)
            },
            Descriptor(table: ["storage"], key: "spool_max_bytes", environment: nil, flag: nil) {
                "\($0.spoolMaxBytes)"
            },
            Descriptor(table: ["storage"], key: "database_timeout", environment: "DATABASE_TIMEOUT", flag: nil) {
                seconds($0.databaseTimeout)
            },
            Descriptor(
                table: ["storage"], key: "book_snapshot_interval", environment: "BOOK_SNAPSHOT_INTERVAL", flag: nil
            ) {
                $0.bookSnapshotInterval == 0 ? "off" : seconds($0.bookSnapshotInterval)
            },
            Descriptor(table: ["storage"], key: "sinks", environment: nil, flag: nil) {
                $0.sinks.joined(separator: ",")
            },
        ]
        + feedNames.map { feed in
            Descriptor(table: ["storage", "retention"], key: feed, environment: nil, flag: nil) {
                $0.retentionDays[feed].map { "\($0) days" } ?? "forever"
            }
        }
        + [
            Descriptor(table: ["websocket"], key: "message_timeout", environment: nil, flag: nil) {
                seconds($0.messageTimeout)
            },
            Descriptor(table: ["websocket"], key: "connect_timeout", environment: nil, flag: nil) {
                seconds($0.connectTimeout)
            },
            Descriptor(table: ["cluster"], key: "lease_ttl", environment: "LEASE_TTL", flag: nil) {
                seconds($0.leaseTTL)
            },
            Descriptor(table: ["cluster"], key: "heartbeat_interval", environment: "HEARTBEAT_INTERVAL", flag: nil) {
                seconds($0.heartbeatInterval)
            },
            Descriptor(
                table: ["cluster"], key: "handshakes_per_address", environment: "HANDSHAKES_PER_ADDRESS", flag: nil
            ) {
                $0.handshakesPerAddress == 0 ? "no bound" : "\($0.handshakesPerAddress)"
            },
            Descriptor(
                table: ["exchanges", "okx"], key: "ws_public_url", environment: "OKX_WS_PUBLIC_URL", flag: nil
            ) { $0.okxPublicURL },
            Descriptor(
                table: ["exchanges", "okx"], key: "ws_business_url", environment: "OKX_WS_BUSINESS_URL", flag: nil
            ) { $0.okxBusinessURL },
            Descriptor(table: ["exchanges", "okx"], key: "rest_url", environment: "OKX_REST_URL", flag: nil) {
                $0.okxRESTURL
            },
            Descriptor(table: [], key: "markets", environment: "MARKETS", flag: "markets") {
                $0.marketSymbols?.joined(separator: ",") ?? "(none: BTC-USDT when the file pins no [[markets]])"
            },
            Descriptor(table: [], key: "timeframes", environment: "TIMEFRAMES", flag: "timeframes") {
                $0.timeframeKeys?.joined(separator: ",") ?? "1m"
            },
        ]

    /// Where each setting's value came from: the flag when one was given, else the variable, else
    /// the file's line, else the default (the order ``load(file:environment:flags:base:)`` applies
    /// them in). `[[markets]]` tables are listed one row each with their line.
    public static func report(
        _ settings: Settings, file: (path: String, text: String)?, environment: [String: String],
        flags: [String: String]
    ) -> [SettingReport] {
        // The file parsed when the settings were loaded; parsed again only for its line numbers.
        var root: TOMLTable?
        if let file {
            do { root = try TOML.parse(file.text) } catch { root = nil }
        }
        func fileLine(_ path: [String], _ key: String) -> Int? {
            guard var table = root else { return nil }
            for name in path {
                guard case .table(let next)? = table[name] else { return nil }
                table = next
            }
            return table[key] == nil ? nil : table.line(of: key)
        }
        var rows: [SettingReport] = []
        for descriptor in descriptors {
            let source: String
            if let flag = descriptor.flag, flags[flag] != nil {
                source = "flag --\(flag)"
            } else if let variable = descriptor.environment, environment[variable] != nil {
                source = "environment \(variable)"
            } else if let file, let line = fileLine(descriptor.table, descriptor.key) {
                source = "\(file.path) line \(line)"
            } else {
                source = "default"
            }
            let name = (descriptor.table + [descriptor.key]).joined(separator: ".")
            rows.append(SettingReport(name: name, value: descriptor.value(settings), source: source))
        }
        var lines: [Int] = []
        if case .tableArray(let tables)? = root?["markets"] { lines = tables.map(\.line) }
        for (index, market) in settings.markets.enumerated() {
            var value =
                "\(market.exchange) \(market.symbols.joined(separator: ",")): \(market.feeds.joined(separator: ","))"
            if market.feeds.contains("candles") { value += " (timeframes \(market.timeframes.joined(separator: ",")))" }
            if market.replicas > 1 { value += ", replicas \(market.replicas)" }
            let line = index < lines.count ? " line \(lines[index])" : ""
            rows.append(
                SettingReport(name: "[[markets]] (pinned)", value: value, source: "\(file?.path ?? "file")\(line)"))
        }
        return rows
    }

    /// Settings only the environment holds (secrets among them: shown `set` or `unset`, never their
    /// value). `variables`: each entry's names in order of precedence, whether it is secret, and
    /// what applies when none is set.
    public static func environmentReport(
        _ variables: [(names: [String], secret: Bool, fallback: String)], environment: [String: String]
    ) -> [SettingReport] {
        variables.map { entry in
            let name = entry.names.joined(separator: " / ")
            guard let given = entry.names.first(where: { environment[$0] != nil }), let value = environment[given]
            else {
                return SettingReport(name: name, value: entry.secret ? "unset" : entry.fallback, source: "default")
            }
            let shown = entry.secret && !given.hasSuffix("_FILE") ? (value.isEmpty ? "unset (empty)" : "set") : value
            return SettingReport(name: name, value: shown, source: "environment \(given)")
        }
    }

    /// The rows as an aligned table: name, value, source.
    public static func render(_ rows: [SettingReport]) -> String {
        let nameWidth = rows.map(\.name.count).max() ?? 0
        let valueWidth = min(60, rows.map(\.value.count).max() ?? 0)
        func pad(_ s: String, _ width: Int) -> String { s + String(repeating: " ", count: max(0, width - s.count)) }
        var out = pad("SETTING", nameWidth) + "  " + pad("VALUE", valueWidth) + "  SOURCE\n"
        for row in rows {
            out += pad(row.name, nameWidth) + "  " + pad(row.value, valueWidth) + "  " + row.source + "\n"
        }
        return out
    }
}
