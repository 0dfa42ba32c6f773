import ExchangeSimulator
import Exchanges
import Foundation
import Gateway
import HTTP1Protocol
import MarketData
import Runtime
import TestSupport
import Testing

@testable import Collector
@testable import Observability

@Suite struct MetricsTests {
    @Test func registryOutputParsesWithPrometheusClient() async throws {
        let registry = MetricsRegistry()
        registry.counter("collector_test_events_total", help: "Events.", labels: [("exchange", "okx")]).increment(by: 3)
        registry.gauge("collector_test_depth", help: "Depth with a \"quote\" \\ and newline\n.").set(2.5)
        let histogram = registry.histogram("collector_test_seconds", help: "Latency.", labels: [("route", "/x")])
        histogram.observe(0.003)
        histogram.observe(20)
        registry.registerCollector("collector_test_scraped", help: "Scraped.", kind: .gauge) {
            [MetricsRegistry.Sample([("state", "live")], 4)]
        }
        let (families, problems) = try await parseWithPrometheusClient(registry.render())
        #expect(problems.isEmpty, "\(problems)")
        let events = (families["collector_test_events"] as? [String: Any])?["samples"] as? [String: Double]
        #expect(events?[#"collector_test_events_total{"exchange": "okx"}"#] == 3)
        let seconds = (families["collector_test_seconds"] as? [String: Any])?["samples"] as? [String: Double]
        #expect(seconds?[#"collector_test_seconds_bucket{"le": "0.005", "route": "/x"}"#] == 1)
        #expect(seconds?[#"collector_test_seconds_bucket{"le": "+Inf", "route": "/x"}"#] == 2)
        #expect(seconds?[#"collector_test_seconds_count{"route": "/x"}"#] == 2)
        let scraped = (families["collector_test_scraped"] as? [String: Any])?["samples"] as? [String: Double]
        #expect(scraped?[#"collector_test_scraped{"state": "live"}"#] == 4)
    }

