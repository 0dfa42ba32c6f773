import CollectorCore

/// Ways of cutting one input into pieces, so a codec test proves the result does not depend on
/// how bytes arrive (STYLE.md §8: whole input, one byte at a time, random splits).
public enum DecoderVerifier {
    /// The input whole, one byte at a time, and split at random points for each seed.
    public static func chunkings(of bytes: [UInt8], seeds: [UInt64] = [1, 2, 3, 4, 5]) -> [[[UInt8]]] {
        var result: [[[UInt8]]] = [[bytes], bytes.map { [$0] }]
        for seed in seeds {
            var rng = SeededRNG(seed: seed)
            var pieces: [[UInt8]] = []
            var index = 0
            while index < bytes.count {
                let n = Int.random(in: 1...max(1, min(64, bytes.count - index)), using: &rng)
                pieces.append(Array(bytes[index..<index + n]))
                index += n
            }
            result.append(pieces)
        }
        return result
    }

    /// Runs `decode` over every chunking of `bytes` and returns each run's output, for comparison.
    public static func decodeAllChunkings<Output>(
        _ bytes: [UInt8], seeds: [UInt64] = [1, 2, 3, 4, 5], decode: ([[UInt8]]) throws -> Output
    ) rethrows -> [Output] {
        try chunkings(of: bytes, seeds: seeds).map(decode)
    }
}
