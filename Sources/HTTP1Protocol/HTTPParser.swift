/// Limits applied while parsing, checked before bytes are buffered (STYLE.md §3).
public struct HTTPLimits: Sendable, Equatable {
    /// Largest start line plus headers; beyond it a server answers 431.
    public var maxHeaderBytes: Int
    /// Most header fields; beyond it a server answers 431.
    public var maxHeaderCount: Int
    /// Largest body (after de-chunking); beyond it a server answers 413.
    public var maxBodyBytes: Int

    /// Defaults sized for our API and exchange REST replies: 16 KiB of headers (nginx's default large
    /// buffer), 100 fields (h11/nginx), 8 MiB body (the largest OKX history page is ~30 KiB).
    public init(maxHeaderBytes: Int = 16 * 1024, maxHeaderCount: Int = 100, maxBodyBytes: Int = 8 * 1024 * 1024) {
        self.maxHeaderBytes = maxHeaderBytes
        self.maxHeaderCount = maxHeaderCount
        self.maxBodyBytes = maxBodyBytes
    }
}

/// What went wrong while parsing; `status` is what a server answers.
public enum HTTPParseError: Error, Sendable, Equatable, CustomStringConvertible {
    case headerTooLarge(limit: Int)
    case tooManyHeaders(limit: Int)
    case bodyTooLarge(limit: Int)
    case malformedStartLine(String)
    case malformedHeader(String)
    case unsupportedVersion(String)
    case invalidContentLength(String)
    case conflictingLength
    case unsupportedTransferEncoding(String)
    case malformedChunk(String)
    case missingHost
    case connectionClosedEarly

    /// The status code a server replies with.
    public var status: Int {
        switch self {
        case .headerTooLarge, .tooManyHeaders: 431
        case .bodyTooLarge: 413
        case .unsupportedVersion: 505
        case .unsupportedTransferEncoding: 501
        case .malformedStartLine, .malformedHeader, .invalidContentLength, .conflictingLength, .malformedChunk,
            .missingHost, .connectionClosedEarly:
            400
        }
    }

    public var description: String {
        switch self {
        case .headerTooLarge(let limit): "request header section larger than \(limit) bytes"
        case .tooManyHeaders(let limit): "more than \(limit) header fields"
        case .bodyTooLarge(let limit): "body larger than \(limit) bytes"
        case .malformedStartLine(let line): "malformed start line: \(line)"
        case .malformedHeader(let line): "malformed header field: \(line)"
        case .unsupportedVersion(let v): "unsupported HTTP version: \(v)"
        case .invalidContentLength(let v): "invalid Content-Length: \(v)"
        case .conflictingLength: "both Content-Length and Transfer-Encoding, or conflicting Content-Length values"
        case .unsupportedTransferEncoding(let v): "unsupported Transfer-Encoding: \(v)"
        case .malformedChunk(let why): "malformed chunked body: \(why)"
        case .missingHost: "HTTP/1.1 request without Host"
        case .connectionClosedEarly: "connection closed before the message was complete"
        }
    }
}

/// Which side a parser reads: requests (a server) or responses (a client).
public enum HTTPParserRole: Sendable { case request, response }

/// A parsed message: a request or a response, with its whole body.
public enum HTTPMessage: Sendable, Equatable {
    case request(HTTPRequest)
    case response(HTTPResponse)
}

/// An incremental HTTP/1.1 parser for one connection.
///
/// Discipline (STYLE.md §3): bytes are buffered by `feed`, and `nextMessage()` consumes them while
/// recording progress in `State`, so nothing is re-parsed: the head search resumes where it stopped,
/// bodies are counted down. `nil` means "need more bytes". Pipelined messages stay buffered until the
/// caller asks for the next one, so a server answers them in order, one at a time.
public struct HTTPParser: Sendable {
    /// Fixed framing limits (the configurable ones are in `HTTPLimits`).
    enum Limits {
        /// Hex digits in a chunk size: 15 digits (2^60 - 1) always fit `Int` with room to add the body
        /// already buffered, so the size check against `maxBodyBytes` cannot overflow. Bigger is rejected.
        static let maxChunkSizeDigits = 15
        /// A chunk-size line with its extensions; we ignore extensions, so 1 KiB is generous (h11 uses 4 KiB
        /// for the whole incomplete event).
        static let maxChunkSizeLineBytes = 1024
        /// Decimal digits in a Content-Length: 18 digits always fit `Int` (10^18 - 1 < 2^63), and any
        /// length that long is far above every body limit anyway.
        static let maxContentLengthDigits = 18
    }

