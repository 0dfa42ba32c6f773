import CollectorCore
import Exchanges
import MarketData
import Testing

/// The session machine's rules as transcripts on a simulated clock (STYLE.md §3): no sockets, no
/// sleeps, no wall-clock margins.
@Suite struct SessionTranscriptTests {
    @Test func theFirstStreamAsksForAConnectionThroughTheConnectTimerAndBudget() {
        var h = SessionHarness(adapter: ScriptedAdapter(connections: TokenBucket(capacity: 1, refillPerSecond: 1)))
        let t0 = h.now
        #expect(h.add([s(1)]) == [.phase(s(1), .connecting, detail: nil), .scheduleTimer(.connect, at: t0)])
        #expect(h.fire(.connect) == [.phase(s(1), .connecting, detail: nil), .connect(url: "ws://127.0.0.1:1/ws")])
        // The exchange's connection budget is shared: with it spent, the next attempt waits for a token.
        h.closed()
        let retryAt = h.timers[.connect]!
        h.now = retryAt
        let waited = h.fire(.connect)
        #expect(waited.count == 1)
        guard case .scheduleTimer(.connect, let at) = waited.first else {
            Issue.record("expected the connect timer to be re-armed, got \(waited)")
            return
        }
        #expect(at > retryAt)
        #expect(h.fire(.connect).contains(.connect(url: "ws://127.0.0.1:1/ws")))
    }

    @Test func deferredSubscriptionsWaitForTheBudgetAndAStreamRemovedMeanwhileIsNeverSubscribed() {
        // One stream per message, two messages at once, then one per second.
        var h = SessionHarness(adapter: ScriptedAdapter(perMessage: 1, subscribeBurst: 2, subscribeRefill: 1))
        let opened = h.open([s(1), s(2), s(3), s(4)])
        #expect(subscribed(in: opened.sentTexts) == [s(1), s(2)])
        let due = h.timers[.subscribe]
        #expect(due == h.now.advanced(by: .seconds(1)))
        // s(3) leaves while deferred: nothing to unsubscribe (it was never sent), and it must not come back.
        #expect(h.remove([s(3)]).sentTexts.isEmpty)
        let first = h.fire(.subscribe)
        #expect(subscribed(in: first.sentTexts) == [s(4)])
        #expect(h.timers[.subscribe] == nil, "nothing left to defer: no timer")
        #expect(subscribed(in: h.log.sentTexts).contains(s(3)) == false)
        // One timer at a time: a second deferral replaces the armed one instead of adding another.
        // Out of tokens again: the new streams all wait, behind one armed timer.
        let added = h.add([s(5), s(6), s(7)])
        #expect(added.sentTexts.isEmpty)
        #expect([s(5), s(6), s(7)].allSatisfy { h.session.subscription(of: $0) == .unsent })
        #expect(h.timers[.subscribe] != nil)
        #expect(subscribed(in: h.fire(.subscribe).sentTexts) == [s(5)], "one token per second")
    }

    @Test func startingAndStoppingOneStreamLeavesTheOthersAlone() {
        var h = SessionHarness()
        h.open([s(1), s(2)])
        h.frame("ok \(s(1))")
        h.frame("ok \(s(2))")
        let added = h.add([s(3)])
        #expect(added.sentTexts.count == 1 && subscribed(in: added.sentTexts) == [s(3)])
        let removed = h.remove([s(1)])
        #expect(removed.sentTexts == ["unsub \(s(1))"])
        #expect(removed.closes == 0)
        #expect(h.session.subscription(of: s(2)) == .live)
        // Events of a stream no longer wanted are dropped; the others flow.
        #expect(h.frame("bar \(s(1)) 5 1").emitted.isEmpty)
        #expect(h.frame("bar \(s(2)) 5 1").emitted.count == 1)
        // The last stream leaving closes the connection and disarms every timer.
        let last = h.remove([s(2), s(3)])
        #expect(last.closes == 1)
        #expect(h.timers.isEmpty)
        #expect(h.session.phase == .idle)
    }

