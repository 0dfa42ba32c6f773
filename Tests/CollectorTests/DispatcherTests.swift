import Collector
import CollectorCore
import Foundation
import Locking
import MarketData
import Synchronization
import TestSupport
import Testing

/// A sink that records each write and refuses for good any write holding the trade id `poison`.
final class RecordingSink: Sink {
    let name = "recording"
    let poison: String
    private let state = Locked<(isDown: Bool, writes: [[MarketEvent]])>((true, []))

    init(poison: String) { self.poison = poison }

    func setDown(_ down: Bool) { state.withLock { $0.isDown = down } }
    /// The writes that succeeded, in order.
    var writes: [[MarketEvent]] { state.withLock { $0.writes } }

    func write(_ events: [MarketEvent]) async throws(SinkError) {
        if state.withLock({ $0.isDown }) { throw SinkError(.transient, "down") }
        let poisoned = events.contains { event in
            if case .trade(let t) = event { return t.tradeID == poison }
            return false
        }
        if poisoned { throw SinkError(.permanent, "poison row") }
        state.withLock { $0.writes.append(events) }
    }

    func flush() async throws(SinkError) {}
    func watermarks() async throws(SinkError) -> [StreamID: Watermark] { [:] }
}

@Suite struct DispatcherTests {
    /// A backlog is written several spool batches per write (bounded by `maxEventsPerWrite`), in
    /// order, and a refused event inside a joined write is still isolated and dead-lettered alone.
    @Test func aBacklogIsJoinedIntoBoundedWritesInOrderAndAPoisonEventStaysAlone() async throws {
        let directory = try TestEnvironment.makeTemporaryDirectory(prefix: "dispatch")
        let sink = RecordingSink(poison: "1234")
        let spool = try Spool(directory: directory + "/spool", maxBytes: 1 << 30, sinks: [sink.name])
        let letters = try DeadLetters(directory: directory + "/dead")
        let dispatcher = try SinkDispatcher(
            spool: spool, sinks: [sink], deadLetters: letters, maxEventsPerWrite: 500)
        dispatcher.start()
        let t = UTCCalendar.microseconds(year: 2025, month: 3, day: 1)
        for batch in 0..<20 {
            await dispatcher.append((0..<100).map { trade(batch * 100 + $0, at: t) })
        }
        // The sink was down for all 20 batches; now it catches up.
        sink.setDown(false)
        #expect(await dispatcher.waitUntilDrained(timeout: .seconds(30)))
        #expect(await dispatcher.finish(timeout: .seconds(5)))
        let writes = sink.writes
        let ids = writes.flatMap { $0 }.compactMap { event -> Int? in
            if case .trade(let t) = event { return Int(t.tradeID) }
            return nil
        }
        #expect(ids == Array(0..<2000).filter { $0 != 1234 })
        #expect(writes.allSatisfy { $0.count <= 500 })
        // Joined: far fewer writes than 20 batches plus the bisection of the poisoned one.
        #expect(writes.filter { $0.count == 500 }.count >= 2, "writes: \(writes.map(\.count))")
        #expect(dispatcher.sinkStates.first?.deadLettered == 1)
        await letters.flush()
        #expect(letters.count == 1)
        let dead = try String(contentsOfFile: directory + "/dead/2025-03-01.jsonl", encoding: .utf8)
        #expect(dead.contains("1234") && dead.contains("poison row"))
        #expect(spool.isEmpty)
    }
}
