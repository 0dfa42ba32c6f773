import Locking
import Synchronization

/// A monotonically increasing count. Thread-safe; increments are one relaxed atomic add.
public final class Counter: Sendable {
    private let value = Atomic<Int64>(0)
    let labels: String

    init(labels: String) { self.labels = labels }

    /// Adds `amount` (must not be negative: counters only go up).
    public func increment(by amount: Int64 = 1) {
        precondition(amount >= 0, "a counter cannot decrease")
        value.add(amount, ordering: .relaxed)
    }

    public var current: Int64 { value.load(ordering: .relaxed) }
}

/// A value that goes up and down. Stores a Double as its bit pattern.
public final class Gauge: Sendable {
    private let bits = Atomic<UInt64>(0)
    let labels: String

    init(labels: String) { self.labels = labels }

    public func set(_ value: Double) { bits.store(value.bitPattern, ordering: .relaxed) }
    public var current: Double { Double(bitPattern: bits.load(ordering: .relaxed)) }
}

/// A distribution over fixed buckets (upper bounds in base units, e.g. seconds).
public final class Histogram: Sendable {
    let bounds: [Double]
    /// One atomic cell per bucket (Atomic is not copyable, so each lives in its own object).
    private let counts: [Counter]
    /// Sum in nanounits (fixed point) so it can live in an atomic integer.
    private let sumNano = Atomic<Int64>(0)
    private let total = Atomic<Int64>(0)
    let labels: String

    init(bounds: [Double], labels: String) {
        self.bounds = bounds
        self.counts = bounds.map { _ in Counter(labels: "") }
        self.labels = labels
    }

    /// Records one observation.
    public func observe(_ value: Double) {
        for (i, bound) in bounds.enumerated() where value <= bound {
            counts[i].increment()
            break
        }
        total.add(1, ordering: .relaxed)
        sumNano.add(Int64((value * 1e9).rounded()), ordering: .relaxed)
    }

    /// Cumulative bucket counts (per bound), the total count and the sum.
    func snapshot() -> (buckets: [Int64], count: Int64, sum: Double) {
        var cumulative: [Int64] = []
        var running: Int64 = 0
        for c in counts {
            running += c.current
            cumulative.append(running)
        }
        return (cumulative, total.load(ordering: .relaxed), Double(sumNano.load(ordering: .relaxed)) / 1e9)
    }

    /// Latency buckets from 0.5 ms to 10 s.
    public static let latencyBounds: [Double] = [
        0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
    ]
}

/// Owns metric families and renders them as Prometheus text.
public final class MetricsRegistry: Sendable {
    public enum Kind: String, Sendable { case counter, gauge, histogram }

    private struct Family: Sendable {
        var name: String
        var help: String
        var kind: Kind
        var counters: [String: Counter] = [:]
        var gauges: [String: Gauge] = [:]
        var histograms: [String: Histogram] = [:]
        var bounds: [Double] = []
    }

    /// A sample computed at scrape time.
    public struct Sample: Sendable {
        public var labels: [(String, String)]
        public var value: Double
        public init(_ labels: [(String, String)], _ value: Double) {
            self.labels = labels
            self.value = value
        }
    }

    private struct CollectorFamily: Sendable {
        var name: String
        var help: String
        var kind: Kind
        var collect: @Sendable () -> [Sample]
    }

    private let families = Locked<[String: Family]>([:])
    private let collectors = Locked<[String: CollectorFamily]>([:])
    private let renderHooks = Locked<[@Sendable (MetricsRegistry) -> Void]>([])

    public init() {}

    /// The counter `name` with `labels` (created on first use; the same handle afterwards).
    public func counter(_ name: String, help: String, labels: [(String, String)] = []) -> Counter {
        let rendered = Self.render(labels)
        return families.withLock { families in
            var family = families[name] ?? Family(name: name, help: help, kind: .counter)
            precondition(family.kind == .counter, "metric \(name) registered as \(family.kind)")
            if let existing = family.counters[rendered] { return existing }
            let counter = Counter(labels: rendered)
            family.counters[rendered] = counter
            families[name] = family
            return counter
        }
    }

    /// The gauge `name` with `labels`.
    public func gauge(_ name: String, help: String, labels: [(String, String)] = []) -> Gauge {
        let rendered = Self.render(labels)
        return families.withLock { families in
            var family = families[name] ?? Family(name: name, help: help, kind: .gauge)
            precondition(family.kind == .gauge, "metric \(name) registered as \(family.kind)")
            if let existing = family.gauges[rendered] { return existing }
            let gauge = Gauge(labels: rendered)
            family.gauges[rendered] = gauge
            families[name] = family
            return gauge
        }
    }

