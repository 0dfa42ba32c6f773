import HTTP1Protocol

// HTTP/1.1: the request parser (what any client sends our API) and the response parser (what an
// exchange's REST endpoint or a peer answers). Limits are small so the fuzzer reaches them.
extension FuzzTarget {
    static let httpTargets: [FuzzTarget] = [
        FuzzTarget(
            name: "http-request",
            summary: "HTTP request parser: split = whole, limits held, a parsed request re-encodes to itself"
        ) { input throws(FuzzFinding) in try HTTPFuzz.check(input, role: .request, target: "http-request") },
        FuzzTarget(
            name: "http-response",
            summary: "HTTP response parser: split = whole, limits held, a parsed response re-encodes to itself"
        ) { input throws(FuzzFinding) in try HTTPFuzz.check(input, role: .response, target: "http-response") },
    ]
}

enum HTTPFuzz {
    static let limits = HTTPLimits(maxHeaderBytes: 2048, maxHeaderCount: 16, maxBodyBytes: 8192)
    /// The most a parser may hold unconsumed between messages: a head (or trailer section) being
    /// searched, or a chunk-size line, plus the bytes of one CRLF.
    static let maxBuffered = max(limits.maxHeaderBytes, 1024) + 4

    /// What a parser made of a byte stream: its messages, then the error that ended it (if any).
    struct Outcome: Equatable {
        var messages: [HTTPMessage] = []
        var error: HTTPParseError?
    }

    static func check(_ input: [UInt8], role: HTTPParserRole, target: String) throws(FuzzFinding) {
        let whole = try parse([input[...]], role: role, target: target)
        let split = try parse(SplitPoints.pieces(of: input), role: role, target: target)
        try require(
            whole == split, target,
            "split at \(SplitPoints.points(for: input)) gave \(split), whole gave \(whole)")
        for message in whole.messages { try roundTrip(message, role: role, target: target) }
    }

    /// Feeds `pieces` one by one, taking every complete message after each, then closes.
    static func parse(
        _ pieces: [ArraySlice<UInt8>], role: HTTPParserRole, target: String
    ) throws(FuzzFinding) -> Outcome {
        var parser = HTTPParser(role: role, limits: limits)
        var outcome = Outcome()
        do {
            for piece in pieces {
                parser.feed(Array(piece))
                while let message = try parser.nextMessage() {
                    try checkLimits(message, target: target)
                    outcome.messages.append(message)
                }
                // Both roles: a body is consumed into the message as it arrives (and bounded by the
                // body limit), so what stays buffered is at most a head, a trailer or a chunk line.
                try require(
                    parser.bufferedByteCount <= maxBuffered, target,
                    "\(parser.bufferedByteCount) bytes buffered with no message (bound \(maxBuffered))")
            }
            if let last = try parser.connectionClosed() {
                try checkLimits(last, target: target)
                outcome.messages.append(last)
            }
        } catch let error as HTTPParseError {
            outcome.error = error
        } catch let finding as FuzzFinding {
            throw finding
        } catch {
            throw FuzzFinding(target: target, "unexpected error \(error)")
        }
        return outcome
    }

    static func checkLimits(_ message: HTTPMessage, target: String) throws(FuzzFinding) {
        let (headers, body): (HTTPHeaders, [UInt8]) =
            switch message {
            case .request(let request): (request.head.headers, request.body)
            case .response(let response): (response.head.headers, response.body)
            }
        try require(
            body.count <= limits.maxBodyBytes, target, "a \(body.count)-byte body passed the limit")
        try require(
            headers.fields.count <= limits.maxHeaderCount, target,
            "\(headers.fields.count) header fields passed the limit")
    }

    /// Re-encodes a parsed message (framing headers dropped: the serializer writes its own) and
    /// parses it again: the same head and body must come back.
    static func roundTrip(_ message: HTTPMessage, role: HTTPParserRole, target: String) throws(FuzzFinding) {
        let encoded: [UInt8]
        let expected: HTTPMessage
        switch message {
        case .request(var request):
            request.head.headers = unframed(request.head.headers)
            encoded = HTTPSerializer.encode(request)
            expected = .request(request)
        case .response(var response):
            response.head.headers = unframed(response.head.headers)
            encoded = HTTPSerializer.encode(response)
            expected = .response(response)
        }
        var parser = HTTPParser(role: role, limits: HTTPLimits(maxHeaderBytes: 8192, maxHeaderCount: 32))
        parser.feed(encoded)
        let again: HTTPMessage?
        do {
            again = try parser.nextMessage() ?? parser.connectionClosed()
        } catch {
            throw FuzzFinding(target: target, "re-encoded \(expected) did not parse: \(error)")
        }
        guard let again else { throw FuzzFinding(target: target, "re-encoded \(expected) parsed as nothing") }
        try require(
            unframedMessage(again) == expected, target, "re-encoded \(expected) parsed as \(again)")
    }

    static func unframed(_ headers: HTTPHeaders) -> HTTPHeaders {
        var headers = headers
        headers.remove(name: "Content-Length")
        headers.remove(name: "Transfer-Encoding")
        return headers
    }

    static func unframedMessage(_ message: HTTPMessage) -> HTTPMessage {
        switch message {
        case .request(var request):
            request.head.headers = unframed(request.head.headers)
            return .request(request)
        case .response(var response):
            response.head.headers = unframed(response.head.headers)
            return .response(response)
        }
    }
}