    /// Parser progress.
    enum State: Sendable {
        /// Looking for the blank line ending the head; `scanned` bytes were already searched.
        case awaitingHead(scanned: Int)
        /// Reading a body of known length.
        case fixedBody(Head, remaining: Int)
        /// Reading a chunk-size line.
        case chunkSize(Head)
        /// Reading chunk data, then its CRLF.
        case chunkData(Head, remaining: Int)
        /// Reading trailer fields after the last chunk; `count` fields and `byteCount` bytes read so far
        /// (held to the header limits, so endless trailers cannot keep a message open).
        case trailers(Head, count: Int, byteCount: Int)
        /// Reading a response body that ends when the connection closes.
        case untilClose(Head)
        /// A parse error happened; the connection must be closed.
        case failed(HTTPParseError)
    }

    enum Head: Sendable {
        case request(HTTPRequestHead)
        case response(HTTPResponseHead)
    }

    public let role: HTTPParserRole
    public let limits: HTTPLimits
    private var buffer: [UInt8] = []
    private var readIndex = 0
    private var state: State = .awaitingHead(scanned: 0)
    private var body: [UInt8] = []
    /// Bytes after `readIndex` that `readLine` already searched for a CRLF.
    private var lineScanned = 0
    /// Set when a request head with `Expect: 100-continue` was parsed and its body is awaited;
    /// a server sends `100 Continue` and clears it with `takeExpectContinue()`.
    public private(set) var isExpectingContinue = false
    /// Methods of requests sent, oldest first (response role: a HEAD response has no body).
    private var pendingRequestMethods: [String] = []

    /// Creates a parser for `role` with `limits`.
    public init(role: HTTPParserRole, limits: HTTPLimits = HTTPLimits()) {
        self.role = role
        self.limits = limits
    }

    /// How many bytes are buffered but not yet consumed.
    public var bufferedByteCount: Int { buffer.count - readIndex }

    /// Bytes held in the input storage, consumed or not (tests check that consumed bytes are released).
    package var retainedByteCount: Int { buffer.count }

    /// Whether a message is partly received (for idle timeouts: a slow client vs. an idle one).
    public var isMidMessage: Bool {
        if case .awaitingHead = state { return bufferedByteCount > 0 }
        return true
    }

    /// Response role: records that a request with `method` was sent, so its response is framed right.
    public mutating func requestSent(method: String) { pendingRequestMethods.append(method) }

    /// Returns and clears `isExpectingContinue`.
    public mutating func takeExpectContinue() -> Bool {
        defer { isExpectingContinue = false }
        return isExpectingContinue
    }

    /// Buffers bytes received from the peer.
    ///
    /// Consumed bytes are dropped once they are at least half the storage, so storage stays within
    /// twice the unconsumed bytes plus one feed even when every read ends mid-message (pipelining),
    /// at an amortized O(1) copy per byte. Positions in `State` are relative to `readIndex`.
    public mutating func feed(_ bytes: UnsafeRawBufferPointer) {
        if readIndex > 0 && readIndex == buffer.count {
            buffer.removeAll(keepingCapacity: true)
            readIndex = 0
        } else if readIndex > 0 && readIndex >= buffer.count / 2 {
            buffer.removeFirst(readIndex)
            readIndex = 0
        }
        buffer.append(contentsOf: bytes)
    }

    /// Buffers bytes received from the peer.
    public mutating func feed(_ bytes: [UInt8]) { bytes.withUnsafeBytes { feed($0) } }

    /// Removes and returns the bytes after the last complete message (after an `Upgrade`).
    public mutating func takeRemainingBytes() -> [UInt8] {
        let rest = Array(buffer[readIndex...])
        buffer.removeAll()
        readIndex = 0
        return rest
    }

    /// Returns the next complete message, `nil` if more bytes are needed, or throws on a protocol error.
    /// After an error every later call throws the same error.
    public mutating func nextMessage() throws(HTTPParseError) -> HTTPMessage? {
        do {
            return try step()
        } catch {
            state = .failed(error)
            throw error
        }
    }

    /// The peer closed the connection: completes a read-until-close body, or reports truncation.
    public mutating func connectionClosed() throws(HTTPParseError) -> HTTPMessage? {
        switch state {
        case .untilClose(let head):
            body.append(contentsOf: buffer[readIndex...])
            readIndex = buffer.count
            state = .awaitingHead(scanned: 0)
            return finish(head)
        case .awaitingHead:
            if bufferedByteCount == 0 { return nil }
            throw .connectionClosedEarly
        case .failed(let error):
            throw error
        case .fixedBody, .chunkSize, .chunkData, .trailers:
            throw .connectionClosedEarly
        }
    }

