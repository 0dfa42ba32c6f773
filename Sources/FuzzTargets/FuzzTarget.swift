// The fuzz harness's targets (issue 13): one function per decoder that checks properties, not only
// "no crash". The libFuzzer driver (`Fuzz/Driver`, built only by `cluster/fuzz.sh`) and the normal
// test suite (`FuzzRegressionTests`, which replays the corpora and the saved crash inputs) both run
// these, so a finding becomes a regression test by saving its input.

/// A property a target found broken: the input, replayed, shows it again.
public struct FuzzFinding: Error, CustomStringConvertible, Sendable {
    /// The target that found it.
    public let target: String
    /// What property broke, with the values that broke it.
    public let message: String

    public init(target: String, _ message: String) {
        self.target = target
        self.message = message
    }

    public var description: String { "\(target): \(message)" }
}

/// One fuzz target: a name (`cluster/fuzz.sh NAME`, the corpus folder `Fuzz/corpus/NAME`) and a check.
public struct FuzzTarget: Sendable {
    /// The target's name: lowercase words joined by dashes.
    public let name: String
    /// What it feeds and what it checks (listed by `collector-fuzz --list`).
    public let summary: String
    /// Runs one input; throws a finding when a property breaks. It must not crash on any input.
    public let run: @Sendable ([UInt8]) throws(FuzzFinding) -> Void

    public init(
        name: String, summary: String, run: @escaping @Sendable ([UInt8]) throws(FuzzFinding) -> Void
    ) {
        self.name = name
        self.summary = summary
        self.run = run
    }

    /// Every target, in the order `cluster/fuzz.sh` runs them.
    public static let all: [FuzzTarget] =
        httpTargets + webSocketTargets + jsonTargets + configurationTargets + exchangeTargets + controlTargets
        + fileTargets

    /// The target called `name`.
    public static func named(_ name: String) -> FuzzTarget? { all.first { $0.name == name } }
}

/// Where an input is cut for the "split gives the same result" property.
///
/// The fuzzer chooses the points: the last six bytes, read as three 16-bit numbers, each taken modulo
/// `count + 1` and sorted. The whole input is still the payload, so a seed taken from real traffic
/// stays a valid message and its tail merely picks where it is cut.
public enum SplitPoints {
    /// The input cut into at most four pieces (some may be empty) at the fuzzer-chosen points.
    public static func pieces(of input: [UInt8]) -> [ArraySlice<UInt8>] {
        let cuts = points(for: input)
        var pieces: [ArraySlice<UInt8>] = []
        var start = 0
        for cut in cuts {
            pieces.append(input[start..<cut])
            start = cut
        }
        pieces.append(input[start...])
        return pieces
    }

    /// The three cut offsets, sorted, each in `0...input.count`.
    public static func points(for input: [UInt8]) -> [Int] {
        guard input.count >= 6 else { return [0, input.count / 2, input.count] }
        var cuts: [Int] = []
        for index in 0..<3 {
            let at = input.count - 6 + 2 * index
            let value = Int(input[at]) << 8 | Int(input[at + 1])
            cuts.append(value % (input.count + 1))
        }
        return cuts.sorted()
    }
}

/// Throws a finding unless `condition` holds.
@inline(__always)
func require(
    _ condition: Bool, _ target: String, _ message: @autoclosure () -> String
) throws(FuzzFinding) {
    if !condition { throw FuzzFinding(target: target, message()) }
}
