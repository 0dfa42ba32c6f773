import HTTP1Protocol
import TestSupport
import Testing

/// Bytes a hostile or broken peer can send: each must end in a typed error (or a clean parse), never a trap.
@Suite struct HTTPParserHostileInputTests {
    static let chunkedHead = "POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"

    /// Parses `input` whole and drip-fed a byte at a time; both must give the same outcome.
    func outcome(
        _ input: String, role: HTTPParserRole = .request, limits: HTTPLimits = HTTPLimits()
    ) -> Result<
        Int, HTTPParseError
    > {
        let whole = Result { () throws(HTTPParseError) in try parseAll([bytes(input)], role: role, limits: limits) }
        let dripped = Result { () throws(HTTPParseError) in
            try parseAll(bytes(input).map { [$0] }, role: role, limits: limits)
        }
        #expect(whole.map(\.count) == dripped.map(\.count), "chunking changed the outcome")
        return whole.map(\.count)
    }

    @Test func emptyChunkSizeLineIsAMalformedChunk() {
        let result = outcome(Self.chunkedHead + "\r\n")
        guard case .failure(.malformedChunk) = result else {
            Issue.record("expected malformedChunk, got \(result)")
            return
        }
        #expect((try? result.get()) == nil)
    }

    @Test(arguments: [
        ";5\r\nhello\r\n0\r\n\r\n",  // no size before the extension
        "+5\r\nhello\r\n0\r\n\r\n",  // a sign is not a HEXDIG
        "-0\r\n\r\n",  // a "negative zero" must not end the body
        "0x5\r\nhello\r\n0\r\n\r\n",
        " \r\n",
        ";\r\n",
        "7fffffffffffffff\r\n",  // Int.max
        "ffffffffffffffffffff\r\n",  // beyond UInt64
        "00000000000000000005\r\nhello\r\n0\r\n\r\n",  // too many digits for our bound
    ])
    func chunkSizesThatAreNotHexDigitsAreMalformed(sizeLine: String) {
        let result = outcome(Self.chunkedHead + sizeLine)
        guard case .failure(.malformedChunk) = result else {
            Issue.record("expected malformedChunk for \(sizeLine.debugDescription), got \(result)")
            return
        }
    }

    @Test func hugeChunkSizeIsRejectedAgainstTheBodyLimit() {
        // 15 hex digits is the most we read: 2^60 - 1 fits Int with room to add what is already buffered.
        #expect(outcome(Self.chunkedHead + "fffffffffffffff\r\n") == .failure(.bodyTooLarge(limit: 8 << 20)))
    }

    @Test func chunkSizeWithExtensionAndSpacesStillParses() {
        #expect(outcome(Self.chunkedHead + "5 ;name=value\r\nhello\r\n0\r\n\r\n") == .success(1))
    }

    @Test(arguments: [
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999999999999999\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\nhello",
        "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: \r\n\r\n",
    ])
    func absurdContentLengthsAreRejected(input: String) {
        let result = outcome(input)
        switch result {
        case .failure(.invalidContentLength), .failure(.bodyTooLarge): break
        default: Issue.record("expected invalidContentLength or bodyTooLarge, got \(result)")
        }
    }

    @Test(arguments: [
        "GET / HTTP/1.1\nHost: a\n\n",  // bare LF line endings
        "\n",
        "GET / HTTP/1.1\r\nHost: a\nX: b\r\n\r\n",  // one bare LF inside the head
    ])
    func bareLineFeedInTheHeadIsRejectedAtOnce(input: String) {
        // Without this the parser waits for a CRLF CRLF that never comes, until 431 or the request timeout.
        let result = outcome(input)
        guard case .failure(let error) = result, error.status == 400 else {
            Issue.record("expected a 400 error, got \(result)")
            return
        }
    }