    private mutating func step() throws(HTTPParseError) -> HTTPMessage? {
        while true {
            switch state {
            case .failed(let error):
                throw error
            case .awaitingHead(let scanned):
                guard let head = try parseHead(scanned: scanned) else { return nil }
                if let message = try beginBody(head) { return message }
            case .fixedBody(let head, let remaining):
                let available = min(remaining, bufferedByteCount)
                body.append(contentsOf: buffer[readIndex..<readIndex + available])
                readIndex += available
                if available < remaining {
                    state = .fixedBody(head, remaining: remaining - available)
                    return nil
                }
                state = .awaitingHead(scanned: 0)
                return finish(head)
            case .chunkSize(let head):
                let tooLong = HTTPParseError.malformedChunk(
                    "chunk-size line longer than \(Limits.maxChunkSizeLineBytes) bytes")
                guard let line = try readLine(limit: Limits.maxChunkSizeLineBytes, tooLong: tooLong) else { return nil }
                let size = try Self.parseChunkSize(line)
                if size == 0 {
                    state = .trailers(head, count: 0, byteCount: 0)
                } else {
                    guard body.count + size <= limits.maxBodyBytes else {
                        throw .bodyTooLarge(limit: limits.maxBodyBytes)
                    }
                    state = .chunkData(head, remaining: size)
                }
            case .chunkData(let head, let remaining):
                if remaining > 0 {
                    let available = min(remaining, bufferedByteCount)
                    body.append(contentsOf: buffer[readIndex..<readIndex + available])
                    readIndex += available
                    state = .chunkData(head, remaining: remaining - available)
                    if available < remaining { return nil }
                }
                if bufferedByteCount >= 1 && buffer[readIndex] != 13 {
                    throw .malformedChunk("chunk data not followed by CRLF")
                }
                guard bufferedByteCount >= 2 else { return nil }
                guard buffer[readIndex + 1] == 10 else {
                    throw .malformedChunk("chunk data not followed by CRLF")
                }
                readIndex += 2
                state = .chunkSize(head)
            case .trailers(let head, let count, let byteCount):
                // Trailer fields are read and ignored (we never ask for them), but count against the header limits.
                let tooLong = HTTPParseError.headerTooLarge(limit: limits.maxHeaderBytes)
                guard let line = try readLine(limit: limits.maxHeaderBytes - byteCount, tooLong: tooLong) else {
                    return nil
                }
                if line.isEmpty {
                    state = .awaitingHead(scanned: 0)
                    return finish(head)
                }
                let total = byteCount + line.utf8.count + 2
                guard count < limits.maxHeaderCount else { throw .tooManyHeaders(limit: limits.maxHeaderCount) }
                guard total <= limits.maxHeaderBytes else { throw .headerTooLarge(limit: limits.maxHeaderBytes) }
                state = .trailers(head, count: count + 1, byteCount: total)
            case .untilClose:
                body.append(contentsOf: buffer[readIndex...])
                guard body.count <= limits.maxBodyBytes else { throw .bodyTooLarge(limit: limits.maxBodyBytes) }
                readIndex = buffer.count
                return nil
            }
        }
    }

    /// RFC 9112 §7.1: `chunk-size = 1*HEXDIG`, then optional whitespace and `;` extensions (ignored).
    /// Signs, `0x`, an empty size and more than `Limits.maxChunkSizeDigits` digits are malformed.
    static func parseChunkSize(_ line: Substring) throws(HTTPParseError) -> Int {
        let sizeText = line[..<(line.firstIndex(of: ";") ?? line.endIndex)].trimmingSpaces()
        guard !sizeText.isEmpty, sizeText.utf8.count <= Limits.maxChunkSizeDigits,
            sizeText.utf8.allSatisfy(isHexDigit), let size = Int(sizeText, radix: 16)
        else { throw .malformedChunk("bad chunk size '\(line.prefix(40))'") }
        return size
    }

