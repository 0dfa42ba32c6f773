/// A candle timeframe: a case-sensitive, exchange-neutral key (`1m` ≠ `1M`; `1Dutc` is its own key).
///
/// | keys | length | aligned to |
/// |---|---|---|
/// | `1s` `1m` `3m` `5m` `15m` `30m` `1H` `2H` `4H` | fixed | UTC (same in every zone with whole-hour offsets) |
/// | `6H` `12H` `1D` `2D` `3D` `5D` `1W` | fixed | Hong Kong time, UTC+8 (OKX's convention for unsuffixed bars) |
/// | `1M` `3M` | calendar months | Hong Kong time, UTC+8 |
/// | `6Hutc` `12Hutc` `1Dutc` `2Dutc` `3Dutc` `5Dutc` `1Wutc` | fixed | UTC |
/// | `1Mutc` `3Mutc` | calendar months | UTC |
///
/// Each exchange adapter maps the keys it supports onto its own interval names.
public struct Timeframe: Hashable, Sendable, Comparable, CustomStringConvertible {
    /// The key, e.g. `1m`, `1H`, `1Dutc`.
    public let key: String
    /// Fixed bar length in microseconds, or nil for calendar months.
    public let fixedMicroseconds: Int64?
    /// Months per bar for calendar timeframes (0 for fixed ones).
    public let months: Int
    /// Offset of the alignment zone from UTC, in microseconds (UTC+8 = 8 h).
    public let zoneOffsetMicroseconds: Int64

    private static let second: Int64 = 1_000_000
    private static let minute = 60 * second
    private static let hour = 60 * minute
    private static let day = 24 * hour
    private static let hongKong = 8 * hour

    /// Every key we know, in ascending bar length.
    public static let all: [Timeframe] = {
        var list: [Timeframe] = [
            .init(key: "1s", fixed: second), .init(key: "1m", fixed: minute), .init(key: "3m", fixed: 3 * minute),
            .init(key: "5m", fixed: 5 * minute), .init(key: "15m", fixed: 15 * minute),
            .init(key: "30m", fixed: 30 * minute), .init(key: "1H", fixed: hour), .init(key: "2H", fixed: 2 * hour),
            .init(key: "4H", fixed: 4 * hour),
        ]
        for (key, length) in [
            ("6H", 6 * hour), ("12H", 12 * hour), ("1D", day), ("2D", 2 * day), ("3D", 3 * day), ("5D", 5 * day),
            ("1W", 7 * day),
        ] {
            list.append(.init(key: key, fixed: length, zone: hongKong))
            list.append(.init(key: key + "utc", fixed: length, zone: 0))
        }
        for (key, months) in [("1M", 1), ("3M", 3)] {
            list.append(.init(key: key, months: months, zone: hongKong))
            list.append(.init(key: key + "utc", months: months, zone: 0))
        }
        return list
    }()

    private static let byKey: [String: Timeframe] = Dictionary(uniqueKeysWithValues: all.map { ($0.key, $0) })
    private static let keyBytes: [([UInt8], Timeframe)] = all.map { (Array($0.key.utf8), $0) }

    /// The timeframe whose key is exactly `bytes` (no String allocation; for parsers).
    public static func matching(_ bytes: UnsafeRawBufferPointer) -> Timeframe? {
        for (key, tf) in keyBytes where key.count == bytes.count {
            var equal = true
            for i in 0..<key.count where key[i] != bytes[i] {
                equal = false
                break
            }
            if equal { return tf }
        }
        return nil
    }

    private init(key: String, fixed: Int64, zone: Int64 = 0) {
        self.key = key
        self.fixedMicroseconds = fixed
        self.months = 0
        self.zoneOffsetMicroseconds = zone
    }

    private init(key: String, months: Int, zone: Int64) {
        self.key = key
        self.fixedMicroseconds = nil
        self.months = months
        self.zoneOffsetMicroseconds = zone
    }

    /// The timeframe for `key`, or nil if the key is unknown (keys are case-sensitive).
    public init?(_ key: String) {
        guard let tf = Self.byKey[key] else { return nil }
        self = tf
    }

    public var description: String { key }

    public static func == (lhs: Timeframe, rhs: Timeframe) -> Bool { lhs.key == rhs.key }
    public func hash(into hasher: inout Hasher) { hasher.combine(key) }
    public static func < (lhs: Timeframe, rhs: Timeframe) -> Bool {
        lhs.approximateMicroseconds < rhs.approximateMicroseconds
    }

    /// Bar length for ordering and rough arithmetic (a month counts as 30 days).
    public var approximateMicroseconds: Int64 { fixedMicroseconds ?? Int64(months) * 30 * Self.day }

    /// The open time of the bar after the one opening at `openTime` (µs since the epoch).
    public func nextOpenTime(after openTime: Int64) -> Int64 {
        if let fixed = fixedMicroseconds { return openTime + fixed }
        return Self.addMonths(months, to: openTime, zoneOffset: zoneOffsetMicroseconds)
    }

