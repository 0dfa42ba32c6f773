// exchange-sim: a local exchange speaking OKX v5 for candles, trades, tickers and order books (see Sources/ExchangeSimulator/README.md).
import ExchangeSimulator
import Foundation
import MarketData
import Runtime
import TLS

let usage = """
    usage: exchange-sim [options]
           exchange-sim --version | --help
      --host ADDR              listen address (default 127.0.0.1)
      --ws-port N              WebSocket port (default 0: pick one)
      --rest-port N            REST/control port (default 0: pick one)
      --symbols A,B            instruments that exist (default BTC-USDT,ETH-USDT,SOL-USDT,XRP-USDT,
                               DOGE-USDT,LTC-USDT,ADA-USDT,BTC-USDT-SWAP,ETH-USDT-SWAP)
      --symbol-count N         instead: SYM0-USDT … SYM<N-1>-USDT plus BTC-USDT and ETH-USDT
      --bar-ms N               real milliseconds per 1m bar (default 200)
      --updates-per-bar N      forming-bar pushes per 1m bar (default 4)
      --start-time MS          virtual start, epoch ms (default: now, rounded to the minute)
      --idle-timeout-ms N      close idle connections after N ms (default 30000)
      --flood N                benchmark mode: push N candle messages per subscription as fast as read
                               (trades-all fills, or books updates, when no candle is subscribed)
      --no-rate-limits         do not enforce OKX's REST limits
      --tls                    serve wss/https with a generated self-signed certificate (its path is printed)
      --tls-cert F --tls-key F serve TLS with these files
      --seed N                 candle and trade model seed (default 7)
      --trades-per-bar N       fills per virtual 1m bar (default 120: two a virtual second)
      --trade-history-min N    virtual minutes of fills before the start (default 60)
      --feed-interval-ms N     real ms between trade/ticker/book pushes (default 50; tickers ≥ 100 ms apart)
      --book-step-ms N         virtual ms per order-book step, one books update each (default 100)
      --book-checksum-zero     books pushes carry checksum 0 (OKX from 2026-06-23)
      --no-book-snapshot       books sends no initial snapshot: clients seed from REST /market/books
    Control: POST /control/book-fault?instId=X&kind=checksum|skip-seq|reset, GET /control/book?instId=X[&seqId=N]
      --print-env              once listening, print the collector's `export OKX_…=` lines (and
                               SSL_CERT_FILE with --tls) on stdout, for eval (cluster/sim.sh does it)
    Prints `SYMBOLS A,B,…` and `LISTENING ws=PORT rest=PORT` when ready.
    exit codes: 0 stopped by a signal, 1 cannot listen or load the certificate, 64 bad usage.
    """

func usageError(_ message: String) -> Never {
    FileHandle.standardError.write(Data("exchange-sim: \(message) (see exchange-sim --help)\n".utf8))
    exit(64)
}

var configuration = SimulatorConfiguration()
configuration.symbols = [
    "BTC-USDT", "ETH-USDT", "SOL-USDT", "XRP-USDT", "DOGE-USDT", "LTC-USDT", "ADA-USDT", "BTC-USDT-SWAP",
    "ETH-USDT-SWAP",
]
var printEnvironment = false
var arguments = Array(CommandLine.arguments.dropFirst())
var tlsCert: String?
var tlsKey: String?
var generateTLS = false

@MainActor func value(_ flag: String) -> String {
    guard let next = arguments.first, !next.hasPrefix("--") else { usageError("\(flag) needs a value") }
    return arguments.removeFirst()
}

@MainActor func integer(_ flag: String) -> Int {
    let text = value(flag)
    guard let n = Int(text), n >= 0 else { usageError("\(flag) must be a non-negative integer, got '\(text)'") }
    return n
}

