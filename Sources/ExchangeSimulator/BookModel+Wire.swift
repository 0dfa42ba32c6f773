import MarketData
import WireCore

/// The wire forms of the book model (PROTOCOLS.md §1.6, §1.8): prices and sizes as OKX writes
/// them (no exponent, no trailing fractional zeros: "42219.9", "8477", "0.12060306").
extension BookModel {
    /// Sizes are in base currency with 8 decimals, like OKX spot.
    static let sizeDecimals = 8

    func priceText(_ ticks: Int64) -> String { TradeModel.decimal(ticks, scale: priceDecimals) }

    func sizeText(_ units: Int64) -> String { TradeModel.decimal(units, scale: Self.sizeDecimals) }

    /// Levels as a push or REST array: `[["px","sz","0","numOrders"],…]` (a removal is
    /// `["px","0","0","0"]`, as OKX sends it).
    func pushLevels(_ levels: some Sequence<ModelLevel>) -> String {
        var out = "["
        var isFirst = true
        for level in levels {
            if !isFirst { out += "," }
            isFirst = false
            out += "[\"\(priceText(level.priceTicks))\",\"\(sizeText(level.sizeUnits))\",\"0\",\"\(level.orders)\"]"
        }
        return out + "]"
    }

    /// Levels as the oracle writes them: `[["px","sz"],…]`.
    func oracleLevels(_ levels: some Sequence<ModelLevel>) -> String {
        var out = "["
        var isFirst = true
        for level in levels {
            if !isFirst { out += "," }
            isFirst = false
            out += "[\"\(priceText(level.priceTicks))\",\"\(sizeText(level.sizeUnits))\"]"
        }
        return out + "]"
    }

    /// OKX's checksum of `state`, computed by `OrderBook.okxChecksum` over exactly the text the
    /// pushes carry, so a client that merges the pushes gets the same value.
    func checksum(_ state: BookState) -> Int32 {
        var book = OrderBook(maxDepth: Self.checksumLevels)
        book.applySnapshot(
            bids: state.bids.prefix(Self.checksumLevels).map(bookLevel),
            asks: state.asks.prefix(Self.checksumLevels).map(bookLevel))
        return book.okxChecksum(levels: Self.checksumLevels)
    }

    /// A level as `OrderBook` holds it: the pushed text.
    func bookLevel(_ level: ModelLevel) -> BookLevel {
        // Force-unwraps: `TradeModel.decimal` writes digits with at most one point, always valid.
        BookLevel(price: DecimalText(priceText(level.priceTicks))!, size: DecimalText(sizeText(level.sizeUnits))!)
    }

    /// The `arg` object of a push on `channel`.
    func argJSON(_ channel: String) -> String {
        "{\"channel\":\"\(channel)\",\"instId\":\(JSONText.quoted(symbol))}"
    }

    /// A `books` snapshot push: the whole book, `prevSeqId` -1.
    func snapshotMessage(_ state: BookState, checksum: Int32) -> String {
        "{\"arg\":\(argJSON("books")),\"action\":\"snapshot\",\"data\":[{\"asks\":\(pushLevels(state.asks)),\"bids\":\(pushLevels(state.bids)),\"ts\":\"\(milliseconds(ofStep: state.step))\",\"checksum\":\(checksum),\"prevSeqId\":-1,\"seqId\":\(state.seqId)}]}"
    }

    /// A `books` update push: the levels one step changed.
    func updateMessage(_ step: BookStep, checksum: Int32) -> String {
        "{\"arg\":\(argJSON("books")),\"action\":\"update\",\"data\":[{\"asks\":\(pushLevels(step.asks)),\"bids\":\(pushLevels(step.bids)),\"ts\":\"\(milliseconds(ofStep: step.step))\",\"checksum\":\(checksum),\"prevSeqId\":\(step.prevSeqId),\"seqId\":\(step.seqId)}]}"
    }

    /// A `books5` push: the best 5 levels per side, no action, no prevSeqId, no checksum.
    func books5Message(_ state: BookState) -> String {
        "{\"arg\":\(argJSON("books5")),\"data\":[{\"asks\":\(pushLevels(state.asks.prefix(5))),\"bids\":\(pushLevels(state.bids.prefix(5))),\"instId\":\(JSONText.quoted(symbol)),\"ts\":\"\(milliseconds(ofStep: state.step))\",\"seqId\":\(state.seqId)}]}"
    }

    /// A `bbo-tbt` push: the best level per side.
    func bboMessage(_ state: BookState) -> String {
        "{\"arg\":\(argJSON("bbo-tbt")),\"data\":[{\"asks\":\(pushLevels(state.asks.prefix(1))),\"bids\":\(pushLevels(state.bids.prefix(1))),\"ts\":\"\(milliseconds(ofStep: state.step))\",\"seqId\":\(state.seqId)}]}"
    }

    /// The `data` row of `GET /api/v5/market/books` with `depth` levels per side.
    func restRow(_ state: BookState, depth: Int) -> String {
        "{\"asks\":\(pushLevels(state.asks.prefix(depth))),\"bids\":\(pushLevels(state.bids.prefix(depth))),\"ts\":\"\(milliseconds(ofStep: state.step))\",\"seqId\":\(state.seqId)}"
    }

    /// The oracle's answer (`GET /control/book`): the whole book, best first, with its checksum.
    func oracleJSON(_ state: BookState) -> String {
        "{\"instId\":\(JSONText.quoted(symbol)),\"step\":\(state.step),\"seqId\":\(state.seqId),\"ts\":\"\(milliseconds(ofStep: state.step))\",\"bids\":\(oracleLevels(state.bids)),\"asks\":\(oracleLevels(state.asks)),\"checksum\":\(checksum(state))}"
    }
}
