import Foundation
import HTTP1Protocol
import Runtime
import Synchronization
import TestSupport
import Testing

/// Counts requests a test server handled.
final class RequestCounter: Sendable {
    private let count = Atomic<Int>(0)
    func increment() { count.add(1, ordering: .relaxed) }
    var value: Int { count.load(ordering: .relaxed) }
}

/// A server with a few routes for tests: `GET /hello`, `POST /echo`, `GET /big` (256 KiB); `counter` counts
/// every request handled.
func startTestServer(
    loop: EventLoop, requestTimeout: Duration = .seconds(10), maxConnections: Int = 1024,
    counter: RequestCounter = RequestCounter()
) async throws -> HTTPServer {
    var router = HTTPRouter<@Sendable (HTTPRequest) -> HTTPResponse>()
    router.add("GET", "/hello") { _ in HTTPResponse(status: 200, contentType: "text/plain", body: Array("hi".utf8)) }
    router.add("POST", "/echo") { request in
        HTTPResponse(status: 200, contentType: "application/octet-stream", body: request.body)
    }
    router.add("GET", "/big") { _ in
        HTTPResponse(
            status: 200, contentType: "application/octet-stream", body: [UInt8](repeating: 0x61, count: 256 << 10))
    }
    let routes = router
    let configuration = HTTPServerConfiguration(
        host: "127.0.0.1", port: 0, limits: HTTPLimits(maxHeaderBytes: 8 * 1024, maxBodyBytes: 1 << 20),
        idleTimeout: .seconds(30), requestTimeout: requestTimeout, maxConnections: maxConnections)
    return try await HTTPServer.start(configuration: configuration, loop: loop) { request in
        counter.increment()
        switch routes.match(method: request.head.method, path: request.head.path) {
        case .found(let handler, _): return handler(request)
        case .methodNotAllowed(let allowed):
            return HTTPResponse(status: 405, headers: ["Allow": allowed.joined(separator: ", ")])
        case .notFound: return HTTPResponse(status: 404)
        }
    }
}

func curl(_ arguments: [String]) async throws -> (status: Int32, stdout: String, stderr: String) {
    let curl = try #require(TestEnvironment.which("curl"), "curl not installed")
    return try await ExternalProcess.run(curl, ["-s", "--max-time", "20"] + arguments)
}

/// Runs a short Python socket script (argv[1] is the port) and returns what it printed.
func pythonSocketScript(_ source: String, port: Int) async throws -> String {
    let result = try await ExternalProcess.run(TestEnvironment.python, ["-c", source, String(port)])
    guard result.status == 0 else { throw ProcessFailure("python failed: \(result.stderr)") }
    return result.stdout
}

