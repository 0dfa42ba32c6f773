import HTTP1Protocol
import TestSupport
import Testing

/// Feeds `pieces` into a parser, collecting every message; rethrows the first parse error.
func parseAll(
    _ pieces: [[UInt8]], role: HTTPParserRole, limits: HTTPLimits = HTTPLimits(), close: Bool = false
)
    throws(HTTPParseError) -> [HTTPMessage]
{
    var parser = HTTPParser(role: role, limits: limits)
    var out: [HTTPMessage] = []
    for piece in pieces {
        parser.feed(piece)
        while let message = try parser.nextMessage() { out.append(message) }
    }
    if close, let last = try parser.connectionClosed() { out.append(last) }
    return out
}

func bytes(_ s: String) -> [UInt8] { Array(s.utf8) }

@Suite struct HTTPRequestParserTests {
    @Test func parsesPipelinedRequestsIdenticallyForEveryChunking() throws {
        let input = bytes(
            "GET /health HTTP/1.1\r\nHost: x\r\n\r\n"
                + "POST /api/v1/subscribe HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Type: application/json\r\n\r\nhello"
                + "PUT /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n"
        )
        let runs = try DecoderVerifier.decodeAllChunkings(input) { try parseAll($0, role: .request) }
        for run in runs {
            #expect(run.count == 3)
            guard run.count == 3, case .request(let a) = run[0], case .request(let b) = run[1],
                case .request(let c) = run[2]
            else { continue }
            #expect(a.head.method == "GET" && a.head.target == "/health" && a.body.isEmpty)
            #expect(b.head.path == "/api/v1/subscribe" && b.body == bytes("hello"))
            #expect(b.head.headers["content-type"] == "application/json")
            #expect(c.body == bytes("hello world"))
        }
    }

    @Test func keepAliveFollowsVersionAndConnectionHeader() throws {
        let m = try parseAll(
            [
                bytes(
                    "GET / HTTP/1.1\r\nHost: a\r\n\r\nGET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
                        + "GET / HTTP/1.0\r\n\r\nGET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
            ], role: .request)
        let alive = m.map { message -> Bool in
            if case .request(let r) = message { return r.head.isKeepAlive }
            return false
        }
        #expect(alive == [true, false, false, true])
    }

    @Test func queryAndPathAreSplit() throws {
        let m = try parseAll(
            [bytes("GET /api/v1/data/BTC-USDT/1m?limit=10&x=y HTTP/1.1\r\nHost: a\r\n\r\n")], role: .request)
        guard case .request(let r) = try #require(m.first) else { return }
        #expect(r.head.path == "/api/v1/data/BTC-USDT/1m")
        #expect(r.head.query == "limit=10&x=y")
    }

    @Test(arguments: [
        ("GET / HTTP/1.1\r\nHost: a\r\nBad Header: x\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", 400),
        ("GET /  HTTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/2.0\r\nHost: a\r\n\r\n", 505),
        ("GET / FTP/1.1\r\nHost: a\r\n\r\n", 400),
        ("GET / HTTP/1.1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 12a\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 501),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400),
        ("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX", 400),
    ])
    func malformedRequestsMapToStatus(input: String, status: Int) {
        #expect {
            _ = try parseAll([bytes(input)], role: .request)
        } throws: { error in
            (error as? HTTPParseError)?.status == status
        }
    }

    @Test func headerLargerThanLimitIsRejectedBeforeTheBlankLineArrives() {
        let limits = HTTPLimits(maxHeaderBytes: 64)
        let input = bytes("GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + String(repeating: "a", count: 100))
        #expect(throws: HTTPParseError.headerTooLarge(limit: 64)) {
            _ = try parseAll([input], role: .request, limits: limits)
        }
    }

    @Test func tooManyHeadersIs431() {
        let limits = HTTPLimits(maxHeaderCount: 3)
        let input = bytes("GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n")
        #expect(throws: HTTPParseError.tooManyHeaders(limit: 3)) {
            _ = try parseAll([input], role: .request, limits: limits)
        }
    }

    @Test func bodyLargerThanLimitIsRejectedFromItsDeclaredLength() {
        let limits = HTTPLimits(maxBodyBytes: 10)
        #expect(throws: HTTPParseError.bodyTooLarge(limit: 10)) {
            _ = try parseAll(
                [bytes("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n")], role: .request, limits: limits)
        }
        #expect(throws: HTTPParseError.bodyTooLarge(limit: 10)) {
            _ = try parseAll(
                [bytes("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nabcdef\r\n6\r\n")],
                role: .request, limits: limits)
        }
    }

    @Test func afterAnErrorTheParserKeepsFailing() {
        var parser = HTTPParser(role: .request)
        parser.feed(bytes("BAD\r\n\r\n"))
        #expect(throws: HTTPParseError.self) { try parser.nextMessage() }
        parser.feed(bytes("GET / HTTP/1.1\r\nHost: a\r\n\r\n"))
        #expect(throws: HTTPParseError.self) { try parser.nextMessage() }
    }

    @Test func midMessageIsReportedForSlowClientDetection() throws {
        var parser = HTTPParser(role: .request)
        #expect(!parser.isMidMessage)
        parser.feed(bytes("GET / HT"))
        #expect(try parser.nextMessage() == nil)
        #expect(parser.isMidMessage)
    }
}

