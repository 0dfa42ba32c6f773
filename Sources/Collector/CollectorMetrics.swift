import MarketData
public import Observability
import Synchronization

/// The data plane's metric handles (names per STYLE.md §7; labels bounded to exchange and feed).
public struct CollectorMetrics: Sendable {
    static let feeds = ["candles", "trades", "book", "ticker"]
    let received: [Counter]
    let gapBars: [Counter]
    let backfilledBars: [Counter]
    let reconnects: [Counter]
    let deadLettered: [Counter]
    let parseErrors: [Counter]
    let unhandled: [Counter]
    let batchWriteSeconds: Histogram

    /// Registers every handle in `registry` (all exchange/feed combinations: a fixed, small set).
    public init(registry: MetricsRegistry) {
        func perFeed(_ name: String, _ help: String) -> [Counter] {
            ExchangeName.allCases.flatMap { exchange in
                Self.feeds.map {
                    registry.counter(name, help: help, labels: [("exchange", exchange.rawValue), ("feed", $0)])
                }
            }
        }
        func perExchange(_ name: String, _ help: String) -> [Counter] {
            ExchangeName.allCases.map { registry.counter(name, help: help, labels: [("exchange", $0.rawValue)]) }
        }
        received = perFeed("collector_events_received_total", "Market events parsed from exchange messages.")
        gapBars = perFeed("collector_gap_bars_total", "Bars known to be missing (no REST source returned them).")
        backfilledBars = perFeed("collector_backfilled_bars_total", "Bars recovered from REST after a hole.")
        reconnects = perExchange("collector_ws_reconnects_total", "Exchange WebSocket reconnections.")
        deadLettered = perExchange(
            "collector_events_dead_lettered_total", "Messages written to the dead-letter file (unparseable or invalid)."
        )
        parseErrors = perExchange("collector_parse_errors_total", "Exchange frames that could not be parsed.")
        unhandled = perExchange(
            "collector_messages_unhandled_total",
            "Well-formed exchange messages the collector does not use (counted, not stored).")
        batchWriteSeconds = registry.histogram(
            "collector_batch_write_seconds", help: "Time to hand one batch to storage (database or spool).")
    }

    static func index(_ exchange: ExchangeName) -> Int { ExchangeName.allCases.firstIndex(of: exchange) ?? 0 }

    static func index(_ stream: StreamID) -> Int {
        index(stream.exchange) * feeds.count + (feeds.firstIndex(of: stream.feed.kind) ?? 0)
    }
}

extension CollectorEngine {
    /// Exports storage and stream state at scrape time.
    public func registerMetrics(in registry: MetricsRegistry) {
        let sink = self.sink
        let status = self.status
        let dead = self.deadLetters
        registry.registerCollector(
            "collector_events_stored_total", help: "Candles written to PostgreSQL (directly or from the spool).",
            kind: .counter
        ) { [MetricsRegistry.Sample([], Double(sink.stats.storedCandles.load(ordering: .relaxed)))] }
        registry.registerCollector("collector_batches_total", help: "Batches handed to the sink.", kind: .counter) {
            [MetricsRegistry.Sample([], Double(sink.stats.batches.load(ordering: .relaxed)))]
        }
        registry.registerCollector(
            "collector_postgres_errors_total", help: "Failed PostgreSQL writes (the batch went to the spool).",
            kind: .counter
        ) { [MetricsRegistry.Sample([], Double(sink.stats.databaseErrors.load(ordering: .relaxed)))] }
        registry.registerCollector(
            "collector_spool_batches", help: "Batches waiting in the on-disk spool.", kind: .gauge
        ) { [MetricsRegistry.Sample([], Double(sink.spool.batchCount))] }
        registry.registerCollector("collector_spool_bytes", help: "Bytes waiting in the on-disk spool.", kind: .gauge) {
            [MetricsRegistry.Sample([], Double(sink.spool.byteCount))]
        }
        registry.registerCollector(
            "collector_dead_letters_written_total", help: "Records in the dead-letter files since start.",
            kind: .counter
        ) { [MetricsRegistry.Sample([], Double(dead.count))] }
        registry.registerCollector(
            "collector_streams", help: "Subscribed streams by state.", kind: .gauge
        ) {
            var counts: [String: Int] = [:]
            for s in status.all() {
                counts["\(s.stream.exchange)|\(s.stream.feed.kind)|\(s.state.rawValue)", default: 0] += 1
            }
            return counts.sorted { $0.key < $1.key }.map { key, n in
                let parts = key.split(separator: "|").map(String.init)
                return MetricsRegistry.Sample(
                    [("exchange", parts[0]), ("feed", parts[1]), ("state", parts[2])], Double(n))
            }
        }
    }
}
