import ControlProtocol
import Exchanges
import Foundation
import MarketData
import TestSupport
import Testing

@testable import FuzzTargets

/// Every saved fuzz input (the seed corpora and the crash inputs the fuzzer found) replayed
/// through its target's property checks in the normal suite: a finding fixed stays fixed.
@Suite struct FuzzRegressionTests {
    static let root = TestEnvironment.repositoryRoot + "/Fuzz"

    /// The files directly in `folder` (none if it does not exist).
    static func inputs(in folder: String) throws -> [String] {
        guard FileManager.default.fileExists(atPath: folder) else { return [] }
        return try FileManager.default.contentsOfDirectory(atPath: folder).filter { !$0.hasPrefix(".") }.sorted()
            .map { folder + "/" + $0 }
    }

    @Test(arguments: FuzzTarget.all.map(\.name))
    func everySavedInputHoldsTheProperties(target name: String) throws {
        let target = try #require(FuzzTarget.named(name))
        let corpus = try Self.inputs(in: Self.root + "/corpus/" + name)
        #expect(!corpus.isEmpty, "Fuzz/corpus/\(name) has no seed inputs")
        let regressions = try Self.inputs(in: Self.root + "/regressions/" + name)
        for path in corpus + regressions {
            let bytes = try [UInt8](Data(contentsOf: URL(fileURLWithPath: path)))
            do {
                try target.run(bytes)
            } catch {
                Issue.record("\(path): \(error)")
            }
        }
    }

    /// `Fuzz/corpus` holds the generated seeds byte for byte (`FuzzSeeds`: recorded OKX traffic, RFC
    /// examples, our encoders). `FUZZ_WRITE_SEEDS=1 swift test --filter theCorpusHolds` rewrites them.
    @Test func theCorpusHoldsTheGeneratedSeeds() throws {
        let fixtures = TestEnvironment.repositoryRoot + "/Tests/Fixtures/okx"
        var recorded: [String: [UInt8]] = [:]
        for name in try FileManager.default.contentsOfDirectory(atPath: fixtures) {
            recorded[name] = try [UInt8](Data(contentsOf: URL(fileURLWithPath: fixtures + "/" + name)))
        }
        let seeds = FuzzSeeds.all(recorded: recorded)
        let names = seeds.map { "\($0.target)/\($0.name)" }
        #expect(Set(names).count == names.count, "two seeds share a name")
        let known = Set(FuzzTarget.all.map(\.name))
        let write = ProcessInfo.processInfo.environment["FUZZ_WRITE_SEEDS"] == "1"
        for seed in seeds {
            #expect(known.contains(seed.target), "a seed for the unknown target \(seed.target)")
            #expect(!seed.bytes.isEmpty, "\(seed.target)/\(seed.name) is empty")
            let folder = Self.root + "/corpus/" + seed.target
            let path = folder + "/" + seed.name
            if write {
                try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
                try Data(seed.bytes).write(to: URL(fileURLWithPath: path))
            } else {
                let stored = FileManager.default.contents(atPath: path).map { [UInt8]($0) }
                #expect(
                    stored == seed.bytes,
                    "Fuzz/corpus/\(seed.target)/\(seed.name) is missing or stale: FUZZ_WRITE_SEEDS=1 swift test --filter theCorpusHolds"
                )
            }
        }
    }

    /// The seeds reach the code they are for: a corpus that only exercises error paths would let the
    /// fuzzer start from nothing.
    @Test func seedsReachDeepIntoTheirTargets() throws {
        func corpus(_ target: String, _ name: String) throws -> [UInt8] {
            try [UInt8](Data(contentsOf: URL(fileURLWithPath: Self.root + "/corpus/\(target)/\(name)")))
        }
        let session = try OKXSessionFuzz.run(OKXSessionFuzz.script(try corpus("okx-session", "candles")))
        #expect(session.contains { if case .connect = $0 { true } else { false } }, "the session never connects")
        #expect(
            session.contains { if case .emit(let event) = $0, event.dataType == .candles { true } else { false } },
            "no candle is emitted")
        let books = try OKXSessionFuzz.run(OKXSessionFuzz.script(try corpus("okx-session", "books")))
        #expect(
            books.contains { if case .emit(let event) = $0, event.dataType == .book { true } else { false } },
            "no book message is emitted: \(books)")
        for name in ["ws_candle", "ws_trades-all", "ws_books_snapshot", "ws_tickers", "books5"] {
            let parsed = OKXFuzz.parse(try corpus("okx-message", name))
            let events = parsed.value?.filter { if case .event = $0 { true } else { false } } ?? []
            #expect(!events.isEmpty, "okx-message/\(name) yields no event: \(parsed)")
        }
        let frames = try ControlFuzz.decode([try corpus("control-handshake", "worker-side")[...]], target: "t").frames
        var coordinator = ControlFuzz.coordinatorMachine()
        let actions = frames.flatMap { coordinator.received($0) }
        #expect(actions.contains { if case .acceptedWorker(_) = $0 { true } else { false } }, "\(actions)")
    }

    @Test func targetNamesAreUnique() {
        let names = FuzzTarget.all.map(\.name)
        #expect(Set(names).count == names.count, "duplicate target names in \(names)")
        #expect(!names.isEmpty)
    }

    /// The split points are fuzzer-chosen (the tail bytes) and always cut inside the input.
    @Test func splitPointsCutInsideTheInputAndReassemble() {
        let input: [UInt8] = Array("GET / HTTP/1.1\r\n\r\n".utf8) + [0x00, 0x05, 0x01, 0x00, 0xFF, 0xFF]
        let points = SplitPoints.points(for: input)
        #expect(points == points.sorted() && points.allSatisfy { (0...input.count).contains($0) })
        #expect(points.contains(5))
        #expect(Array(SplitPoints.pieces(of: input).joined()) == input)
        #expect(SplitPoints.pieces(of: []).joined().isEmpty)
    }
}