    static func isHexDigit(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "0")...UInt8(ascii: "9"), UInt8(ascii: "a")...UInt8(ascii: "f"),
            UInt8(ascii: "A")...UInt8(ascii: "F"):
            true
        default: false
        }
    }

    /// Reads one CRLF-terminated line, or nil if it is not complete yet. Throws `tooLong` for a line of
    /// more than `limit` bytes, complete or not (so the outcome does not depend on how reads split it).
    /// The search resumes after `lineScanned`, so a line dripped in byte by byte is scanned once.
    private mutating func readLine(limit: Int, tooLong: HTTPParseError) throws(HTTPParseError) -> Substring? {
        var i = readIndex + lineScanned
        while i + 1 < buffer.count {
            if buffer[i] == 13 && buffer[i + 1] == 10 {
                if i - readIndex > limit { throw tooLong }
                let line = String(decoding: buffer[readIndex..<i], as: UTF8.self)
                readIndex = i + 2
                lineScanned = 0
                return Substring(line)
            }
            i += 1
        }
        if buffer.count - readIndex > limit { throw tooLong }
        // The last byte may be the CR of a CRLF still to come.
        lineScanned = max(0, bufferedByteCount - 1)
        return nil
    }

    /// Finds and parses the head; nil when the blank line has not arrived yet.
    private mutating func parseHead(scanned: Int) throws(HTTPParseError) -> Head? {
        var scanned = scanned
        // Skip empty lines before a request line (RFC 9112 §2.2 robustness), however the reads split them.
        while role == .request, bufferedByteCount >= 2, buffer[readIndex] == 13, buffer[readIndex + 1] == 10 {
            readIndex += 2
            scanned = max(0, scanned - 2)
        }
        let start = readIndex
        // Each LF is checked against the bytes before it, so the search resumes exactly where it stopped.
        var i = start + scanned
        var end: Int? = nil
        // A head of at most `maxHeaderBytes` ends by the 4 bytes of its CRLF CRLF: nothing beyond them
        // is looked at, so the verdict (its end, a bare LF, or too large) does not depend on how the
        // bytes were split into reads (found by the http-request fuzz target).
        let scanEnd = min(buffer.count, start + limits.maxHeaderBytes + 4)
        while i < scanEnd {
            if buffer[i] == 10 {
                // RFC 9112 §2.2 lets us reject a bare LF; waiting for a CRLF CRLF that never comes would
                // only end at the header limit or the request timeout.
                guard i > start, buffer[i - 1] == 13 else { throw .malformedHeader("line ends in a bare LF") }
                if i - start >= 3 && buffer[i - 2] == 10 && buffer[i - 3] == 13 {
                    end = i - 3
                    break
                }
            }
            i += 1
        }
        guard let end else {
            let pending = buffer.count - start
            if pending >= limits.maxHeaderBytes + 4 { throw .headerTooLarge(limit: limits.maxHeaderBytes) }
            state = .awaitingHead(scanned: pending)
            return nil
        }
        if end - start > limits.maxHeaderBytes { throw .headerTooLarge(limit: limits.maxHeaderBytes) }
        let text = String(decoding: buffer[start..<end], as: UTF8.self)
        readIndex = end + 4
        var lines = text.split(separator: "\r\n", omittingEmptySubsequences: false)
        let startLine = lines.removeFirst()
        guard lines.count <= limits.maxHeaderCount else { throw .tooManyHeaders(limit: limits.maxHeaderCount) }
        var headers = HTTPHeaders()
        for line in lines {
            guard let colon = line.firstIndex(of: ":") else { throw .malformedHeader(String(line.prefix(80))) }
            let name = line[..<colon]
            let value = line[line.index(after: colon)...].trimmingSpaces()
            guard !name.isEmpty, name.utf8.allSatisfy(Self.isTokenByte) else {
                throw .malformedHeader(String(line.prefix(80)))
            }
            guard value.utf8.allSatisfy({ $0 != 0 && $0 != 13 && $0 != 10 }) else {
                throw .malformedHeader(String(line.prefix(80)))
            }
            headers.add(name: String(name), value: String(value))
        }
        switch role {
        case .request:
            let parts = startLine.split(separator: " ", omittingEmptySubsequences: false)
            guard parts.count == 3, !parts[0].isEmpty, parts[0].utf8.allSatisfy(Self.isTokenByte), !parts[1].isEmpty,
                parts[1].utf8.allSatisfy({ $0 > 32 && $0 < 127 })
            else { throw .malformedStartLine(String(startLine.prefix(80))) }
            let version = try Self.parseVersion(parts[2])
            let head = HTTPRequestHead(
                method: String(parts[0]), target: String(parts[1]), version: version, headers: headers)
            if version == .http1_1 && headers["Host"] == nil { throw .missingHost }
            // RFC 9112 §3.2: more than one Host field gets 400 (two hosts mean two readings of the target).
            if headers.values(for: "Host").count > 1 { throw .malformedHeader("more than one Host field") }
            return .request(head)
        case .response:
            let parts = startLine.split(separator: " ", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count >= 2, parts[1].count == 3, let status = Int(parts[1]), status >= 100 else {
                throw .malformedStartLine(String(startLine.prefix(80)))
            }
            let version = try Self.parseVersion(parts[0])
            return .response(
                HTTPResponseHead(
                    status: status, reason: parts.count > 2 ? String(parts[2]) : "", version: version,
                    headers: headers))
        }
    }

    private static func parseVersion(_ text: Substring) throws(HTTPParseError) -> HTTPVersion {
        switch text {
        case "HTTP/1.1": return .http1_1
        case "HTTP/1.0": return .http1_0
        default:
            if text.hasPrefix("HTTP/") { throw .unsupportedVersion(String(text.prefix(20))) }
            throw .malformedStartLine(String(text.prefix(20)))
        }
    }

    /// RFC 9110 §5.6.2 token characters.
    static func isTokenByte(_ b: UInt8) -> Bool {
        switch b {
        case UInt8(ascii: "a")...UInt8(ascii: "z"), UInt8(ascii: "A")...UInt8(ascii: "Z"),
            UInt8(ascii: "0")...UInt8(ascii: "9"):
            true
        default: Array("!#$%&'*+-.^_`|~".utf8).contains(b)
        }
    }

    /// Decides how the body is framed (RFC 9112 §6.3) and returns the message if it has none.
    private mutating func beginBody(_ head: Head) throws(HTTPParseError) -> HTTPMessage? {
        body = []
        let headers: HTTPHeaders
        var bodyless = false
        switch head {
        case .request(let h):
            headers = h.headers
        case .response(let h):
            headers = h.headers
            let method = pendingRequestMethods.isEmpty ? "GET" : pendingRequestMethods.removeFirst()
            bodyless = method == "HEAD" || (100..<200).contains(h.status) || h.status == 204 || h.status == 304
        }
        if bodyless {
            state = .awaitingHead(scanned: 0)
            return finish(head)
        }
        if case .request(let h) = head, h.version == .http1_1, h.headers["Expect"]?.lowercased() == "100-continue" {
            isExpectingContinue = true
        }
        let transferEncodings = headers.values(for: "Transfer-Encoding")
        let lengths = headers.values(for: "Content-Length")
        if !transferEncodings.isEmpty {
            guard lengths.isEmpty else { throw .conflictingLength }
            let codings = transferEncodings.flatMap { $0.split(separator: ",") }.map {
                $0.trimmingSpaces().lowercased()
            }
            // Only "chunked" is supported, and it must be the last (and only) coding.
            guard codings == ["chunked"] else {
                throw .unsupportedTransferEncoding(transferEncodings.joined(separator: ","))
            }
            state = .chunkSize(head)
            return nil
        }
        if !lengths.isEmpty {
            let values = Set(lengths.flatMap { $0.split(separator: ",") }.map { String($0.trimmingSpaces()) })
            guard values.count <= 1 else { throw .conflictingLength }
            // An empty field value leaves no element at all.
            let text = values.first ?? ""
            guard !text.isEmpty, text.utf8.count <= Limits.maxContentLengthDigits,
                text.utf8.allSatisfy({ $0 >= 48 && $0 <= 57 }),
                let length = Int(text)
            else { throw .invalidContentLength(String(text.prefix(20))) }
            guard length <= limits.maxBodyBytes else { throw .bodyTooLarge(limit: limits.maxBodyBytes) }
            if length == 0 {
                state = .awaitingHead(scanned: 0)
                return finish(head)
            }
            body.reserveCapacity(length)
            state = .fixedBody(head, remaining: length)
            return nil
        }
        switch head {
        case .request:
            // A request without framing has no body (RFC 9112 §6.3 rule 6).
            state = .awaitingHead(scanned: 0)
            return finish(head)
        case .response:
            state = .untilClose(head)
            return nil
        }
    }

    private mutating func finish(_ head: Head) -> HTTPMessage {
        isExpectingContinue = false
        let body = self.body
        self.body = []
        switch head {
        case .request(let h): return .request(HTTPRequest(head: h, body: body))
        case .response(let h): return .response(HTTPResponse(head: h, body: body))
        }
    }
}
