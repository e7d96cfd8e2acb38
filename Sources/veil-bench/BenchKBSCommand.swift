import ArgumentParser
import Crypto
import Foundation
import Synchronization
import VeilAttestation
import VeilClient
import VeilCore
import VeilJOSE
import VeilLauncherCommands

/// `veil-bench kbs`: the key-broker protocol against Veil's own activation on one coordinator,
/// in one run: full KBS handshakes (auth, attest, one resource) and resource releases on an
/// attested token, each per second against activations per second.
struct BenchKBSCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "kbs", abstract: "KBS handshakes/s and releases/s vs Veil activations/s, same coordinator, same run.",
        discussion: "Starts its own simulated coordinator (development only: no confidentiality). Clients keep their TLS connection; releases are not decrypted.")

    @Option(help: "Operations of each kind.") var count = 2000
    @Option(help: "Concurrent clients.") var concurrency = 8
    @OptionGroup var record: RecordOption

    static let measurement = [UInt8](repeating: 0xab, count: 32)
    static let resource = "default/key/db"

    func run() async throws {
        let (veil, work) = try Bench.setUp("kbs")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let coordinator = try await BenchCoordinator.start(veil: veil, work: work)
        defer { coordinator.stop() }
        try await coordinator.setManifest("""
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\(Hex.encode(Self.measurement))"}},
             "Services": {"s": {"Package": "p", "KBS": {"Resources": {"\(Self.resource)": "{{ raw .Secrets.key }}"}}}},
             "Secrets": {"key": {"Type": "symmetric-key"}},
             "Config": {"AllowSimulation": true}}
            """)
        let provider = SimulatedEvidenceProvider(key: try SimulationPlatformKey.load(at: coordinator.keyPath), measurement: Self.measurement)
        let root = coordinator.attested.rootCertificatePEM

        let activations = await ActivationLoad(
            addresses: [coordinator.mesh], rootPEM: root, provider: provider, service: "s", count: count, concurrency: concurrency
        ).run()
        guard activations.succeeded == count else { throw CommandError("activations failed: \(activations.lastError ?? "?")") }
        let handshakes = try await Self.rate(count: count, concurrency: concurrency, address: coordinator.mesh, root: root) { client in
            let token = try await KBSClient.attest(client, provider: provider)
            try await KBSClient.release(client, token: token)
        }
        let releases = try await Self.rate(count: count, concurrency: concurrency, address: coordinator.mesh, root: root, prepare: { client in
            try await KBSClient.attest(client, provider: provider)
        }) { client, token in
            try await KBSClient.release(client, token: token)
        }
        print("KBS vs Veil activation, \(concurrency) clients, keep-alive TLS, \(count) each; simulated TEE, no confidentiality:")
        print(String(format: "  activations (peer)                        %8.0f /s", activations.perSecond))
        print(String(format: "  KBS handshakes (auth+attest+resource)     %8.0f /s   %.2fx", handshakes, handshakes / activations.perSecond))
        print(String(format: "  KBS releases on a bearer token            %8.0f /s   %.2fx", releases, releases / activations.perSecond))
        var results = BenchRecord(benchmark: "kbs")
        results.add("KBS handshakes (auth, attest, one resource)", handshakes, "/s", better: .higher, peer: "Veil activations", activations.perSecond)
        results.add("KBS resource releases on a bearer token (each one signed into the history)", releases, "/s", better: .higher, peer: "Veil activations", activations.perSecond)
        try record.keep(results)
    }

    /// Operations per second over `concurrency` clients, each with its own connection.
    static func rate(count: Int, concurrency: Int, address: String, root: String, _ operation: @escaping @Sendable (CoordinatorClient) async throws -> Void) async throws -> Double {
        try await rate(count: count, concurrency: concurrency, address: address, root: root, prepare: { _ in () }) { client, _ in try await operation(client) }
    }

    static func rate<State: Sendable>(
        count: Int, concurrency: Int, address: String, root: String, prepare: @escaping @Sendable (CoordinatorClient) async throws -> State,
        _ operation: @escaping @Sendable (CoordinatorClient, State) async throws -> Void
    ) async throws -> Double {
        let next = Counter()
        let clients = try (0..<concurrency).map { _ in try CoordinatorClient(address: address, trust: .pinnedRoot(root)) }
        let states = try await withThrowingTaskGroup(of: (Int, State).self) { group in
            for (index, client) in clients.enumerated() { group.addTask { (index, try await prepare(client)) } }
            return try await group.reduce(into: [Int: State]()) { $0[$1.0] = $1.1 }
        }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (index, client) in clients.enumerated() {
                let state = states[index]!
                group.addTask {
                    while next.taken.withLock({ taken -> Bool in
                        defer { taken += 1 }
                        return taken < count
                    }) {
                        try await operation(client, state)
                    }
                }
            }
            try await group.waitForAll()
        }
        let seconds = Bench.seconds(ContinuousClock.now - start)
        for client in clients { await client.shutdown() }
        return Double(count) / seconds
    }
}

final class Counter: Sendable {
    let taken = Mutex(0)
}

/// The key-broker calls the benchmark times: VeilClient's client, with guest-components' shape
/// of simulated evidence (`veil-simulated`).
enum KBSClient {
    /// auth → attest with evidence binding a fresh P-256 key; returns the token.
    static func attest(_ client: CoordinatorClient, provider: any EvidenceProvider) async throws -> String {
        try await KeyBrokerClient.attest(client, tee: "veil-simulated") { try JSONValue.parse(try provider.evidence(reportData: $0).data) }.token
    }

    static func release(_ client: CoordinatorClient, token: String) async throws {
        let response = try await client.exchange(.GET, "/kbs/v0/resource/\(BenchKBSCommand.resource)", headers: [("Authorization", "Bearer \(token)")])
        guard response.status == 200 else { throw CommandError("resource answered \(response.status): \(String(decoding: response.body.prefix(300), as: UTF8.self))") }
    }
}
