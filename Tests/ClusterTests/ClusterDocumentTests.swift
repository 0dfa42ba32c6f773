import Cluster
import CollectorCore
import ControlProtocol
import Coordination
import Foundation
import Testing

/// `GET /api/v1/cluster` as `ClusterPlane.DocumentRenderer` writes it: byte for byte the document
/// the first renderer wrote (kept here as `referenceDocument`), for a map with every state the
/// document shows, and again after the map changes under a renderer that keeps its layout.
@Suite struct ClusterDocumentTests {
    @Test func rendersTheDocumentOfEveryShardAndWorkerState() throws {
        let map = TestMap.makeWithEveryState()
        let bytes = ClusterPlane.DocumentRenderer().documentBytes(map.view())
        #expect(String(decoding: bytes, as: UTF8.self) == map.referenceDocument())
        let object = try #require(try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any])
        let shards = try #require(object["shards"] as? [[String: Any]])
        #expect(Set(shards.compactMap { $0["state"] as? String }) == ["live", "assigned", "unowned", "rejected"])
        let workers = try #require(object["workers"] as? [[String: Any]])
        #expect(Set(workers.compactMap { $0["state"] as? String }) == ["live", "cordoned", "draining", "expired"])
        #expect(object["healthy"] as? Bool == false)
    }

    @Test func keptLayoutFollowsChangesToTheMap() {
        var map = TestMap.makeWithEveryState()
        let renderer = ClusterPlane.DocumentRenderer()
        #expect(String(decoding: renderer.documentBytes(map.view()), as: UTF8.self) == map.referenceDocument())
        // Values change, the set of shards does not: the kept layout applies.
        map.advance(milliseconds: 700)
        map.reportAll(eventsDelta: 3)
        map.feed(.uncordon(workerID: "b"))
        #expect(String(decoding: renderer.documentBytes(map.view()), as: UTF8.self) == map.referenceDocument())
        // One shard replaced by another: as many shards, another set.
        map.feed(.unsubscribe(["okx/trades/B-USDT"]))
        map.feed(.subscribe([.init(shard: "okx/trades/BB-USDT", weight: 10)]))
        let replaced = String(decoding: renderer.documentBytes(map.view()), as: UTF8.self)
        #expect(replaced == map.referenceDocument())
        #expect(replaced.contains("okx/trades/BB-USDT") && !replaced.contains("\"okx/trades/B-USDT\""))
        // More shards, then fewer.
        map.feed(.subscribe((0..<40).map { .init(shard: "okx/ticker/N\($0)-USDT", weight: 5) }))
        #expect(String(decoding: renderer.documentBytes(map.view()), as: UTF8.self) == map.referenceDocument())
        map.feed(.unsubscribe((0..<40).map { "okx/ticker/N\($0)-USDT" }))
        #expect(String(decoding: renderer.documentBytes(map.view()), as: UTF8.self) == map.referenceDocument())
    }

    @Test func rendersAnEmptyMap() {
        let map = TestMap(core: CoordinatorCore(term: 3, persistedEpochs: 0))
        let document = String(decoding: ClusterPlane.DocumentRenderer().documentBytes(map.view()), as: UTF8.self)
        #expect(
            document
                == #"{"mode":"cluster","healthy":true,"term":3,"moves":0,"rebalance_paused":false,"workers":[],"shards":[]}"#
        )
        #expect(document == map.referenceDocument())
    }
}

/// A coordinator core driven by hand, with the control addresses the driver would know.
private struct TestMap {
    var core: CoordinatorCore
    var nowMs: Int64 = 0
    let wallStart: Int64 = 1_780_000_000_000_000
    var addresses: [String: String] = [:]
    /// What each worker was assigned: (shard, epoch).
    var assigned: [String: [(shard: String, epoch: UInt64)]] = [:]

    var now: Instant { Instant(nanoseconds: nowMs * 1_000_000) }
    var wallClock: Int64 { wallStart + nowMs * 1000 }

