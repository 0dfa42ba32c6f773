import Foundation
import HTTP1Protocol
import Runtime
import TLS
import WebSocketProtocol

/// A ~180-byte OKX v5 trade push (the shape the peer benchmark's mock exchange sends).
func sampleTradeFrame(_ i: Int) -> String {
    let tradeID = 130_639_474 + i
    let price = 42_000 + Double(i % 1000) / 10
    return #"{"arg":{"channel":"trades","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":""#
        + "\(tradeID)" + #"","px":""# + String(format: "%.1f", price)
        + #"","sz":"0.12060306","side":"buy","ts":"1629386781174","count":"1"}]}"#
}

/// Serves pre-encoded text frames as fast as the receiver reads them.
enum WebSocketSenderBench {
    static func run(_ options: BenchOptions) {
        let frames = options.int("frames", default: 1_000_000)
        let port = options.int("port", default: 0)
        var tls: TLSContext? = nil
        if let cert = options.string("tls-cert"), let key = options.string("tls-key") {
            do {
                tls = try TLSContext(configuration: .server(certificateChainFile: cert, privateKeyFile: key))
            } catch {
                fail("\(error)")
            }
        }
        // One block of 1,000 distinct frames, encoded once and written repeatedly.
        var block: [UInt8] = []
        for i in 0..<1000 {
            let payload = Array(sampleTradeFrame(i).utf8)
            payload.withUnsafeBytes { WSFrameEncoder.encode(opcode: .text, payload: $0, maskKey: nil, into: &block) }
        }
        let loop: EventLoop
        do {
            loop = try EventLoop.start(name: "ws-sender")
        } catch {
            fail("\(error)")
        }
        let context = tls
        let encoded = block
        let keeper = ServerKeeper()
        loop.execute {
            do {
                let server = try WebSocketServer(host: "127.0.0.1", port: port, tls: context, loop: loop) {
                    SenderHandler(block: encoded, framesPerBlock: 1000, total: frames)
                }
                FileHandle.standardOutput.write(Data("LISTENING \(server.port)\n".utf8))
                keeper.server = server
            } catch {
                fail("\(error)")
            }
        }
        dispatchMain()
    }
}

/// Keeps the benchmark server alive for the process lifetime.
final class ServerKeeper: @unchecked Sendable {
    // @unchecked Sendable: `server` is written once, on the loop thread, and never read elsewhere.
    var server: WebSocketServer?
}

final class SenderHandler: WebSocketServerHandler {
    let block: [UInt8]
    let framesPerBlock: Int
    let total: Int
    var sent = 0
    var lastBlock: [UInt8]

    init(block: [UInt8], framesPerBlock: Int, total: Int) {
        self.block = block
        self.framesPerBlock = framesPerBlock
        self.total = total
        // The final partial block: the first (total % framesPerBlock) frames of `block`.
        var cut = 0
        var count = 0
        var offset = 0
        let remainder = total % framesPerBlock
        while count < remainder {
            let length = Int(block[offset + 1] & 0x7F)
            let header = length == 126 ? 4 : 2
            let size = header + (length == 126 ? Int(block[offset + 2]) << 8 | Int(block[offset + 3]) : length)
            offset += size
            cut = offset
            count += 1
        }
        lastBlock = Array(block[0..<cut])
    }

    func webSocketDidConnect(_ connection: WebSocketServerConnection, request: HTTPRequest) {
        pump(connection)
    }