    @Test func collectorMetricsCountEventsGapsAndBackfill() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let registry = MetricsRegistry()
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"], metrics: registry)
        harness.engine.registerMetrics(in: registry)
        await harness.engine.subscribe([StreamID("okx/candles:1m/BTC-USDT")!])
        try await harness.waitUntil("3 bars") { try await harness.storedConfirmed("BTC-USDT").count >= 3 }
        let cut = HTTPRequest(head: HTTPRequestHead(method: "POST", target: "/control/disconnect?pause_ms=500"))
        _ = try await HTTPClient.send(
            cut, to: Endpoint(host: "127.0.0.1", port: harness.simulator.restPort), loop: harness.loop)
        try await harness.waitUntil("backfill") {
            (harness.engine.status.status(StreamID("okx/candles:1m/BTC-USDT")!)?.backfilledBars ?? 0) > 0
        }
        let (families, problems) = try await parseWithPrometheusClient(registry.render())
        #expect(problems.isEmpty, "\(problems)")
        func value(_ family: String, _ key: String) -> Double? {
            ((families[family] as? [String: Any])?["samples"] as? [String: Double])?[key]
        }
        #expect(
            (value(
                "collector_events_received", #"collector_events_received_total{"exchange": "okx", "feed": "candles"}"#)
                ?? 0) > 0)
        #expect(
            (value(
                "collector_backfilled_bars", #"collector_backfilled_bars_total{"exchange": "okx", "feed": "candles"}"#)
                ?? 0) > 0)
        #expect((value("collector_ws_reconnects", #"collector_ws_reconnects_total{"exchange": "okx"}"#) ?? 0) >= 1)
        #expect(value("collector_gap_bars", #"collector_gap_bars_total{"exchange": "okx", "feed": "candles"}"#) == 0)
        #expect(
            value("collector_streams", #"collector_streams{"exchange": "okx", "feed": "candles", "state": "live"}"#)
                == 1)
        #expect((value("collector_batch_write_seconds", #"collector_batch_write_seconds_count{}"#) ?? 0) > 0)
        await harness.stop()
    }
    /// A fresh table has no series at all; the first use of a label set creates exactly that series,
    /// and it is the registry's own handle for it.
    @Test func collectorSeriesAppearOnlyOnFirstUse() throws {
        let registry = MetricsRegistry()
        let metrics = CollectorMetrics(registry: registry)
        #expect(!registry.render().contains("collector_events_received_total"))
        let stream = try #require(StreamID("okx/candles:1m/BTC-USDT"))
        metrics.received[CollectorMetrics.index(stream)].increment(by: 2)
        metrics.gaps[CollectorMetrics.index(stream, .reconnect)].increment()
        let text = registry.render()
        #expect(
            sampleLines(text, "collector_events_received_total") == [
                #"collector_events_received_total{exchange="okx",feed="candles"} 2"#
            ])
        #expect(
            sampleLines(text, "collector_gaps_total") == [
                #"collector_gaps_total{exchange="okx",feed="candles",cause="reconnect"} 1"#
            ])
        let handle = registry.counter(
            CollectorMetrics.eventsReceived.name, help: CollectorMetrics.eventsReceived.help,
            labels: [("exchange", "okx"), ("feed", "candles")])
        #expect(handle === metrics.received[CollectorMetrics.index(stream)])
        #expect(!metrics.gapBars.exists(CollectorMetrics.index(stream)))
    }

    /// Issue 12 finding 9: with one OKX candle stream, /metrics has that stream's series (zeros
    /// included) and none for any other exchange or feed.
    @Test func aRegistryWithOneStreamHasNoSeriesForOtherExchangesOrFeeds() async throws {
        let registry = MetricsRegistry()
        let fixture = try await EngineFixture.start(registry: registry, simulator: true)
        defer { fixture.removeFiles() }
        let stream = try #require(StreamID("okx/candles:1m/BTC-USDT"))
        await fixture.engine.subscribe([stream])
        try await waitUntil("events of \(stream)") { (fixture.engine.status.status(stream)?.messages ?? 0) > 0 }
        let text = registry.render()
        await fixture.stop()
        for exchange in ExchangeName.allCases where exchange != .okx {
            #expect(!text.contains(#"exchange="\#(exchange.rawValue)""#), "a series for \(exchange)")
        }
        for feed in CollectorMetrics.feeds where feed != "candles" {
            #expect(!text.contains(#"feed="\#(feed)""#), "a series for feed \(feed)")
        }
        let (families, problems) = try await parseWithPrometheusClient(text)
        #expect(problems.isEmpty, "\(problems)")
        func value(_ family: String, _ key: String) -> Double? {
            ((families[family] as? [String: Any])?["samples"] as? [String: Double])?[key]
        }
        let okxCandles = #"{"exchange": "okx", "feed": "candles"}"#
        #expect((value("collector_events_received", "collector_events_received_total" + okxCandles) ?? 0) > 0)
        // The stream's own series exist from the start, at zero (so rate() has a baseline).
        #expect(value("collector_gap_bars", "collector_gap_bars_total" + okxCandles) == 0)
        #expect(value("collector_backfilled_bars", "collector_backfilled_bars_total" + okxCandles) == 0)
        #expect(value("collector_parse_errors", #"collector_parse_errors_total{"exchange": "okx"}"#) == 0)
        #expect(value("collector_ws_reconnects", #"collector_ws_reconnects_total{"exchange": "okx"}"#) != nil)
    }

    /// `collector_build_info` and the standard process metrics, with values a real process has.
    @Test func buildInfoAndProcessMetricsHavePlausibleValues() async throws {
        let registry = MetricsRegistry()
        registry.registerStandardMetrics(version: "9.8.7-test")
        let (families, problems) = try await parseWithPrometheusClient(registry.render())
        #expect(problems.isEmpty, "\(problems)")
        func family(_ name: String) -> (type: String?, value: Double?) {
            let object = families[name] as? [String: Any]
            let samples = object?["samples"] as? [String: Double]
            return (object?["type"] as? String, samples?.count == 1 ? samples?.first?.value : nil)
        }
        #if compiler(>=6.3) && !compiler(>=6.4)
            #expect(ProcessMetrics.swiftVersion == "6.3")
        #endif
        let build = (families["collector_build_info"] as? [String: Any])?["samples"] as? [String: Double]
        #expect(
            build == [#"collector_build_info{"swift": "\#(ProcessMetrics.swiftVersion)", "version": "9.8.7-test"}"#: 1])
        let cpu = family("process_cpu_seconds")
        #expect(cpu.type == "counter")
        #expect((cpu.value ?? 0) > 0)
        let rss = try #require(family("process_resident_memory_bytes").value)
        #expect(rss > 1_048_576, "a Swift test process uses more than 1 MiB")
        let virtual = try #require(family("process_virtual_memory_bytes").value)
        #expect(virtual >= rss)
        let open = try #require(family("process_open_fds").value)
        let max = try #require(family("process_max_fds").value)
        #expect(open >= 3 && open <= max, "stdin, stdout and stderr at least; at most the limit")
        let start = try #require(family("process_start_time_seconds").value)
        let now = Date().timeIntervalSince1970
        #expect(start > now - 86_400 && start <= now + 1, "started within the last day: \(start) vs \(now)")
    }

    /// procfs's stat line counts fields after the command name, which may hold spaces and ")".
    @Test func procStatParsesFieldsAfterTheCommandName() throws {
        let line =
            "4242 (a b) c) S 1 4242 4242 0 -1 4194304 641 0 0 0 150 25 0 0 20 0 1 0 3198153 71483392 3893 18446744073709551615"
        let stat = try #require(ProcessMetrics.Stat(line))
        #expect(stat.cpuTicks == 175 && stat.startTicks == 3_198_153 && stat.virtualBytes == 71_483_392)
        #expect(ProcessMetrics.Stat("4242 (truncated) S 1 2") == nil)
        #expect(ProcessMetrics.residentBytes(status: "Name:\tx\nVmRSS:\t   17692 kB\n") == 18_116_608.0)
        #expect(
            ProcessMetrics.maxOpenFiles(limits: "Max open files            20000                40000     files\n")
                == 20000)
        #expect(ProcessMetrics.bootTime(stat: "cpu 1 2 3\nbtime 1796358160\n") == 1_796_358_160)
    }

    /// Every metric family the code registers is documented: those a registry shows once the data
    /// plane, the API and the standard metrics are registered, and every `collector_*`/`process_*`
    /// name literal in Sources (the cluster's and the worker's, registered in code a test cannot
    /// start). README.md gets the table of docs/metrics.md.
    @Test func everyRegisteredMetricFamilyIsDocumented() async throws {
        let registry = MetricsRegistry()
        let metrics = CollectorMetrics(registry: registry)
        for table in [
            metrics.received, metrics.gapBars, metrics.gaps, metrics.backfilledBars, metrics.reconnects,
            metrics.deadLettered, metrics.parseErrors, metrics.unhandled,
        ] {
            _ = table[0]
        }
        registry.registerStandardMetrics(version: "test")
        let fixture = try await EngineFixture.start(registry: registry, metrics: metrics, simulator: false)
        defer { fixture.removeFiles() }
        let api = GatewayAPI(
            plane: StandalonePlane(engine: fixture.engine, workerID: "test"),
            subscriptions: try SubscriptionRegistry(path: nil, pinned: []), reader: nil, apiToken: nil,
            registry: registry
        ) { (true, nil) }
        _ = await api.handle(HTTPRequest(head: HTTPRequestHead(method: "GET", target: "/health")))
        let rendered = Set(
            registry.render().split(separator: "\n").filter { $0.hasPrefix("# TYPE ") }.map {
                String($0.split(separator: " ")[2])
            })
        await fixture.stop()
        let literals = try metricNameLiterals(under: TestEnvironment.repositoryRoot + "/Sources")
        // The scan must find registrations in every layer, or it proves nothing.
        for known in [
            "collector_http_requests_total", "collector_dead_letters_written_total", "collector_cluster_term",
            "collector_worker_connected", "collector_build_info", "process_open_fds",
        ] {
            #expect(literals.contains(known), "the source scan missed \(known)")
        }
        #expect(rendered.isSuperset(of: ["collector_http_requests_total", "collector_events_received_total"]))
        let names = rendered.union(literals).sorted()
        for document in ["docs/metrics.md", "README.md"] {
            let text = try String(contentsOfFile: TestEnvironment.repositoryRoot + "/" + document, encoding: .utf8)
            let missing = names.filter { !mentions(text, $0) }
            #expect(missing.isEmpty, "\(document) does not document \(missing)")
        }
    }
}