@Suite struct HTTPServerTests {
    @Test func curlReusesTheKeepAliveConnection() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop)
            let url = "http://127.0.0.1:\(server.port)/hello"
            let result = try await curl(["-v", url, url])
            #expect(result.stdout == "hihi")
            #expect(result.stderr.contains("Re-using existing connection"))
            await server.shutdown()
        }
    }

    @Test func chunkedUploadIsReassembled() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop)
            let directory = try TestEnvironment.makeTemporaryDirectory()
            let file = directory + "/body.bin"
            let body = String(repeating: "0123456789abcdef", count: 8192)  // 128 KiB, several chunks
            try body.write(toFile: file, atomically: true, encoding: .utf8)
            let result = try await curl([
                "-H", "Transfer-Encoding: chunked", "--data-binary", "@\(file)", "http://127.0.0.1:\(server.port)/echo",
            ])
            #expect(result.stdout.count == body.count)
            let isSameBody = result.stdout == body
            #expect(isSameBody, "echoed body differs")
            await server.shutdown()
        }
    }

    @Test func oversizeHeaderGets431() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop)
            let big = String(repeating: "a", count: 10_000)
            let result = try await curl([
                "-o", "/dev/null", "-w", "%{http_code}", "-H", "X-Big: \(big)", "http://127.0.0.1:\(server.port)/hello",
            ])
            #expect(result.stdout == "431")
            await server.shutdown()
        }
    }

    @Test func oversizeBodyGets413BeforeItIsSent() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop)
            let directory = try TestEnvironment.makeTemporaryDirectory()
            let file = directory + "/big.bin"
            try Data(count: 2 << 20).write(to: URL(fileURLWithPath: file))
            let result = try await curl([
                "-o", "/dev/null", "-w", "%{http_code}", "--data-binary", "@\(file)",
                "http://127.0.0.1:\(server.port)/echo",
            ])
            #expect(result.stdout == "413")
            await server.shutdown()
        }
    }

    @Test func slowClientIsTimedOutWith408() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop, requestTimeout: .milliseconds(300))
            let output = try await pythonSocketScript(
                """
                import socket, sys, time
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                s.sendall(b"GET /hello HTTP/1.1\\r\\nHost: x\\r\\n")
                start = time.monotonic()
                for _ in range(5):  # keep trickling: the deadline must not move
                    time.sleep(0.1)
                    try: s.sendall(b"X-A: b\\r\\n")
                    except OSError: break
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk: break
                    data += chunk
                print(data.split(b"\\r\\n")[0].decode(), round(time.monotonic() - start, 1))
                """, port: server.port)
            let parts = output.trimmingCharacters(in: .whitespacesAndNewlines).split(separator: " ")
            #expect(parts.prefix(2).joined(separator: " ") == "HTTP/1.1 408")
            #expect(Double(parts.last ?? "") ?? 99 < 2.0)
            await server.shutdown()
        }
    }

    @Test func pipelinedRequestsAreAnsweredInOrder() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop)
            let output = try await pythonSocketScript(
                """
                import socket, sys
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                s.sendall(b"POST /echo HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 5\\r\\n\\r\\nfirstGET /hello HTTP/1.1\\r\\nHost: x\\r\\n\\r\\nPOST /echo HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 5\\r\\nConnection: close\\r\\n\\r\\nthird")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk: break
                    data += chunk
                print(data.count(b"HTTP/1.1 200"), data.index(b"first") < data.index(b"hi") < data.index(b"third"))
                """, port: server.port)
            #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "3 True")
            await server.shutdown()
        }
    }

    @Test func malformedRequestGets400WithJSONError() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop)
            let output = try await pythonSocketScript(
                """
                import socket, sys
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                s.sendall(b"GARBAGE\\r\\n\\r\\n")
                data = b""
                while True:
                    chunk = s.recv(4096)
                    if not chunk: break
                    data += chunk
                print(data.decode())
                """, port: server.port)
            #expect(output.hasPrefix("HTTP/1.1 400 Bad Request"))
            #expect(output.contains(#""error":"malformed start line: GARBAGE","field":"request""#))
            await server.shutdown()
        }
    }

    @Test func ourClientTalksToOurServerWithKeepAlive() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop)
            let connection = try await HTTPClientConnection.connect(
                to: Endpoint(host: "127.0.0.1", port: server.port), loop: loop)
            for i in 0..<3 {
                let body = Array("ping \(i)".utf8)
                let response = try await connection.execute(
                    HTTPRequest(head: HTTPRequestHead(method: "POST", target: "/echo"), body: body))
                #expect(response.status == 200 && response.body == body)
            }
            let wrongMethod = try await connection.execute(
                HTTPRequest(head: HTTPRequestHead(method: "DELETE", target: "/hello")))
            #expect(wrongMethod.status == 405 && wrongMethod.head.headers["Allow"] == "GET")
            #expect(await connection.isReusable)
            connection.close()
            await server.shutdown()
        }
    }

    @Test func connectionsAboveTheLimitGet503WithRetryAfter() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop, maxConnections: 1)
            let output = try await pythonSocketScript(
                """
                import socket, sys
                port = int(sys.argv[1])
                def read_all(s):
                    data = b""
                    while True:
                        chunk = s.recv(4096)
                        if not chunk: return data
                        data += chunk
                first = socket.create_connection(("127.0.0.1", port))
                first.sendall(b"GET /hello HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n")
                first.recv(4096)  # answered: the first connection is registered and stays open
                second = socket.create_connection(("127.0.0.1", port))
                print(read_all(second).decode())
                first.close()
                """, port: server.port)
            let lines = output.split(separator: "\r\n", omittingEmptySubsequences: false)
            #expect(lines.first == "HTTP/1.1 503 Service Unavailable")
            #expect(lines.contains("Retry-After: 1"))
            #expect(lines.contains("Content-Type: application/json"))
            #expect(output.trimmingCharacters(in: .whitespacesAndNewlines).hasSuffix(#"{"error":"server busy"}"#))
            await server.shutdown()
        }
    }

    @Test func pipeliningClientThatNeverReadsIsNotBufferedWithoutBound() async throws {
        try await withEventLoop { loop in
            let counter = RequestCounter()
            let server = try await startTestServer(loop: loop, counter: counter)
            // 256 pipelined echoes of 256 KiB (64 MiB) from a client that never reads: the server must stop
            // taking requests once its queued responses and buffered input reach their bounds.
            let output = try await pythonSocketScript(
                """
                import socket, sys, time
                s = socket.socket()
                s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 65536)
                s.connect(("127.0.0.1", int(sys.argv[1])))
                s.setblocking(False)
                request = b"POST /echo HTTP/1.1\\r\\nHost: x\\r\\nContent-Length: 262144\\r\\n\\r\\n" + b"x" * 262144
                data = memoryview(request * 256)
                sent = 0
                deadline = time.monotonic() + 3
                while sent < len(data) and time.monotonic() < deadline:
                    try:
                        sent += s.send(data[sent:sent + (1 << 20)])
                    except BlockingIOError:
                        time.sleep(0.01)
                print(sent, len(data))
                s.close()
                """, port: server.port)
            // Kernel buffers (a few MiB), one MiB of queued output and one of input: a few dozen at most.
            let sent = output.trimmingCharacters(in: .whitespacesAndNewlines)
            #expect(
                counter.value < 100,
                "handled \(counter.value) of 256 requests whose responses were never read (sent/total bytes: \(sent))")
            await server.shutdown()
        }
    }

    @Test func pipelinedResponsesFlowAgainOnceTheClientReads() async throws {
        try await withEventLoop { loop in
            let server = try await startTestServer(loop: loop)
            let output = try await pythonSocketScript(
                """
                import socket, sys, time
                s = socket.create_connection(("127.0.0.1", int(sys.argv[1])))
                s.sendall(b"GET /big HTTP/1.1\\r\\nHost: x\\r\\n\\r\\n" * 63
                          + b"GET /big HTTP/1.1\\r\\nHost: x\\r\\nConnection: close\\r\\n\\r\\n")
                time.sleep(0.5)  # let the server's queue fill and stall
                data = bytearray()
                while True:
                    chunk = s.recv(1 << 16)
                    if not chunk: break
                    data += chunk
                print(data.count(b"HTTP/1.1 200 OK"), len(data) > 64 * 262144)
                """, port: server.port)
            #expect(output.trimmingCharacters(in: .whitespacesAndNewlines) == "64 True")
            await server.shutdown()
        }
    }
}
