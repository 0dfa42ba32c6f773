import CollectorCore
import Testing
import WireCore

@Suite struct ByteReaderWriterTests {
    @Test func integersRoundTripBigEndian() {
        var writer = ByteWriter()
        writer.writeInteger(UInt32(0x0102_0304))
        writer.writeInteger(UInt16(0xABCD))
        writer.writeUInt8(7)
        #expect(writer.bytes == [1, 2, 3, 4, 0xAB, 0xCD, 7])
        var reader = ByteReader(writer.bytes)
        #expect(reader.getInteger(as: UInt32.self) == 0x0102_0304)
        #expect(reader.readInteger(as: UInt32.self) == 0x0102_0304)
        #expect(reader.readInteger(as: UInt16.self) == 0xABCD)
        #expect(reader.readUInt8() == 7)
        #expect(reader.readUInt8() == nil)
        #expect(reader.readInteger(as: UInt16.self) == nil)
    }

    @Test func lengthPrefixIsBackPatched() {
        var writer = ByteWriter()
        writer.writeLengthPrefixed { $0.writeString("hello") }
        #expect(writer.bytes == [0, 0, 0, 5] + Array("hello".utf8))
    }

    @Test func getsOutsideTheBytesReturnNilInsteadOfTrapping() {
        // Offsets often come from a length field on the wire: negative or huge ones must not trap.
        var reader = ByteReader([1, 2, 3, 4])
        reader.skip(1)
        #expect(reader.getUInt8(at: 2) == 4)
        #expect(reader.getUInt8(at: 3) == nil)
        #expect(reader.getUInt8(at: -1) == nil)
        #expect(reader.getUInt8(at: .max) == nil)
        #expect(reader.getUInt8(at: .min) == nil)
        #expect(reader.getInteger(as: UInt16.self, at: 1) == 0x0304)
        #expect(reader.getInteger(as: UInt16.self, at: 2) == nil)
        #expect(reader.getInteger(as: UInt16.self, at: -1) == nil)
        #expect(reader.getInteger(as: UInt64.self, at: .max) == nil)
        #expect(reader.getInteger(as: UInt32.self, at: .min) == nil)
        #expect(reader.readBytes(.max) == nil && reader.readBytes(-1) == nil)
    }

    @Test func signedIntegersReadTwosComplementInsteadOfTrapping() {
        // A byte above 0x7F read as Int8 used to trap converting to the signed type.
        var reader = ByteReader([0xFF, 0xFF, 0xFE, 0x80, 0x00, 0x00, 0x00])
        #expect(reader.readInteger(as: Int8.self) == -1)
        #expect(reader.readInteger(as: Int16.self) == -2)
        #expect(reader.readInteger(as: Int32.self) == Int32.min)
    }

    @Test func appendCompactsReadBytes() {
        var reader = ByteReader([1, 2, 3, 4])
        reader.skip(3)
        reader.append(contentsOf: [5])
        #expect(Array(reader.unreadBytes) == [4, 5])
    }
}

@Suite struct Base64Tests {
    // RFC 4648 §10 vectors.
    @Test(arguments: [
        ("", ""), ("f", "Zg=="), ("fo", "Zm8="), ("foo", "Zm9v"), ("foob", "Zm9vYg=="), ("fooba", "Zm9vYmE="),
        ("foobar", "Zm9vYmFy"),
    ])
    func encodesAndDecodesRFC4648Vectors(plain: String, encoded: String) {
        #expect(Base64.encode(Array(plain.utf8)) == encoded)
        #expect(Base64.decode(encoded) == Array(plain.utf8))
    }

    @Test(arguments: ["Zm9", "Zm9v!A==", "Z===", "=Zm9"])
    func rejectsMalformedInput(text: String) {
        #expect(Base64.decode(text) == nil)
    }
}

@Suite struct UTF8ValidationTests {
    @Test(arguments: [
        [UInt8](), Array("plain ascii text that is long enough".utf8), Array("κόσμε".utf8), [0xF0, 0x9F, 0x98, 0x80],
        [0xEF, 0xBF, 0xBF], [0xF4, 0x8F, 0xBF, 0xBF],
    ])
    func acceptsWellFormed(bytes: [UInt8]) {
        #expect(UTF8Validation.isValid(bytes))
    }

    @Test(arguments: [
        [0xC0, 0xAF],  // overlong '/'
        [0xE0, 0x80, 0xAF],  // overlong
        [0xED, 0xA0, 0x80],  // surrogate U+D800
        [0xF4, 0x90, 0x80, 0x80],  // above U+10FFFF
        [0xF5, 0x80, 0x80, 0x80],  // invalid lead
        [0x80],  // lone continuation
        [0xCE],  // truncated
        Array("0123456789".utf8) + [0xFF],  // invalid after an ASCII run
    ])
    func rejectsMalformed(bytes: [UInt8]) {
        #expect(!UTF8Validation.isValid(bytes))
    }

    @Test func incrementalAcceptsSplitCodePoint() {
        var v = UTF8Validation.Incremental()
        let bytes: [UInt8] = Array("κό".utf8)
        #expect(bytes.withUnsafeBytes { v.feed(UnsafeRawBufferPointer(rebasing: $0[0..<1])) })
        #expect(!v.isComplete)
        #expect(bytes.withUnsafeBytes { v.feed(UnsafeRawBufferPointer(rebasing: $0[1...])) })
        #expect(v.isComplete)
    }
}

@Suite struct BackoffTests {
    @Test func delaysGrowThenCapWithJitterWithinBounds() {
        var backoff = Backoff(initial: .milliseconds(500), maximum: .seconds(30))
        var rng = SeededRNG(seed: 42)
        var previousBase = Duration.zero
        for attempt in 1...12 {
            let delay = backoff.nextDelay(using: &rng)
            let base = backoff.baseDelay(forAttempt: attempt)
            #expect(base >= previousBase)
            #expect(base <= .seconds(30))
            #expect(delay >= base / 2 && delay <= base)
            previousBase = base
        }
        #expect(backoff.baseDelay(forAttempt: 12) == .seconds(30))
        backoff.reset()
        #expect(backoff.attempts == 0)
    }

    @Test func seededRNGReplaysFromSeed() {
        var a = SeededRNG(seed: 7)
        var b = SeededRNG(seed: 7)
        #expect((0..<5).map { _ in a.next() } == (0..<5).map { _ in b.next() })
    }
}
