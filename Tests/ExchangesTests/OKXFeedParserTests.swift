import Exchanges
import Foundation
import MarketData
import TestSupport
import Testing

private func fixture(_ file: String) -> String { TestEnvironment.repositoryRoot + "/Tests/Fixtures/" + file }

/// The data object(s) of a push, read by Foundation's JSON parser (an independent reference).
private func dataRows(_ payload: String) throws -> [[String: Any]] {
    let object = try #require(try JSONSerialization.jsonObject(with: Data(payload.utf8)) as? [String: Any])
    return try #require(object["data"] as? [[String: Any]])
}

private func decimal(_ row: [String: Any], _ key: String) -> DecimalText? {
    (row[key] as? String).flatMap { $0.isEmpty ? nil : DecimalText($0) }
}

@Suite struct OKXFeedParserTests {
    /// Every recorded `trades` push, as `trades-all` (the per-fill channel has the same row shape):
    /// one trade per row with the exchange's exact id, decimals, side and time.
    @Test func recordedTradeRowsParseExactly() throws {
        let frames = try recordedFrames("okx/OKX.ws.1.0").filter {
            $0.payload.contains(#""channel":"trades""#) && $0.payload.contains(#""data""#)
        }
        #expect(frames.count == 74)  // every `trades` push in the capture
        var total = 0
        for frame in frames {
            let perFill = frame.payload.replacingOccurrences(
                of: #""channel":"trades""#, with: #""channel":"trades-all""#)
            let trades = try parse(perFill, receivedAt: frame.receivedAt).compactMap {
                if case .event(.trade(let t)) = $0 { t } else { nil }
            }
            let rows = try dataRows(perFill)
            #expect(trades.count == rows.count)
            for (trade, row) in zip(trades, rows) {
                #expect(trade.tradeID == row["tradeId"] as? String)
                #expect(trade.price == decimal(row, "px") && trade.size == decimal(row, "sz"))
                #expect(trade.side.rawValue == row["side"] as? String)
                #expect(trade.timestampExchange == Int64(row["ts"] as? String ?? "")! * 1000)
                #expect(trade.timestampCollector == frame.receivedAt)
                #expect(trade.symbol == row["instId"] as? String && trade.exchange == .okx)
                #expect(trade.stream == StreamID(exchange: .okx, feed: .trades, symbol: trade.symbol))
            }
            total += trades.count
        }
        #expect(total >= 74)
    }

    /// The aggregated `trades` channel is not ours (its fills cannot be split): a push of it is a
    /// well-formed message we do not use, never mixed into the per-fill id space.
    @Test func theAggregatedTradesChannelIsNotMixedWithFills() throws {
        let text = try String(contentsOfFile: fixture("okx/ws_trades.json"), encoding: .utf8)
        #expect(try parse(text) == [.unhandled(kind: "channel:trades")])
    }

    @Test func recordedTickersParseExactly() throws {
        var frames = try recordedFrames("okx/OKX.ws.1.0").filter {
            $0.payload.contains(#""channel":"tickers""#) && $0.payload.contains(#""data""#)
        }.map(\.payload)
        frames.append(try String(contentsOfFile: fixture("okx/ws_tickers.json"), encoding: .utf8))
        #expect(frames.count == 29)  // the 28 recorded `tickers` pushes and the docs example
        var derivatives = 0
        defer { #expect(derivatives > 0, "the capture has swap and futures tickers") }
        for payload in frames {
            let tickers = try parse(payload).compactMap { if case .event(.ticker(let t)) = $0 { t } else { nil } }
            let rows = try dataRows(payload)
            #expect(tickers.count == rows.count)
            for (ticker, row) in zip(tickers, rows) {
                #expect(ticker.bidPrice == decimal(row, "bidPx") && ticker.bidSize == decimal(row, "bidSz"))
                #expect(ticker.askPrice == decimal(row, "askPx") && ticker.askSize == decimal(row, "askSz"))
                #expect(ticker.lastPrice == decimal(row, "last") && ticker.lastSize == decimal(row, "lastSz"))
                #expect(ticker.open24h == decimal(row, "open24h") && ticker.high24h == decimal(row, "high24h"))
                #expect(ticker.low24h == decimal(row, "low24h"))
                // Spot: base and quote volume; derivatives: OKX's base-currency volume, no quote volume.
                if ["SPOT", "MARGIN"].contains(row["instType"] as? String ?? "SPOT") {
                    #expect(
                        ticker.volume24h == decimal(row, "vol24h") && ticker.quoteVolume24h == decimal(row, "volCcy24h")
                    )
                } else {
                    derivatives += 1
                    #expect(ticker.volume24h == decimal(row, "volCcy24h") && ticker.quoteVolume24h == nil)
                }
                #expect(ticker.timestampExchange == Int64(row["ts"] as? String ?? "")! * 1000)
                #expect(ticker.stream == StreamID(exchange: .okx, feed: .ticker, symbol: ticker.symbol))
            }
        }
    }

    @Test(arguments: [
        (
            #"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"tradeId":"1","px":"x","sz":"1","side":"buy","ts":"1"}]}"#,
            "px"
        ),
        (
            #"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"tradeId":"1","px":"1","sz":"1","side":"hold","ts":"1"}]}"#,
            "side"
        ),
        (
            #"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"px":"1","sz":"1","side":"buy","ts":"1"}]}"#,
            "tradeId"
        ),
        (
            #"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"tradeId":"1","px":"1","sz":"1","side":"buy","ts":"-5"}]}"#,
            "ts"
        ),
        (#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"last":"abc","ts":"1"}]}"#, "last"),
        (#"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"last":"1"}]}"#, "ts"),
        (#"{"arg":{"channel":"trades-all"},"data":[]}"#, "instId"),
    ])
    func malformedRowsAreRefusedNamingTheField(frame: String, field: String) {
        do {
            let parsed = try parse(frame)
            Issue.record("parsed a malformed frame into \(parsed)")
        } catch let error as ExchangeParseError {
            #expect(error.reason.contains(field), "\(error.reason)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    @Test func historyTradesPagesByTradeIDAndItsReplyParsesExactly() throws {
        let adapter = OKXAdapter()
        let stream = StreamID(exchange: .okx, feed: .trades, symbol: "BTC-USDT")
        let request = try #require(
            adapter.tradeBackfillPage(for: stream, newerThanID: 734_864_300, olderThanID: 734_864_334))
        #expect(
            request.target
                == "/api/v5/market/history-trades?instId=BTC-USDT&type=1&after=734864334&limit=100")
        #expect(request.budget == "history-trades" && request.pageLimit == 100)
        #expect(adapter.tradeBackfillPage(for: stream, newerThanID: 5, olderThanID: 6) == nil, "no id in between")
        let body = Array(try String(contentsOfFile: fixture("okx/http_get_trades.json"), encoding: .utf8).utf8)
        let trades = try body.withUnsafeBytes { raw in
            try adapter.parseTradeBackfill(raw, request: request, stream: stream, receivedAt: 9)
        }
        #expect(trades.map(\.tradeID) == ["734864333", "734864332"])
        #expect(trades.first?.price == "102537.9" && trades.first?.size == "0.00013669" && trades.first?.side == .sell)
        #expect(trades.first?.timestampExchange == 1_747_087_163_557_000)
        let limited = Array(#"{"code":"50011","msg":"Too Many Requests","data":[]}"#.utf8)
        do {
            _ = try limited.withUnsafeBytes { raw in
                try adapter.parseTradeBackfill(raw, request: request, stream: stream, receivedAt: 9)
            }
            Issue.record("a rate-limit reply parsed as data")
        } catch let error as RESTError {
            #expect(error.code == "50011" && error.isRetryable)
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }

    /// `data` is read in one pass when `arg` comes first (OKX's order), and after the fact otherwise:
    /// both orders give the same events; a frame malformed after its data gives no events at all.
    @Test func dataIsReadTheSameWhicheverOrderTheKeysCome() throws {
        let row = #"{"instId":"BTC-USDT","tradeId":"7","px":"1.5","sz":"2","side":"buy","ts":"1000"}"#
        let argFirst = try parse(#"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":["# + row + "]}")
        let dataFirst = try parse(#"{"data":["# + row + #"],"arg":{"channel":"trades-all","instId":"BTC-USDT"}}"#)
        #expect(argFirst.count == 1 && argFirst == dataFirst)
        #expect(throws: ExchangeParseError.self) {
            try parse(#"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":["# + row + "]} trailing")
        }
        do {
            _ = try parse(#"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"tradeId":"x"}]}"#)
            Issue.record("a malformed row parsed")
        } catch let error as ExchangeParseError {
            #expect(error.reason.hasPrefix("bad trades data"), "\(error.reason)")
        } catch {
            Issue.record("unexpected error \(error)")
        }
    }
}

/// OKX's own push layout is read by a byte-for-byte fast path; any other spelling of the same JSON
/// takes the general path. Both must give the same events, and refuse the same frames.
@Suite struct OKXFastPathTests {
    static let frames = [
        #"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"130639474","px":"42219.9","sz":"0.12060306","side":"buy","ts":"1630048897897"}]}"#,
        #"{"arg":{"channel":"trades-all","instId":"BTC-USDT"},"data":[{"instId":"BTC-USDT","tradeId":"7","px":"1.5","sz":"2","side":"sell","ts":"1000","source":"0","seqId":12}]}"#,
        #"{"arg":{"channel":"tickers","instId":"BTC-USDT"},"data":[{"instType":"SPOT","instId":"BTC-USDT","last":"9999.99","lastSz":"0.1","askPx":"9999.99","askSz":"11","bidPx":"8888.88","bidSz":"5","open24h":"9000","high24h":"10000","low24h":"8888.88","volCcy24h":"2222","vol24h":"2222","sodUtc0":"2222","sodUtc8":"2222","ts":"1597026383085"}]}"#,
        #"{"arg":{"channel":"books5","instId":"BTC-USDT"},"data":[{"asks":[["8476.98","415","0","13"]],"bids":[["8476.97","256","0","12"]],"instId":"BTC-USDT","ts":"1597026383085","seqId":123}]}"#,
        #"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"snapshot","data":[{"asks":[["8476.98","415","0","13"]],"bids":[["8476.97","256","0","12"]],"ts":"1597026383085","checksum":0,"prevSeqId":-1,"seqId":123}]}"#,
        #"{"arg":{"channel":"candle1m","instId":"BTC-USDT"},"data":[["1597026383085","8533.02","8553.74","8527.17","8548.26","45247","529.5858061","529.58","0"]]}"#,
    ]

    /// The frame with a space after its `index`-th `,` or `:` (outside strings): same JSON, general path.
    static func spaced(_ frame: String, at index: Int) -> String? {
        var out = ""
        var seen = 0
        var inString = false
        var inserted = false
        for c in frame {
            out.append(c)
            if c == "\"" { inString.toggle() }
            if !inString && (c == "," || c == ":") {
                if seen == index {
                    out.append(" ")
                    inserted = true
                }
                seen += 1
            }
        }
        return inserted ? out : nil
    }

    @Test(arguments: frames)
    func everySpellingGivesTheSameEvents(frame: String) throws {
        let fast = try parse(frame)
        #expect(!fast.isEmpty)
        var index = 0
        while let variant = Self.spaced(frame, at: index) {
            #expect(try parse(variant) == fast, "\(variant)")
            index += 1
        }
        #expect(index > 5)
    }

    @Test(arguments: frames)
    func truncatedOrTrailedFramesAreRefusedByBoth(frame: String) {
        let bytes = Array(frame.utf8)
        for cut in stride(from: 1, to: bytes.count - 1, by: 3) {
            let text = String(decoding: bytes[..<cut], as: UTF8.self)
            #expect(throws: ExchangeParseError.self, "\(text)") { try parse(text) }
        }
        #expect(throws: ExchangeParseError.self) { try parse(frame + "x") }
        #expect(throws: ExchangeParseError.self) { try parse(frame + "}") }
    }
}
