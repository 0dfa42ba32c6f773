import CollectorCore
import Exchanges
import MarketData
import Testing

/// Random interleavings of every input (seeded, so a failure replays): the session never sends on a
/// connection that is not open, never subscribes a stream that is not wanted, and once the connection
/// is quiet every wanted stream that is not refused is subscribed.
@Suite struct SessionPropertyTests {
    /// What the driver side knows about the socket, from the session's own actions and our inputs.
    enum Socket: Equatable { case none, connecting, open, closing }

    @Test(arguments: 0..<64) func randomInterleavingsKeepTheSessionsPromises(seed: Int) {
        var rng = SeededRNG(seed: UInt64(seed) &* 0x9E37_79B9_7F4A_7C15 &+ 1)
        var adapter = ScriptedAdapter(
            perMessage: 1 + Int(rng.next() % 3), subscribeBurst: Double(1 + rng.next() % 3), subscribeRefill: 1,
            connections: TokenBucket(capacity: 2, refillPerSecond: 1))
        // Every adapter shape the protocol allows: whole-set subscriptions, no acknowledgements,
        // messages on connect, several messages per request.
        if rng.next() % 3 == 0 { adapter.subscriptionModel = .replaceAll }
        if rng.next() % 3 == 0 { adapter.acknowledgement = .firstMessage(within: .seconds(5)) }
        if rng.next() % 2 == 0 { adapter.openedMessages = ["hello"] }
        adapter.framesPerRequest = 1 + Int(rng.next() % 2)
        var h = SessionHarness(adapter: adapter) { c in
            c.parseErrorLimit = 3
            c.staleAfter = .seconds(10)
        }
        var socket = Socket.none
        var wanted: Set<StreamID> = []
        /// What the exchange holds on the current connection, from the frames the session sent.
        var held: Set<StreamID> = []
        let universe = (1...6).map { s($0) }

        /// Checks one input's actions against the promises, and follows the socket.
        func check(_ actions: [SessionAction], step: Int) {
            for action in actions {
                switch action {
                case .send(let frame):
                    #expect(socket == .open, "step \(step): send \(frame) while the socket is \(socket)")
                    if case .text(let text) = frame {
                        let named = subscribed(in: [text])
                        for stream in named {
                            #expect(wanted.contains(stream), "step \(step): subscribed unwanted \(stream)")
                        }
                        if h.session.adapter.subscriptionModel == .replaceAll && text.hasPrefix("sub ") {
                            held = Set(named)
                        } else {
                            held.formUnion(named)
                        }
                        if text.hasPrefix("unsub ") {
                            held.subtract(
                                text.dropFirst(6).split(separator: ",").compactMap { StreamID(String($0)) })
                        }
                    }
                case .connect:
                    #expect(socket == .none, "step \(step): connect while the socket is \(socket)")
                    socket = .connecting
                    held = []
                case .close:
                    // The driver detaches a socket the session gave up (stopped, or no streams left):
                    // its late close report is ignored and a new connection may start at once.
                    switch h.session.phase {
                    case .idle, .stopped: socket = .none
                    default: if socket != .none { socket = .closing }
                    }
                default:
                    break
                }
            }
            // A refused stream is not held by the exchange.
            for stream in held
            where h.session.subscription(of: stream).map({
                if case .refused = $0 { true } else { false }
            }) ?? false {
                held.remove(stream)
            }
        }

        for step in 0..<300 {
            let choice = rng.next() % 12
            switch choice {
            case 0, 1:
                let pick = universe.filter { _ in rng.next() % 3 == 0 }
                wanted.formUnion(pick)
                check(h.add(pick), step: step)
            case 2:
                let pick = universe.filter { _ in rng.next() % 4 == 0 }
                wanted.subtract(pick)
                check(h.remove(pick), step: step)
            case 3:
                if socket == .connecting {
                    socket = .open
                    check(h.connected(), step: step)
                }
            case 4:
                if socket != .none {
                    socket = .none
                    check(h.closed(permanent: rng.next() % 10 == 0), step: step)
                }
            case 5, 6:
                guard socket == .open || socket == .closing, let stream = universe.randomElement(using: &rng) else {
                    break
                }
                let frames = [
                    "ok \(stream)", "no \(stream) 60018", "bar \(stream) \(rng.next() % 50) \(rng.next() % 2)",
                    "garbage", "notice", "pong", "noreq c\(rng.next() % 8) 60012", "okreq c\(rng.next() % 8)",
                    "nobody 7",
                ]
                check(h.frame(frames[Int(rng.next() % UInt64(frames.count))]), step: step)
            case 7 where rng.next() % 2 == 0:
                h.session.readingPaused(now: h.now)
            case 7:
                // Windows and backfill replies (for holes asked or not) are inputs too.
                if let stream = universe.randomElement(using: &rng) {
                    h.session.setWindow(
                        rng.next() % 2 == 0 ? nil : EventWindow(from: ScriptedAdapter.base + 60_000_000), for: stream)
                    let b = ScriptedAdapter.base
                    check(
                        h.record(
                            h.session.backfillFinished(
                                stream, after: b, before: b + Int64(rng.next() % 10) * 60_000_000, candles: [],
                                error: nil, now: h.now)), step: step)
                }
            case 8:
                h.session.readingResumed(now: h.now)
            default:
                // The earliest armed timer fires (time moves there), or time passes a little.
                if let (timer, _) = h.timers.min(by: { $0.value < $1.value }) {
                    check(h.fire(timer), step: step)
                } else {
                    h.advance(.milliseconds(Int64(rng.next() % 2000)))
                }
            }
        }

        // A last removal on the open connection, so the quiet phase must show it unsubscribed.
        if socket == .open, let leaving = wanted.sorted().first, wanted.count >= 2 {
            wanted.remove(leaving)
            check(h.remove([leaving]), step: 300)
        }

        // Quiet: let the session connect, answer nothing, and fire its timers until only the periodic
        // ones are left; every wanted stream not refused is then subscribed.
        for step in 300..<600 {
            if socket == .connecting {
                socket = .open
                check(h.connected(), step: step)
                continue
            }
            if socket == .closing {
                socket = .none
                check(h.closed(), step: step)
                continue
            }
            let pending = h.timers.filter { $0.key == .connect || $0.key == .subscribe || $0.key == .refusedRetry }
            guard let (timer, _) = pending.min(by: { $0.value < $1.value }) else { break }
            check(h.fire(timer), step: step)
        }
        #expect(Set(h.session.streams) == wanted)
        if wanted.isEmpty { return }
        // The exchange holds no stream that is not wanted (it was unsubscribed, or the set replaced).
        #expect(held.isSubset(of: wanted), "seed \(seed): the exchange still holds \(held.subtracting(wanted))")
        #expect(socket == .open, "a wanted stream keeps a connection: \(h.session.phase)")
        defer {
            // Stop ends everything: a close, every timer disarmed, and late reports change nothing.
            let stopped = h.record(h.session.stop(now: h.now))
            #expect(stopped.closes == 1)
            #expect(h.timers.isEmpty, "seed \(seed): timers left armed after stop: \(h.timers.keys)")
            #expect(h.closed().isEmpty && h.frame("ok \(universe[0])").isEmpty)
        }
        for stream in wanted {
            switch h.session.subscription(of: stream) {
            case .pending, .live, .refused: break
            case .unsent, nil: Issue.record("seed \(seed): \(stream) wanted but not subscribed")
            }
        }
    }
}
