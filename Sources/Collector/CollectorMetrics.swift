import Exchanges
import MarketData
public import Observability
import Synchronization

/// The data plane's metric handles (names per STYLE.md §7; labels bounded to exchange and feed).
public struct CollectorMetrics: Sendable {
    static let feeds = ["candles", "trades", "book", "ticker"]
    let received: [Counter]
    let gapBars: [Counter]
    /// Gap-ledger entries by exchange, feed and cause (`index(stream, cause)`).
    let gaps: [Counter]
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
        gapBars = perFeed(
            "collector_gap_bars_total", "Bars or fills known to be missing (gaps REST did not make whole).")
        gaps = ExchangeName.allCases.flatMap { exchange in
            Self.feeds.flatMap { feed in
                Gap.Cause.allCases.map {
                    registry.counter(
                        "collector_gaps_total", help: "Gap-ledger entries recorded (recovered or not), by cause.",
                        labels: [("exchange", exchange.rawValue), ("feed", feed), ("cause", $0.rawValue)])
                }
            }
        }
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

    static func index(_ stream: StreamID, _ cause: Gap.Cause) -> Int {
        index(stream) * Gap.Cause.allCases.count + (Gap.Cause.allCases.firstIndex(of: cause) ?? 0)
    }
}

extension CollectorEngine {
    /// Exports storage and stream state at scrape time.
    public func registerMetrics(in registry: MetricsRegistry) {
        let storage = self.storage
        let spool = storage.spool
        let status = self.status
        let dead = self.deadLetters
        func perSink(
            _ value: @escaping @Sendable (SinkDispatcher.SinkState) -> Double
        ) -> @Sendable () -> [MetricsRegistry.Sample] {
            { storage.sinkStates.map { MetricsRegistry.Sample([("sink", $0.name)], value($0)) } }
        }
        registry.registerCollector(
            "collector_events_stored_total", help: "Events a sink has made durable (from the spool).", kind: .counter,
            perSink { Double($0.storedEvents) })
        registry.registerCollector(
            "collector_sink_errors_total",
            help: "Failed sink writes by kind (transient: retried; permanent: bisected).",
            kind: .counter
        ) {
            storage.sinkStates.flatMap { s in
                [
                    MetricsRegistry.Sample([("sink", s.name), ("kind", "transient")], Double(s.transientErrors)),
                    MetricsRegistry.Sample([("sink", s.name), ("kind", "permanent")], Double(s.permanentErrors)),
                ]
            }
        }
        registry.registerCollector(
            "collector_sink_duplicate_rows_total",
            help: "Rows a sink already had when a batch brought them again (ignored on conflict).", kind: .counter
        ) {
            storage.sinks.compactMap { $0 as? PostgresSink }.map {
                MetricsRegistry.Sample([("sink", $0.name)], Double($0.duplicateRows))
            }
        }
        registry.registerCollector(
            "collector_sink_dead_lettered_total", help: "Events a sink refused for good (written to dead letters).",
            kind: .counter, perSink { Double($0.deadLettered) })
        registry.registerCollector(
            "collector_sink_up", help: "1 while the sink is storing, 0 while it is down or stalled.", kind: .gauge,
            perSink { $0.isHealthy ? 1 : 0 })
        registry.registerCollector(
            "collector_sink_backlog_batches", help: "Spooled batches the sink has not stored yet.", kind: .gauge
        ) { spool.sinkNames.map { MetricsRegistry.Sample([("sink", $0)], Double(spool.backlog(of: $0))) } }
        registry.registerCollector(
            "collector_batches_total", help: "Batches acknowledged into the spool.", kind: .counter
        ) {
            [MetricsRegistry.Sample([], Double(storage.counters.appendedBatches.load(ordering: .relaxed)))]
        }
        registry.registerCollector(
            "collector_spool_errors_total", help: "Failed spool writes or cursor updates (retried).", kind: .counter
        ) { [MetricsRegistry.Sample([], Double(storage.counters.spoolWriteErrors.load(ordering: .relaxed)))] }
        registry.registerCollector(
            "collector_spool_unreadable_batches_total", help: "Spool batches that could not be read (moved aside).",
            kind: .counter
        ) { [MetricsRegistry.Sample([], Double(storage.counters.unreadableBatches.load(ordering: .relaxed)))] }
        registry.registerCollector(
            "collector_spool_batches", help: "Batches waiting in the on-disk spool.", kind: .gauge
        ) { [MetricsRegistry.Sample([], Double(spool.batchCount))] }
        registry.registerCollector("collector_spool_bytes", help: "Bytes waiting in the on-disk spool.", kind: .gauge) {
            [MetricsRegistry.Sample([], Double(spool.byteCount))]
        }
        registry.registerCollector(
            "collector_dead_letters_written_total", help: "Records in the dead-letter files since start.",
            kind: .counter
        ) { [MetricsRegistry.Sample([], Double(dead.count))] }
        registry.registerCollector(
            "collector_dead_letters_dropped_total",
            help: "Dead letters not written because a bound was reached (directory size, queue).", kind: .counter
        ) { [MetricsRegistry.Sample([], Double(dead.droppedCount))] }
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
