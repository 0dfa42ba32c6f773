// collector-bench: benchmark drivers printed by cluster/bench/*.sh. Each mode prints one
// `RESULT key=value ...` line so scripts can parse it.
import Foundation

let arguments = Array(CommandLine.arguments.dropFirst())
guard let mode = arguments.first else {
    FileHandle.standardError.write(
        Data(
            "usage: collector-bench ws-sender|ws-receive|parse-okx|ws-parse|pg-upsert|pg-trades|book-sync|failover|cluster-load [options]\n"
                .utf8))
    exit(64)
}
let options = BenchOptions(Array(arguments.dropFirst()))
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
default:
    FileHandle.standardError.write(Data("unknown mode \(mode)\n".utf8))
    exit(64)
}
