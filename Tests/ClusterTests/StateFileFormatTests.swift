import Cluster
import Collector
import Gateway
import MarketData
import Testing

/// The state files a crash or an operator may leave behind are read strictly (issue 13's fuzzing):
/// `JSONSerialization` and `NSNumber` used to truncate `1.5` to 1, wrap `-1` to 2^64-1 and read
/// `true` as 1; every one of those is now refused with the field it is about.
@Suite struct StateFileFormatTests {
    static let trades = StreamID(exchange: .okx, feed: .trades, symbol: "BTC-USDT")

    @Test func watermarksRoundTripAndIgnoreUnknownFields() throws {
        let marks = [Self.trades: Watermark(time: 1_700_000_000_000_000, id: "42")]
        #expect(try WatermarkFileFormat.decode(WatermarkFileFormat.encode(marks)) == marks)
        let later = #"{"okx/trades/BTC-USDT": {"time": 5, "id": null, "written_by": "v9"}}"#
        #expect(try WatermarkFileFormat.decode(Array(later.utf8)) == [Self.trades: Watermark(time: 5)])
    }

    @Test(arguments: [
        (#"{"okx/trades/BTC-USDT": {"time": 1.5}}"#, "integer"),
        (#"{"okx/trades/BTC-USDT": {"time": true}}"#, "time must be an integer"),
        (#"{"okx/trades/BTC-USDT": {"time": null}}"#, "time must be an integer"),
        (#"{"okx/trades/BTC-USDT": {"time": 1, "time": 2}}"#, "time appears twice"),
        (#"{"okx/trades/BTC-USDT": {"time": 9223372036854775808}}"#, "64-bit"),
        (#"{"okx/trades/BTC-USDT": {"id": "7"}}"#, "no time"),
        (#"{"okx/trades/BTC-USDT": {"time": 1, "id": 7}}"#, "id must be a string"),
        (#"{"okx/trades/BTC-USDT": {"time": 1}, "okx/trades/BTC-USDT": {"time": 2}}"#, "twice"),
        (#"{"not a stream": {"time": 1}}"#, "not a stream"),
        (#"[]"#, "not a JSON object"),
        (#"{"okx/trades/BTC-USDT": {"time": 1}} trailing"#, "not a watermark file"),
    ])
    func watermarkFilesOutOfShapeAreRefusedWithTheReason(text: String, reason: String) {
        #expect {
            _ = try WatermarkFileFormat.decode(Array(text.utf8))
        } throws: { error in
            "\(error)".contains(reason)
        }
    }

    @Test func coordinatorStateRoundTrips() throws {
        let contents = CoordinatorStateStore.Contents(term: .max, epochsReserved: 0, rebalancePaused: true)
        #expect(try CoordinatorStateStore.decode(CoordinatorStateStore.encode(contents), location: "x") == contents)
        let older = #"{"term":3,"epochs_reserved":1000,"note":"from v1"}"#
        #expect(
            try CoordinatorStateStore.decode(Array(older.utf8), location: "x")
                == .init(term: 3, epochsReserved: 1000, rebalancePaused: false))
    }

    @Test(arguments: [
        (#"{"term":-1,"epochs_reserved":0}"#, "term must be a whole number"),
        (#"{"term":1.5,"epochs_reserved":0}"#, "term must be a whole number"),
        (#"{"term":true,"epochs_reserved":0}"#, "term must be a whole number"),
        (#"{"term":1,"epochs_reserved":"5"}"#, "epochs_reserved must be a whole number"),
        (#"{"term":1,"epochs_reserved":1e3}"#, "epochs_reserved must be a whole number"),
        (#"{"term":0,"epochs_reserved":0}"#, "positive term"),
        (#"{"term":1,"term":2,"epochs_reserved":0}"#, "term appears twice"),
        (#"{"term":1,"epochs_reserved":0,"rebalance_paused":1}"#, "true or false"),
        (#"{"term":1}"#, "epochs_reserved"),
        (#"{"term":18446744073709551616,"epochs_reserved":0}"#, "term must be a whole number"),
    ])
    func coordinatorStateOutOfShapeIsRefusedWithTheReason(text: String, reason: String) {
        #expect {
            _ = try CoordinatorStateStore.decode(Array(text.utf8), location: "coordinator.json")
        } throws: { error in
            "\(error)".contains(reason) && "\(error)".contains("coordinator.json")
        }
    }

    @Test func subscriptionsRoundTripAndReadWhatEarlierVersionsWrote() throws {
        let streams = [Self.trades: 1, StreamID(exchange: .okx, feed: .ticker, symbol: "ETH-USDT"): 3]
        #expect(try SubscriptionFileFormat.decode(SubscriptionFileFormat.encode(streams)) == streams)
        // JSONSerialization's pretty-printed, sorted-keys output (versions before issue 13).
        let old =
            "[\n  \"okx/trades/BTC-USDT\",\n  {\n    \"replicas\" : 2,\n    \"stream\" : \"okx/ticker/ETH-USDT\"\n  }\n]"
        #expect(
            try SubscriptionFileFormat.decode(Array(old.utf8))
                == [Self.trades: 1, StreamID(exchange: .okx, feed: .ticker, symbol: "ETH-USDT"): 2])
        #expect(try SubscriptionFileFormat.decode(Array("[]".utf8)).isEmpty)
    }

    @Test(arguments: [
        (#"[{"stream":"okx/trades/BTC-USDT","replicas":2.5}]"#, "entry 1: replicas must be an integer from 1 to 5"),
        (#"[{"stream":"okx/trades/BTC-USDT","replicas":"3"}]"#, "replicas must be an integer"),
        (#"[{"stream":"okx/trades/BTC-USDT","replicas":0}]"#, "replicas must be an integer"),
        (#"[{"stream":"okx/trades/BTC-USDT","replicas":true}]"#, "replicas must be an integer"),
        (#"["okx/trades/BTC-USDT",{"replicas":2}]"#, "entry 2: no stream"),
        (#"["okx/trades/BTC-USDT","okx/trades/BTC-USDT"]"#, "appears twice"),
        (#"["okx/nonsense/BTC-USDT"]"#, "is not a stream"),
        (#"[7]"#, "expected a stream name"),
        (#"{"okx/trades/BTC-USDT":1}"#, "not a JSON array"),
        (#"["okx/trades/BTC-USDT"]]"#, "not a subscriptions file"),
    ])
    func subscriptionFilesOutOfShapeAreRefusedWithTheEntry(text: String, reason: String) {
        #expect {
            _ = try SubscriptionFileFormat.decode(Array(text.utf8))
        } throws: { error in
            "\(error)".contains(reason)
        }
    }
}