    func webSocket(_ connection: WebSocketServerConnection, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {}

    func webSocketBecameWritable(_ connection: WebSocketServerConnection) { pump(connection) }

    func webSocketDidClose(_ connection: WebSocketServerConnection, info: WSCloseInfo) {}

    private func pump(_ connection: WebSocketServerConnection) {
        while sent < total && connection.isWritable {
            if total - sent >= framesPerBlock {
                block.withUnsafeBytes { connection.sendEncodedFrames($0) }
                sent += framesPerBlock
            } else {
                lastBlock.withUnsafeBytes { connection.sendEncodedFrames($0) }
                sent = total
            }
        }
        if sent == total {
            sent += 1  // only once
            connection.close(code: 1000, reason: "done")
        }
    }
}

/// Receives `--frames` frames and reports frames/s from the first to the last.
enum WebSocketReceiveBench {
    static func run(_ options: BenchOptions) {
        runReceiveBench(options, mode: "ws-receive", unit: "frames", countOption: "frames") { target, report in
            CountingHandler(target: target, report: report)
        }
    }
}

/// Connects to `--url` (trusting `--ca` for wss), counts units with the handler until the target,
/// and prints one RESULT line. Shared by ws-receive (frames) and ws-parse (parsed candles).
func runReceiveBench(
    _ options: BenchOptions, mode: String, unit: String, countOption: String,
    makeHandler: @escaping @Sendable (Int, @escaping (Double, Int, String?) -> Void) -> CountingHandler
) {
    let target = options.int(countOption, default: 1_000_000)
    guard let urlText = options.string("url"), let url = WebSocketURL(urlText) else { fail("--url ws[s]://… required") }
    var configuration = WebSocketConfiguration()
    if let ca = options.string("ca") {
        do {
            configuration.tls = try TLSContext(configuration: .client(trustRootsFile: ca))
        } catch {
            fail("\(error)")
        }
    }
    let loop: EventLoop
    do {
        loop = try EventLoop.start(name: mode)
    } catch {
        fail("\(error)")
    }
    let done = DispatchSemaphore(value: 0)
    let result = ResultBox()
    let config = configuration
    loop.execute {
        let handler = makeHandler(target) { seconds, count, error in
            result.set(seconds: seconds, count: count, error: error)
            done.signal()
        }
        WebSocketChannel.connect(to: url, configuration: config, loop: loop, handler: handler)
    }
    done.wait()
    loop.shutdown()  // stop the loop thread before exit() tears down libcrypto under it
    let (seconds, count, error) = result.get()
    if let error, count < target { fail("receive failed after \(count) \(unit): \(error)") }
    let rate = Int(Double(count) / seconds)
    print(
        "RESULT mode=\(mode) tls=\(url.isSecure) \(unit)=\(count) seconds=\(String(format: "%.4f", seconds)) \(unit)_per_sec=\(rate)"
    )
    exit(0)
}

final class ResultBox: @unchecked Sendable {
    // @unchecked Sendable: written once on the loop before the semaphore is signalled, read after it.
    private var seconds = 0.0
    private var count = 0
    private var error: String?
    func set(seconds: Double, count: Int, error: String?) {
        self.seconds = seconds
        self.count = count
        self.error = error
    }
    func get() -> (Double, Int, String?) { (seconds, count, error) }
}

/// Counts messages (subclasses count something else per message) from the first to the target.
class CountingHandler: WebSocketHandler {
    let target: Int
    var count = 0
    var start: UInt64 = 0
    var seconds: Double?
    let report: (Double, Int, String?) -> Void

    init(target: Int, report: @escaping (Double, Int, String?) -> Void) {
        self.target = target
        self.report = report
    }

    /// Units in one message (1 frame here).
    func units(in payload: UnsafeRawBufferPointer) -> Int { 1 }

    func webSocketDidConnect(_ channel: WebSocketChannel) {}

    func webSocket(_ channel: WebSocketChannel, didReceive payload: UnsafeRawBufferPointer, isText: Bool) {
        let n = units(in: payload)
        guard n > 0 else { return }
        if count == 0 { start = DispatchTime.now().uptimeNanoseconds }
        count += n
        if count >= target && seconds == nil {
            seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            channel.close()
        }
    }

    func webSocketDidClose(_ channel: WebSocketChannel, info: WSCloseInfo, error: (any Error)?) {
        if seconds == nil { seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9 }
        report(seconds ?? 0, count, count < target ? (error.map { "\($0)" } ?? "closed early: \(info)") : nil)
    }
}
