import Foundation
import Glibc
import VeilAPI
import VeilClient
import VeilAttestation
import VeilCore
import VeilLauncher
import VeilLauncherCommands
import VeilManifest

/// Timing helpers shared by the benchmarks.
enum Bench {
    /// Mean microseconds per call of `body` over `iterations`, after a short warm-up.
    static func microsecondsPerCall(iterations: Int, _ body: () throws -> Void) throws -> Double {
        for _ in 0..<min(50, iterations) { try body() }
        let start = ContinuousClock.now
        for _ in 0..<iterations { try body() }
        let elapsed = ContinuousClock.now - start
        return (Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12) / Double(iterations)
    }

    /// Runs a Python peer that prints one number and returns it.
    static func python(_ script: String, _ arguments: [String], failure: String) throws -> Double {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, let value = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw CommandError(failure)
        }
        return value
    }

    /// The `veil` beside this `veil-bench` (the same build), and a fresh scratch directory
    /// named for the benchmark (the caller removes it).
    static func setUp(_ name: String) throws -> (veil: String, work: String) {
        let bench = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let veil = URL(fileURLWithPath: bench).deletingLastPathComponent().appendingPathComponent("veil").path
        guard FileManager.default.isExecutableFile(atPath: veil) else { throw CommandError("no veil beside \(bench): build it (swift build)") }
        let work = FileManager.default.temporaryDirectory.appendingPathComponent("veil-bench-\(name)-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: work, withIntermediateDirectories: true)
        return (veil, work)
    }

    /// Wall time of one run, spawned with `posix_spawn` and reaped with `waitpid`
    /// (Foundation's `Process` adds tens of milliseconds of polling on Linux).
    static func time(_ arguments: [String], environment: [String: String]) throws -> Double {
        let argv = arguments.map { strdup($0) } + [nil]
        let envp = environment.map { strdup("\($0.key)=\($0.value)") } + [nil]
        defer {
            argv.forEach { free($0) }
            envp.forEach { free($0) }
        }
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        defer { posix_spawn_file_actions_destroy(&actions) }
        var pid: pid_t = 0
        let start = ContinuousClock.now
        guard posix_spawn(&pid, arguments[0], &actions, nil, argv, envp) == 0 else { throw CommandError("cannot start \(arguments[0])") }
        var status: Int32 = 0
        while waitpid(pid, &status, 0) < 0 && errno == EINTR {}
        let elapsed = ContinuousClock.now - start
        guard status == 0 else { throw CommandError("\(arguments.joined(separator: " ")) failed (wait status \(status))") }
        return seconds(elapsed)
    }

    static func seconds(_ duration: Duration) -> Double {
        Double(duration.components.seconds) + Double(duration.components.attoseconds) / 1e18
    }

    static func median(_ values: [Double]) -> Double {
        let sorted = values.sorted()
        return sorted.count % 2 == 1 ? sorted[sorted.count / 2] : (sorted[sorted.count / 2 - 1] + sorted[sorted.count / 2]) / 2
    }
}

/// A simulated coordinator process for benchmarks (development only: no confidentiality),
/// attested and with its root written to `rootPath`.
final class BenchCoordinator: @unchecked Sendable {
    let process = Process()
    let client = "127.0.0.1:\((try? BenchPorts.free()) ?? Int.random(in: 20000...40000))"
    let mesh = "127.0.0.1:\((try? BenchPorts.free()) ?? Int.random(in: 40001...60000))"
    let keyPath: String
    let rootPath: String
    private(set) var attested: AttestedCoordinator!

    private init(work: String, name: String, simulationKey: String?) {
        keyPath = simulationKey ?? work + "/\(name)/" + SimulationPlatformKey.defaultFileName
        rootPath = work + "/root.pem"
    }

    /// Starts `veil coordinator` with its data in `work/name`.
    /// - Parameters:
    ///   - arguments: extra arguments (a store);
    ///   - simulationKey: a platform key shared by replicas;
    ///   - root: a replica joining an existing coordinator waits until it serves that root.
    /// A coordinator that exits before it is attested (a port found free was taken by another
    /// process first, on a busy machine) is started again on fresh ports, up to three times.
    static func start(veil: String, work: String, name: String = "data", arguments: [String] = [], simulationKey: String? = nil, root: String? = nil) async throws -> BenchCoordinator {
        for _ in 1..<3 {
            if let started = try await startOnce(veil: veil, work: work, name: name, arguments: arguments, simulationKey: simulationKey, root: root) {
                return started
            }
        }
        guard let started = try await startOnce(veil: veil, work: work, name: name, arguments: arguments, simulationKey: simulationKey, root: root) else {
            throw CommandError("benchmark coordinator exited before it was attested (three times)")
        }
        return started
    }

    /// The coordinator, attested; nil when its process exited first.
    private static func startOnce(veil: String, work: String, name: String, arguments: [String], simulationKey: String?, root: String?) async throws -> BenchCoordinator? {
        let coordinator = BenchCoordinator(work: work, name: name, simulationKey: simulationKey)
        coordinator.process.executableURL = URL(fileURLWithPath: veil)
        coordinator.process.arguments = [
            "coordinator", "--tee", "simulated", "--data-dir", work + "/" + name, "--client-addr", coordinator.client,
            "--mesh-addr", coordinator.mesh, "--log-level", "error",
        ] + (simulationKey.map { ["--simulation-key", $0] } ?? []) + arguments
        try coordinator.process.run()
        for _ in 0..<300 where coordinator.attested == nil {
            try await Task.sleep(for: .milliseconds(100))
            guard coordinator.process.isRunning else { return nil }
            guard let key = try? SimulationPlatformKey.loadPublicKey(at: coordinator.keyPath) else { continue }
            // A joining replica first serves recovery with a temporary root: wait for the real one.
            guard let attested = try? await CoordinatorAttestation.attest(
                address: coordinator.client, policy: .init(measurements: [], verification: .init(allowSimulation: true, simulationKey: key)))
            else { continue }
            if root == nil || attested.rootCertificatePEM == root { coordinator.attested = attested }
        }
        guard coordinator.attested != nil else {
            coordinator.stop()
            throw CommandError("benchmark coordinator did not start")
        }
        if root == nil { try Data(coordinator.attested.rootCertificatePEM.utf8).write(to: URL(fileURLWithPath: coordinator.rootPath)) }
        return coordinator
    }

    func setManifest(_ text: String, secrets: [String: [UInt8]] = [:]) async throws {
        let request = API.ManifestSetRequest(manifest: Base64Bytes(text.utf8), secrets: secrets.mapValues { Base64Bytes($0) })
        _ = try await CoordinatorClient.with(address: client, trust: .pinnedRoot(attested.rootCertificatePEM)) {
            try await $0.call(.POST, "\(API.prefix)/manifest/with-secrets", json: request, as: API.ManifestSetResponse.self)
        }
    }

    func stop() {
        if process.isRunning {
            process.terminate()
            process.waitUntilExit()
        }
    }

    /// SIGKILL, as a lost machine.
    func kill9() {
        guard process.isRunning else { return }
        kill(process.processIdentifier, SIGKILL)
        process.waitUntilExit()
    }
}