    /// A candle belongs to the window its bar closes in (the owner that stores a bar's confirmation
    /// is the one that stored its updates after the cutover).
    @Test func theEventTimeWindowDropsEventsOutsideItOnBothSides() {
        var h = SessionHarness()
        h.open([s(1)])
        h.frame("ok \(s(1))")
        let minute: Int64 = 60_000_000
        h.session.setWindow(
            EventWindow(from: ScriptedAdapter.base + 10 * minute, until: ScriptedAdapter.base + 20 * minute), for: s(1))
        #expect(h.frame("bar \(s(1)) 8 1").emitted.isEmpty, "closes at 9: before the window")
        #expect(h.frame("bar \(s(1)) 9 1").emitted.count == 1, "closes at 10: the window's first")
        func passed(_ actions: [SessionAction]) -> [Int64] {
            actions.compactMap { if case .windowPassed(s(1), let until) = $0 { until } else { nil } }
        }
        let inside = h.frame("bar \(s(1)) 18 1")
        #expect(inside.emitted.count == 1 && passed(inside).isEmpty)
        // The first event at the window's end says so (once): everything before it has come through.
        let atEnd = h.frame("bar \(s(1)) 19 0")
        #expect(atEnd.emitted.isEmpty && passed(atEnd) == [ScriptedAdapter.base + 20 * minute])
        #expect(passed(h.frame("bar \(s(1)) 20 0")).isEmpty, "said once")
        h.session.setWindow(nil, for: s(1))
        #expect(h.frame("bar \(s(1)) 21 0").emitted.count == 1)
    }

    @Test func aPingAfterSilenceAndAStaleConnectionIsRecycled() {
        var h = SessionHarness(adapter: ScriptedAdapter(keepalive: .textPing("ping", reply: "pong", idle: .seconds(5))))
        h.open([s(1)])
        for _ in 0..<4 { #expect(h.fire(.keepalive).sentTexts.isEmpty) }
        #expect(h.fire(.keepalive).sentTexts == ["ping"])  // 5 s of silence
        #expect(h.fire(.keepalive).sentTexts.isEmpty, "one ping per silence")
        h.frame("pong")
        for _ in 0..<4 { h.fire(.keepalive) }
        #expect(h.fire(.keepalive).sentTexts == ["ping"], "a new silence, a new ping")
        for _ in 0..<24 { #expect(h.fire(.keepalive).closes == 0) }
        let stale = h.fire(.keepalive)  // 30 s without a frame
        #expect(stale.closes == 1)
        #expect(h.session.phase == .closing)
        let after = h.closed("closed: 1001 recycling")
        #expect(
            after.contains(.phase(s(1), .reconnecting, detail: "no data for 30.0 seconds: recycling the connection")))
        #expect(h.timers[.connect] != nil)
    }

    @Test func whilePausedSilenceIsOursTheConnectionIsKeptAndPingsRepeat() {
        var h = SessionHarness(adapter: ScriptedAdapter(keepalive: .textPing("ping", reply: "pong", idle: .seconds(5))))
        h.open([s(1)])
        h.session.readingPaused(now: h.now)
        var pings = 0
        for _ in 0..<120 {
            let actions = h.fire(.keepalive)
            #expect(actions.closes == 0)
            pings += actions.sentTexts.filter { $0 == "ping" }.count
        }
        #expect(pings == 24, "one ping every 5 s of the 120: at 5, 10, …, 120")
        h.session.readingResumed(now: h.now)
        // Resuming restarts the silence clock: no instant recycle for the paused span.
        #expect(h.fire(.keepalive).closes == 0)
    }

    @Test func reconnectBackoffGrowsToItsCapWithJitterAndResetsOnSuccess() {
        var h = SessionHarness { c in c.reconnectBackoff = Backoff(initial: .milliseconds(500), maximum: .seconds(8)) }
        h.add([s(1)])
        h.budget = TokenBucket(capacity: 1000, refillPerSecond: 1000)
        var delays: [Duration] = []
        for _ in 0..<8 {
            h.fire(.connect)
            let closedAt = h.now
            h.closed()
            delays.append(h.timers[.connect]!.duration(since: closedAt))
        }
        let bases: [Duration] = [
            .milliseconds(500), .seconds(1), .seconds(2), .seconds(4), .seconds(8), .seconds(8),
            .seconds(8), .seconds(8),
        ]
        for (delay, base) in zip(delays, bases) {
            #expect(delay >= base / 2 && delay <= base, "delay \(delay) for base \(base)")
        }
        // A server that accepts and drops at once is not a success: the backoff stays at its cap.
        h.fire(.connect)
        h.connected()
        h.closed()
        #expect(h.timers[.connect]!.duration(since: h.now) >= .seconds(4), "connected but never healthy")
        // A connection that proves healthy (an acknowledgement arrives) resets it.
        h.fire(.connect)
        h.connected()
        h.frame("ok \(s(1))")
        h.closed()
        #expect(h.timers[.connect]!.duration(since: h.now) <= .milliseconds(500), "a success resets the backoff")
    }

    @Test func aRunOfMalformedFramesTripsTheCircuitBreaker() {
        var h = SessionHarness { c in c.parseErrorLimit = 3 }
        h.open([s(1)])
        let first = h.frame("garbage")
        #expect(first.contains(.deadLetter(raw: "garbage", reason: "malformed: garbage")))
        #expect(first.contains(.count(.parseError)))
        h.frame("ok \(s(1))")  // a good frame resets the run
        h.frame("garbage")
        #expect(h.frame("garbage").closes == 0)
        let tripped = h.frame("garbage")
        #expect(tripped.closes == 1)
        #expect(tripped.contains(.streamError(s(1), "circuit breaker: 3 malformed messages in a row")))
    }

    @Test func aRefusedStreamIsRetriedEveryFiveMinutesAndLoggedOncePerChange() {
        var h = SessionHarness()
        h.open([s(1), s(2)])
        h.frame("ok \(s(2))")
        let refused = h.frame("no \(s(1)) 60018")
        #expect(refused.contains(.refused(s(1), code: "60018", message: "refused")))
        #expect(refused.logs == ["subscription refused"])
        let retryAt = h.timers[.refusedRetry]
        #expect(retryAt == h.now.advanced(by: .seconds(300)))
        // Not before: a reconnect in between does not resubscribe it.
        h.closed()
        h.fire(.connect)
        let reconnected = h.connected()
        #expect(subscribed(in: reconnected.sentTexts) == [s(2)])
        let retried = h.fire(.refusedRetry)
        #expect(subscribed(in: retried.sentTexts) == [s(1)])
        let again = h.frame("no \(s(1)) 60018")
        #expect(again.logs.isEmpty, "the same refusal again is counted, not logged")
        #expect(
            h.session.subscription(of: s(1)).map { if case .refused(_, _, 2, _) = $0 { true } else { false } } == true)
        h.fire(.refusedRetry)
        // (The first acknowledgement since the reconnect also proves the connection healthy again.)
        #expect(h.frame("ok \(s(1))").logs == ["connection recovered", "subscription accepted after refusals"])
        #expect(h.session.subscription(of: s(1)) == .live)
    }