    /// The open time of the bar before the one opening at `openTime`.
    public func previousOpenTime(before openTime: Int64) -> Int64 {
        if let fixed = fixedMicroseconds { return openTime - fixed }
        return Self.addMonths(-months, to: openTime, zoneOffset: zoneOffsetMicroseconds)
    }

    /// Open times strictly between `a` and `b` (both bar opens), oldest first, at most `limit`.
    public func openTimes(strictlyBetween a: Int64, and b: Int64, limit: Int = 100_000) -> [Int64] {
        var out: [Int64] = []
        var t = nextOpenTime(after: a)
        while t < b && out.count < limit {
            out.append(t)
            t = nextOpenTime(after: t)
        }
        return out
    }

    // Civil-calendar arithmetic (Howard Hinnant's days_from_civil / civil_from_days).
    static func addMonths(_ delta: Int, to time: Int64, zoneOffset: Int64) -> Int64 {
        let local = time + zoneOffset
        let days = floorDiv(local, day)
        let within = local - days * day
        var (y, m, d) = civil(fromDays: days)
        var monthIndex = y * 12 + (m - 1) + delta
        y = floorDiv(Int64(monthIndex), 12).asInt
        monthIndex -= y * 12
        m = monthIndex + 1
        d = min(d, daysInMonth(y, m))
        return daysFromCivil(y, m, d) * day + within - zoneOffset
    }

    public static func floorDiv(_ a: Int64, _ b: Int64) -> Int64 { a >= 0 ? a / b : -((-a + b - 1) / b) }

    static func civil(fromDays z0: Int64) -> (Int, Int, Int) {
        let z = z0 + 719_468
        let era = (z >= 0 ? z : z - 146_096) / 146_097
        let doe = z - era * 146_097
        let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365
        let y = yoe + era * 400
        let doy = doe - (365 * yoe + yoe / 4 - yoe / 100)
        let mp = (5 * doy + 2) / 153
        let d = doy - (153 * mp + 2) / 5 + 1
        let m = mp < 10 ? mp + 3 : mp - 9
        return (Int(y + (m <= 2 ? 1 : 0)), Int(m), Int(d))
    }

    static func daysFromCivil(_ y0: Int, _ m: Int, _ d: Int) -> Int64 {
        let y = Int64(m <= 2 ? y0 - 1 : y0)
        let era = (y >= 0 ? y : y - 399) / 400
        let yoe = y - era * 400
        let mp = Int64(m > 2 ? m - 3 : m + 9)
        let doy = (153 * mp + 2) / 5 + Int64(d) - 1
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy
        return era * 146_097 + doe - 719_468
    }

    static func daysInMonth(_ y: Int, _ m: Int) -> Int {
        switch m {
        case 2: (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 ? 29 : 28
        case 4, 6, 9, 11: 30
        default: 31
        }
    }
}

extension Int64 {
    fileprivate var asInt: Int { Int(self) }
}

/// UTC calendar helpers for partition names and ISO-8601 text.
public enum UTCCalendar {
    /// (year, month, day) of a µs timestamp in UTC.
    public static func date(ofMicroseconds t: Int64) -> (year: Int, month: Int, day: Int) {
        let days = Timeframe.floorDiv(t, 86_400_000_000)
        let (y, m, d) = Timeframe.civil(fromDays: days)
        return (y, m, d)
    }

    /// Microseconds at 00:00 UTC of the given date.
    public static func microseconds(year: Int, month: Int, day: Int) -> Int64 {
        Timeframe.daysFromCivil(year, month, day) * 86_400_000_000
    }

    /// `2024-01-02T03:04:05.678Z` (millisecond precision, or microseconds when they are not zero);
    /// with `alwaysMicroseconds`, always six fraction digits (`…05.678000Z`), as the data API writes times.
    public static func iso8601(microseconds t: Int64, alwaysMicroseconds: Bool = false) -> String {
        let days = Timeframe.floorDiv(t, 86_400_000_000)
        let (y, m, d) = Timeframe.civil(fromDays: days)
        let rem = t - days * 86_400_000_000
        let seconds = rem / 1_000_000
        let micros = rem % 1_000_000
        func pad(_ v: Int64, _ w: Int) -> String {
            let s = String(v)
            return String(repeating: "0", count: max(0, w - s.count)) + s
        }
        let base =
            "\(pad(Int64(y), 4))-\(pad(Int64(m), 2))-\(pad(Int64(d), 2))T\(pad(seconds / 3600, 2)):\(pad(seconds / 60 % 60, 2)):\(pad(seconds % 60, 2))"
        if micros % 1000 == 0 && !alwaysMicroseconds { return base + ".\(pad(micros / 1000, 3))Z" }
        return base + ".\(pad(micros, 6))Z"
    }
}
