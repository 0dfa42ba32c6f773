// collector-bench: benchmark drivers printed by cluster/bench/*.sh. Each mode prints one
// `RESULT key=value ...` line on stdout so scripts can parse it; progress goes to stderr.
import Foundation

let modes: [(name: String, script: String, what: String)] = [
    ("ws-sender", "ws_receive.sh", "a WebSocket server pushing frames as fast as they are read"),
    ("ws-receive", "ws_receive.sh", "our WebSocket client receiving from ws-sender"),
    ("parse-okx", "parse_okx.sh", "OKX candle message parsing, in memory"),
    ("ws-parse", "ws_parse.sh", "receive + parse from exchange-sim --flood (ws or wss)"),
    ("parse-trades", "none: by hand", "OKX trade message parsing, in memory"),
    ("pg-upsert", "pg_upsert.sh", "candle writes through PostgresSink vs psql \\copy"),
    ("pg-trades", "pg_trades.sh", "trade writes through PostgresSink"),
    ("book-sync", "book_sync.sh", "order-book sessions: snapshot + updates, checksums"),
    ("failover", "failover.sh", "a worker killed: time until its shards are live elsewhere"),
    ("cluster-load", "cluster_scale.sh", "a coordinator with many simulated workers and shards"),
    ("cluster-document", "none: by hand", "rendering /api/v1/cluster for a large shard map"),
]
let usage =
    "usage: collector-bench MODE [--option value …]\n       collector-bench --version | --help\nmodes (each run by its cluster/bench script, which prints the goals):\n"
    + modes.map { "  \($0.name.padding(toLength: 17, withPad: " ", startingAt: 0))\($0.what)  (\($0.script))" }
    .joined(separator: "\n")
    + "\nexit codes: 0 done, 1 the benchmark failed, 64 bad usage.\n"

let arguments = Array(CommandLine.arguments.dropFirst())
guard let mode = arguments.first else { fail("a mode is needed (see collector-bench --help)") }
if mode == "--help" || mode == "-h" || mode == "help" {
    print(usage, terminator: "")
    exit(0)
}
if mode == "--version" {
    print("collector-bench 0.3.0-dev")
    exit(0)
}
guard modes.contains(where: { $0.name == mode }) else { fail("unknown mode \(mode) (see collector-bench --help)") }
let options = BenchOptions(Array(arguments.dropFirst()))
FileHandle.standardError.write(Data("collector-bench: running \(mode)\n".utf8))
switch mode {
case "ws-sender": WebSocketSenderBench.run(options)
case "ws-receive": WebSocketReceiveBench.run(options)
case "parse-okx": ParseBench.run(options)
case "ws-parse": ParsedReceiveBench.run(options)
case "parse-trades": TradeParseBench.run(options)
case "pg-upsert": UpsertBench.run(options)
case "pg-trades": TradesBench.run(options)
case "book-sync": BookSyncBench.run(options)
case "failover": FailoverBench.run(options)
case "cluster-load": ClusterLoadBench.run(options)
case "cluster-document": ClusterDocumentBench.run(options)
default: fail("unknown mode \(mode) (see collector-bench --help)")
}