    @Test func aRefusalNamingOnlyTheRequestRefusesTheStreamsOfThatRequest() {
        var h = SessionHarness(adapter: ScriptedAdapter(perMessage: 2))
        let opened = h.open([s(1), s(2), s(3)])
        #expect(opened.sentTexts == ["sub c1 \(s(1)),\(s(2))", "sub c2 \(s(3))"])
        h.frame("ok \(s(1))")
        let refused = h.frame("noreq c1 60012")
        #expect(refused.contains(.refused(s(2), code: "60012", message: "refused")))
        #expect(!refused.contains(.refused(s(1), code: "60012", message: "refused")), "s1 was acknowledged")
        #expect(!refused.contains(.refused(s(3), code: "60012", message: "refused")))
    }

    /// An outage is logged when it starts (warning), at 10, 100… failed attempts (warning, with the
    /// count), and when a connection proves healthy again (notice, with the count and how long);
    /// the retries between are debug records only.
    @Test func anOutageIsLoggedOncePerStateChangeWithItsCount() {
        var h = SessionHarness()
        h.open([s(1)])
        h.frame("ok \(s(1))")
        func records(_ actions: [SessionAction]) -> [(SessionLogLevel, String, [String: String])] {
            actions.compactMap { if case .log(let l, let m, let f) = $0 { (l, m, f) } else { nil } }
        }
        let lost = records(h.closed("reset"))
        #expect(lost.map(\.0) == [.warning] && lost.map(\.1) == ["connection lost, reconnecting"])
        var warnings: [String] = []
        for _ in 1...100 {
            h.fire(.connect)
            for (level, message, fields) in records(h.closed("refused")) {
                if level == .warning { warnings.append("\(message) \(fields["failures"] ?? "")") }
                #expect(level == .warning || level == .debug, "\(message)")
            }
        }
        #expect(warnings == ["still reconnecting 10", "still reconnecting 100"])
        h.fire(.connect)
        h.advance(.seconds(3))
        #expect(records(h.connected()).isEmpty, "not recovered until the connection proves healthy")
        let recovered = records(h.frame("ok \(s(1))"))
        #expect(recovered.map(\.0) == [.notice] && recovered.map(\.1) == ["connection recovered"])
        #expect(recovered.first?.2["failures"] == "100")
        #expect(Int(recovered.first?.2["down.seconds"] ?? "") ?? -1 >= 3)
    }

