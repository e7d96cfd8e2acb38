import Crypto
import Foundation
import Logging
import Synchronization
import Testing
import VeilAttestation
@testable import VeilCoordinator
import VeilManifest

/// Quota'd activations are group-committed: many in one write, each still checked on its own.
@Suite struct GroupCommitTests {
    /// A file store whose writes are counted and, while `gate` is closed, wait: activations
    /// that arrive meanwhile must queue for the next write instead of writing one by one.
    final class CountingStore: StateStore {
        let inner: FileStateStore
        let writes = Mutex(0)
        let gate = Mutex(false)

        init(directory: String) { inner = FileStateStore(directory: directory) }

        var description: String { "counting \(inner.description)" }
        func read() async throws(StateStoreError) -> StoredState? { try await inner.read() }
        func write(_ bytes: [UInt8], expecting expected: Int64?) async throws(StateStoreError) -> Int64 {
            writes.withLock { $0 += 1 }
            while gate.withLock({ $0 }) { try? await Task.sleep(for: .milliseconds(2)) }
            return try await inner.write(bytes, expecting: expected)
        }
        func changes(after revision: Int64) -> AsyncStream<StoredState> { inner.changes(after: revision) }
        func reset() async throws(StateStoreError) { try await inner.reset() }
    }

    let fixture: Fixture

    init() throws { fixture = try Fixture() }

    func coordinator(_ store: CountingStore) async throws -> Coordinator {
        try await Coordinator.open(
            store: store, vault: StateVault(directory: fixture.directory, sealingKey: fixture.sealingKey),
            evidenceProvider: SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement),
            verification: .init(simulationKey: fixture.platformKey.publicKey), logger: Logger(label: "test"))
    }

    /// Activates `count` times concurrently while the store holds its first write back, then
    /// lets it go; returns how many activations succeeded and the errors of the others.
    func activateConcurrently(_ count: Int, on coordinator: Coordinator, store: CountingStore) async throws -> (successes: Int, errors: [CoordinatorError]) {
        let requests = try (0..<count).map { _ in try fixture.request(coordinator).0 }
        let now = Date()
        store.gate.withLock { $0 = true }
        return try await withThrowingTaskGroup(of: CoordinatorError?.self) { group in
            defer { store.gate.withLock { $0 = false } }
            for request in requests {
                group.addTask {
                    do throws(CoordinatorError) {
                        _ = try await coordinator.activate(request, now: now)
                        return nil
                    } catch {
                        return error
                    }
                }
            }
            // Open the gate once every activation is queued for its write or in it.
            let deadline = ContinuousClock.now + .seconds(120)
            while coordinator.commits.waiting < count, ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(5)) }
            try #require(coordinator.commits.waiting == count, "not every activation reached its commit")
            store.gate.withLock { $0 = false }
            var (successes, errors) = (0, [CoordinatorError]())
            for try await outcome in group {
                if let outcome { errors.append(outcome) } else { successes += 1 }
            }
            return (successes, errors)
        }
    }

    @Test func concurrentActivationsShareWritesAndTheQuotaStaysExact() async throws {
        let store = CountingStore(directory: fixture.directory)
        let coordinator = try await coordinator(store)
        try await coordinator.setManifest(fixture.manifest(maxActivations: 25))
        let writesBefore = store.writes.withLock { $0 }
        let (successes, errors) = try await activateConcurrently(40, on: coordinator, store: store)
        let writes = store.writes.withLock { $0 } - writesBefore
        #expect(successes == 25)
        #expect(errors.count == 15 && errors.allSatisfy { $0 == .activationLimitReached(service: "cache", limit: 25) }, "\(errors)")
        #expect(writes < 25, "\(writes) writes for 25 counted activations: they were not grouped")
        #expect(coordinator.status().activations["cache"] == 25)
        #expect(try await fixture.coordinator().status().activations["cache"] == 25, "the count is in the stored state")
    }

    @Test func aFailedWriteFailsItsBatchAndTheNextBatchStillCommits() async throws {
        let store = CountingStore(directory: fixture.directory)
        let coordinator = try await coordinator(store)
        try await coordinator.setManifest(fixture.manifest(maxActivations: 100))
        // The stored state moves behind this replica's back: its next write conflicts, and the
        // batch is re-checked against the fresh state and written again.
        let other = try await fixture.coordinator()
        _ = try await other.activate(try fixture.request(other).0)
        let (successes, errors) = try await activateConcurrently(10, on: coordinator, store: store)
        #expect(successes == 10 && errors.isEmpty, "\(errors)")
        #expect(try await fixture.coordinator().status().activations["cache"] == 11)
    }
}
