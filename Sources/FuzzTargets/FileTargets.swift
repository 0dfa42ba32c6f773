import Cluster
import Collector
import Gateway
import MarketData

// Files a crash, a disk or an operator may leave in any state: spool batches, the watermark file and
// the coordinator's state document. Each reader either refuses the file with a reason or returns
// what, written again, reads back the same.
extension FuzzTarget {
    static let fileTargets: [FuzzTarget] = [
        FuzzTarget(
            name: "spool-file",
            summary: "spool batch reader (formats 1-3): an accepted batch re-encodes and reads back to the same events"
        ) { input throws(FuzzFinding) in try FileFuzz.checkSpool(input) },
        FuzzTarget(
            name: "watermark-file",
            summary: "watermark file reader: strict integers, an accepted file re-encodes to the same marks"
        ) { input throws(FuzzFinding) in try FileFuzz.checkWatermarks(input) },
        FuzzTarget(
            name: "subscriptions-file",
            summary: "subscriptions document reader: strict entries, an accepted file re-encodes to the same streams"
        ) { input throws(FuzzFinding) in try FileFuzz.checkSubscriptions(input) },
        FuzzTarget(
            name: "coordinator-state",
            summary: "coordinator state document: strict fields, an accepted document re-encodes to itself"
        ) { input throws(FuzzFinding) in try FileFuzz.checkCoordinatorState(input) },
    ]
}

enum FileFuzz {
    /// The property every file reader shares: a refusal carries a reason (`refusalNames` in it, when
    /// given); an accepted file passes `check`, and written again with `encode` reads back the same.
    static func roundTrip<Value: Equatable, Failure: Error & CustomStringConvertible>(
        _ input: [UInt8], target: String, refusalNames: String = "",
        decode: ([UInt8]) -> Result<Value, Failure>, encode: (Value) -> [UInt8],
        check: (Value) throws(FuzzFinding) -> Void = { _ in }
    ) throws(FuzzFinding) {
        let value: Value
        switch decode(input) {
        case .success(let decoded): value = decoded
        case .failure(let error):
            let reason = error.description
            try require(
                !reason.isEmpty && reason.contains(refusalNames), target, "a refusal without its reason: \(reason)")
            return
        }
        try check(value)
        switch decode(encode(value)) {
        case .success(let again): try require(again == value, target, "re-encoded \(value) read back as \(again)")
        case .failure(let error):
            throw FuzzFinding(target: target, "our own encoding of \(value) was refused: \(error)")
        }
    }

    static func checkSpool(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "spool-file"
        try roundTrip(
            input, target: target,
            decode: { bytes in Result { () throws(SpoolFormat.DecodeError) in try SpoolFormat.decode(bytes) } },
            encode: SpoolFormat.encode
        ) { events throws(FuzzFinding) in
            let lines = input.split(separator: 10, omittingEmptySubsequences: true).count
            try require(events.count <= lines, target, "\(events.count) events from \(lines) lines")
        }
    }

    static func checkWatermarks(_ input: [UInt8]) throws(FuzzFinding) {
        try roundTrip(
            input, target: "watermark-file",
            decode: { bytes in
                Result { () throws(WatermarkFileFormat.Corrupt) in try WatermarkFileFormat.decode(bytes) }
            },
            encode: WatermarkFileFormat.encode)
    }

    static func checkSubscriptions(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "subscriptions-file"
        try roundTrip(
            input, target: target,
            decode: { bytes in
                Result { () throws(SubscriptionFileFormat.Corrupt) in try SubscriptionFileFormat.decode(bytes) }
            },
            encode: SubscriptionFileFormat.encode
        ) { streams throws(FuzzFinding) in
            try require(
                streams.values.allSatisfy { (1...GatewayAPI.maxReplicas).contains($0) }, target,
                "accepted replicas outside 1...\(GatewayAPI.maxReplicas): \(streams)")
        }
    }

    static func checkCoordinatorState(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "coordinator-state"
        try roundTrip(
            input, target: target, refusalNames: "fuzz",
            decode: { bytes in
                Result { () throws(CoordinatorStateStore.Corrupt) in
                    try CoordinatorStateStore.decode(bytes, location: "fuzz")
                }
            },
            encode: CoordinatorStateStore.encode
        ) { contents throws(FuzzFinding) in
            try require(contents.term > 0, target, "accepted term 0")
        }
    }
}