    @Test func aCertificateThatDoesNotVerifyIsPermanentRetriedRarelyAndLoggedOnce() {
        var h = SessionHarness()
        h.add([s(1)])
        h.fire(.connect)
        let failed = h.closed("certificate has expired", permanent: true)
        #expect(failed.contains(.refused(s(1), code: "connection", message: "certificate has expired")))
        #expect(failed.logs == ["connection failed for good: retrying rarely"])
        #expect(h.timers[.connect] == h.now.advanced(by: .seconds(300)))
        h.fire(.connect)
        #expect(h.closed("certificate has expired", permanent: true).logs.isEmpty)
        h.fire(.connect)
        let ok = h.connected()
        #expect(ok.logs == ["connected after a permanent failure"])
        #expect(subscribed(in: ok.sentTexts) == [s(1)])
    }

    @Test func the64008NoticeRecyclesAtOnceAndReconnectsWithoutBackoffGrowth() {
        var h = SessionHarness()
        h.budget = TokenBucket(capacity: 1000, refillPerSecond: 1000)
        h.add([s(1)])
        // Five failed attempts first: the backoff has grown to 8 s.
        for _ in 0..<5 {
            h.fire(.connect)
            h.closed()
        }
        #expect(h.timers[.connect]!.duration(since: h.now) >= .seconds(4))
        h.fire(.connect)
        h.connected()
        let notice = h.frame("notice")
        #expect(notice.closes == 1)
        let closedAt = h.now
        let after = h.closed()
        #expect(after.contains(.phase(s(1), .reconnecting, detail: "service upgrade notice: reconnecting early")))
        #expect(h.timers[.connect]!.duration(since: closedAt) <= .milliseconds(500))
        h.fire(.connect)
        let back = h.connected()
        #expect(back.contains(.reconnected(s(1))) && back.contains(.count(.reconnect)))
        #expect(subscribed(in: back.sentTexts) == [s(1)])
    }

