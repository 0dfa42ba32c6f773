import Configuration
import Testing

@Suite struct SettingsTests {
    @Test func fileThenEnvironmentThenFlags() throws {
        let file = """
            [collector]
            http_port = 9000
            log_level = "debug"
            [storage]
            batch_size = 500
            batch_timeout = 2
            [exchanges.okx]
            rest_url = "http://127.0.0.1:9999"
            [[markets]]
            symbols = ["BTC-USDT", "ETH-USDT"]
            timeframes = ["1m", "1Dutc"]
            """
        let settings = try Settings.load(
            file: ("collector.toml", file), environment: ["BATCH_SIZE": "700", "HTTP_PORT": "9100"],
            flags: ["http-port": "9200"])
        #expect(settings.httpPort == 9200)
        #expect(settings.batchSize == 700)
        #expect(settings.batchTimeout == 2)
        #expect(settings.logLevel == "debug")
        #expect(settings.okxRESTURL == "http://127.0.0.1:9999")
        #expect(
            settings.markets == [
                .init(
                    exchange: "okx", symbols: ["BTC-USDT", "ETH-USDT"], timeframes: ["1m", "1Dutc"], feeds: ["candles"])
            ])
    }

    /// `[[markets]]` reads feeds as the API does: timeframes beside other feeds add candles.
    @Test func marketFeedsBesideTimeframesIncludeCandles() throws {
        let text =
            "[[markets]]\nsymbols = [\"BTC-USDT\"]\nfeeds = [\"trades\", \"book:5\", \"ticker\"]\ntimeframes = [\"1m\"]\n"
        let settings = try Settings.load(file: ("c.toml", text), environment: [:], flags: [:])
        #expect(
            settings.markets == [
                .init(
                    exchange: "okx", symbols: ["BTC-USDT"], timeframes: ["1m"],
                    feeds: ["trades", "book:5", "ticker", "candles"])
            ])
        let noTimeframes = "[[markets]]\nsymbols = [\"BTC-USDT\"]\nfeeds = [\"trades\"]\n"
        let tradesOnly = try Settings.load(file: ("c.toml", noTimeframes), environment: [:], flags: [:])
        #expect(tradesOnly.markets.first?.feeds == ["trades"])
    }

    @Test func storageAndShutdownSettingsHaveDefaults() throws {
        let settings = try Settings.load(file: nil, environment: [:], flags: [:])
        #expect(settings.shutdownDeadline == 25)
        #expect(settings.databaseTimeout == 30)
        #expect(settings.sinks == ["postgres"])
        #expect(settings.retentionDays.isEmpty, "by default every data type is kept forever")
        #expect(settings.spoolMaxBytes == 1 << 30)
    }

    @Test func theHandshakeBoundPerAddressComesFromTheFileAndTheEnvironment() throws {
        #expect(try Settings.load(file: nil, environment: [:], flags: [:]).handshakesPerAddress == 32)
        let file = "[cluster]\nhandshakes_per_address = 8"
        #expect(try Settings.load(file: ("c.toml", file), environment: [:], flags: [:]).handshakesPerAddress == 8)
        let env = try Settings.load(file: ("c.toml", file), environment: ["HANDSHAKES_PER_ADDRESS": "0"], flags: [:])
        #expect(env.handshakesPerAddress == 0)
    }

    @Test func storageAndShutdownSettingsComeFromTheFileAndTheEnvironment() throws {
        let file = """
            [collector]
            shutdown_deadline = 40
            [storage]
            database_timeout = 5
            book_snapshot_interval = 120
            sinks = ["postgres"]
            spool_max_bytes = 2_097_152
            [storage.retention]
            candles = 3650
            trades = 30
            book = 7
            """
        let fromFile = try Settings.load(file: ("collector.toml", file), environment: [:], flags: [:])
        #expect(fromFile.shutdownDeadline == 40)
        #expect(fromFile.databaseTimeout == 5)
        #expect(fromFile.bookSnapshotInterval == 120)
        #expect(fromFile.sinks == ["postgres"])
        #expect(fromFile.spoolMaxBytes == 2 << 20)
        #expect(fromFile.retentionDays == ["candles": 3650, "trades": 30, "book": 7])
        let overridden = try Settings.load(
            file: ("collector.toml", file),
            environment: ["SHUTDOWN_DEADLINE": "12.5", "DATABASE_TIMEOUT": "60", "BOOK_SNAPSHOT_INTERVAL": "0"],
            flags: [:])
        #expect(overridden.shutdownDeadline == 12.5)
        #expect(overridden.databaseTimeout == 60)
        #expect(overridden.bookSnapshotInterval == 0)
    }

    @Test(arguments: [
        (
            "[storage]\nbatch_sise = 10",
            "c.toml line 2: unknown key 'batch_sise' in [storage] (expected batch_size, batch_timeout, spool_max_bytes, database_timeout, book_snapshot_interval, sinks, retention)"
        ),
        ("[storage]\nbatch_size = \"10\"", "c.toml line 2: batch_size must be an integer, not a string"),
        ("[storage]\nbatch_size = 0", "c.toml line 2: batch_size must be between 1 and 100000, got 0"),
        (
            "[collector]\nlog_level = \"loud\"",
            "c.toml line 2: log_level must be one of debug, info, notice, warning, error, got 'loud'"
        ),
        ("[[markets]]\ntimeframes = [\"1m\"]", "c.toml line 1: [[markets]] needs a non-empty 'symbols' array"),
        (
            "[[markets]]\nsymbols = [\"A-B\"]\nexchange = \"kraken\"",
            "c.toml line 3: exchange unknown exchange 'kraken'"
        ),
        (
            "[[markets]]\nsymbols = [\"A-B\"]\nfeeds = [\"klines\"]",
            "c.toml line 3: feeds unknown feed 'klines' (candles, trades, book, book:<depth>, ticker)"
        ),
        (
            "[exchanges.okx]\nrest_url = \"ftp://x\"",
            "c.toml line 2: rest_url must be a http or https URL, got 'ftp://x'"
        ),
        (
            "[databse]\nx = 1",
            "c.toml line 1: unknown key 'databse' (expected tables collector, storage, websocket, cluster, aws, exchanges, markets)"
        ),
        ("[storage]\nbatch_size = 1\nbatch_size = 2", "c.toml line 3: key 'batch_size' is defined twice"),
        (
            "[cluster]\nlease_ttl = 1\nheartbeat_interval = 2",
            "heartbeat_interval (2.0 s) must be shorter than lease_ttl (1.0 s)"
        ),
        ("markets = 3", "c.toml line 1: 'markets' must be [[markets]] tables, not a integer"),
        (
            "[collector]\nshutdown_deadline = 0",
            "c.toml line 2: shutdown_deadline must be between 1.0 and 3600.0 seconds, got 0.0"
        ),
        (
            "[collector]\nshutdown_deadline = \"25s\"",
            "c.toml line 2: shutdown_deadline must be a number of seconds, not a string"
        ),
        (
            "[storage]\ndatabase_timeout = 601",
            "c.toml line 2: database_timeout must be between 1.0 and 600.0 seconds, got 601.0"
        ),
        (
            "[storage]\nbook_snapshot_interval = 90000",
            "c.toml line 2: book_snapshot_interval must be between 0.0 and 86400.0 seconds, got 90000.0"
        ),
        ("[storage]\nsinks = [\"s3\"]", "c.toml line 2: sinks unknown sink 's3' (expected postgres)"),
        ("[storage]\nsinks = []", "c.toml line 2: sinks must name at least one sink (expected postgres)"),
        ("[storage]\nsinks = [\"postgres\", \"postgres\"]", "c.toml line 2: sinks lists 'postgres' twice"),
        ("[storage]\nsinks = \"postgres\"", "c.toml line 2: sinks must be an array of strings, not a string"),
        (
            "[storage.retention]\ncandles = 365\ntrades = 0",
            "c.toml line 3: trades must be a whole number of days from 1 to 36500, got 0"
        ),
        (
            "[storage.retention]\ntrades = \"30d\"",
            "c.toml line 2: trades must be a whole number of days from 1 to 36500, not a string"
        ),
        (
            "[storage.retention]\nklines = 30",
            "c.toml line 2: unknown key 'klines' in [storage.retention] (expected candles, trades, book, ticker)"
        ),
        ("[storage]\nretention = 30", "c.toml line 2: 'storage.retention' must be a table, not a integer"),
    ])
    func badFilesStopStartUpWithAnExactMessage(text: String, message: String) {
        #expect(throws: SettingsError(message)) {
            try Settings.load(file: ("c.toml", text), environment: [:], flags: [:])
        }
    }

    @Test(arguments: [
        (["BATCH_SIZE": "lots"], [String: String](), "BATCH_SIZE: expected an integer from 1 to 100000, got 'lots'"),
        (["BATCH_TIMEOUT": "-1"], [:], "BATCH_TIMEOUT: expected seconds from 0.001 to 60.0, got '-1'"),
        (["HTTP_PORT": "70000"], [:], "HTTP_PORT: expected an integer from 0 to 65535, got '70000'"),
        (["LOG_LEVEL": "LOUD"], [:], "LOG_LEVEL: expected one of debug, info, notice, warning, error, got 'LOUD'"),
        (["OKX_WS_BUSINESS_URL": "http://x"], [:], "OKX_WS_BUSINESS_URL: expected a ws or wss URL, got 'http://x'"),
        (["SHUTDOWN_DEADLINE": "0"], [:], "SHUTDOWN_DEADLINE: expected seconds from 1.0 to 3600.0, got '0'"),
        (["SHUTDOWN_DEADLINE": "soon"], [:], "SHUTDOWN_DEADLINE: expected seconds from 1.0 to 3600.0, got 'soon'"),
        (["DATABASE_TIMEOUT": "1000"], [:], "DATABASE_TIMEOUT: expected seconds from 1.0 to 600.0, got '1000'"),
        (
            ["HANDSHAKES_PER_ADDRESS": "-1"], [:],
            "HANDSHAKES_PER_ADDRESS: expected an integer from 0 to 100000, got '-1'"
        ),
        ([:], ["http-port": "eighty"], "--http-port: expected an integer from 0 to 65535, got 'eighty'"),
        ([:], ["colour": "red"], "--colour: unknown option"),
    ])
    func badEnvironmentAndFlagsNameTheirSource(environment: [String: String], flags: [String: String], message: String)
    {
        #expect(throws: SettingsError(message)) {
            try Settings.load(file: nil, environment: environment, flags: flags)
        }
    }
}
