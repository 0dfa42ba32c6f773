import Foundation
import FuzzTargets
import TestSupport
import Testing

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

    @Test func targetNamesAreUniqueAndHaveADictionaryWhenTextual() {
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
