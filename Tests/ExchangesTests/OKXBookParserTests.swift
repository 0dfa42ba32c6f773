import Exchanges
import Foundation
import MarketData
import Testing

/// Book levels in OKX's own layout are read by a fast path; any other spelling takes the general
/// scanner from the same offset. Both must give the same levels and refuse the same rows.
@Suite struct OKXBookParserTests {
    static let update =
        #"{"arg":{"channel":"books","instId":"BTC-USDT"},"action":"update","data":[{"asks":[["8476.98","415","0","13"],["8477","0","0","0"],["8480.5","0.00012","0","1"]],"bids":[],"ts":"1597026383085","checksum":-855196043,"prevSeqId":122,"seqId":123}]}"#

    private func book(_ messages: [ExchangeMessage]) throws -> BookMessage {
        try #require(messages.compactMap { if case .event(.book(let b)) = $0 { b } else { nil } }.first)
    }

    @Test func levelsInOKXsLayoutKeepTheirTextAndOrder() throws {
        let message = try book(parse(Self.update))
        #expect(message.asks.map(\.price) == ["8476.98", "8477", "8480.5"])
        #expect(message.asks.map(\.size) == ["415", "0", "0.00012"])
        #expect(message.bids.isEmpty)
    }

    @Test func everySpellingGivesTheSameLevels() throws {
        let fast = try parse(Self.update)
        var index = 0
        while let variant = OKXFastPathTests.spaced(Self.update, at: index) {
            #expect(try parse(variant) == fast, "\(variant)")
            index += 1
        }
        #expect(index > 20)
    }

    /// Later fields that are not strings leave the layout; the general path still reads the row.
    @Test func numericLaterFieldsAreReadByTheGeneralPath() throws {
        let numeric = Self.update.replacingOccurrences(of: #""0","13"]"#, with: #"0,13]"#)
        #expect(numeric != Self.update)
        #expect(try parse(numeric) == parse(Self.update))
    }

    @Test(arguments: [
        (#"["8476.98","415","0","13"]"#, #"["8476.9x","415","0","13"]"#),
        (#"["8476.98","415","0","13"]"#, #"["8476.98","","0","13"]"#),
        (#"["8476.98","415","0","13"]"#, #"["8476.98"]"#),
        (#"["8476.98","415","0","13"]"#, #"[8476.98,"415","0","13"]"#),
        (#"["8476.98","415","0","13"]"#, #"["8476.98","415","0","13""#),
    ])
    func malformedLevelsAreRefusedByBoth(original: String, replacement: String) {
        let frame = Self.update.replacingOccurrences(of: original, with: replacement)
        #expect(frame != Self.update)
        #expect(throws: ExchangeParseError.self, "\(frame)") { try parse(frame) }
        let spaced = frame.replacingOccurrences(of: #""asks":["#, with: #""asks": [ "#)
        #expect(throws: ExchangeParseError.self, "\(spaced)") { try parse(spaced) }
    }
}
