/// The book model of one symbol with the checkpoints that make any step quick to reach: the book
/// at step *n* is replayed from the nearest checkpoint (or the last book computed) before it.
///
/// Memory is bounded: at most `maxCheckpoints` books (~20 KB each) per symbol. When more would be
/// needed the checkpoints are thinned to every other one and their spacing doubles, so replay
/// stays within `interval` steps of any step (1,024 steps, a few milliseconds, until the model
/// has run 32,768 steps; twice that after each doubling). The simulator keeps each timeline at
/// the current step (`advanceBookTimelines`), so only lookups of old seqIds replay far.
struct BookTimeline {
    /// Checkpoints kept per symbol.
    static let maxCheckpoints = 32
    /// Initial spacing of the checkpoints, in steps.
    static let initialInterval: Int64 = 1024

    private(set) var model: BookModel
    /// `checkpoints[i]` is the book after step `i × interval`.
    private var checkpoints: [BookState]
    private var interval = Self.initialInterval
    /// The book last computed: consecutive requests for later steps continue from it.
    private var latest: BookState?

    init(model: BookModel) {
        self.model = model
        self.checkpoints = [model.initial()]
    }

    /// The book after step `step`.
    mutating func state(at step: Int64) -> BookState {
        precondition(step >= 0, "book steps start at 0")
        let checkpoint = checkpoints[Int(min(step / interval, Int64(checkpoints.count - 1)))]
        var state = checkpoint
        if let latest, latest.step <= step, latest.step >= checkpoint.step { state = latest }
        while state.step < step {
            _ = model.advance(&state)
            if state.step == Int64(checkpoints.count) * interval { append(state) }
        }
        latest = state
        return state
    }

    /// The newest book at or before step `head` whose seqId is `seqId` (a keepalive repeats a
    /// seqId with the same book; after a reset small seqIds may come back, and the newest wins).
    mutating func state(seqId: Int64, through head: Int64) -> BookState? {
        var upper = state(at: head)
        var index = min(Int(head / interval), checkpoints.count - 1)
        // Newest interval first: [checkpoints[index], upper].
        while index >= 0 {
            let lower = checkpoints[index]
            let resetInside = model.resets.keys.contains { $0 > lower.step && $0 <= upper.step }
            if resetInside || (lower.seqId <= seqId && seqId <= upper.seqId) {
                var state = lower
                var found = state.seqId == seqId ? state : nil
                while state.step < upper.step {
                    _ = model.advance(&state)
                    if state.seqId == seqId { found = state }
                }
                if let found { return found }
            }
            upper = lower
            index -= 1
        }
        return nil
    }

    /// Makes `step` a maintenance reset to `seqId`; books computed for it or later are forgotten.
    mutating func addReset(at step: Int64, seqId: Int64) {
        model.addReset(at: step, seqId: seqId)
        while let last = checkpoints.last, last.step >= step { checkpoints.removeLast() }
        if let latest, latest.step >= step { self.latest = nil }
    }

    private mutating func append(_ state: BookState) {
        checkpoints.append(state)
        guard checkpoints.count > Self.maxCheckpoints else { return }
        // Keep every other checkpoint: index i stays at step i × interval with the interval doubled.
        checkpoints = stride(from: 0, to: checkpoints.count, by: 2).map { checkpoints[$0] }
        interval *= 2
    }
}
