/// Encodes requests and responses (pure: bytes out, no I/O).
///
/// A body is always sent with `Content-Length` (our bodies are in memory), except where the caller
/// set `Transfer-Encoding: chunked` itself and passes pre-chunked bytes via `encodeChunked`.
public enum HTTPSerializer {
    /// The bytes of `request`; adds `Content-Length` when the body is non-empty or the method carries one.
    public static func encode(_ request: HTTPRequest) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + request.body.count)
        out.append(contentsOf: "\(request.head.method) \(request.head.target) \(request.head.version)\r\n".utf8)
        var headers = request.head.headers
        if headers["Transfer-Encoding"] == nil
            && (!request.body.isEmpty || ["POST", "PUT", "PATCH"].contains(request.head.method))
        {
            headers.replaceOrAdd(name: "Content-Length", value: String(request.body.count))
        }
        append(headers, to: &out)
        out.append(contentsOf: request.body)
        return out
    }

    /// The bytes of `response`; sets `Content-Length` (except for 1xx, 204 and 304).
    /// With `isHeadRequest`, the body is left out but its length still announced.
    public static func encode(_ response: HTTPResponse, isHeadRequest: Bool = false) -> [UInt8] {
        var out: [UInt8] = []
        out.reserveCapacity(256 + response.body.count)
        let head = response.head
        out.append(contentsOf: "\(head.version) \(head.status) \(head.reason)\r\n".utf8)
        var headers = head.headers
        let bodyless = (100..<200).contains(head.status) || head.status == 204 || head.status == 304
        if !bodyless {
            headers.replaceOrAdd(name: "Content-Length", value: String(response.body.count))
        }
        append(headers, to: &out)
        if !bodyless && !isHeadRequest { out.append(contentsOf: response.body) }
        return out
    }

    /// Encodes `body` as chunks of at most `chunkSize` bytes plus the last chunk (RFC 9112 §7.1).
    public static func encodeChunked(_ body: [UInt8], chunkSize: Int = 16 * 1024) -> [UInt8] {
        precondition(chunkSize > 0, "chunk size must be positive")
        var out: [UInt8] = []
        var index = 0
        while index < body.count {
            let n = min(chunkSize, body.count - index)
            out.append(contentsOf: String(n, radix: 16).utf8)
            out.append(contentsOf: [13, 10])
            out.append(contentsOf: body[index..<index + n])
            out.append(contentsOf: [13, 10])
            index += n
        }
        out.append(contentsOf: "0\r\n\r\n".utf8)
        return out
    }

    private static func append(_ headers: HTTPHeaders, to out: inout [UInt8]) {
        for field in headers {
            out.append(contentsOf: field.name.utf8)
            out.append(contentsOf: ": ".utf8)
            out.append(contentsOf: field.value.utf8)
            out.append(contentsOf: [13, 10])
        }
        out.append(contentsOf: [13, 10])
    }
}
