import CollectorCore
import Foundation
import TestSupport
import Testing
import WireCore

/// Our CRC-32 against Python's `zlib.crc32` (an independent implementation) on seeded random inputs,
/// and the known check value.
@Suite struct CRC32Tests {
    @Test func theCheckValueIsCBF43926() {
        #expect(CRC32.checksum(Array("123456789".utf8)) == 0xCBF4_3926)
        #expect(CRC32.checksum([UInt8]()) == 0)
    }

    @Test func randomInputsMatchZlib() async throws {
        var rng = SeededRNG(seed: 32)
        var inputs: [[UInt8]] = []
        for _ in 0..<200 {
            inputs.append((0..<Int(rng.next() % 300)).map { _ in UInt8(truncatingIfNeeded: rng.next()) })
        }
        let hex = inputs.map { $0.map { String(format: "%02x", $0) }.joined() }.joined(separator: "\n")
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "crc")
        try hex.write(toFile: directory + "/inputs", atomically: true, encoding: .utf8)
        let script = """
            import sys, zlib
            for line in open(sys.argv[1]).read().split("\\n"):
                v = zlib.crc32(bytes.fromhex(line))
                print(v - (1 << 32) if v >= (1 << 31) else v)
            """
        let result = try await ExternalProcess.run(TestEnvironment.python, ["-c", script, directory + "/inputs"])
        #expect(result.status == 0, "\(result.stderr)")
        let theirs = result.stdout.split(separator: "\n").map { Int32($0) }
        #expect(theirs.count == inputs.count)
        for (input, expected) in zip(inputs, theirs) {
            #expect(CRC32.signed(input) == expected, "\(input.count) bytes")
            // The generic (byte-wise) path and the piecewise accumulator agree with it.
            #expect(CRC32.signed(AnySequence(input)) == expected)
            var crc = CRC32Accumulator()
            let cut = input.count / 3
            input[..<cut].withUnsafeBufferPointer { crc.add($0) }
            for byte in input[cut...] { crc.add(byte: byte) }
            #expect(crc.signed == expected)
        }
    }

    /// Pieces kept by their raw register and length, joined with a separator, give the checksum of
    /// the joined bytes (every length from 0 to 70 bytes a piece: the 16-, 4k- and 1-byte steps).
    @Test func piecesJoinedGiveTheChecksumOfTheirText() {
        var rng = SeededRNG(seed: 33)
        for round in 0..<200 {
            var pieces: [CRC32Piece] = []
            var text: [UInt8] = []
            for k in 0..<Int(rng.next() % 6) {
                let first = (0..<Int(rng.next() % 40)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                let second = (0..<(round % 31)).map { _ in UInt8(truncatingIfNeeded: rng.next()) }
                if k > 0 { text.append(UInt8(ascii: ":")) }
                text += first + [UInt8(ascii: "=")] + second
                pieces.append(
                    first.withUnsafeBufferPointer { f in
                        second.withUnsafeBufferPointer { CRC32Piece(f, UInt8(ascii: "="), $0) }
                    })
            }
            var crc = CRC32Accumulator()
            pieces.withUnsafeBufferPointer { crc.add($0, separatedBy: UInt8(ascii: ":")) }
            #expect(crc.value == CRC32.checksum(text), "round \(round)")
        }
    }
}