    @Test func aHoleInConfirmedBarsAsksForBackfillOnceAndRecordsWhatRESTCannotGive() {
        var h = SessionHarness()
        h.open([s(1)])
        h.frame("ok \(s(1))")
        h.frame("bar \(s(1)) 1 1")
        let minute: Int64 = 60_000_000
        let b = ScriptedAdapter.base
        let hole = h.frame("bar \(s(1)) 5 0")
        #expect(hole.contains(.backfill(s(1), after: b + minute, before: b + 5 * minute)))
        #expect(h.frame("bar \(s(1)) 5 1").filter { if case .backfill = $0 { true } else { false } }.isEmpty)
        // REST returns bars 2 and 4; 3 stays a gap.
        func bar(_ m: Int64) -> Candle {
            Candle(
                exchange: .okx, symbol: "S1-USDT", timeframe: Timeframe("1m")!, openTime: b + m * minute, open: "1",
                high: "1", low: "1", close: "1", volume: "1", quoteVolume: "1", isConfirmed: true,
                timestampExchange: b + m * minute, timestampCollector: b + m * minute)
        }
        let done = h.record(
            h.session.backfillFinished(
                s(1), after: b + minute, before: b + 5 * minute, candles: [bar(2), bar(4)], error: nil, now: h.now))
        #expect(done.emitted == [.candle(bar(2)), .candle(bar(4))])
        #expect(done.contains(.backfilled(s(1), bars: 2)))
        #expect(
            done.contains(
                .recordGaps(
                    s(1),
                    [
                        Gap(
                            from: b + 2 * minute, to: b + 4 * minute, missing: 1, cause: .reconnect,
                            reason: "not returned by REST")
                    ])))
        // The hole was in the ledger from the moment it was found (the entry above closes it).
        #expect(
            hole.contains(
                .recordGaps(
                    s(1),
                    [
                        Gap(
                            from: b + 2 * minute, to: b + 4 * minute, missing: 0, cause: .reconnect,
                            reason: "REST backfill of 3 bars running")
                    ])))
        // Everything returned: the entry is marked recovered.
        var full = SessionHarness()
        full.open([s(1)])
        full.frame("bar \(s(1)) 1 1")
        full.frame("bar \(s(1)) 3 1")
        let whole = full.record(
            full.session.backfillFinished(
                s(1), after: b + minute, before: b + 3 * minute, candles: [bar(2)], error: nil, now: full.now))
        #expect(
            whole.gaps == [
                Gap(
                    from: b + 2 * minute, to: b + 2 * minute, missing: 0, cause: .reconnect, recovered: true,
                    reason: "1 bars backfilled from REST")
            ])
    }

    @Test func stopClosesDisarmsAndIgnoresLateReports() {
        var h = SessionHarness()
        h.open([s(1)])
        let stopped = h.record(h.session.stop(now: h.now))
        #expect(stopped.closes == 1)
        #expect(stopped.contains(.phase(s(1), .stopped, detail: nil)))
        #expect(h.timers.isEmpty)
        #expect(h.closed().isEmpty)
        #expect(h.frame("bar \(s(1)) 1 1").isEmpty)
        #expect(h.add([s(2)]).isEmpty)
    }

    @Test func withoutAcknowledgementsAStreamIsLiveAtItsFirstMessageAndRefusedWhenNoneComes() {
        var adapter = ScriptedAdapter()
        adapter.acknowledgement = .firstMessage(within: .seconds(10))
        var h = SessionHarness(adapter: adapter)
        let t0 = h.now
        h.open([s(1), s(2)])
        #expect(h.timers[.acknowledgement] == t0.advanced(by: .seconds(10)))
        h.advance(.seconds(3))
        let first = h.frame("bar \(s(1)) 1 0")
        #expect(first.contains(.phase(s(1), .live, detail: nil)))
        #expect(first.emitted.count == 1)
        let due = h.fire(.acknowledgement)
        #expect(due.contains(.refused(s(2), code: "no-data", message: "no message within 10.0 seconds of subscribing")))
        #expect(!due.contains { if case .refused(s(1), _, _) = $0 { true } else { false } })
        #expect(h.session.subscription(of: s(1)) == .live)
        #expect(h.timers[.refusedRetry] != nil, "retried like any refusal")
    }

    @Test func anAcknowledgementNamingOnlyTheRequestMakesEveryStreamOfItLive() {
        var h = SessionHarness(adapter: ScriptedAdapter(perMessage: 2))
        #expect(h.open([s(1), s(2), s(3)]).sentTexts == ["sub c1 \(s(1)),\(s(2))", "sub c2 \(s(3))"])
        let acked = h.frame("okreq c1")
        #expect(acked.contains(.phase(s(1), .live, detail: nil)) && acked.contains(.phase(s(2), .live, detail: nil)))
        #expect(h.session.subscription(of: s(3)) == .pending(requestID: "c2", sentAt: h.now))
        #expect(h.frame("okreq c9").isEmpty, "an unknown request confirms nothing")
    }

    @Test func aRefusalNamingNothingRefusesTheStreamsStillWaiting() {
        var h = SessionHarness()
        h.open([s(1), s(2)])
        h.frame("ok \(s(1))")
        let refused = h.frame("nobody 2")
        #expect(refused.contains(.refused(s(2), code: "2", message: "refused")))
        #expect(h.session.subscription(of: s(1)) == .live)
    }

    @Test func replaceAllAdaptersGetTheWholeWantedSetOnEveryChangeAndNoUnsubscribe() {
        var adapter = ScriptedAdapter(perMessage: 1)
        adapter.subscriptionModel = .replaceAll
        var h = SessionHarness(adapter: adapter)
        #expect(h.open([s(1), s(2)]).sentTexts == ["sub c1 \(s(1)),\(s(2))"])
        h.frame("ok \(s(1))")
        #expect(h.add([s(3)]).sentTexts == ["sub c2 \(s(1)),\(s(2)),\(s(3))"])
        #expect(h.session.subscription(of: s(1)) == .live, "a live stream stays live when the set is re-sent")
        let removed = h.remove([s(1)])
        #expect(removed.sentTexts == ["sub c3 \(s(2)),\(s(3))"])
        #expect(removed.closes == 0)
        #expect(h.remove([s(2), s(3)]).closes == 1, "the last stream leaving closes the connection")
    }

    @Test func connectionOpenedMessagesGoFirstOnEveryConnection() {
        var adapter = ScriptedAdapter()
        adapter.openedMessages = ["hello"]
        var h = SessionHarness(adapter: adapter)
        #expect(h.open([s(1)]).sentTexts == ["hello", "sub c1 \(s(1))"])
        h.closed()
        h.fire(.connect)
        #expect(h.connected().sentTexts == ["hello", "sub c2 \(s(1))"])
    }

    @Test func theSubscribeBudgetCountsEveryMessageOfARequest() {
        var adapter = ScriptedAdapter(perMessage: 1, subscribeBurst: 3, subscribeRefill: 1)
        adapter.framesPerRequest = 2
        var h = SessionHarness(adapter: adapter)
        let opened = h.open([s(1), s(2)])
        #expect(opened.sentTexts == ["sub c1 \(s(1))", "more c1 \(s(1))"], "3 tokens: one two-message request")
        #expect(h.timers[.subscribe] == h.now.advanced(by: .seconds(1)), "one more token needed: 1 s")
        #expect(h.session.subscription(of: s(2)) == .unsent)
        #expect(h.fire(.subscribe).sentTexts == ["sub c2 \(s(2))", "more c2 \(s(2))"])
    }

    @Test func answeredRequestsAreForgottenSoTheTableStaysBounded() {
        var h = SessionHarness(adapter: ScriptedAdapter(perMessage: 1))
        h.open([s(1), s(2), s(3)])
        #expect(h.session.pendingRequestCount == 3)
        h.frame("ok \(s(1))")
        h.frame("okreq c2")
        h.frame("no \(s(3)) 60018")
        #expect(h.session.pendingRequestCount == 0)
        // Retried every 5 minutes for a day: still nothing left behind.
        for _ in 0..<288 {
            h.fire(.refusedRetry)
            h.frame("no \(s(3)) 60018")
        }
        #expect(h.session.pendingRequestCount == 0)
    }

    @Test func unsubscribesDrawFromTheSubscribeBudgetAndWaitForIt() {
        var h = SessionHarness(adapter: ScriptedAdapter(perMessage: 1, subscribeBurst: 2, subscribeRefill: 1))
        h.open([s(1), s(2)])
        h.frame("ok \(s(1))")
        #expect(h.remove([s(1)]).sentTexts.isEmpty, "no token left: the unsubscribe waits")
        #expect(h.timers[.subscribe] != nil)
        #expect(h.fire(.subscribe).sentTexts == ["unsub \(s(1))"])
        // A stream removed and added again while its unsubscribe waits is not unsubscribed after all.
        h.advance(.seconds(10))
        h.add([s(3), s(4)])  // spends both refilled tokens
        #expect(h.remove([s(2)]).sentTexts.isEmpty, "deferred")
        h.add([s(2)])
        for _ in 0..<5 { h.fire(.subscribe) }
        #expect(!h.log.sentTexts.contains("unsub \(s(2))"))
    }

    @Test func replaceAllSendsTheNewSetOnceTheBudgetAllowsEvenForARemoval() {
        var adapter = ScriptedAdapter(perMessage: 10, subscribeBurst: 1, subscribeRefill: 1)
        adapter.subscriptionModel = .replaceAll
        var h = SessionHarness(adapter: adapter)
        h.open([s(1), s(2)])
        #expect(h.remove([s(1)]).sentTexts.isEmpty, "budget spent: the new set waits")
        #expect(h.fire(.subscribe).sentTexts == ["sub c2 \(s(2))"])
    }

    @Test func aLateFirstMessageRevivesAStreamRefusedForSilence() {
        var adapter = ScriptedAdapter()
        adapter.acknowledgement = .firstMessage(within: .seconds(10))
        var h = SessionHarness(adapter: adapter)
        h.open([s(1)])
        #expect(
            h.fire(.acknowledgement).contains(
                .refused(s(1), code: "no-data", message: "no message within 10.0 seconds of subscribing")))
        let late = h.frame("bar \(s(1)) 3 0")
        #expect(late.contains(.phase(s(1), .live, detail: nil)))
        #expect(late.logs.contains("subscription accepted after refusals"))
        #expect(late.emitted.count == 1)
        #expect(h.session.subscription(of: s(1)) == .live)
    }

    @Test func aHoleRESTCouldNotFillIsRecordedOnceNotOnEveryLaterPush() {
        var h = SessionHarness()
        h.open([s(1)])
        h.frame("bar \(s(1)) 1 1")
        let b = ScriptedAdapter.base
        let minute: Int64 = 60_000_000
        #expect(h.frame("bar \(s(1)) 5 0").contains(.backfill(s(1), after: b + minute, before: b + 5 * minute)))
        let failed = h.record(
            h.session.backfillFinished(
                s(1), after: b + minute, before: b + 5 * minute, candles: [], error: "REST down", now: h.now))
        #expect(
            failed.contains(
                .recordGaps(
                    s(1),
                    [Gap(from: b + 2 * minute, to: b + 4 * minute, missing: 3, cause: .reconnect, reason: "REST down")])
            ))
        for _ in 0..<3 {
            #expect(h.frame("bar \(s(1)) 5 0").allSatisfy { if case .backfill = $0 { false } else { true } })
        }
        #expect(h.frame("bar \(s(1)) 5 1").allSatisfy { if case .backfill = $0 { false } else { true } })
    }

    @Test func aWindowGivenWithTheStreamAppliesFromItsFirstEvent() {
        var h = SessionHarness()
        let minute: Int64 = 60_000_000
        h.add([s(1)], windows: [s(1): EventWindow(from: ScriptedAdapter.base + 10 * minute)])
        h.fire(.connect)
        h.connected()
        #expect(h.frame("bar \(s(1)) 8 1").emitted.isEmpty, "closes at 9")
        #expect(h.frame("bar \(s(1)) 9 1").emitted.count == 1, "closes at 10, where the window starts")
    }

    @Test func webSocketPingsAndPongsCountAsTrafficForStaleness() {
        var h = SessionHarness(adapter: ScriptedAdapter(keepalive: .webSocketPing(idle: .seconds(5))))
        h.open([s(1)])
        for second in 1...60 {
            let actions = h.fire(.keepalive)
            #expect(actions.closes == 0, "second \(second): a connection answering pings is alive")
            if actions.contains(.send(.ping)) { h.session.controlFrameReceived(now: h.now) }  // the pong
        }
        // Server-driven keepalive (Binance): the server's pings keep it alive; silence past 30 s does not.
        var server = SessionHarness(adapter: ScriptedAdapter(keepalive: .serverDriven))
        server.open([s(1)])
        for second in 1...40 {
            let actions = server.fire(.keepalive)
            #expect(actions.sentTexts.isEmpty && actions.closes == 0, "second \(second)")
            if second % 20 == 0 { server.session.controlFrameReceived(now: server.now) }
        }
        var silent = SessionHarness(adapter: ScriptedAdapter(keepalive: .serverDriven))
        silent.open([s(1)])
        var recycled = false
        for _ in 1...31 { recycled = recycled || silent.fire(.keepalive).closes == 1 }
        #expect(recycled, "no traffic at all for 30 s: recycled")
    }

    @Test func missedFillIdsAreAskedFromRESTAndWhatItCannotGiveIsOneGap() {
        var h = SessionHarness()
        h.open([tr(1)])
        h.frame("ok \(tr(1))")
        h.frame("fill \(tr(1)) 100 1000")
        #expect(h.frame("fill \(tr(1)) 101 1001").allSatisfy { if case .backfillTrades = $0 { false } else { true } })
        // A reconnect later: the first fill is 110, so 102…109 never reached us.
        h.closed()
        h.fire(.connect)
        h.connected()
        let b = ScriptedAdapter.base
        let hole = h.frame("fill \(tr(1)) 110 1010")
        #expect(hole.contains(.backfillTrades(tr(1), after: 101, before: 110, from: b + 1_001_000, to: b + 1_010_000)))
        #expect(hole.emitted.count == 1, "the live fill is stored at once")
        // A fill of the hole arriving late live asks nothing more; the next hole asks again.
        #expect(h.frame("fill \(tr(1)) 108 1008").allSatisfy { if case .backfillTrades = $0 { false } else { true } })
        #expect(
            h.frame("fill \(tr(1)) 113 1013").contains(
                .backfillTrades(tr(1), after: 110, before: 113, from: b + 1_010_000, to: b + 1_013_000)))
        func fill(_ id: Int) -> Trade {
            Trade(
                exchange: .okx, symbol: "S1-USDT", tradeID: String(id), price: "1", size: "2", side: .buy,
                timestampExchange: b + Int64(id) * 1000, timestampCollector: 0)
        }
        // REST returns 109…104 newest first (and a fill outside the hole, ignored); 102 and 103 are gone.
        let done = h.record(
            h.session.tradeBackfillFinished(
                tr(1), after: 101, before: 110, from: b + 1_001_000, to: b + 1_010_000,
                trades: [109, 108, 107, 106, 105, 104, 111].map(fill), error: nil, now: h.now))
        #expect(done.emitted == [104, 105, 106, 107, 108, 109].map { .trade(fill($0)) }, "in id order")
        #expect(done.contains(.backfilled(tr(1), bars: 6)))
        #expect(
            done.contains(
                .recordGaps(
                    tr(1),
                    [
                        Gap(
                            from: b + 1_001_000, to: b + 1_010_000, missing: 2, cause: .reconnect,
                            reason: "fills not returned by REST")
                    ])
            ))
    }

    /// A hole left by a refusal window is a `refused` gap, opened and closed under that cause (one
    /// ledger key); the next hole after plain reconnects is `reconnect` again.
    @Test func aHoleAcrossARefusalIsRecordedAsRefused() {
        var h = SessionHarness()
        h.open([tr(1)])
        h.frame("ok \(tr(1))")
        h.frame("fill \(tr(1)) 100 1000")
        h.closed()
        h.fire(.connect)
        h.connected()
        h.frame("no \(tr(1)) 60018")
        h.fire(.refusedRetry)
        h.frame("ok \(tr(1))")
        let b = ScriptedAdapter.base
        let hole = h.frame("fill \(tr(1)) 105 1005")
        let opened = hole.compactMap { if case .recordGaps(_, let gaps) = $0 { gaps } else { nil } }.flatMap { $0 }
        #expect(opened.map(\.cause) == [.refused], "\(hole)")
        let done = h.record(
            h.session.tradeBackfillFinished(
                tr(1), after: 100, before: 105, from: b + 1_000_000, to: b + 1_005_000, trades: [], error: nil,
                now: h.now))
        // A REST fill that breaks the quality rule is dead-lettered like a pushed one, not stored.
        var zero = h
        let bad = Trade(
            exchange: .okx, symbol: "S1-USDT", tradeID: "103", price: "0", size: "2", side: .buy,
            timestampExchange: b + 1_003_000, timestampCollector: 0)
        let checked = zero.record(
            zero.session.tradeBackfillFinished(
                tr(1), after: 100, before: 105, from: b + 1_000_000, to: b + 1_005_000, trades: [bad], error: nil,
                now: zero.now))
        #expect(checked.emitted.isEmpty)
        #expect(
            checked.contains { if case .deadLetter(_, let reason) = $0 { reason.contains("price") } else { false } })
        let closed = done.compactMap { if case .recordGaps(_, let gaps) = $0 { gaps } else { nil } }.flatMap { $0 }
        #expect(
            closed.map(\.cause) == [.refused] && closed.first?.from == opened.first?.from && closed.first?.missing == 4)
        // A reconnect with no hole clears the cause; a later hole after another reconnect is `reconnect`.
        h.closed()
        h.fire(.connect)
        h.connected()
        h.frame("ok \(tr(1))")
        h.frame("fill \(tr(1)) 106 1006")
        h.closed()
        h.fire(.connect)
        h.connected()
        h.frame("ok \(tr(1))")
        let later = h.frame("fill \(tr(1)) 110 1010")
        let next = later.compactMap { if case .recordGaps(_, let gaps) = $0 { gaps } else { nil } }.flatMap { $0 }
        #expect(next.map(\.cause) == [.reconnect], "\(later)")
    }

    @Test func aStoredTradeWatermarkRevealsFillsMissedWhileStopped() {
        var h = SessionHarness()
        h.add([tr(1)])
        h.session.seedLastTrade(tr(1), id: 500, time: ScriptedAdapter.base)
        h.fire(.connect)
        h.connected()
        #expect(
            h.frame("fill \(tr(1)) 503 10").contains {
                if case .backfillTrades(_, 500, 503, _, _) = $0 { true } else { false }
            })
        // Non-numeric ids carry no order: no continuity check.
        var other = SessionHarness()
        other.open([tr(2)])
        other.frame("fill \(tr(2)) a1 1")
        #expect(other.frame("fill \(tr(2)) z9 2").allSatisfy { if case .backfillTrades = $0 { false } else { true } })
    }

    @Test func fillsListedNewestFirstInOneFrameAreNotAHole() {
        var h = SessionHarness()
        h.open([tr(1)])
        h.frame("fill \(tr(1)) 100 1")
        let frame = h.frame("fills \(tr(1)) 103,102,101 2")
        #expect(frame.allSatisfy { if case .backfillTrades = $0 { false } else { true } })
        #expect(
            frame.emitted.compactMap { if case .trade(let t) = $0 { t.tradeID } else { nil } } == ["101", "102", "103"])
    }

    @Test func tradeContinuityFollowsFillsOutsideTheWindowSoItsEdgeIsNoHole() {
        var h = SessionHarness()
        let b = ScriptedAdapter.base
        h.add([tr(1)], windows: [tr(1): EventWindow(from: b + 10_000_000)])
        h.fire(.connect)
        h.connected()
        #expect(h.frame("fill \(tr(1)) 100 5000").emitted.isEmpty, "before the window: not stored")
        #expect(h.frame("fill \(tr(1)) 101 9000").emitted.isEmpty)
        let inside = h.frame("fill \(tr(1)) 102 10000")
        #expect(inside.emitted.count == 1)
        #expect(
            inside.allSatisfy { if case .backfillTrades = $0 { false } else { true } }, "the window's edge is no hole")
        // A hole wholly before the window is not fetched.
        var late = SessionHarness()
        late.add([tr(1)], windows: [tr(1): EventWindow(from: b + 100_000_000)])
        late.fire(.connect)
        late.connected()
        late.frame("fill \(tr(1)) 100 5000")
        #expect(
            late.frame("fill \(tr(1)) 150 50000").allSatisfy { if case .backfillTrades = $0 { false } else { true } })
    }

    @Test func aTradeWithoutAPositivePriceOrSizeIsDeadLettered() {
        let trade = Trade(
            exchange: .okx, symbol: "S1-USDT", tradeID: "1", price: "0", size: "1", side: .buy, timestampExchange: 1,
            timestampCollector: 1)
        #expect(trade.qualityProblem() == "trade price 0 is not above zero")
        var negative = trade
        negative.price = "5"
        negative.size = "-1"
        #expect(negative.qualityProblem() == "trade size -1 is not above zero")
    }
}
