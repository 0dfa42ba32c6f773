import Crypto
public import HTTP1Protocol
import WireCore

/// Why an opening handshake failed.
public struct WSHandshakeError: Error, Sendable, Equatable, CustomStringConvertible {
    public var reason: String
    /// The HTTP status the server answered, when it answered with something other than 101.
    public var status: Int?
    public init(_ reason: String, status: Int? = nil) {
        self.reason = reason
        self.status = status
    }
    public var description: String {
        status.map { "WebSocket handshake failed (HTTP \($0)): \(reason)" } ?? "WebSocket handshake failed: \(reason)"
    }
}

/// The RFC 6455 §4 opening handshake (pure).
public enum WSHandshake {
    /// RFC 6455 §1.3 GUID appended to the key before hashing.
    static let guid = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

    /// `Sec-WebSocket-Accept` for a `Sec-WebSocket-Key`: base64(SHA-1(key + GUID)).
    public static func acceptValue(forKey key: String) -> String {
        Base64.encode(Digest.sha1(Array((key + guid).utf8)))
    }

    /// Builds the client's upgrade request. `nonce` must be 16 fresh random bytes (drawn by the driver).
    /// Returns the request and the `Sec-WebSocket-Accept` value the server must answer with.
    public static func makeRequest(
        host: String, path: String, nonce: [UInt8], extraHeaders: HTTPHeaders = [:]
    ) -> (request: HTTPRequest, expectedAccept: String) {
        precondition(nonce.count == 16, "RFC 6455 §4.1: the key is 16 random bytes")
        let key = Base64.encode(nonce)
        var headers: HTTPHeaders = [
            "Host": host, "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Key": key,
            "Sec-WebSocket-Version": "13",
        ]
        for field in extraHeaders { headers.add(name: field.name, value: field.value) }
        let request = HTTPRequest(head: HTTPRequestHead(method: "GET", target: path, headers: headers))
        return (request, acceptValue(forKey: key))
    }

    /// Checks the server's answer (RFC 6455 §4.1, the client's validation steps 1–4).
    public static func validate(response: HTTPResponse, expectedAccept: String) throws(WSHandshakeError) {
        let head = response.head
        guard head.status == 101 else {
            throw WSHandshakeError(
                "expected 101 Switching Protocols, got \(head.status) \(head.reason)", status: head.status)
        }
        guard head.headers["Upgrade"]?.lowercased() == "websocket" else {
            throw WSHandshakeError("missing or wrong Upgrade header")
        }
        guard head.headers.containsToken("upgrade", in: "Connection") else {
            throw WSHandshakeError("missing Connection: Upgrade")
        }
        guard head.headers["Sec-WebSocket-Accept"] == expectedAccept else {
            throw WSHandshakeError("Sec-WebSocket-Accept does not match the key")
        }
        if let extensions = head.headers["Sec-WebSocket-Extensions"], !extensions.isEmpty {
            throw WSHandshakeError("server selected an extension we did not offer: \(extensions.prefix(60))")
        }
    }

    /// Server side: validates an upgrade request and returns the 101 response, or the error response to send.
    public static func serverResponse(to request: HTTPRequest) -> Result<HTTPResponse, WSHandshakeError> {
        let headers = request.head.headers
        guard request.head.method == "GET" else { return .failure(WSHandshakeError("method must be GET", status: 405)) }
        guard headers["Upgrade"]?.lowercased() == "websocket", headers.containsToken("upgrade", in: "Connection")
        else { return .failure(WSHandshakeError("not a WebSocket upgrade request", status: 426)) }
        guard headers["Sec-WebSocket-Version"] == "13" else {
            return .failure(WSHandshakeError("unsupported Sec-WebSocket-Version", status: 426))
        }
        guard let key = headers["Sec-WebSocket-Key"], let nonce = Base64.decode(key), nonce.count == 16 else {
            return .failure(WSHandshakeError("missing or malformed Sec-WebSocket-Key", status: 400))
        }
        let response = HTTPResponse(
            head: HTTPResponseHead(
                status: 101,
                headers: [
                    "Upgrade": "websocket", "Connection": "Upgrade", "Sec-WebSocket-Accept": acceptValue(forKey: key),
                ]
            ))
        return .success(response)
    }
}
