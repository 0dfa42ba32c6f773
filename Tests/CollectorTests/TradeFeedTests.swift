import Collector
import ExchangeSimulator
import Foundation
import HTTP1Protocol
import MarketData
import PostgresClient
import Runtime
import TestSupport
import Testing

/// OKX trades and tickers end to end: exchange-sim → WebSocket → session → spool → PostgreSQL,
/// checked against the simulator's oracle of every fill it made and every id it pushed.
@Suite struct TradeFeedTests {
    func getJSON(_ harness: Harness, _ target: String) async throws -> [String: Any] {
        let response = try await HTTPClient.send(
            HTTPRequest(head: HTTPRequestHead(method: "GET", target: target)),
            to: Endpoint(host: "127.0.0.1", port: harness.simulator.restPort), loop: harness.loop)
        return try #require(try JSONSerialization.jsonObject(with: Data(response.body)) as? [String: Any])
    }

    func post(_ harness: Harness, _ target: String) async throws {
        _ = try await HTTPClient.send(
            HTTPRequest(head: HTTPRequestHead(method: "POST", target: target)),
            to: Endpoint(host: "127.0.0.1", port: harness.simulator.restPort), loop: harness.loop)
    }

    /// Stored fills of a symbol, id order: [trade_id, price, size, side, ts (ms)].
    func storedTrades(_ harness: Harness, _ symbol: String) async throws -> [[String]] {
        try await harness.executor.run { c throws(PGError) in
            try c.execute(
                """
                SELECT trade_id, price::text, size::text, side,
                       (extract(epoch FROM timestamp_exchange) * 1000)::bigint::text
                FROM trades WHERE exchange = 'okx' AND symbol = $1 ORDER BY trade_id::bigint
                """, [symbol]
            ).rows.map { $0.map { $0 ?? "" } }
        }
    }

    func contiguous(_ rows: [[String]]) -> Bool {
        let ids = rows.compactMap { Int64($0[0]) }
        guard let first = ids.first, let last = ids.last else { return false }
        return last - first + 1 == Int64(ids.count)
    }

    @Test func tradesAcrossADroppedConnectionHaveNoMissingFillAndMatchTheOracleExactly() async throws {
        let database = try await TestDatabase.create()
        defer { database.drop() }
        let harness = try await Harness.start(conninfo: database.conninfo, symbols: ["BTC-USDT"])
        let trades = StreamID("okx/trades/BTC-USDT")!
        let ticker = StreamID("okx/ticker/BTC-USDT")!
        #expect(await harness.engine.subscribe([trades, ticker]).isEmpty)
        try await harness.waitUntil("200 fills stored") { try await storedTrades(harness, "BTC-USDT").count >= 200 }
        // Cut every connection and refuse reconnects for a while: fills keep happening meanwhile.
        try await post(harness, "/control/disconnect?pause_ms=600")
        try await harness.waitUntil("a reconnect") { (harness.engine.status.status(trades)?.reconnects ?? 0) >= 1 }
        let atReconnect = try await storedTrades(harness, "BTC-USDT").count
        // The hole's fills land in one batch once REST has returned them all (a loaded machine may
        // still be draining fills from before the outage, which are contiguous too: wait for the refill).
        try await harness.waitUntil("the hole refilled and 300 more fills", timeout: .seconds(60)) {
            let rows = try await storedTrades(harness, "BTC-USDT")
            return (harness.engine.status.status(trades)?.backfilledBars ?? 0) > 0 && rows.count >= atReconnect + 300
                && contiguous(rows)
        }
        await harness.engine.shutdown()
        #expect(await harness.engine.storage.finish(timeout: .seconds(30)))
        let stored = try await storedTrades(harness, "BTC-USDT")
        let first = try #require(stored.first?[0])
        let last = try #require(stored.last?[0])
        // Zero missing fill ids from the first stored to the last…
        #expect(contiguous(stored), "stored ids have a hole")
        // …and every field equal to the simulator's own record of each fill.
        // The oracle answers at most 10,000 fills per request: ask in windows.
        var expected: [[String]] = []
        let (firstID, lastID) = (Int64(first) ?? 0, Int64(last) ?? 0)
        for from in stride(from: firstID, through: lastID, by: 10_000) {
            let to = min(from + 9_999, lastID)
            let oracle = try await getJSON(harness, "/control/trades?instId=BTC-USDT&from=\(from)&to=\(to)")
            #expect(oracle["truncated"] as? Bool == false)
            expected += ((oracle["trades"] as? [[String: Any]]) ?? []).map { t in
                [
                    t["tradeId"] as? String ?? "", t["px"] as? String ?? "", t["sz"] as? String ?? "",
                    t["side"] as? String ?? "", t["ts"] as? String ?? "",
                ]
            }
        }
        #expect(stored.count == expected.count)
        // PostgreSQL's numeric text keeps the simulator's digits, so rows compare as text.
        #expect(stored == expected)
        // The WebSocket really missed fills during the outage: REST made them whole.
        let emitted = try await getJSON(harness, "/control/emitted-trades?instId=BTC-USDT&from=\(first)&to=\(last)")
        let pushed = emitted["count"] as? Int ?? 0
        #expect(pushed < stored.count, "the outage should have hidden fills from the WebSocket (\(pushed) pushed)")
        let status = try #require(harness.engine.status.status(trades))
        #expect(status.backfilledBars >= stored.count - pushed)
        // The hole is in the ledger (and the gaps table), marked recovered.
        #expect(!status.gaps.isEmpty && status.gaps.allSatisfy(\.recovered), "\(status.gaps)")
        let ledger = try await harness.executor.run { c throws(PGError) in
            try c.execute("SELECT cause, recovered::text, missing::text FROM gaps WHERE feed = 'trades'").rows
        }
        #expect(!ledger.isEmpty && ledger.allSatisfy { $0 == ["reconnect", "true", "0"] }, "\(ledger)")
        // Tickers flowed beside them, each with a best bid below its best ask.
        let tickers = try await harness.executor.run { c throws(PGError) in
            try c.execute(
                "SELECT bid_price < ask_price, last_price IS NOT NULL FROM tickers WHERE symbol = 'BTC-USDT'"
            ).rows
        }
        #expect(!tickers.isEmpty)
        #expect(tickers.allSatisfy { $0[0] == "t" && $0[1] == "t" })
        await harness.stop()
    }
}
