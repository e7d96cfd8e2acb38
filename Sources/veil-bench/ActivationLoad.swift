import Crypto
import Foundation
import Synchronization
import VeilClient
import VeilAttestation
import VeilLauncher
import VeilManifest

/// Activations from concurrent clients spread over coordinator replicas, each client keeping
/// one connection per replica and moving to the next replica when one cannot be reached or
/// answers 503 — what launchers do, without starting processes. Used by `veil bench load`
/// (and the HA tests through it) and `veil bench ha`.
struct ActivationLoad: Sendable {
    var addresses: [String]
    var rootPEM: String
    var provider: any EvidenceProvider
    var service: String
    var count: Int
    var concurrency: Int
    /// An activation still failing over after this long counts as failed.
    var patience: Duration = .seconds(60)
    /// Stop starting activations at this instant (with `count` a bound only).
    var stopAt: ContinuousClock.Instant?

    struct Report: Codable, Sendable {
        var succeeded = 0
        /// Refusals by error code (e.g. `activationLimitReached`).
        var refused: [String: Int] = [:]
        var failed = 0
        var failovers = 0
        /// Failovers because a replica's address answered with another TLS identity.
        var identityRefusals = 0
        var seconds = 0.0
        var perSecond = 0.0
        /// Longest time between two consecutive successes, in milliseconds.
        var longestGapMilliseconds = 0.0
        /// The last error of any kind, and the last one that made an activation fail.
        var lastError: String?
        var lastFailure: String?
    }

    private final class Shared: Sendable {
        let next = Mutex(0)
        let report = Mutex(Report())
        let successes = Mutex([ContinuousClock.Instant]())
    }

    func run() async -> Report { await execute().0 }

    /// Runs until `deadline` and returns the report and the instant of every success.
    func runRecordingSuccesses(until deadline: ContinuousClock.Instant) async -> (Report, [ContinuousClock.Instant]) {
        var bounded = self
        bounded.stopAt = deadline
        return await bounded.execute()
    }

    private func execute() async -> (Report, [ContinuousClock.Instant]) {
        let shared = Shared()
        let start = ContinuousClock.now
        await withTaskGroup(of: Void.self) { group in
            for worker in 0..<concurrency {
                group.addTask { await self.work(worker, shared) }
            }
        }
        var report = shared.report.withLock { $0 }
        let elapsed = ContinuousClock.now - start
        report.seconds = Bench.seconds(elapsed)
        report.perSecond = Double(report.succeeded) / max(report.seconds, 1e-9)
        let times = shared.successes.withLock { $0 }.sorted()
        report.longestGapMilliseconds = zip(times, times.dropFirst()).map { Bench.seconds($1 - $0) * 1000 }.max() ?? 0
        return (report, times)
    }

    private func work(_ worker: Int, _ shared: Shared) async {
        var clients = [CoordinatorClient?](repeating: nil, count: addresses.count)
        var index = worker % addresses.count
        while stopAt.map({ ContinuousClock.now < $0 }) ?? true, shared.next.withLock({ next -> Bool in
            defer { next += 1 }
            return next < count
        }) {
            let giveUp = ContinuousClock.now + patience
            var tried = 0
            while true {
                do {
                    let client = try clients[index] ?? CoordinatorClient(address: addresses[index], trust: .pinnedRoot(rootPEM))
                    clients[index] = client
                    _ = try await Launcher.requestActivation(service: service, key: Launcher.serviceKey(), provider: provider, client: client)
                    let now = ContinuousClock.now
                    shared.successes.withLock { $0.append(now) }
                    shared.report.withLock { $0.succeeded += 1 }
                    break
                } catch let error as CoordinatorClientError where error.isFailover || error.isNotTheCoordinator {
                    await clients[index]?.shutdown()
                    clients[index] = nil
                    index = (index + 1) % addresses.count
                    tried += 1
                    shared.report.withLock {
                        $0.failovers += 1
                        if error.isNotTheCoordinator { $0.identityRefusals += 1 }
                        $0.lastError = "\(error)"
                    }
                    if ContinuousClock.now > giveUp || stopAt.map({ ContinuousClock.now > $0 }) == true {
                        shared.report.withLock {
                            $0.failed += 1
                            $0.lastFailure = "gave up failing over: \(error)"
                        }
                        break
                    }
                    // Every replica refused in turn: wait a little before the next round.
                    if tried % addresses.count == 0 { try? await Task.sleep(for: .milliseconds(50)) }
                } catch CoordinatorClientError.refused(_, let code, let message, _) {
                    shared.report.withLock {
                        $0.refused[code, default: 0] += 1
                        if code != "activationLimitReached" { $0.lastError = message }
                    }
                    break
                } catch {
                    shared.report.withLock {
                        $0.failed += 1
                        $0.lastError = "\(error)"
                        $0.lastFailure = "\(type(of: error)): \(error)"
                    }
                    break
                }
            }
        }
        for client in clients { await client?.shutdown() }
    }
}
