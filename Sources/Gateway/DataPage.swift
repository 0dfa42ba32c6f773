import CollectorCore
import MarketData
import WireCore

/// JSON pages of stored events (the shapes in openapi.yaml). Hand-written: a 1,000-row page is the
/// hot path of the API (JSONSerialization is ~5× slower). Times are ISO-8601 UTC with microseconds;
/// decimals are strings with the exchange's digits.
enum DataPage {
    static func render(_ events: [MarketEvent], stream: StreamID) -> String {
        let key: String
        switch stream.feed {
        case .candles: key = "candles"
        case .trades: key = "trades"
        case .book: key = "book"
        case .ticker: key = "tickers"
        }
        // A data query reads one feed's table; gap records are shown by the status API, not here.
        let events = events.filter { if case .gap = $0 { false } else { true } }
        var out = "{\"\(key)\":["
        out.reserveCapacity(64 + events.count * 200)
        for (index, event) in events.enumerated() {
            if index > 0 { out += "," }
            switch event {
            case .candle(let c): candle(c, &out)
            case .trade(let t): trade(t, &out)
            case .book(let b): book(b, &out)
            case .ticker(let t): ticker(t, &out)
            case .gap: break
            }
        }
        out += "],\"count\":\(events.count),\"exchange\":\(JSONText.quoted(stream.exchange.rawValue))"
        out += ",\"feed\":\(JSONText.quoted(stream.feed.description)),\"symbol\":\(JSONText.quoted(stream.symbol))"
        if case .candles(let tf) = stream.feed { out += ",\"timeframe\":\(JSONText.quoted(tf.key))" }
        return out + "}"
    }

    private static func time(_ t: Int64) -> String {
        JSONText.quoted(UTCCalendar.iso8601(microseconds: t, alwaysMicroseconds: true))
    }
    private static func decimal(_ d: DecimalText?) -> String { d.map { JSONText.quoted($0.text) } ?? "null" }

    private static func candle(_ c: Candle, _ out: inout String) {
        out += "{\"close\":\(decimal(c.close)),\"confirmed\":\(c.isConfirmed ? "true" : "false")"
        out += ",\"high\":\(decimal(c.high)),\"low\":\(decimal(c.low)),\"open\":\(decimal(c.open))"
        out += ",\"open_time\":\(time(c.openTime)),\"quote_volume\":\(decimal(c.quoteVolume))"
        out += ",\"timestamp_collector\":\(time(c.timestampCollector))"
        out += ",\"timestamp_exchange\":\(time(c.timestampExchange)),\"volume\":\(decimal(c.volume))}"
    }

    private static func trade(_ t: Trade, _ out: inout String) {
        out += "{\"price\":\(decimal(t.price)),\"side\":\(JSONText.quoted(t.side.rawValue))"
        out += ",\"size\":\(decimal(t.size)),\"timestamp_collector\":\(time(t.timestampCollector))"
        out += ",\"timestamp_exchange\":\(time(t.timestampExchange)),\"trade_id\":\(JSONText.quoted(t.tradeID))}"
    }

    private static func levels(_ levels: [BookLevel]) -> String {
        "["
            + levels.map { "[\(JSONText.quoted($0.price.text)),\(JSONText.quoted($0.size.text))]" }.joined(
                separator: ",")
            + "]"
    }

    private static func book(_ b: BookMessage, _ out: inout String) {
        out += "{\"action\":\(JSONText.quoted(b.action.rawValue)),\"asks\":\(levels(b.asks)),\"bids\":\(levels(b.bids))"
        out += ",\"checksum\":\(b.checksum.map { String($0) } ?? "null")"
        out += ",\"prev_seq\":\(b.previousSequence.map { String($0) } ?? "null"),\"seq\":\(b.sequence)"
        out += ",\"timestamp_collector\":\(time(b.timestampCollector))"
        out += ",\"timestamp_exchange\":\(time(b.timestampExchange))}"
    }

    private static func ticker(_ t: Ticker, _ out: inout String) {
        out += "{\"ask_price\":\(decimal(t.askPrice)),\"ask_size\":\(decimal(t.askSize))"
        out += ",\"bid_price\":\(decimal(t.bidPrice)),\"bid_size\":\(decimal(t.bidSize))"
        out += ",\"high_24h\":\(decimal(t.high24h)),\"last_price\":\(decimal(t.lastPrice))"
        out += ",\"last_size\":\(decimal(t.lastSize)),\"low_24h\":\(decimal(t.low24h))"
        out += ",\"open_24h\":\(decimal(t.open24h)),\"quote_volume_24h\":\(decimal(t.quoteVolume24h))"
        out += ",\"timestamp_collector\":\(time(t.timestampCollector))"
        out += ",\"timestamp_exchange\":\(time(t.timestampExchange)),\"volume_24h\":\(decimal(t.volume24h))}"
    }
}