    /// Workers live, cordoned, draining, expired (its lease ran out, no tick yet) and one whose id
    /// needs escaping; shards live, assigned, unowned (too heavy for any worker) and rejected (a
    /// message with quotes, a newline, a control byte and non-ASCII), with 1 and 2 replicas, ids
    /// with and without all three parts, measured rates and last events on some.
    static func makeWithEveryState() -> TestMap {
        var configuration = CoordinatorCore.Configuration()
        configuration.assignmentPace = AssignmentPace(burst: 10_000, perSecond: 10_000)
        configuration.weightWindow = .seconds(1)
        configuration.leaseTTL = .seconds(5)
        var map = TestMap(core: CoordinatorCore(configuration: configuration, term: 7, persistedEpochs: 40))
        for id in ["a", "b", "c", "d\"q\\", "e"] {
            map.feed(
                .workerJoined(
                    Hello(workerID: id, incarnation: 2, capacity: 1000, nonce: [UInt8](repeating: 0, count: 32))))
        }
        map.addresses = ["a": "10.0.0.1:4100", "b": "10.0.0.2:4100", "d\"q\\": "[::1]:4100"]
        let ids = [
            "okx/trades/B-USDT", "okx/trades/A-USDT", "okx/book/A-USDT", "okx/candles:1m/A-USDT", "okx/ticker/A-USDT",
            "binance/trades/btcusdt", "okx/trades/Q\"uote\\d", "okx/trades/É-USDT", "noslash", "okx//double/slash",
            "/leading/x/y/z", "okx/trades/", "okx/trades/Ctl\u{1}-USDT", "upbit/trades/KRW-BTC",
        ]
        map.feed(
            .subscribe(ids.map { .init(shard: $0, weight: CoordinatorCore.DesiredShard.defaultWeight(ofShard: $0)) }))
        map.feed(.subscribe([.init(shard: "okx/book/R2-USDT", replicas: 2, weight: 50)]))
        map.feed(.subscribe([.init(shard: "okx/book/HEAVY-USDT", weight: 5000)]))
        // Everything but two shards goes live; one is rejected.
        for (worker, shards) in map.assigned {
            for (shard, epoch) in shards where shard != "okx/ticker/A-USDT" && shard != "noslash" {
                map.feed(.shardLive(workerID: worker, shard: shard, epoch: epoch))
            }
        }
        if let (worker, epoch) = map.owner(of: "upbit/trades/KRW-BTC") {
            map.feed(
                .shardFailed(
                    workerID: worker, shard: "upbit/trades/KRW-BTC", epoch: epoch, permanent: true,
                    code: "51001", reason: "Instrument \"KRW-BTC\" doesn't exist\n\u{7}\tÜ"))
        }
        // A measured window: rates for the workers whose shards report events.
        map.feed(.tick)
        map.advance(milliseconds: 1200)
        map.reportAll(eventsDelta: 7)
        map.feed(.tick)
        map.feed(.cordon(workerID: "b"))
        map.feed(.drain(workerID: "c"))
        // "e" stops beating: its lease runs out before the next tick.
        map.advance(milliseconds: 3900)
        map.reportAll(eventsDelta: 1, except: "e")
        map.advance(milliseconds: 1200)
        return map
    }

    func owner(of shard: String) -> (String, UInt64)? {
        core.shards[shard]?.owners.first.map { ($0.workerID, $0.epoch) }
    }

    mutating func advance(milliseconds: Int64) { nowMs += milliseconds }

    /// Every worker beats, reporting each shard it owns with `eventsDelta` new events, stored 250 ms
    /// ago (in the state it has: an owner not live yet is still starting).
    mutating func reportAll(eventsDelta: Int64, except skipped: String? = nil) {
        for id in core.workers.keys.sorted() where id != skipped {
            let reports = core.shards.values.flatMap { shard in
                shard.owners.filter { $0.workerID == id }.map {
                    ShardReport(
                        shard: shard.spec.shard, epoch: $0.epoch, state: $0.state == .live ? .live : .starting,
                        eventsDelta: eventsDelta, lastEventTime: wallClock - 250_000)
                }
            }
            feed(.heartbeat(workerID: id, sequence: UInt64(nowMs), reports: reports))
        }
    }

    /// One event and what follows from it (epoch blocks are durable at once).
    mutating func feed(_ event: CoordinatorCore.Event) {
        var queue = [event]
        while !queue.isEmpty {
            for action in core.handle(queue.removeFirst(), now: now, wallClock: wallClock) {
                switch action {
                case .persistEpochs(let upTo): queue.append(.epochsPersisted(upTo: upTo))
                case .send(let worker, .assign(let a)): assigned[worker, default: []].append((a.shard, a.epoch))
                case .send, .log, .workerExpired: break
                }
            }
        }
    }

