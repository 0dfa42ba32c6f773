import CollectorCore
import ControlProtocol
import Testing

/// Incarnations and duplicate ids as transcripts on a simulated clock (1 s heartbeats).
@Suite struct WorkerAdmissionTests {
    static func at(_ ms: Int64) -> Instant { Instant(nanoseconds: ms * 1_000_000) }

    @Test func aLiveSessionKeepsItsIdAgainstASecondProcess() {
        var a = WorkerAdmission(heartbeatInterval: .seconds(1))
        #expect(a.admit(workerID: "w-0", incarnation: 5, connection: 1, now: Self.at(0)) == .admitted)
        a.heard(workerID: "w-0", connection: 1, now: Self.at(1000))
        // A second pod with the same id while the first beats on time: refused, again and again.
        for t in stride(from: Int64(1100), through: 5000, by: 1000) {
            guard
                case .rejected(.duplicateID, let text) = a.admit(
                    workerID: "w-0", incarnation: 9, connection: 2, now: Self.at(t))
            else {
                Issue.record("not refused at \(t)")
                return
            }
            #expect(text.contains("incarnation 5") && text.contains("incarnation 9"))
            a.heard(workerID: "w-0", connection: 1, now: Self.at(t + 400))
        }
        #expect(a.connection(of: "w-0") == 1)
        // The refused pod's traffic does not keep anything alive.
        a.heard(workerID: "w-0", connection: 2, now: Self.at(6000))
        #expect(
            a.admit(workerID: "w-0", incarnation: 9, connection: 2, now: Self.at(7001))
                == .replaced(connection: 1, incarnation: 5))
    }

    @Test func aClosedOrSilentSessionIsReplacedAtOnce() {
        var a = WorkerAdmission(heartbeatInterval: .seconds(1))
        _ = a.admit(workerID: "w-1", incarnation: 1, connection: 10, now: Self.at(0))
        a.closed(workerID: "w-1", connection: 10)
        #expect(
            a.admit(workerID: "w-1", incarnation: 2, connection: 11, now: Self.at(10))
                == .replaced(connection: 10, incarnation: 1))
        // Silent past 1.5 intervals (a crash the socket has not reported yet): replaced.
        #expect(
            a.admit(workerID: "w-1", incarnation: 3, connection: 12, now: Self.at(1500))
                != .replaced(connection: 11, incarnation: 2))
        #expect(
            a.admit(workerID: "w-1", incarnation: 3, connection: 12, now: Self.at(1511))
                == .replaced(connection: 11, incarnation: 2))
        // A close reported late by the replaced connection does not touch the new session.
        a.closed(workerID: "w-1", connection: 11)
        guard
            case .rejected(.duplicateID, _) = a.admit(
                workerID: "w-1", incarnation: 4, connection: 13, now: Self.at(1600))
        else {
            Issue.record("the new session was marked closed by the old connection")
            return
        }
    }

    @Test func theNumberOfWorkersIsBounded() {
        var a = WorkerAdmission(heartbeatInterval: .seconds(1), maxWorkers: 2)
        #expect(a.admit(workerID: "a", incarnation: 1, connection: 1, now: Self.at(0)) == .admitted)
        #expect(a.admit(workerID: "b", incarnation: 1, connection: 2, now: Self.at(0)) == .admitted)
        #expect(a.admit(workerID: "c", incarnation: 1, connection: 3, now: Self.at(0)) != .admitted)
        a.forget(workerID: "a")
        #expect(a.admit(workerID: "c", incarnation: 1, connection: 3, now: Self.at(0)) == .admitted && a.count == 2)
    }
}