while !arguments.isEmpty {
    let flag = arguments.removeFirst()
    switch flag {
    case "--host": configuration.host = value(flag)
    case "--ws-port": configuration.webSocketPort = integer(flag)
    case "--rest-port": configuration.restPort = integer(flag)
    case "--symbols": configuration.symbols = value(flag).split(separator: ",").map(String.init)
    case "--symbol-count":
        configuration.symbols = ["BTC-USDT", "ETH-USDT"] + (0..<integer(flag)).map { "SYM\($0)-USDT" }
    case "--bar-ms": configuration.barMilliseconds = max(1, integer(flag))
    case "--updates-per-bar": configuration.updatesPerBar = max(1, integer(flag))
    case "--start-time": configuration.startTime = Int64(integer(flag)) * 1000
    case "--idle-timeout-ms": configuration.idleTimeout = .milliseconds(integer(flag))
    case "--flood": configuration.floodMessages = integer(flag)
    case "--no-rate-limits": configuration.enforceRateLimits = false
    case "--tls": generateTLS = true
    case "--tls-cert": tlsCert = value(flag)
    case "--tls-key": tlsKey = value(flag)
    case "--seed": configuration.seed = UInt64(integer(flag))
    case "--trades-per-bar": configuration.tradesPerBar = max(1, integer(flag))
    case "--trade-history-min": configuration.tradeHistoryMinutes = integer(flag)
    case "--feed-interval-ms": configuration.feedIntervalMilliseconds = max(1, integer(flag))
    case "--book-step-ms": configuration.bookStepMilliseconds = max(1, integer(flag))
    case "--book-checksum-zero": configuration.bookChecksumZero = true
    case "--no-book-snapshot": configuration.sendsBookSnapshot = false
    case "--print-env": printEnvironment = true
    case "--help", "-h":
        print(usage)
        exit(0)
    case "--version":
        print("exchange-sim 0.3.0-dev")
        exit(0)
    default:
        usageError("unknown option \(flag)")
    }
}

do {
    if generateTLS {
        let directory = NSTemporaryDirectory() + "exchange-sim-\(getpid())"
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let generated = try SelfSignedCertificate.generate(directory: directory)
        (tlsCert, tlsKey) = (generated.certificatePath, generated.privateKeyPath)
        // (stderr under --print-env: stdout holds only the export lines then.)
        (printEnvironment ? FileHandle.standardError : FileHandle.standardOutput).write(
            Data("CERTIFICATE \(generated.certificatePath)\n".utf8))
    }
    if let tlsCert, let tlsKey {
        configuration.tls = try TLSContext(
            configuration: .server(certificateChainFile: tlsCert, privateKeyFile: tlsKey))
    }
    let loop = try EventLoop.start(name: "exchange-sim")
    let config = configuration
    let ready = DispatchSemaphore(value: 0)
    let ports = PortsBox()
    Task.detached {
        do {
            let simulator = try await ExchangeSimulator.start(configuration: config, loop: loop)
            ports.set(simulator)
        } catch {
            FileHandle.standardError.write(Data("exchange-sim: \(error)\n".utf8))
            exit(1)
        }
        ready.signal()
    }
    ready.wait()
    // Force-unwrap: set before `ready` was signalled (failures exit above).
    let simulator = ports.simulator!
    let listening = "LISTENING ws=\(simulator.webSocketPort) rest=\(simulator.restPort)"
    if printEnvironment {
        // Only shell lines on stdout: `eval "$(exchange-sim --print-env)"` needs them alone; the
        // rest goes to stderr.
        let secure = config.tls != nil
        let (ws, http) = secure ? ("wss", "https") : ("ws", "http")
        let host = config.host == "0.0.0.0" ? "127.0.0.1" : config.host
        var lines = [
            "export OKX_WS_PUBLIC_URL=\(ws)://\(host):\(simulator.webSocketPort)/ws/v5/public",
            "export OKX_WS_BUSINESS_URL=\(ws)://\(host):\(simulator.webSocketPort)/ws/v5/business",
            "export OKX_REST_URL=\(http)://\(host):\(simulator.restPort)",
        ]
        if secure, let tlsCert { lines.append("export SSL_CERT_FILE=\(tlsCert)") }
        FileHandle.standardOutput.write(Data((lines.joined(separator: "\n") + "\n").utf8))
        FileHandle.standardError.write(Data("SYMBOLS \(config.symbols.joined(separator: ","))\n\(listening)\n".utf8))
    } else {
        FileHandle.standardOutput.write(Data("SYMBOLS \(config.symbols.joined(separator: ","))\n\(listening)\n".utf8))
    }
    dispatchMain()
} catch {
    FileHandle.standardError.write(Data("exchange-sim: \(error)\n".utf8))
    exit(1)
}

final class PortsBox: @unchecked Sendable {
    // @unchecked Sendable: written once before `ready` is signalled, read after it.
    var simulator: ExchangeSimulator?
    func set(_ s: ExchangeSimulator) { simulator = s }
}