/// The sample lines of `family` in a rendered exposition.
private func sampleLines(_ text: String, _ family: String) -> [String] {
    text.split(separator: "\n").filter { $0.hasPrefix(family + "{") || $0.hasPrefix(family + " ") }.map(String.init)
}

/// Whether `text` names `metric` as a whole word (not as the prefix of a longer name).
private func mentions(_ text: String, _ metric: String) -> Bool {
    func isNameCharacter(_ c: Character) -> Bool { c == "_" || c.isLetter || c.isNumber }
    var rest = text[...]
    while let range = rest.range(of: metric) {
        let before = range.lowerBound == text.startIndex ? nil : text[text.index(before: range.lowerBound)]
        let after = range.upperBound == text.endIndex ? nil : text[range.upperBound]
        if !(before.map(isNameCharacter) ?? false) && !(after.map(isNameCharacter) ?? false) { return true }
        rest = text[range.upperBound...]
    }
    return false
}

/// Every string literal in the Swift files under `directory` that is a metric family name
/// (`"collector_…"` or `"process_…"`: in Sources such literals are only ever metric names).
private func metricNameLiterals(under directory: String) throws -> Set<String> {
    let pattern = #/"((?:collector|process)_[a-z0-9_]+)"/#
    var names = Set<String>()
    let files = try #require(FileManager.default.enumerator(atPath: directory))
    for case let file as String in files where file.hasSuffix(".swift") {
        let text = try String(contentsOfFile: directory + "/" + file, encoding: .utf8)
        for match in text.matches(of: pattern) { names.insert(String(match.output.1)) }
    }
    return names
}