    func view() -> ClusterView {
        ClusterView(core: core, now: now, wallClock: wallClock) { addresses[$0] }
    }

    /// The document as the first renderer wrote it (straight from the core, sorting both lists on
    /// every call): the reference the renderer must match byte for byte.
    func referenceDocument() -> String {
        var shardsPerWorker: [String: Int] = [:]
        var ratePerWorker: [String: Double] = [:]
        var healthy = true
        var shardTexts: [String] = []
        for name in core.shards.keys.sorted() {
            guard let shard = core.shards[name] else { continue }
            for owner in shard.owners {
                shardsPerWorker[owner.workerID, default: 0] += 1
                if let rate = shard.measuredRate { ratePerWorker[owner.workerID, default: 0] += rate }
            }
            if shard.rejected == nil && shard.owners.isEmpty { healthy = false }
            let parts = name.split(separator: "/", maxSplits: 2)
            let state =
                shard.rejected != nil
                ? "rejected"
                : shard.owners.contains { $0.state == .live } ? "live" : shard.owners.isEmpty ? "unowned" : "assigned"
            var text = "{\"id\":\(quote(name)),\"exchange\":\(quote(parts.first.map(String.init) ?? ""))"
            text += ",\"feed\":\(quote(parts.count > 1 ? String(parts[1]) : ""))"
            text += ",\"symbol\":\(quote(parts.count > 2 ? String(parts[2]) : ""))"
            text += ",\"owners\":[\(shard.owners.map { quote($0.workerID) }.joined(separator: ","))]"
            text += ",\"epoch\":\(shard.owners.map(\.epoch).max().map { "\($0)" } ?? "null")"
            text += ",\"replicas\":\(shard.spec.replicas),\"weight\":\(shard.spec.weight),\"state\":\(quote(state))"
            text +=
                ",\"last_event_age_ms\":\(shard.lastEventTime.map { "\(max(0, (wallClock - $0) / 1000))" } ?? "null")"
            if let rejected = shard.rejected {
                text += ",\"rejection\":{\"code\":\(quote(rejected.code)),\"message\":\(quote(rejected.message))}"
            }
            shardTexts.append(text + "}")
        }
        var workerTexts: [String] = []
        for id in core.workers.keys.sorted() {
            guard let w = core.workers[id] else { continue }
            let leaseMs = w.leaseUntil.duration(since: now).millisecondsClamped
            if leaseMs <= 0 { healthy = false }
            let state = w.draining ? "draining" : w.cordoned ? "cordoned" : leaseMs > 0 ? "live" : "expired"
            var text = "{\"id\":\(quote(id)),\"address\":\(quote(addresses[id] ?? "")),\"state\":\(quote(state))"
            text += ",\"lease_expires_in_ms\":\(max(0, leaseMs)),\"shards\":\(shardsPerWorker[id] ?? 0)"
            text +=
                ",\"weight\":\(w.load),\"capacity\":\(w.hello.capacity),\"egress_group\":\(quote(w.hello.egressGroup))"
            text += ",\"incarnation\":\(w.hello.incarnation)"
            text += ",\"events_per_second\":\(ratePerWorker[id].map { "\(($0 * 10).rounded() / 10)" } ?? "null")}"
            workerTexts.append(text)
        }
        return
            "{\"mode\":\"cluster\",\"healthy\":\(healthy),\"term\":\(core.term),\"moves\":\(core.moves.count),\"rebalance_paused\":\(core.rebalancePaused)"
            + ",\"workers\":[\(workerTexts.joined(separator: ","))],\"shards\":[\(shardTexts.joined(separator: ","))]}"
    }

    /// RFC 8259 §7, as the document has always escaped: `"`, `\`, `\n`, `\r`, `\t`, other bytes
    /// below 0x20 as `\u00xx`; everything else as it is.
    private func quote(_ string: String) -> String {
        var out = "\""
        for scalar in string.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case let s where s.value < 0x20:
                let hex = String(s.value, radix: 16)
                out += "\\u" + String(repeating: "0", count: 4 - hex.count) + hex
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out + "\""
    }
}
