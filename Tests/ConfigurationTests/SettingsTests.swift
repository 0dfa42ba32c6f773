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

    @Test(arguments: [
        (
            "[storage]\nbatch_sise = 10",
            "c.toml line 2: unknown key 'batch_sise' in [storage] (expected batch_size, batch_timeout, spool_max_bytes)"
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
            "c.toml line 3: feeds unknown feed 'klines' (candles, trades, book, ticker)"
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