    @Test func leadingEmptyLinesAreSkippedHoweverTheyAreSplit() throws {
        // "\r" then "\n\r\n" used to parse an empty start line (400) while "\r\n\r\n" whole was skipped.
        let m = try parseAll(
            [bytes("\r"), bytes("\n\r\n"), bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n")], role: .request)
        #expect(m.count == 1)
    }

    @Test(arguments: [" \r\n\r\n", "\r\n \r\n\r\n", ":\r\n\r\n", "GET\r\n\r\n", "GET / HTTP/1.1 x\r\nHost: a\r\n\r\n"])
    func emptyOrTruncatedRequestLinesAre400(input: String) {
        let result = outcome(input)
        guard case .failure(let error) = result, error.status == 400 else {
            Issue.record("expected 400, got \(result)")
            return
        }
    }

    @Test(arguments: [
        "\r\n\r\n", " \r\n\r\n", "HTTP/1.1\r\n\r\n", "HTTP/1.1 2000 OK\r\n\r\n", "HTTP/1.1 +99 x\r\n\r\n",
    ])
    func emptyOrBrokenStatusLinesAre400(input: String) {
        let result = outcome(input, role: .response)
        guard case .failure(let error) = result, error.status == 400 else {
            Issue.record("expected 400, got \(result)")
            return
        }
    }

    @Test(arguments: [
        "GET / HTTP/1.1\r\nHost a\r\n\r\n", "GET / HTTP/1.1\r\nHost: a\r\n: empty-name\r\n\r\n",
        "GET / HTTP/1.1\r\nHost: a\r\n folded\r\n\r\n",
    ])
    func headerLinesWithoutANameAreMalformed(input: String) {
        let result = outcome(input)
        guard case .failure(.malformedHeader) = result else {
            Issue.record("expected malformedHeader, got \(result)")
            return
        }
    }

    @Test func twoHostFieldsAreRejected() {
        // RFC 9112 §3.2: a server MUST answer 400 to a request with more than one Host field.
        let result = outcome("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n")
        guard case .failure(let error) = result, error.status == 400 else {
            Issue.record("expected 400, got \(result)")
            return
        }
    }

    @Test func endlessTrailersHitTheHeaderLimits() {
        let trailers = String(repeating: "X-T: 1\r\n", count: 20)
        let limits = HTTPLimits(maxHeaderCount: 10)
        #expect(
            outcome(Self.chunkedHead + "0\r\n" + trailers + "\r\n", limits: limits)
                == .failure(.tooManyHeaders(limit: 10)))
        let longTrailers = String(repeating: "X-T: " + String(repeating: "v", count: 50) + "\r\n", count: 5)
        #expect(
            outcome(Self.chunkedHead + "0\r\n" + longTrailers + "\r\n", limits: HTTPLimits(maxHeaderBytes: 200))
                == .failure(.headerTooLarge(limit: 200)))
        #expect(outcome(Self.chunkedHead + "0\r\nX-T: 1\r\n\r\n", limits: limits) == .success(1))
    }

    @Test func consumedPipelinedBytesAreReleased() throws {
        // A client that keeps every read ending mid-request must not grow the parser's storage without bound.
        let request = bytes("GET /hello HTTP/1.1\r\nHost: a\r\n\r\n")
        var parser = HTTPParser(role: .request)
        var parsed = 0
        let split = request.count / 2
        parser.feed(Array(request[..<split]))
        for _ in 0..<5_000 {
            parser.feed(Array(request[split...]) + Array(request[..<split]))
            while try parser.nextMessage() != nil { parsed += 1 }
        }
        #expect(parsed == 5_000)
        #expect(parser.bufferedByteCount == split)
        #expect(parser.retainedByteCount <= 4 * request.count, "consumed bytes are kept")
    }

    /// The verdict on a head does not depend on how it was split into reads (issue 13's fuzzing):
    /// a head of exactly the limit parses whether or not its CRLF CRLF came in the same read, and a
    /// bare LF past the limit is "too large" either way.
    @Test func aHeadAtTheLimitAndABareLFPastItGetTheSameVerdictWholeOrSplit() throws {
        let limits = HTTPLimits(maxHeaderBytes: 64, maxHeaderCount: 8)
        let prefix = "GET / HTTP/1.1\r\nHost: "
        let head = prefix + String(repeating: "a", count: 64 - prefix.utf8.count)
        #expect(head.utf8.count == 64)
        let bytes = Array((head + "\r\n\r\n").utf8)
        for cut in [bytes.count, 64, 66, 67] {
            var parser = HTTPParser(role: .request, limits: limits)
            parser.feed(Array(bytes[..<cut]))
            var message = try parser.nextMessage()
            if message == nil {
                parser.feed(Array(bytes[cut...]))
                message = try parser.nextMessage()
            }
            #expect(message != nil, "cut at \(cut)")
        }
        let bareLF = Array((head + "b\r\nY: z\n\r\n\r\n").utf8)
        for cut in [bareLF.count, 40, 68] {
            var parser = HTTPParser(role: .request, limits: limits)
            parser.feed(Array(bareLF[..<cut]))
            let verdict = Result { () throws(HTTPParseError) in
                var message = try parser.nextMessage()
                if message == nil {
                    parser.feed(Array(bareLF[cut...]))
                    message = try parser.nextMessage()
                }
                return message
            }
            #expect(verdict.mapError { $0 as HTTPParseError } == .failure(.headerTooLarge(limit: 64)), "cut at \(cut)")
        }
    }
}
