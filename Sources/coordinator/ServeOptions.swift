// What `coordinator serve` and `coordinator config check` read: the options, the settings (file <
// environment < flags) and the pinned streams with where each was pinned.
import Configuration
import Exchanges
import Foundation
import MarketData

/// `serve`'s command line.
struct ServeOptions {
    var standalone = false
    var configPath: String?
    /// Long option names without dashes → values, for `Settings.load`.
    var flags: [String: String] = [:]

    /// Parses `arguments` (after `serve` or `config check`); bad usage exits 64 with the usage.
    static func parse(_ arguments: [String], environment: [String: String]) -> ServeOptions {
        var options = ServeOptions()
        options.configPath = environment["CONFIG_PATH"].flatMap { $0.isEmpty ? nil : $0 }
        var rest = arguments
        while !rest.isEmpty {
            let flag = rest.removeFirst()
            func value() -> String {
                guard let next = rest.first, !next.hasPrefix("--") else { usageError("\(flag) needs a value") }
                return rest.removeFirst()
            }
            switch flag {
            case "--standalone": options.standalone = true
            case "--config": options.configPath = value()
            case "--markets", "--timeframes", "--data-dir", "--log-level", "--log-format", "--http-port",
                "--http-addr", "--control-port":
                options.flags[String(flag.dropFirst(2))] = value()
            default: usageError("unknown option \(flag)")
            }
        }
        return options
    }
}

/// The settings and the file they were read from, or the first problem, named.
struct LoadedSettings {
    var settings: Settings
    var file: (path: String, text: String)?
    /// Every stream pinned by the file or `--markets`/`MARKETS` (or the default), in order.
    var pinned: [StreamID]
    /// Where each pinned stream was pinned ("the configuration file c.toml line 4", "--markets").
    var pinnedOrigin: [StreamID: String]
    /// Replicas asked for pinned streams (above 1 only).
    var pinnedReplicas: [StreamID: Int]

    struct Failure: Error {
        var message: String
        var fields: [String: String] = [:]
    }

    static func load(_ options: ServeOptions, environment: [String: String]) throws(Failure) -> LoadedSettings {
        var file: (path: String, text: String)?
        if let path = options.configPath {
            do {
                file = (path, try String(contentsOfFile: path, encoding: .utf8))
            } catch {
                throw Failure(
                    message: "cannot read the config file", fields: ["file": path, "error": error.localizedDescription])
            }
        }
        let settings: Settings
        do {
            settings = try Settings.load(file: file, environment: environment, flags: options.flags)
        } catch {
            throw Failure(message: "invalid setting", fields: ["error": error.message])
        }
        var loaded = LoadedSettings(settings: settings, file: file, pinned: [], pinnedOrigin: [:], pinnedReplicas: [:])
        try loaded.buildStreams(environment: environment, options: options)
        return loaded
    }

    private mutating func add(_ stream: StreamID, origin: String) {
        guard pinnedOrigin[stream] == nil else { return }
        pinned.append(stream)
        pinnedOrigin[stream] = origin
    }

    private mutating func buildStreams(environment: [String: String], options: ServeOptions) throws(Failure) {
        func timeframe(_ key: String, setting: String) throws(Failure) -> Timeframe {
            guard let tf = Timeframe(key) else {
                throw Failure(
                    message: "invalid setting",
                    fields: [
                        "setting": setting, "value": key, "expected": Timeframe.all.map(\.key).joined(separator: " "),
                    ])
            }
            return tf
        }
        var lines: [Int] = []
        if let file {
            do {
                if case .tableArray(let tables)? = try TOML.parse(file.text)["markets"] { lines = tables.map(\.line) }
            } catch {
                lines = []  // it parsed when the settings were loaded; only line numbers are lost
            }
        }
        for (index, market) in settings.markets.enumerated() {
            let line = index < lines.count ? " line \(lines[index])" : ""
            let origin = "the configuration file \(file?.path ?? "")\(line)"
            guard let name = ExchangeName(rawValue: market.exchange) else {
                throw Failure(
                    message: "invalid setting", fields: ["setting": "[[markets]] exchange", "value": market.exchange])
            }
            var feeds: [Feed] = []
            for feedName in market.feeds {
                if feedName == "candles" {
                    for key in market.timeframes {
                        feeds.append(.candles(try timeframe(key, setting: "[[markets]] timeframes")))
                    }
                } else if let feed = Feed(feedName) {
                    feeds.append(feed)
                } else {
                    throw Failure(
                        message: "invalid setting", fields: ["setting": "[[markets]] feeds", "value": feedName])
                }
            }
            for feed in feeds {
                for symbol in market.symbols {
                    let stream = StreamID(exchange: name, feed: feed, symbol: symbol)
                    add(stream, origin: origin)
                    if market.replicas > 1 {
                        pinnedReplicas[stream] = max(pinnedReplicas[stream] ?? 1, market.replicas)
                    }
                }
            }
        }
        if settings.timeframeKeys != nil, settings.marketSymbols == nil, !settings.markets.isEmpty {
            throw Failure(
                message: "invalid setting",
                fields: [
                    "setting": options.flags["timeframes"] != nil ? "--timeframes" : "TIMEFRAMES",
                    "error": "it applies to --markets/MARKETS; each [[markets]] table has its own timeframes",
                ])
        }
        if settings.marketSymbols != nil || settings.markets.isEmpty {
            let origin =
                options.flags["markets"] != nil
                ? "--markets"
                : environment["MARKETS"] != nil
                    ? "the MARKETS environment variable"
                    : "the default market (no --markets, MARKETS or [[markets]])"
            let settingName = options.flags["timeframes"] != nil ? "--timeframes" : "TIMEFRAMES"
            for key in settings.timeframeKeys ?? ["1m"] {
                let tf = try timeframe(key, setting: settingName)
                for symbol in settings.marketSymbols ?? ["BTC-USDT"] {
                    add(StreamID(exchange: .okx, feed: .candles(tf), symbol: symbol), origin: origin)
                }
            }
        }
        // Every stream named must be collectable, or start-up stops: a setting is never accepted and
        // ignored.
        for stream in pinned {
            let problem =
                stream.exchange == .okx
                ? OKXAdapter().validate(stream) : "\(stream.exchange) collection arrives in a later release"
            if let problem {
                throw Failure(
                    message: "stream cannot be collected",
                    fields: ["stream": "\(stream)", "pinned.by": pinnedOrigin[stream] ?? "", "error": problem])
            }
        }
    }

    /// The variables only the environment holds, for `config check`.
    static let environmentOnly: [(names: [String], secret: Bool, fallback: String)] = [
        (["DATABASE_URL"], true, "none"),
        (["DB_HOST"], false, "none"), (["DB_PORT"], false, "5432"), (["DB_NAME"], false, "none"),
        (["DB_USER"], false, "none"), (["DB_PASSWORD"], true, "none"),
        (["API_TOKEN", "API_TOKEN_FILE"], true, "none"),
        (["CLUSTER_SECRET", "CLUSTER_SECRET_FILE"], true, "none"),
        (["WORKER_ID"], false, "the host name"),
        (["SQL_DIR"], false, "./sql/init, then next to the binary"),
        (["CONFIG_PATH"], false, "none"),
    ]
}