    /// The histogram `name` with `labels` and bucket `bounds` (fixed per family).
    public func histogram(
        _ name: String, help: String, labels: [(String, String)] = [], bounds: [Double] = Histogram.latencyBounds
    ) -> Histogram {
        let rendered = Self.render(labels)
        return families.withLock { families in
            var family = families[name] ?? Family(name: name, help: help, kind: .histogram, bounds: bounds)
            precondition(family.kind == .histogram, "metric \(name) registered as \(family.kind)")
            if let existing = family.histograms[rendered] { return existing }
            let histogram = Histogram(bounds: family.bounds, labels: rendered)
            family.histograms[rendered] = histogram
            families[name] = family
            return histogram
        }
    }

    /// Registers a family whose samples are computed at scrape time.
    public func registerCollector(
        _ name: String, help: String, kind: Kind, _ collect: @escaping @Sendable () -> [Sample]
    ) {
        precondition(kind != .histogram, "scrape-time histograms are not supported")
        collectors.withLock { $0[name] = CollectorFamily(name: name, help: help, kind: kind, collect: collect) }
    }

    /// Runs `hook` at the start of every `render()`, before anything is read: it may create
    /// series (e.g. those of the streams that exist now) so that they appear in that scrape.
    ///
    /// The hook runs on the rendering thread with no registry lock held, so it may call
    /// `counter(_:help:labels:)` and the like; it receives the registry rather than capturing it
    /// (no reference cycle).
    public func addRenderHook(_ hook: @escaping @Sendable (MetricsRegistry) -> Void) {
        renderHooks.withLock { $0.append(hook) }
    }

    /// The text exposition (format 0.0.4), families sorted by name.
    ///
    /// Runs the render hooks and the scrape-time collectors on the calling thread (they may read
    /// files, e.g. procfs): call it from a task or thread that may block briefly, never the event loop.
    public func render() -> String {
        for hook in renderHooks.withLock({ $0 }) { hook(self) }
        let snapshot = families.withLock { $0 }
        let scraped = collectors.withLock { $0 }
        var out = ""
        out.reserveCapacity(4096)
        let names = Set(snapshot.keys).union(scraped.keys).sorted()
        for name in names {
            if let family = snapshot[name] {
                out += "# HELP \(name) \(Self.escapeHelp(family.help))\n# TYPE \(name) \(family.kind.rawValue)\n"
                switch family.kind {
                case .counter:
                    for (labels, c) in family.counters.sorted(by: { $0.key < $1.key }) {
                        out += "\(name)\(labels) \(c.current)\n"
                    }
                case .gauge:
                    for (labels, g) in family.gauges.sorted(by: { $0.key < $1.key }) {
                        out += "\(name)\(labels) \(Self.format(g.current))\n"
                    }
                case .histogram:
                    for (labels, h) in family.histograms.sorted(by: { $0.key < $1.key }) {
                        let (buckets, count, sum) = h.snapshot()
                        for (bound, n) in zip(h.bounds, buckets) {
                            out += "\(name)_bucket\(Self.adding(("le", Self.format(bound)), to: labels)) \(n)\n"
                        }
                        out += "\(name)_bucket\(Self.adding(("le", "+Inf"), to: labels)) \(count)\n"
                        out += "\(name)_sum\(labels) \(Self.format(sum))\n"
                        out += "\(name)_count\(labels) \(count)\n"
                    }
                }
            } else if let family = scraped[name] {
                out += "# HELP \(name) \(Self.escapeHelp(family.help))\n# TYPE \(name) \(family.kind.rawValue)\n"
                for sample in family.collect() {
                    out += "\(name)\(Self.render(sample.labels)) \(Self.format(sample.value))\n"
                }
            }
        }
        return out
    }

    static func render(_ labels: [(String, String)]) -> String {
        guard !labels.isEmpty else { return "" }
        return "{" + labels.map { "\($0.0)=\"\(escapeLabel($0.1))\"" }.joined(separator: ",") + "}"
    }

    static func adding(_ label: (String, String), to rendered: String) -> String {
        let pair = "\(label.0)=\"\(label.1)\""
        if rendered.isEmpty { return "{\(pair)}" }
        return String(rendered.dropLast()) + ",\(pair)}"
    }

    static func escapeLabel(_ value: String) -> String {
        var out = ""
        for c in value {
            switch c {
            case "\\": out += "\\\\"
            case "\"": out += "\\\""
            case "\n": out += "\\n"
            default: out.append(c)
            }
        }
        return out
    }

    static func escapeHelp(_ value: String) -> String {
        value.split(separator: "\\", omittingEmptySubsequences: false).joined(separator: "\\\\")
            .split(separator: "\n", omittingEmptySubsequences: false).joined(separator: "\\n")
    }

    static func format(_ v: Double) -> String {
        if v.isNaN { return "NaN" }
        if v.isInfinite { return v > 0 ? "+Inf" : "-Inf" }
        if v == v.rounded() && abs(v) < 1e15 { return String(Int64(v)) }
        return "\(v)"
    }
}
