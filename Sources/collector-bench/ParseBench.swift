import Exchanges
import Foundation
import MarketData

/// A candle push as OKX sends it (~150 bytes).
func sampleCandleFrame(_ i: Int) -> String {
    let open = 42_000 + Double(i % 997) / 10
    let ts = 1_700_000_000_000 + Int64(i) * 60_000
    return #"{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[[""# + "\(ts)" + #"",""#
        + String(format: "%.1f", open) + #"",""# + String(format: "%.1f", open + 12.5) + #"",""#
        + String(format: "%.1f", open - 3.2) + #"",""# + String(format: "%.1f", open + 1.1)
        + #"","45.2471","1910000.12","1910000.12",""# + (i % 60 == 59 ? "1" : "0") + #""]]}"#
}

/// Foundation's JSONDecoder over the same messages, building the same `Candle` values.
struct DecodedPush: Decodable {
    struct Arg: Decodable {
        let channel: String
        let instId: String
    }
    let arg: Arg
    let data: [[String]]
}

enum ParseBench {
    static func run(_ options: BenchOptions) {
        let count = options.int("messages", default: 1_000_000)
        let reps = options.int("reps", default: 3)
        let frames = (0..<10_000).map { Array(sampleCandleFrame($0).utf8) }
        let adapter = OKXAdapter()
        var ours: [Double] = []
        var foundation: [Double] = []
        for _ in 0..<reps {
            var out: [ExchangeMessage] = []
            out.reserveCapacity(4)
            var candles = 0
            let start = DispatchTime.now().uptimeNanoseconds
            for i in 0..<count {
                out.removeAll(keepingCapacity: true)
                frames[i % frames.count].withUnsafeBytes { raw in
                    // try!: the frames are generated well-formed; a failure here is a benchmark bug.
                    try! adapter.parse(raw, receivedAt: 1, into: &out)
                }
                candles += out.count
            }
            let seconds = Double(DispatchTime.now().uptimeNanoseconds - start) / 1e9
            precondition(candles == count, "parser lost messages")
            ours.append(Double(count) / seconds)

            let decoder = JSONDecoder()
            let decodeCount = count / 4
            var decoded = 0
            let start2 = DispatchTime.now().uptimeNanoseconds
            for i in 0..<decodeCount {
                let data = Data(frames[i % frames.count])
                // try!: same well-formed frames as above.
                let push = try! decoder.decode(DecodedPush.self, from: data)
                for row in push.data {
                    guard let tf = Timeframe(String(push.arg.channel.dropFirst(6))), let ms = Int64(row[0]),
                        let o = DecimalText(row[1]), let h = DecimalText(row[2]), let l = DecimalText(row[3]),
                        let c = DecimalText(row[4]), let v = DecimalText(row[5]), let q = DecimalText(row[7])
                    else { continue }
                    let candle = Candle(
                        exchange: .okx, symbol: push.arg.instId, timeframe: tf, openTime: ms * 1000, open: o, high: h,
                        low: l, close: c, volume: v, quoteVolume: q, isConfirmed: row[8] == "1",
                        timestampExchange: ms * 1000, timestampCollector: 1)
                    if candle.openTime > 0 { decoded += 1 }
                }
            }
            let seconds2 = Double(DispatchTime.now().uptimeNanoseconds - start2) / 1e9
            precondition(decoded == decodeCount, "decoder lost messages")
            foundation.append(Double(decodeCount) / seconds2)
        }
        let medianOurs = ours.sorted()[ours.count / 2]
        let medianFoundation = foundation.sorted()[foundation.count / 2]
        print(
            "RESULT mode=parse-okx messages=\(count) reps=\(reps) ours_msgs_per_sec=\(Int(medianOurs)) "
                + "jsondecoder_msgs_per_sec=\(Int(medianFoundation)) ratio=\(String(format: "%.1f", medianOurs / medianFoundation))"
        )
    }
}
