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
    static func checkSpool(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "spool-file"
        let events: [MarketEvent]
        do {
            events = try SpoolFormat.decode(input)
        } catch {
            try require(!error.description.isEmpty, target, "a refusal without a reason")
            return
        }
        let lines = input.split(separator: 10, omittingEmptySubsequences: true).count
        try require(events.count <= lines, target, "\(events.count) events from \(lines) lines")
        let encoded = SpoolFormat.encode(events)
        do {
            let again = try SpoolFormat.decode(encoded)
            try require(again == events, target, "re-encoded batch read back differently")
        } catch {
            throw FuzzFinding(target: target, "our own batch of \(events.count) events was refused: \(error)")
        }
    }

    static func checkWatermarks(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "watermark-file"
        let marks: [StreamID: Watermark]
        do {
            marks = try WatermarkFileFormat.decode(input)
        } catch {
            try require(!error.description.isEmpty, target, "a refusal without a reason")
            return
        }
        let encoded = WatermarkFileFormat.encode(marks)
        do {
            let again = try WatermarkFileFormat.decode(encoded)
            try require(again == marks, target, "re-encoded marks read back as \(again), not \(marks)")
        } catch {
            throw FuzzFinding(target: target, "our own file of \(marks.count) marks was refused: \(error)")
        }
        try require(
            WatermarkFileFormat.encode(marks) == encoded, target, "encoding the same marks twice differs")
    }

    static func checkSubscriptions(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "subscriptions-file"
        let streams: [StreamID: Int]
        do {
            streams = try SubscriptionFileFormat.decode(input)
        } catch {
            try require(!error.description.isEmpty, target, "a refusal without a reason")
            return
        }
        try require(
            streams.values.allSatisfy { (1...GatewayAPI.maxReplicas).contains($0) }, target,
            "accepted replicas outside 1...\(GatewayAPI.maxReplicas): \(streams)")
        let encoded = SubscriptionFileFormat.encode(streams)
        do {
            let again = try SubscriptionFileFormat.decode(encoded)
            try require(again == streams, target, "re-encoded streams read back as \(again), not \(streams)")
        } catch {
            throw FuzzFinding(target: target, "our own file of \(streams.count) streams was refused: \(error)")
        }
    }

    static func checkCoordinatorState(_ input: [UInt8]) throws(FuzzFinding) {
        let target = "coordinator-state"
        let contents: CoordinatorStateStore.Contents
        do {
            contents = try CoordinatorStateStore.decode(input, location: "fuzz")
        } catch {
            try require(error.description.contains("fuzz"), target, "a refusal that does not name the document")
            return
        }
        try require(contents.term > 0, target, "accepted term 0")
        let encoded = CoordinatorStateStore.encode(contents)
        do {
            let again = try CoordinatorStateStore.decode(encoded, location: "fuzz")
            try require(again == contents, target, "re-encoded \(contents) read back as \(again)")
        } catch {
            throw FuzzFinding(target: target, "our own document \(contents) was refused: \(error)")
        }
    }
}
