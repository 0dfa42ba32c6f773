import Foundation
import HTTP1Protocol
import Runtime
import TLS
import TestSupport
import Testing

/// A throw-away PKI (made by Tests/Peers/make_certs.py) and `openssl s_server` instances using it.
struct TestPKI {
    let directory: String

    init() async throws {
        directory = try TestEnvironment.makeTemporaryDirectory(prefix: "pki")
        let result = try await ExternalProcess.run(
            TestEnvironment.python, [TestEnvironment.peerScript("make_certs.py"), directory])
        guard result.status == 0 else { throw ProcessFailure("make_certs.py failed: \(result.stderr)") }
    }

    func path(_ name: String) -> String { "\(directory)/\(name)" }

    /// Starts `openssl s_server -www` with `certificate`/`key`; returns it and its port.
    func startServer(certificate: String, key: String) async throws -> (ExternalProcess, Int) {
        let openssl = try #require(TestEnvironment.which("openssl"), "openssl CLI not installed")
        let server = try ExternalProcess(
            openssl, ["s_server", "-accept", "127.0.0.1:0", "-cert", path(certificate), "-key", path(key), "-www"])
        let line = try await server.waitForLine(prefix: "ACCEPT ")
        let port = try #require(line.split(separator: ":").last.flatMap { Int($0) })
        return (server, port)
    }
}

@Suite struct TLSClientTests {
    /// Connects with TLS and sends `GET /` (s_server -www answers with a status page).
    func fetch(port: Int, serverName: String, trust: String, loop: EventLoop) async throws -> HTTPResponse {
        let context = try TLSContext(configuration: .client(trustRootsFile: trust))
        let endpoint = Endpoint(host: "127.0.0.1", port: port, tls: context, serverName: serverName)
        let request = HTTPRequest(head: HTTPRequestHead(method: "GET", target: "/", version: .http1_0))
        return try await HTTPClient.send(request, to: endpoint, loop: loop, timeout: .seconds(10))
    }

    @Test func trustedCertificateConnects() async throws {
        let pki = try await TestPKI()
        let (server, port) = try await pki.startServer(certificate: "server.pem", key: "server.key")
        defer { server.stop() }
        try await withEventLoop { loop in
            let response = try await fetch(port: port, serverName: "localhost", trust: pki.path("ca.pem"), loop: loop)
            #expect(response.status == 200)
            #expect(response.bodyText.contains("TLSv1.3") || response.bodyText.contains("TLSv1.2"))
        }
    }

    @Test func ipAddressIsCheckedAgainstIPSubjectAltName() async throws {
        let pki = try await TestPKI()
        let (server, port) = try await pki.startServer(certificate: "server.pem", key: "server.key")
        defer { server.stop() }
        try await withEventLoop { loop in
            let response = try await fetch(port: port, serverName: "127.0.0.1", trust: pki.path("ca.pem"), loop: loop)
            #expect(response.status == 200)
        }
    }

    @Test(arguments: [
        ("server.pem", "server.key", "wrong.example", "ca.pem", "hostname mismatch"),
        ("server.pem", "server.key", "localhost", "other-ca.pem", "unable to get local issuer certificate"),
        ("expired.pem", "expired.key", "localhost", "ca.pem", "certificate has expired"),
    ])
    func certificateProblemsFailWithTheirCause(
        certificate: String, key: String, serverName: String, trust: String, reason: String
    ) async throws {
        let pki = try await TestPKI()
        let (server, port) = try await pki.startServer(certificate: certificate, key: key)
        defer { server.stop() }
        try await withEventLoop { loop in
            do {
                _ = try await fetch(port: port, serverName: serverName, trust: pki.path(trust), loop: loop)
                Issue.record("connected despite \(reason)")
            } catch let error as TLSError {
                #expect(error.code == .certificateVerificationFailed)
                #expect(error.reason == reason)
                #expect("\(error)".contains(reason))
            }
        }
    }

    @Test func missingCAFileIsAConfigurationErrorNamingTheFile() {
        #expect {
            _ = try TLSContext(configuration: .client(trustRootsFile: "/nonexistent/ca.pem"))
        } throws: { error in
            (error as? TLSError)?.code == .configuration && "\(error)".contains("/nonexistent/ca.pem")
        }
    }
}
