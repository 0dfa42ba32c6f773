import Exchanges
import MarketData
import Testing

private func stream(_ exchange: ExchangeName, _ feed: Feed, _ symbol: String) -> StreamID {
    StreamID(exchange: exchange, feed: feed, symbol: symbol)
}

private func minutes(_ key: String) -> Feed {
    guard let tf = Timeframe(key) else { preconditionFailure("unknown timeframe key \(key) in a test") }
    return .candles(tf)
}

private func texts(_ frames: [OutgoingFrame]) -> [String] {
    frames.map {
        if case .text(let text) = $0 { return text }
        return "<not text: \($0)>"
    }
}

/// Runs `adapter.parse` on `text` with a fresh connection state.
private func parse<A: ExchangeAdapter>(_ adapter: A, _ text: String, isText: Bool = true) throws {
    var state = adapter.makeConnectionState()
    var out: [ExchangeMessage] = []
    let bytes = Array(text.utf8)
    try bytes.withUnsafeBytes { raw in
        try adapter.parse(raw, isText: isText, receivedAt: 1, state: &state, into: &out)
    }
}

private let context = SubscribeContext(now: 1_750_000_000_000_000)

@Suite struct AdapterSkeletonTests {
    // MARK: Binance

    @Test func binanceSubscribesWithLowerCaseStreamNamesAndTheRequestID() {
        let adapter = BinanceAdapter()
        let streams = [stream(.binance, .trades, "btcusdt"), stream(.binance, minutes("1m"), "ethusdt")]
        let id = "\"c1\""
        #expect(
            texts(adapter.subscribeMessages(for: streams, requestID: "c1", context: context)) == [
                "{\"method\":\"SUBSCRIBE\",\"params\":[\"btcusdt@trade\",\"ethusdt@kline_1m\"],\"id\":\(id)}"
            ])
        #expect(
            texts(adapter.unsubscribeMessages(for: streams, requestID: "c1", context: context)) == [
                "{\"method\":\"UNSUBSCRIBE\",\"params\":[\"btcusdt@trade\",\"ethusdt@kline_1m\"],\"id\":\(id)}"
            ])
    }

    @Test func binanceNamesZonedKlinesAndBookStreams() {
        #expect(BinanceAdapter.streamName(for: stream(.binance, minutes("1D"), "btcusdt")) == "btcusdt@kline_1d@+08:00")
        #expect(BinanceAdapter.streamName(for: stream(.binance, minutes("1Dutc"), "btcusdt")) == "btcusdt@kline_1d")
        #expect(BinanceAdapter.streamName(for: stream(.binance, .fullBook, "btcusdt")) == "btcusdt@depth@100ms")
        #expect(BinanceAdapter.streamName(for: stream(.binance, .ticker, "btcusdt")) == "btcusdt@bookTicker")
    }

    @Test func binanceURLValidationAndPolicies() {
        let adapter = BinanceAdapter()
        #expect(adapter.name == .binance)
        #expect(
            adapter.webSocketURL(for: stream(.binance, .trades, "btcusdt")) == "wss://stream.binance.com:443/stream")
        #expect(adapter.webSocketURL(for: stream(.binance, minutes("1m"), "btcusdt")) == adapter.endpoints.streamURL)
        #expect(adapter.validate(stream(.binance, minutes("1m"), "btcusdt")) == nil)
        #expect(adapter.validate(stream(.okx, minutes("1m"), "btcusdt")) != nil)
        #expect(adapter.validate(stream(.binance, minutes("2D"), "btcusdt")) != nil)
        #expect(adapter.validate(stream(.binance, .trades, "BTCUSDT")) != nil)
        #expect(adapter.keepalive == .serverDriven)
        #expect(adapter.acknowledgement == .explicit)
        #expect(adapter.limits.maxStreamsPerConnection == 1024)
    }

    @Test func binanceBackfillAsksForTheNewestKlinesBelowTheUpperBound() {
        let adapter = BinanceAdapter()
        let request = adapter.backfillPage(
            for: stream(.binance, minutes("1m"), "btcusdt"), newerThan: 1_000_000_000, olderThan: 2_000_000_000,
            now: 3_000_000_000)
        #expect(
            request
                == RESTRequest(
                    target: "/api/v3/klines?symbol=BTCUSDT&interval=1m&endTime=1999999&limit=1000", budget: "klines",
                    pageLimit: 1000))
        #expect(adapter.restBudgets["klines"] != nil)
        #expect(
            adapter.backfillPage(for: stream(.binance, .trades, "btcusdt"), newerThan: 0, olderThan: 1, now: 2) == nil)
    }

    // MARK: Coinbase

    @Test func coinbaseSendsHeartbeatsOnConnectAndOneMessagePerChannel() {
        let adapter = CoinbaseAdapter()
        #expect(
            texts(adapter.connectionOpenedMessages(context: context)) == [
                "{\"type\":\"subscribe\",\"channel\":\"heartbeats\"}"
            ])
        let streams = [stream(.coinbase, .trades, "BTC-USD"), stream(.coinbase, .trades, "ETH-USD")]
        #expect(
            texts(adapter.subscribeMessages(for: streams, requestID: "c1", context: context)) == [
                "{\"type\":\"subscribe\",\"channel\":\"market_trades\",\"product_ids\":[\"BTC-USD\",\"ETH-USD\"]}"
            ])
        let mixed = [stream(.coinbase, .fullBook, "BTC-USD"), stream(.coinbase, minutes("5m"), "ETH-USD")]
        #expect(
            texts(adapter.unsubscribeMessages(for: mixed, requestID: "c2", context: context)) == [
                "{\"type\":\"unsubscribe\",\"channel\":\"level2\",\"product_ids\":[\"BTC-USD\"]}",
                "{\"type\":\"unsubscribe\",\"channel\":\"candles\",\"product_ids\":[\"ETH-USD\"]}",
            ])
    }

    @Test func coinbaseAuthenticatedMessagesCarryATokenSlotTheDriverFills() {
        let adapter = CoinbaseAdapter(authenticated: true)
        let streams = [stream(.coinbase, .fullBook, "BTC-USD"), stream(.coinbase, .ticker, "ETH-USD")]
        #expect(
            adapter.connectionOpenedMessages(context: context) == [
                .textWithToken(prefix: "{\"type\":\"subscribe\",\"channel\":\"heartbeats\",\"jwt\":\"", suffix: "\"}")
            ])
        #expect(
            adapter.subscribeMessages(for: streams, requestID: "c1", context: context) == [
                .textWithToken(
                    prefix: "{\"type\":\"subscribe\",\"channel\":\"level2\",\"product_ids\":[\"BTC-USD\"],\"jwt\":\"",
                    suffix: "\"}"),
                .textWithToken(
                    prefix: "{\"type\":\"subscribe\",\"channel\":\"ticker\",\"product_ids\":[\"ETH-USD\"],\"jwt\":\"",
                    suffix: "\"}"),
            ])
        // Unsubscribes and public channels carry no token.
        #expect(texts(adapter.unsubscribeMessages(for: streams, requestID: "c2", context: context)).count == 2)
        #expect(
            CoinbaseAdapter().subscribeMessages(for: streams, requestID: "c1", context: context).allSatisfy {
                if case .text = $0 { true } else { false }
            })
    }

    @Test func coinbaseURLValidationPoliciesAndState() {
        let adapter = CoinbaseAdapter()
        #expect(adapter.name == .coinbase)
        #expect(
            adapter.webSocketURL(for: stream(.coinbase, .fullBook, "BTC-USD")) == "wss://advanced-trade-ws.coinbase.com"
        )
        #expect(adapter.validate(stream(.coinbase, minutes("5m"), "BTC-USD")) == nil)
        #expect(adapter.validate(stream(.binance, minutes("5m"), "BTC-USD")) != nil)
        #expect(adapter.validate(stream(.coinbase, minutes("1m"), "BTC-USD")) != nil)
        #expect(adapter.validate(stream(.coinbase, .trades, "btc-usd")) != nil)
        #expect(adapter.keepalive == .serverDriven)
        #expect(adapter.acknowledgement == .explicit)
        #expect(adapter.limits.maxMessageBytes >= 16 << 20)
        #expect(adapter.makeConnectionState() == CoinbaseAdapter.ConnectionState(lastSequence: nil))
    }

    @Test func coinbaseBackfillClampsTheWindowToOnePage() {
        let adapter = CoinbaseAdapter()
        let request = adapter.backfillPage(
            for: stream(.coinbase, minutes("5m"), "BTC-USD"), newerThan: 0, olderThan: 1_000_000 * 1_000_000,
            now: 2_000_000 * 1_000_000)
        #expect(
            request
                == RESTRequest(
                    target:
                        "/api/v3/brokerage/market/products/BTC-USD/candles?start=895000&end=999999&granularity=FIVE_MINUTE&limit=350",
                    budget: "public", pageLimit: 350))
    }

    // MARK: Upbit

    @Test func upbitSubscribesWithATicketTypesAndAFormat() {
        let adapter = UpbitAdapter()
        let streams = [stream(.upbit, .trades, "KRW-BTC"), stream(.upbit, .trades, "KRW-ETH")]
        #expect(
            texts(adapter.subscribeMessages(for: streams, requestID: "c1", context: context)) == [
                "[{\"ticket\":\"c1\"},{\"type\":\"trade\",\"codes\":[\"KRW-BTC\",\"KRW-ETH\"]},{\"format\":\"DEFAULT\"}]"
            ])
        let mixed = [stream(.upbit, minutes("1H"), "KRW-BTC"), stream(.upbit, .fullBook, "KRW-BTC")]
        #expect(
            texts(adapter.subscribeMessages(for: mixed, requestID: "c2", context: context)) == [
                "[{\"ticket\":\"c2\"},{\"type\":\"candle.60m\",\"codes\":[\"KRW-BTC\"]},"
                    + "{\"type\":\"orderbook\",\"codes\":[\"KRW-BTC\"]},{\"format\":\"DEFAULT\"}]"
            ])
        // No unsubscribe exists: dropping a stream takes a reconnect.
        #expect(adapter.unsubscribeMessages(for: streams, requestID: "c3", context: context).isEmpty)
    }

    @Test func upbitURLValidationAndPolicies() {
        let adapter = UpbitAdapter()
        #expect(adapter.name == .upbit)
        #expect(adapter.webSocketURL(for: stream(.upbit, .trades, "KRW-BTC")) == "wss://api.upbit.com/websocket/v1")
        #expect(adapter.validate(stream(.upbit, minutes("4H"), "KRW-BTC")) == nil)
        #expect(adapter.validate(stream(.bybit, minutes("1m"), "KRW-BTC")) != nil)
        #expect(adapter.validate(stream(.upbit, minutes("2H"), "KRW-BTC")) != nil)
        #expect(adapter.validate(stream(.upbit, minutes("1D"), "KRW-BTC")) != nil)
        #expect(adapter.keepalive == .textPing("PING", reply: "{\"status\":\"UP\"}", idle: .seconds(20)))
        #expect(adapter.acknowledgement == .firstMessage(within: .seconds(10)))
    }

    @Test func upbitBackfillUsesTheExclusiveToBound() {
        let adapter = UpbitAdapter()
        // 2025-06-24T04:56:00Z
        let upper: Int64 = 1_750_740_960_000_000
        #expect(
            adapter.backfillPage(
                for: stream(.upbit, minutes("1H"), "KRW-BTC"), newerThan: 0, olderThan: upper, now: upper)
                == RESTRequest(
                    target: "/v1/candles/minutes/60?market=KRW-BTC&to=2025-06-24T04:56:00Z&count=200",
                    budget: "candles", pageLimit: 200))
        #expect(
            adapter.backfillPage(
                for: stream(.upbit, minutes("1s"), "KRW-BTC"), newerThan: 0, olderThan: upper, now: upper)?.target
                == "/v1/candles/seconds?market=KRW-BTC&to=2025-06-24T04:56:00Z&count=200")
        // Seconds bars older than three months are gone.
        #expect(
            adapter.backfillPage(
                for: stream(.upbit, minutes("1s"), "KRW-BTC"), newerThan: 0, olderThan: upper,
                now: upper + 100 * 86_400_000_000) == nil)
    }

    // MARK: Bybit

    @Test func bybitSubscribesWithTopicsAndTheRequestID() {
        let adapter = BybitAdapter()
        let streams = [stream(.bybit, .trades, "BTCUSDT"), stream(.bybit, minutes("1m"), "ETHUSDT")]
        #expect(
            texts(adapter.subscribeMessages(for: streams, requestID: "c1", context: context)) == [
                "{\"op\":\"subscribe\",\"args\":[\"publicTrade.BTCUSDT\",\"kline.1.ETHUSDT\"],\"req_id\":\"c1\"}"
            ])
        let linear = [stream(.bybit, .fullBook, "linear:BTCUSDT"), stream(.bybit, .ticker, "linear:ETHUSDT")]
        #expect(
            texts(adapter.unsubscribeMessages(for: linear, requestID: "c2", context: context)) == [
                "{\"op\":\"unsubscribe\",\"args\":[\"orderbook.50.BTCUSDT\",\"tickers.ETHUSDT\"],\"req_id\":\"c2\"}"
            ])
    }

    /// Bybit takes ten topics per request: the session splits to that, one request per message.
    @Test func bybitRequestsHoldAtMostTenTopicsUnderTheirRequestID() {
        let adapter = BybitAdapter()
        #expect(adapter.limits.maxStreamsPerSubscribeMessage == 10)
        let streams = (0..<10).map { stream(.bybit, .trades, "COIN\($0)USDT") }
        let frames = texts(adapter.subscribeMessages(for: streams, requestID: "c7", context: context))
        #expect(frames.count == 1)
        #expect(frames.first?.hasSuffix(",\"req_id\":\"c7\"}") == true)
    }

    @Test func bybitCategoryChoosesTheURL() {
        let adapter = BybitAdapter()
        let spot = stream(.bybit, .trades, "BTCUSDT")
        let linear = stream(.bybit, .trades, "linear:BTCUSDT")
        let inverse = stream(.bybit, .trades, "inverse:BTCUSD")
        #expect(BybitAdapter.category(of: spot) == .spot)
        #expect(BybitAdapter.category(of: linear) == .linear)
        #expect(BybitAdapter.category(of: inverse) == .inverse)
        #expect(BybitAdapter.instrument(of: linear) == "BTCUSDT")
        #expect(adapter.webSocketURL(for: spot) == "wss://stream.bybit.com/v5/public/spot")
        #expect(adapter.webSocketURL(for: linear) == "wss://stream.bybit.com/v5/public/linear")
        #expect(adapter.webSocketURL(for: inverse) == "wss://stream.bybit.com/v5/public/inverse")
        #expect(adapter.webSocketURL(for: spot) != adapter.webSocketURL(for: linear))
    }

    @Test func bybitValidationAndPolicies() {
        let adapter = BybitAdapter()
        #expect(adapter.name == .bybit)
        #expect(adapter.validate(stream(.bybit, minutes("1H"), "linear:BTCUSDT")) == nil)
        #expect(adapter.validate(stream(.upbit, minutes("1H"), "BTCUSDT")) != nil)
        #expect(adapter.validate(stream(.bybit, minutes("1s"), "BTCUSDT")) != nil)
        #expect(adapter.validate(stream(.bybit, .trades, "option:BTCUSDT")) != nil)
        #expect(adapter.keepalive == .textPing("{\"op\":\"ping\"}", reply: "pong", idle: .seconds(20)))
        #expect(adapter.acknowledgement == .explicit)
        #expect(adapter.limits.maxStreamsPerSubscribeMessage == 10)
    }

    @Test func bybitBackfillPassesTheCategory() {
        let adapter = BybitAdapter()
        #expect(
            adapter.backfillPage(
                for: stream(.bybit, minutes("1m"), "linear:BTCUSDT"), newerThan: 0, olderThan: 2_000_000_000, now: 0)
                == RESTRequest(
                    target: "/v5/market/kline?category=linear&symbol=BTCUSDT&interval=1&end=1999999&limit=1000",
                    budget: "kline", pageLimit: 1000))
    }

    // MARK: All adapters

    @Test func parsingIsNotImplementedYet() {
        #expect(throws: ExchangeParseError("Binance market-data parsing is not implemented yet")) {
            try parse(BinanceAdapter(), "{\"result\":null,\"id\":1}")
        }
        #expect(throws: ExchangeParseError("Coinbase market-data parsing is not implemented yet")) {
            try parse(CoinbaseAdapter(), "{\"channel\":\"heartbeats\"}")
        }
        // Upbit data arrives in binary frames holding UTF-8 JSON.
        #expect(throws: ExchangeParseError("Upbit market-data parsing is not implemented yet")) {
            try parse(UpbitAdapter(), "{\"type\":\"trade\"}", isText: false)
        }
        #expect(throws: ExchangeParseError("Bybit market-data parsing is not implemented yet")) {
            try parse(BybitAdapter(), "{\"success\":true,\"op\":\"subscribe\"}")
        }
    }

    @Test func restParsingIsNotImplementedYet() {
        let adapters: [any ExchangeAdapter] = [BinanceAdapter(), CoinbaseAdapter(), UpbitAdapter(), BybitAdapter()]
        for adapter in adapters {
            let body = Array("{}".utf8)
            let request = RESTRequest(target: "/", budget: "none")
            let s = stream(adapter.name, minutes("5m"), "X")
            #expect(throws: RESTError.self) {
                try body.withUnsafeBytes { raw in
                    _ = try adapter.parseBackfill(raw, request: request, stream: s, receivedAt: 0)
                }
            }
        }
    }

    @Test func theProtocolFitsAllFiveExchanges() {
        let adapters: [any ExchangeAdapter] = [
            OKXAdapter(), BinanceAdapter(), CoinbaseAdapter(), UpbitAdapter(), BybitAdapter(),
        ]
        #expect(adapters.map(\.name) == [.okx, .binance, .coinbase, .upbit, .bybit])
        let symbols: [ExchangeName: String] = [
            .okx: "BTC-USDT", .binance: "btcusdt", .coinbase: "BTC-USD", .upbit: "KRW-BTC", .bybit: "BTCUSDT",
        ]
        for adapter in adapters {
            let s = stream(adapter.name, minutes("5m"), symbols[adapter.name] ?? "")
            #expect(adapter.validate(s) == nil, "\(adapter.name)")
            #expect(!adapter.webSocketURL(for: s).isEmpty)
            #expect(!adapter.subscribeMessages(for: [s], requestID: "c1", context: context).isEmpty)
            #expect(adapter.backfillPage(for: s, newerThan: 0, olderThan: 600_000_000, now: 600_000_000) != nil)
            #expect(adapter.limits.maxStreamsPerSubscribeMessage <= adapter.limits.maxStreamsPerConnection)
        }
    }
}
