import HTTP1Protocol

enum HTTP1ProtocolResponse {
    static let notFound = HTTPResponse(status: 404, contentType: "text/plain", body: Array("nope".utf8))
}
