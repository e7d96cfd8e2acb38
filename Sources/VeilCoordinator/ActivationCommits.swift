import Synchronization

/// Group commit for activations that change stored state (a quota to count, protected-file
/// versions to record): activations that arrive while a write is in flight wait together and
/// are written in the next single transaction — one fsync or one etcd txn for many.
///
/// Invariant: each activation in a batch is checked on its own against the state as the ones
/// before it in the batch left it (``Coordinator/record(_:)``), so a quota is never overrun
/// and one refused activation does not fail the others. A write that fails as a whole (store
/// unavailable) fails every activation of its batch; a conflicting write is retried with the
/// whole batch re-checked against the fresh state.
final class ActivationCommits: Sendable {
    struct Pending: Sendable {
        let decision: ActivationDecision
        /// The digest of the manifest the activation's checks used.
        let manifestDigest: [UInt8]
        let continuation: CheckedContinuation<Result<Void, CoordinatorError>, Never>
    }

    private struct Queue {
        var pending: [Pending] = []
        var draining = false
        var writing = 0
    }

    /// Largest batch in one transaction: bounds the work redone when a write conflicts.
    static let maximumBatch = 256

    private let queue = Mutex(Queue())

    /// Activations queued or in the write under way.
    var waiting: Int { queue.withLock { $0.pending.count + $0.writing } }

    /// Returns once `decision` is recorded in the stored state, or throws why it was not.
    func commit(_ decision: ActivationDecision, checkedAgainst manifestDigest: [UInt8], in coordinator: Coordinator) async throws(CoordinatorError) {
        let result = await withCheckedContinuation { (continuation: CheckedContinuation<Result<Void, CoordinatorError>, Never>) in
            let lead = queue.withLock { queue -> Bool in
                queue.pending.append(Pending(decision: decision, manifestDigest: manifestDigest, continuation: continuation))
                guard !queue.draining else { return false }
                queue.draining = true
                return true
            }
            // The first to arrive writes for everyone queued behind it until the queue is empty.
            if lead { Task { await self.drain(into: coordinator) } }
        }
        try result.get()
    }

    private func drain(into coordinator: Coordinator) async {
        while true {
            let batch = queue.withLock { queue -> [Pending] in
                let batch = Array(queue.pending.prefix(Self.maximumBatch))
                queue.pending.removeFirst(batch.count)
                queue.writing = batch.count
                if batch.isEmpty { queue.draining = false }
                return batch
            }
            if batch.isEmpty { return }
            let results = await coordinator.record(batch)
            for (pending, result) in zip(batch, results) { pending.continuation.resume(returning: result) }
        }
    }
}

extension Coordinator {
    /// One transaction for a batch of activations; a result per activation, in order.
    func record(_ batch: [ActivationCommits.Pending]) async -> [Result<Void, CoordinatorError>] {
        do throws(CoordinatorError) {
            return try await transact { state, current throws(CoordinatorError) in
                var results: [Result<Void, CoordinatorError>] = []
                var history: [HistoryEvent] = []
                for pending in batch {
                    // The manifest may have changed since the checks: activate only against the one they used.
                    guard current.manifest?.digest == pending.manifestDigest else {
                        results.append(.failure(.manifestChanged))
                        continue
                    }
                    var next = state
                    do throws(CoordinatorError) {
                        try Self.record(pending.decision, in: &next)
                        state = next
                        history += pending.decision.history
                        results.append(.success(()))
                    } catch {
                        results.append(.failure(error))
                    }
                }
                return (results, history)
            }
        } catch {
            return Array(repeating: .failure(error), count: batch.count)
        }
    }
}
