import Collector
import ExchangeSimulator
import Foundation
import HTTP1Protocol
import MarketData
import Observability
import Runtime
import TestSupport
import Testing

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
}
