import Dispatch
import Exchanges
import MarketData

/// The 1,000 `trades-all` pushes exchange-sim floods (one fill each, ~180 bytes), byte for byte.
func sampleTradesAllFrames(symbol: String = "BTC-USDT") -> [[UInt8]] {
    (0..<1000).map { i in
        let price = 42_000 + (i * 7) % 500
        let side = i % 3 == 0 ? "sell" : "buy"
        let text =
            #"{"arg":{"channel":"trades-all","instId":""# + symbol + #""},"data":[{"instId":""# + symbol
            + #"","tradeId":""# + "\(130_639_474 + i)" + #"","px":""# + "\(price).\(i % 10)" + #"","sz":"0."#
            + "\(10_000_000 + (i &* 7_919) % 90_000_000)" + #"","side":""# + side + #"","ts":""#
            + "\(1_630_048_897_897 + i)" + #""}]}"#
        return Array(text.utf8)
    }
}

/// In-process `trades-all` parsing (no sockets): `--messages` frames through `OKXAdapter.parse`
/// per rep, `--reps` reps; prints the median fills/s and ns per frame. The figure
/// `cluster/bench/ws_trades.sh` compares against the raw WebSocket rate, without the simulator.
enum TradeParseBench {
    static func run(_ options: BenchOptions) {
        let count = options.int("messages", default: 1_000_000)
        let reps = options.int("reps", default: 3)
        // All frames in one buffer, so the loop touches no per-frame array (no retain/release).
        let frames = sampleTradesAllFrames()
        let bytes = frames.flatMap { $0 }
        var starts = [0]
        for frame in frames { starts.append(starts[starts.count - 1] + frame.count) }
        let adapter = OKXAdapter()
        var rates: [Double] = []
        var out: [ExchangeMessage] = []
        out.reserveCapacity(4)
        for _ in 0..<reps {
            var messages = 0
            let start = DispatchTime.now().uptimeNanoseconds
            bytes.withUnsafeBytes { all in
                for i in 0..<count {
                    let k = i % frames.count
                    out.removeAll(keepingCapacity: true)
                    // try!: the frames are generated well-formed; a failure here is a benchmark bug.
                    try! adapter.parse(
                        UnsafeRawBufferPointer(rebasing: all[starts[k]..<starts[k + 1]]), receivedAt: 1, into: &out)
                    messages += out.count
                }
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            // Counted without looking at each message (which copies it); the last frame's are checked.
            precondition(messages == count, "parser lost fills")
            guard case .event(.trade) = out[0] else { preconditionFailure("not a trade: \(out)") }
            rates.append(Double(count) / seconds)
        }
        let median = rates.sorted()[rates.count / 2]
        let nanoseconds = 1e9 / median
        print(
            "RESULT mode=parse-trades messages=\(count) reps=\(reps) trades_per_sec=\(Int(median)) "
                + "ns_per_frame=\(Int(nanoseconds.rounded()))")
    }
}
