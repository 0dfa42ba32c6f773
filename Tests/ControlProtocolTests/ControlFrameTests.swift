import ControlProtocol
import Testing

@Suite struct ControlFrameTests {
    static let frames = [
        ControlFrame(type: 1, body: Array("{\"hello\":1}".utf8)),
        ControlFrame(type: 2, body: []),
        ControlFrame(type: 255, body: (0..<300).map { UInt8($0 & 0xFF) }),
    ]

    @Test func encodingIsBigEndianLengthThenTypeThenBody() {
        #expect(ControlFrame(type: 7, body: [0xAA, 0xBB]).encoded() == [0, 0, 0, 3, 7, 0xAA, 0xBB])
        let big = ControlFrame(type: 1, body: Array(repeating: 0, count: 0x1_0203 - 1)).encoded()
        #expect(Array(big.prefix(5)) == [0x00, 0x01, 0x02, 0x03, 1])
    }

    /// The stream split at every byte boundary gives the same frames, in order.
    @Test func framesSurviveEverySplitOfTheStream() throws {
        let wire = Self.frames.flatMap { $0.encoded() }
        for cut in 0...wire.count {
            var decoder = ControlFrameDecoder()
            var got = try decoder.feed(wire[..<cut])
            got += try decoder.feed(wire[cut...])
            #expect(got == Self.frames, "split at \(cut)")
            #expect(decoder.bufferedByteCount == 0)
        }
        var byteByByte = ControlFrameDecoder()
        var got: [ControlFrame] = []
        for b in wire { got += try byteByByte.feed([b]) }
        #expect(got == Self.frames)
    }

    @Test func aZeroLengthIsAProtocolErrorAndTheStreamStaysFailed() {
        var decoder = ControlFrameDecoder()
        #expect(throws: ControlFrameError.emptyFrame) { try decoder.feed([0, 0, 0, 0, 9]) }
        #expect(throws: ControlFrameError.emptyFrame) { try decoder.feed(ControlFrame(type: 1, body: []).encoded()) }
        #expect(decoder.bufferedByteCount == 0, "nothing after the bad length is kept")
    }

    /// A length above the limit is refused as soon as the prefix is read, before any body is buffered.
    @Test func aLengthAboveTheLimitIsRefusedFromItsPrefix() throws {
        var decoder = ControlFrameDecoder(maxFrameBytes: 10)
        #expect(decoder.maxFrameBytes == ControlFrameDecoder.minimumLimit, "the limit is at least 1 MiB")
        let n = UInt32(ControlFrameDecoder.minimumLimit + 1)
        let prefix = [UInt8(n >> 24), UInt8((n >> 16) & 0xFF), UInt8((n >> 8) & 0xFF), UInt8(n & 0xFF)]
        // Frames ahead of the bad length in the same read are delivered; the next read throws.
        let ahead = try decoder.feed(Self.frames[0].encoded() + prefix)
        #expect(ahead == [Self.frames[0]])
        #expect(throws: ControlFrameError.frameTooLarge(length: n, limit: ControlFrameDecoder.minimumLimit)) {
            try decoder.feed([1])
        }
        var exact = ControlFrameDecoder()
        let limitFrame = ControlFrame(
            type: 3, body: Array(repeating: 0x41, count: ControlFrameDecoder.minimumLimit - 1))
        #expect(try exact.feed(limitFrame.encoded()) == [limitFrame], "exactly the limit is accepted")
        #expect(ControlFrameDecoder.limit(forShards: 100_000) == 100_000 * 512)
        #expect(ControlFrameDecoder.limit(forShards: 10) == ControlFrameDecoder.minimumLimit)
    }
}