@Suite struct HTTPResponseParserTests {
    @Test func parsesLengthChunkedAndUntilCloseBodies() throws {
        let input = bytes(
            "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nabc"
                + "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nno\r\n0\r\n\r\n"
                + "HTTP/1.1 204 No Content\r\n\r\n"
                + "HTTP/1.0 200 OK\r\n\r\nrest of stream")
        let runs = try DecoderVerifier.decodeAllChunkings(input) { try parseAll($0, role: .response, close: true) }
        for run in runs {
            let bodies = run.compactMap { m -> String? in
                if case .response(let r) = m { return "\(r.status):\(r.bodyText)" }
                return nil
            }
            #expect(bodies == ["200:abc", "404:no", "204:", "200:rest of stream"])
        }
    }

    @Test func headResponseHasNoBodyDespiteContentLength() throws {
        var parser = HTTPParser(role: .response)
        parser.requestSent(method: "HEAD")
        parser.feed(bytes("HTTP/1.1 200 OK\r\nContent-Length: 1234\r\n\r\n"))
        let m = try parser.nextMessage()
        guard case .response(let r) = m else { Issue.record("no response"); return }
        #expect(r.head.headers["Content-Length"] == "1234" && r.body.isEmpty)
    }

    @Test func upgradeLeavesFollowingBytesForTheNextProtocol() throws {
        var parser = HTTPParser(role: .response)
        parser.feed(bytes("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n") + [0x81, 0x00])
        let m = try parser.nextMessage()
        guard case .response(let r) = m else { Issue.record("no response"); return }
        #expect(r.status == 101)
        #expect(parser.takeRemainingBytes() == [0x81, 0x00])
    }

    @Test func truncatedBodyAtCloseIsAnError() {
        #expect(throws: HTTPParseError.connectionClosedEarly) {
            _ = try parseAll([bytes("HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")], role: .response, close: true)
        }
    }
}

@Suite struct HTTPSerializerTests {
    @Test func requestRoundTripsThroughParser() throws {
        let request = HTTPRequest(
            head: HTTPRequestHead(method: "POST", target: "/x?a=1", headers: ["Host": "h", "X-A": "b"]),
            body: bytes("{}"))
        let parsed = try parseAll([HTTPSerializer.encode(request)], role: .request)
        guard case .request(let r) = try #require(parsed.first) else { return }
        #expect(r.head.target == "/x?a=1" && r.body == bytes("{}") && r.head.headers["Content-Length"] == "2")
    }

    @Test func responseRoundTripsIncludingChunkedEncoding() throws {
        let body = bytes(String(repeating: "xyz", count: 1000))
        let response = HTTPResponse(status: 200, contentType: "text/plain", body: body)
        let parsed = try parseAll([HTTPSerializer.encode(response)], role: .response)
        guard case .response(let r) = try #require(parsed.first) else { return }
        #expect(r.body == body && r.head.reason == "OK")

        var head = HTTPSerializer.encode(HTTPResponse(status: 200, headers: ["Transfer-Encoding": "chunked"]))
        head.removeLast("Content-Length: 0\r\n\r\n".utf8.count)
        let chunked = head + bytes("\r\n") + HTTPSerializer.encodeChunked(body, chunkSize: 100)
        let parsed2 = try parseAll([chunked], role: .response)
        guard case .response(let r2) = try #require(parsed2.first) else { return }
        #expect(r2.body == body)
    }

    @Test func noContentResponsesCarryNoLength() {
        let text = String(decoding: HTTPSerializer.encode(HTTPResponse(status: 204)), as: UTF8.self)
        #expect(text == "HTTP/1.1 204 No Content\r\n\r\n")
    }
}

@Suite struct HTTPRouterTests {
    func makeRouter() -> HTTPRouter<String> {
        var router = HTTPRouter<String>()
        router.add("GET", "/api/v1/data/{symbol}/{timeframe}", "data")
        router.add("POST", "/api/v1/subscribe", "subscribe")
        router.add("DELETE", "/api/v1/subscribe", "unsubscribe")
        return router
    }

    @Test func matchesParametersPercentDecoded() {
        guard
            case .found(let name, let parameters) = makeRouter().match(
                method: "GET", path: "/api/v1/data/BTC%2DUSDT/1m")
        else {
            Issue.record("no match")
            return
        }
        #expect(name == "data" && parameters == ["symbol": "BTC-USDT", "timeframe": "1m"])
    }

    @Test func wrongMethodListsAllowedMethods() {
        guard case .methodNotAllowed(let allowed) = makeRouter().match(method: "PUT", path: "/api/v1/subscribe") else {
            Issue.record("expected 405")
            return
        }
        #expect(allowed == ["POST", "DELETE"])
    }

    @Test func headFallsBackToGetAndUnknownPathsAreNotFound() {
        if case .found(let name, _) = makeRouter().match(method: "HEAD", path: "/api/v1/data/a/b") {
            #expect(name == "data")
        } else {
            Issue.record("HEAD did not match GET")
        }
        if case .notFound = makeRouter().match(method: "GET", path: "/api/v2/x") {
        } else {
            Issue.record("expected 404")
        }
        if case .notFound = makeRouter().match(method: "GET", path: "/api/v1/data/%zz/1m") {
        } else {
            Issue.record("bad escape must not match")
        }
    }

    @Test func queryItemsDecodePlusAndPercent() {
        let items = PercentDecoding.queryItems("limit=10&start=2024-01-01T00%3A00%3A00Z&q=a+b")
        #expect(items?.map(\.name) == ["limit", "start", "q"])
        #expect(items?.map(\.value) == ["10", "2024-01-01T00:00:00Z", "a b"])
        #expect(PercentDecoding.queryItems("x=%G1") == nil)
    }
}
