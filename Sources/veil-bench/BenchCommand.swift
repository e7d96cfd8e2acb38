import ArgumentParser
import Crypto
import Foundation
import Glibc
import VeilClient
import VeilAttestation
import VeilCore
import VeilLauncher
import VeilManifest

/// Measures launch overhead and activation throughput against peers run in the same process:
/// `/bin/true` started directly, and the coordinator's trivial `/healthz` over the same TLS
/// connections. Numbers only compare within one run on one machine.
@main
struct BenchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "veil-bench", abstract: "Veil's benchmarks: each prints ratios against a peer measured in the same run.",
        subcommands: [BenchCoordinatorCommand.self, BenchSummaryCommand.self, BenchLoadCommand.self, BenchHACommand.self, BenchDCAPCommand.self, BenchSNPCommand.self, BenchProtectedCommand.self, BenchImageCommand.self, BenchAttestCommand.self, BenchMeshCommand.self, BenchKBSCommand.self, BenchRenewalCommand.self, BenchEncryptedCommand.self], defaultSubcommand: BenchCoordinatorCommand.self)
}

struct BenchCoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator",
        abstract: "Launch overhead and activations per second against same-run peers.",
        discussion: "Starts its own simulated coordinator (development only: no confidentiality) in a temporary directory.")

    @Option(help: "Launches to time (median reported).") var launches = 20
    @Option(help: "Concurrent activation clients.") var concurrency = 8
    @Option(help: "Seconds per throughput phase.") var seconds = 5.0
    @OptionGroup var record: RecordOption

    func run() async throws {
        let (veil, work) = try Bench.setUp("coordinator")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let coordinator = try await BenchCoordinator.start(veil: veil, work: work)
        defer { coordinator.stop() }
        let (mesh, keyPath, rootPath) = (coordinator.mesh, coordinator.keyPath, coordinator.rootPath)
        let attested: AttestedCoordinator = coordinator.attested
        let environment = ProcessInfo.processInfo.environment

        let benchMeasurement = Array(SHA256.hash(data: Array("veil bench".utf8)))
        let trueMeasurement = try LaunchMeasurement.measure(programAt: "/bin/true", config: .init(service: "true", arguments: []))
        let manifest = """
            {"Packages": {"true": {"Kind": "simulated", "Measurement": "\(Hex.encode(trueMeasurement))"},
                          "bench": {"Kind": "simulated", "Measurement": "\(Hex.encode(benchMeasurement))"}},
             "Services": {"true": {"Package": "true"},
                          "bench": {"Package": "bench", "Parameters": {"Files": {"/tls/cert.pem": "{{ pem .Veil.Service.Cert }}", "/tls/key.pem": "{{ pem .Veil.Service.Private }}"},
                                                                       "Env": {"KEY": "{{ hex .Secrets.key }}"}}}},
             "Secrets": {"key": {"Type": "symmetric-key", "Size": 256}},
             "Config": {"AllowSimulation": true}}
            """
        try await coordinator.setManifest(manifest)

        print("veil-bench coordinator: simulated TEE (\(simulationWarning))")
        print("machine: \(ProcessInfo.processInfo.activeProcessorCount) cores; coordinator and load share them")

        // 1. Launch overhead: the whole CLI, and the launcher executable images carry.
        let direct = try (0..<launches).map { _ in try Bench.time(["/bin/true"], environment: environment) }
        let options = ["launch", "--coordinator", mesh, "--service", "true", "--tee", "simulated", "--simulation-key", keyPath, "--root-ca", rootPath, "--", "/bin/true"]
        let launcher = (veil as NSString).deletingLastPathComponent + "/veil-launcher"
        let viaVeil = try (0..<launches).map { _ in try Bench.time([veil] + options, environment: environment) }
        let viaLauncher = try (0..<launches).map { _ in try Bench.time([launcher] + options, environment: environment) }
        let directMedian = Bench.median(direct)
        var results = BenchRecord(benchmark: "coordinator")
        print("")
        print("launch overhead (median of \(launches)):")
        print(String(format: "  /bin/true                              %8.2f ms", directMedian * 1000))
        // Issue 26's goals: the launcher's overhead ≤ 10 ms, the whole CLI's ≤ 15 ms.
        for (name, times, limit) in [("veil launch -- /bin/true", viaVeil, 0.015), ("veil-launcher launch -- /bin/true", viaLauncher, 0.010)] {
            let median = Bench.median(times)
            let met = median - directMedian <= limit
            results.add(
                "`\(name)`", median * 1000, "ms", better: .lower, peer: "`/bin/true`", directMedian * 1000,
                goal: "overhead ≤ \(Int(limit * 1000)) ms", met: met)
            print(String(format: "  %@ %8.2f ms  overhead %6.2f ms (goal <= %.0f ms: %@)", name.padding(toLength: 38, withPad: " ", startingAt: 0), median * 1000,
                         (median - directMedian) * 1000, limit * 1000, met ? "met" : "NOT met"))
        }

        // 2. Activations per second vs the trivial /healthz, each client on its own keep-alive connection.
        let (healthz, activations) = try await measureThroughput(mesh: mesh, root: attested.rootCertificatePEM, key: keyPath, measurement: benchMeasurement)
        print("")
        print("throughput, \(concurrency) concurrent clients over keep-alive TLS, \(Int(seconds)) s each:")
        print(String(format: "  GET /healthz (peer)             %8.0f req/s", healthz))
        // Issue 26's goal: an activation costs at most four trivial requests.
        let ratioMet = activations / healthz >= 0.25
        print(String(format: "  activations (nonce+activation)  %8.0f /s", activations))
        print(String(format: "  ratio activations / healthz     %8.2f  (goal >= 0.25: %@)", activations / healthz, ratioMet ? "met" : "NOT met"))
        results.add(
            "activations/s, \(concurrency) clients, keep-alive TLS", activations, "/s", better: .higher, peer: "`GET /healthz`", healthz,
            goal: "≥ 0.25× `GET /healthz`", met: ratioMet)
        try record.keep(results)
    }

    private func measureThroughput(mesh: String, root: String, key keyPath: String, measurement benchMeasurement: [UInt8]) async throws -> (Double, Double) {
        let platformKey = try SimulationPlatformKey.load(at: keyPath)
        let healthz = try await throughput(mesh: mesh, root: root) { client in
            _ = try await client.call(.GET, "/healthz")
        }
        let provider = SimulatedEvidenceProvider(key: platformKey, measurement: benchMeasurement)
        let activations = try await throughput(mesh: mesh, root: root) { client in
            _ = try await Launcher.requestActivation(service: "bench", key: Launcher.serviceKey(), provider: provider, client: client)
        }
        return (healthz, activations)
    }

    /// Runs `operation` from `concurrency` clients for `seconds`; returns completed operations per second.
    private func throughput(mesh: String, root: String, _ operation: @escaping @Sendable (CoordinatorClient) async throws -> Void) async throws -> Double {
        let deadline = ContinuousClock.now + .milliseconds(Int(seconds * 1000))
        let start = ContinuousClock.now
        let total = try await withThrowingTaskGroup(of: Int.self) { group in
            for _ in 0..<concurrency {
                group.addTask {
                    try await CoordinatorClient.with(address: mesh, trust: .pinnedRoot(root)) { client in
                        var count = 0
                        while ContinuousClock.now < deadline {
                            try await operation(client)
                            count += 1
                        }
                        return count
                    }
                }
            }
            return try await group.reduce(0, +)
        }
        return Double(total) / Bench.seconds(ContinuousClock.now - start)
    }
}
