/// A range of bars known to be missing.
public struct Gap: Sendable, Equatable, Hashable {
    /// First and last missing open time (µs), inclusive.
    public var from: Int64
    public var to: Int64
    public var bars: Int
    public var reason: String

    public init(from: Int64, to: Int64, bars: Int, reason: String) {
        self.from = from
        self.to = to
        self.bars = bars
        self.reason = reason
    }
}