/// Waits until `condition` holds (polling: the engine offers no notification), failing after `timeout`.
private func waitUntil(
    _ what: String, timeout: Duration = .seconds(20), _ condition: () async throws -> Bool,
    sourceLocation: SourceLocation = #_sourceLocation
) async throws {
    let deadline = ContinuousClock.now.advanced(by: timeout)
    while ContinuousClock.now < deadline {
        if try await condition() { return }
        try await Task.sleep(for: .milliseconds(20))
    }
    Issue.record("timed out waiting for \(what)", sourceLocation: sourceLocation)
    throw ProcessFailure("timed out waiting for \(what)")
}

/// A data plane without PostgreSQL: an engine storing into a `RecordingSink` through a spool, and
/// optionally an exchange-sim to collect from.
private struct EngineFixture {
    let loop: EventLoop
    let simulator: ExchangeSimulator?
    let engine: CollectorEngine
    let directory: String

    static func start(
        registry: MetricsRegistry, metrics: CollectorMetrics? = nil, simulator withSimulator: Bool
    ) async throws -> EngineFixture {
        let loop = try EventLoop.start(name: "metrics-test")
        var configuration = CollectorConfiguration()
        var simulator: ExchangeSimulator?
        if withSimulator {
            var sim = SimulatorConfiguration()
            sim.barMilliseconds = 100
            sim.symbols = ["BTC-USDT"]
            let started = try await ExchangeSimulator.start(configuration: sim, loop: loop)
            configuration.okx = .init(
                publicURL: "ws://127.0.0.1:\(started.webSocketPort)/ws/v5/public",
                businessURL: "ws://127.0.0.1:\(started.webSocketPort)/ws/v5/business",
                restURL: "http://127.0.0.1:\(started.restPort)")
            simulator = started
        }
        configuration.batchTimeout = .milliseconds(50)
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "metrics-engine")
        let sink = RecordingSink(poison: "none")
        sink.setDown(false)
        let deadLetters = try DeadLetters(directory: directory + "/dead-letters")
        let storage = try SinkDispatcher(
            spool: try Spool(directory: directory + "/spool", maxBytes: 1 << 26, sinks: [sink.name]),
            sinks: [sink], deadLetters: deadLetters)
        let engine = await CollectorEngine.start(
            configuration: configuration, loop: loop, storage: storage, deadLetters: deadLetters,
            metrics: metrics ?? CollectorMetrics(registry: registry))
        engine.registerMetrics(in: registry)
        return EngineFixture(loop: loop, simulator: simulator, engine: engine, directory: directory)
    }

    func stop() async {
        await engine.shutdown()
        await engine.storage.finish(timeout: .seconds(5))
        await simulator?.shutdown()
        await loop.shutdown()
    }

    func removeFiles() {
        // try?: a leftover temporary directory is harmless.
        try? FileManager.default.removeItem(atPath: directory)
    }
}
