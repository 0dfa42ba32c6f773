import Exchanges
import MarketData
public import Observability
import Synchronization

/// The data plane's metric handles (names per STYLE.md §7; labels bounded to exchange, feed and cause).
///
/// A series exists only once something of its label set does: every table below is a fixed array
/// of slots, one per exchange (× feed (× cause)), each filled with the registry's counter the first
/// time it is used (one lock-free load afterwards: no dictionary lookup or lock per event), and
/// `CollectorEngine.registerMetrics(in:)` creates the series of every subscribed stream at each
/// scrape, so a configured stream shows its zeros and an unconfigured exchange shows nothing.
public struct CollectorMetrics: Sendable {
    static let feeds = ["candles", "trades", "book", "ticker"]
    let received: LazyCounters
    let gapBars: LazyCounters
    /// Gap-ledger entries by exchange, feed and cause (`index(stream, cause)`); created on first
    /// use only (most causes never happen to most feeds).
    let gaps: LazyCounters
    let backfilledBars: LazyCounters
    let reconnects: LazyCounters
    let deadLettered: LazyCounters
    let parseErrors: LazyCounters
    let unhandled: LazyCounters
    let batchWriteSeconds: Histogram

    /// One counter family of this table: its name and help (the same wherever it is registered).
    struct Family: Sendable {
        var name: String
        var help: String
    }

    static let eventsReceived = Family(
        name: "collector_events_received_total", help: "Market events parsed from exchange messages.")
    static let gapBarsTotal = Family(
        name: "collector_gap_bars_total", help: "Bars or fills known to be missing (gaps REST did not make whole).")
    static let gapsTotal = Family(
        name: "collector_gaps_total", help: "Gap-ledger entries recorded (recovered or not), by cause.")
    static let backfilledBarsTotal = Family(
        name: "collector_backfilled_bars_total", help: "Bars recovered from REST after a hole.")
    static let wsReconnects = Family(
        name: "collector_ws_reconnects_total", help: "Exchange WebSocket reconnections.")
    static let eventsDeadLettered = Family(
        name: "collector_events_dead_lettered_total",
        help: "Messages written to the dead-letter file (unparseable or invalid).")
    static let parseErrorsTotal = Family(
        name: "collector_parse_errors_total", help: "Exchange frames that could not be parsed.")
    static let messagesUnhandled = Family(
        name: "collector_messages_unhandled_total",
        help: "Well-formed exchange messages the collector does not use (counted, not stored).")
    /// The families labelled by exchange and feed, created for every subscribed stream.
    static let perStream = [eventsReceived, gapBarsTotal, backfilledBarsTotal]
    /// The families labelled by exchange only, created for every exchange with a subscribed stream.
    static let perExchange = [wsReconnects, eventsDeadLettered, parseErrorsTotal, messagesUnhandled]

    /// Prepares the tables (no series yet) and registers the batch-write histogram in `registry`.
    public init(registry: MetricsRegistry) {
        let exchanges = ExchangeName.allCases.map { [("exchange", $0.rawValue)] }
        let streams = exchanges.flatMap { exchange in Self.feeds.map { exchange + [("feed", $0)] } }
        let causes = streams.flatMap { stream in Gap.Cause.allCases.map { stream + [("cause", $0.rawValue)] } }
        func table(_ family: Family, _ labelSets: [[(String, String)]]) -> LazyCounters {
            LazyCounters(registry: registry, family: family, labelSets: labelSets)
        }
        received = table(Self.eventsReceived, streams)
        gapBars = table(Self.gapBarsTotal, streams)
        gaps = table(Self.gapsTotal, causes)
        backfilledBars = table(Self.backfilledBarsTotal, streams)
        reconnects = table(Self.wsReconnects, exchanges)
        deadLettered = table(Self.eventsDeadLettered, exchanges)
        parseErrors = table(Self.parseErrorsTotal, exchanges)
        unhandled = table(Self.messagesUnhandled, exchanges)
        batchWriteSeconds = registry.histogram(
            "collector_batch_write_seconds", help: "Time to hand one batch to storage (database or spool).")
    }

    /// Creates (or finds) the zero-valued series of one subscribed stream's exchange and feed in
    /// `registry`: the same handles the tables fill on first use.
    static func createSeries(exchange: String, feed: String, in registry: MetricsRegistry) {
        for family in perStream {
            _ = registry.counter(family.name, help: family.help, labels: [("exchange", exchange), ("feed", feed)])
        }
        for family in perExchange {
            _ = registry.counter(family.name, help: family.help, labels: [("exchange", exchange)])
        }
    }

    static func index(_ exchange: ExchangeName) -> Int { ExchangeName.allCases.firstIndex(of: exchange) ?? 0 }

    static func index(_ stream: StreamID) -> Int {
        index(stream.exchange) * feeds.count + (feeds.firstIndex(of: stream.feed.kind) ?? 0)
    }

    static func index(_ stream: StreamID, _ cause: Gap.Cause) -> Int {
        index(stream) * Gap.Cause.allCases.count + (Gap.Cause.allCases.firstIndex(of: cause) ?? 0)
    }
}

/// A fixed table of one family's counters, one slot per label set, each registered in the
/// registry the first time it is used.
///
/// Thread-safe. After the first use of a slot, `self[i]` is an array read and one acquiring atomic
/// load (`AtomicLazyReference`); the first use takes the registry's lock once. Two threads racing
/// on an empty slot both get the registry's single handle for that label set.
final class LazyCounters: Sendable {
    /// One lazily filled reference (non-copyable, so each lives in its own object).
    private final class Slot: Sendable {
        let counter = AtomicLazyReference<Counter>()
    }

    private let registry: MetricsRegistry
    private let family: CollectorMetrics.Family
    private let labelSets: [[(String, String)]]
    private let slots: [Slot]

    init(registry: MetricsRegistry, family: CollectorMetrics.Family, labelSets: [[(String, String)]]) {
        self.registry = registry
        self.family = family
        self.labelSets = labelSets
        self.slots = labelSets.map { _ in Slot() }
    }

    /// The counter of label set `index` (created in the registry on first use).
    subscript(index: Int) -> Counter {
        let slot = slots[index]
        if let counter = slot.counter.load() { return counter }
        return slot.counter.storeIfNil(
            registry.counter(family.name, help: family.help, labels: labelSets[index]))
    }

    /// Whether label set `index` has a series yet (for tests).
    func exists(_ index: Int) -> Bool { slots[index].counter.load() != nil }
}

extension CollectorEngine {
    /// Exports storage and stream state at scrape time.
    public func registerMetrics(in registry: MetricsRegistry) {
        let storage = self.storage
        let spool = storage.spool
        let status = self.status
        let dead = self.deadLetters
        // The series of every subscribed stream exist from the first scrape after it is added (its
        // zeros are visible, so `rate()` starts from 0); no other exchange or feed gets any.
        registry.addRenderHook { registry in
            var seen = Set<String>()
            for s in status.all() where seen.insert("\(s.stream.exchange)|\(s.stream.feed.kind)").inserted {
                CollectorMetrics.createSeries(
                    exchange: s.stream.exchange.rawValue, feed: s.stream.feed.kind, in: registry)
            }
        }
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
