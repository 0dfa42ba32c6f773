/// A small, fast, seedable random number generator (SplitMix64).
///
/// Pure code draws randomness only from a generator passed in, so a seed replays a run (STYLE.md §3).
/// Not for secrets or WebSocket masks: those come from `Crypto.SecureRandom`.
public struct SeededRNG: RandomNumberGenerator, Sendable {
    private var state: UInt64

    /// Creates a generator whose sequence is fixed by `seed`.
    public init(seed: UInt64) { state = seed }

    /// The next 64 random bits.
    public mutating func next() -> UInt64 {
        // SplitMix64 constants (Steele, Lea, Flood 2014).
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
