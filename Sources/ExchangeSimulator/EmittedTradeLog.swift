/// The distinct trade ids the WebSocket pushed for one symbol (over `trades-all` and `trades`; an
/// aggregated message counts every fill it covers), so tests can count exactly what was sent.
///
/// Kept as ascending, disjoint, non-adjacent ranges: every push is a contiguous run of ids, so a
/// live feed is one range and each gap in it (a reconnection) adds one. Bounded: only the newest
/// `capacity` ids (below the highest id recorded) are kept; older ones are forgotten, and
/// `forgottenBelow` / `evicted` say so. At most `capacity / 2` ranges fit in that window.
struct EmittedTradeLog {
    /// Ids kept per symbol: about 2.5 minutes of pushes at the default rate (600 fills per real
    /// second with 200 ms bars), and at most ~1 MB of JSON in `/control/emitted-trades`.
    static let capacity: Int64 = 100_000

    private(set) var ranges: [ClosedRange<Int64>] = []
    /// Ids below this were forgotten to stay within `capacity` (nil: nothing forgotten).
    private(set) var forgottenBelow: Int64?
    /// Distinct ids forgotten.
    private(set) var evicted: Int64 = 0
    /// Fills pushed, counting each subscription's copy (more than the distinct ids when several
    /// connections subscribe the same symbol, or one connection both trade channels).
    private(set) var pushed = 0
    /// WebSocket messages that carried trades.
    private(set) var messages = 0

    /// Distinct ids kept.
    var count: Int64 { ranges.reduce(0) { $0 + Int64($1.count) } }

    /// Records one push of the fills `ids` (contiguous) in `messages` messages.
    mutating func record(_ ids: ClosedRange<Int64>, messages: Int) {
        self.messages += messages
        pushed += ids.count
        insert(ids)
        trim()
    }

    private mutating func insert(_ ids: ClosedRange<Int64>) {
        // Ranges before `end` start at or before `upperBound + 1`; of those, the ones from `start`
        // end at or after `lowerBound - 1`, so ranges[start..<end] touch `ids`. Pushes usually
        // extend the last range, so both scans usually stop at once.
        var end = ranges.count
        while end > 0 && ranges[end - 1].lowerBound > ids.upperBound + 1 { end -= 1 }
        var start = end
        while start > 0 && ranges[start - 1].upperBound >= ids.lowerBound - 1 { start -= 1 }
        var merged = ids
        if start < end {
            merged = min(ids.lowerBound, ranges[start].lowerBound)...max(ids.upperBound, ranges[end - 1].upperBound)
        }
        ranges.replaceSubrange(start..<end, with: [merged])
    }

    private mutating func trim() {
        guard let highest = ranges.last?.upperBound else { return }
        let oldestKept = highest - Self.capacity + 1
        var drop = 0
        while drop < ranges.count && ranges[drop].upperBound < oldestKept {
            evicted += Int64(ranges[drop].count)
            drop += 1
        }
        if drop > 0 { ranges.removeFirst(drop) }
        if let first = ranges.first, first.lowerBound < oldestKept {
            evicted += oldestKept - first.lowerBound
            ranges[0] = oldestKept...first.upperBound
        }
        if evicted > 0 { forgottenBelow = oldestKept }
    }
}
