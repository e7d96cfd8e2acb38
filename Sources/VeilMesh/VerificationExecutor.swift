import Dispatch
import Synchronization

/// Where the mesh verifies peer certificates: threads of its own (a concurrent dispatch queue),
/// not Swift's cooperative pool. swift-certificates' verifier is async, so verification runs in
/// a task; on the cooperative pool, a process whose pool is busy (a flood of handshakes, other
/// work in the same process) would delay every verdict past the handshake deadline and cut valid
/// peers. With this executor preference the verification's own work never waits for the pool.
final class VerificationExecutor: TaskExecutor {
    static let shared = VerificationExecutor()

    private let queue = DispatchQueue(label: "veil.mesh.verification", attributes: .concurrent)
    private let jobs = Atomic<Int>(0)

    /// Jobs run on this executor so far (tests read it to see verification ran here).
    var jobsRun: Int { jobs.load(ordering: .relaxed) }

    func enqueue(_ job: consuming ExecutorJob) {
        let job = UnownedJob(job)
        queue.async {
            self.jobs.add(1, ordering: .relaxed)
            job.runSynchronously(on: self.asUnownedTaskExecutor())
        }
    }
}
