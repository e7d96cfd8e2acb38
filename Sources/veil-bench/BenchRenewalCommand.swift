import ArgumentParser
import Crypto
import Foundation
import VeilAPI
import VeilAttestation
import VeilClient
import VeilCore
import VeilLauncher
import VeilLauncherCommands
import VeilManifest
import VeilMesh
import VeilWorkloadAPI
import X509

/// `veil-bench renewal`: what rotating identities cost, against peers in the same run —
/// certificate renewals per second at the coordinator against activations per second, and an
/// X.509-SVID fetched from the agent's Workload API against the same SVID loaded from the
/// provisioned files (both with py-spiffe, in one Python process).
struct BenchRenewalCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "renewal", abstract: "Renewals/s vs activations/s; Workload API SVID fetch vs loading the files, same run.",
        discussion: "Starts its own simulated coordinator (development only: no confidentiality). Renewal clients keep their mutual-TLS connection; the SVID fetch needs python3 with pip `spiffe`.")

    @Option(help: "Activations and renewals each.") var count = 2000
    @Option(help: "Concurrent clients.") var concurrency = 8
    @Option(help: "SVID fetches and file loads each.") var fetches = 300
    @OptionGroup var record: RecordOption

    static let measurement = [UInt8](repeating: 0xcd, count: 32)

    func run() async throws {
        let (veil, work) = try Bench.setUp("renewal")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let coordinator = try await BenchCoordinator.start(veil: veil, work: work)
        defer { coordinator.stop() }
        try await coordinator.setManifest("""
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\(Hex.encode(Self.measurement))"}},
             "Services": {"s": {"Package": "p", "CertificateLifetime": "1h", "Parameters": {"Files": {
               "/dev/shm/bench/cert.pem": "{{ pem .Veil.Service.Cert }}{{ pem .Veil.IntermediateCA.Cert }}",
               "/dev/shm/bench/key.pem": "{{ pem .Veil.Service.Private }}"}}}},
             "Config": {"AllowSimulation": true}}
            """)
        let provider = SimulatedEvidenceProvider(key: try SimulationPlatformKey.load(at: coordinator.keyPath), measurement: Self.measurement)
        let root = coordinator.attested.rootCertificatePEM
        let activations = await ActivationLoad(
            addresses: [coordinator.mesh], rootPEM: root, provider: provider, service: "s", count: count, concurrency: concurrency
        ).run()
        guard activations.succeeded == count else { throw CommandError("activations failed: \(activations.lastError ?? "?")") }

        var identities: [ClientIdentity] = []
        for _ in 0..<concurrency {
            let key = P256.Signing.PrivateKey()
            let response = try await CoordinatorClient.with(address: coordinator.mesh, trust: .pinnedRoot(root)) {
                try await Launcher.requestActivation(service: "s", key: key, provider: provider, client: $0)
            }
            identities.append(ClientIdentity(certificatePEM: response.certificateChain, privateKeyPEM: key.pemRepresentation))
        }
        let csrs = try (0..<count).map { _ in try Self.csr() }
        let renewals = try await Self.renewalRate(csrs: csrs, identities: identities, address: coordinator.mesh, root: root)

        print("Renewal vs activation, \(concurrency) clients, keep-alive mutual TLS, \(count) each; simulated TEE, no confidentiality:")
        print(String(format: "  activations (peer)                        %8.0f /s", activations.perSecond))
        print(String(format: "  renewals (new key, files rendered)        %8.0f /s   %.2fx", renewals, renewals / activations.perSecond))
        var results = BenchRecord(benchmark: "renewal")
        results.add("certificate renewals at the coordinator (mutual TLS, new key, files rendered)", renewals, "/s", better: .higher, peer: "Veil activations", activations.perSecond)
        if let fetch = try await Self.svidFetch(identity: identities[0], root: root, work: work, count: fetches) {
            print(String(format: "  X.509-SVID from the Workload API (median) %8.0f µs", fetch.api))
            print(String(format: "  the same SVID loaded from files (peer)    %8.0f µs   %.2fx", fetch.files, fetch.api / fetch.files))
            print(String(format: "    of which the bare gRPC call (grpcio)    %8.0f µs", fetch.call))
            results.add("X.509-SVID fetch from the agent's Workload API (py-spiffe, median)", fetch.api, "µs", better: .lower, peer: "py-spiffe X509Svid.load of the provisioned files", fetch.files)
            results.add("the bare FetchX509SVID call, first message (grpcio stub, median)", fetch.call, "µs", better: .lower, peer: "py-spiffe X509Svid.load of the provisioned files", fetch.files)
        } else {
            print("  SVID fetch: skipped (python3 with pip spiffe not found)")
        }
        try record.keep(results)
    }

    static func csr() throws -> String {
        let key = P256.Signing.PrivateKey()
        return try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName("s") }, privateKey: .init(key), attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256
        ).serializeAsPEM().pemString
    }

    /// Renewals per second: each client presents its activation certificate and sends its share of `csrs`.
    static func renewalRate(csrs: [String], identities: [ClientIdentity], address: String, root: String) async throws -> Double {
        let clients = try identities.map { try CoordinatorClient(address: address, trust: .pinnedRoot(root), identity: $0) }
        let shares = clients.indices.map { index in stride(from: index, to: csrs.count, by: clients.count).map { csrs[$0] } }
        let start = ContinuousClock.now
        try await withThrowingTaskGroup(of: Void.self) { group in
            for (client, share) in zip(clients, shares) {
                group.addTask {
                    for csr in share {
                        _ = try await client.call(.POST, "\(API.prefix)/activation/renew", json: API.RenewalRequest(csr: csr), as: API.RenewalResponse.self)
                    }
                }
            }
            try await group.waitForAll()
        }
        let seconds = Bench.seconds(ContinuousClock.now - start)
        for client in clients { await client.shutdown() }
        return Double(csrs.count) / seconds
    }

    /// Median microseconds of py-spiffe's `fetch_x509_svid` from a Workload API served here, of
    /// `X509Svid.load` from the same certificate and key in files, and of the bare gRPC call
    /// (grpcio's stub, first message, no parsing); nil without py-spiffe.
    static func svidFetch(identity: ClientIdentity, root: String, work: String, count: Int) async throws -> (api: Double, files: Double, call: Double)? {
        guard let python = which("python3") else { return nil }
        let certificate = work + "/svid-cert.pem", key = work + "/svid-key.pem", socket = work + "/workload.sock"
        try identity.certificatePEM.write(toFile: certificate, atomically: true, encoding: .utf8)
        try identity.privateKeyPEM.write(toFile: key, atomically: true, encoding: .utf8)
        let server = try await WorkloadAPIServer.start(at: socket, source: try FixedIdentity(identity, root: root), owner: nil)
        defer { Task { await server.stop() } }
        let script = work + "/fetch.py"
        try """
            import statistics, sys, time
            from cryptography.hazmat.primitives.serialization import Encoding
            from spiffe import WorkloadApiClient, X509Svid
            socket, certificate, key, count = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4])
            client = WorkloadApiClient(socket_path="unix://" + socket)
            def median(operation):
                operation()
                samples = []
                for _ in range(count):
                    start = time.perf_counter()
                    operation()
                    samples.append((time.perf_counter() - start) * 1e6)
                return statistics.median(samples)
            import grpc
            from spiffe._proto import workload_pb2, workload_pb2_grpc
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(grpc.insecure_channel("unix://" + socket))
            raw = lambda: next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest(), metadata=(("workload.spiffe.io", "true"),)))
            print(median(client.fetch_x509_svid), median(lambda: X509Svid.load(certificate, key, Encoding.PEM)), median(raw))
            """.write(toFile: script, atomically: true, encoding: .utf8)
        let output = try BenchRun.capture([python, script, socket, certificate, key, "\(count)"], stdin: nil)
        // The last line holds the figures (Python may warn before it).
        let last = output.split(whereSeparator: \.isNewline).last ?? ""
        let numbers = last.split(separator: " ").compactMap { Double($0) }
        guard numbers.count == 3 else { throw CommandError("the SVID fetch measurement gave no figures:\n\(output)") }
        return (numbers[0], numbers[1], numbers[2])
    }
}

/// One identity that never renews: what the benchmark's Workload API serves.
struct FixedIdentity: WorkloadIdentitySource {
    let identity: X509Identity

    init(_ client: ClientIdentity, root: String) throws {
        let credentials = MeshCredentials(service: "s", certificateChainPEM: client.certificatePEM, privateKeyPEM: client.privateKeyPEM, rootCertificatePEM: root)
        guard let identity = X509Identity(credentials: credentials) else { throw CommandError("the benchmark identity does not parse") }
        self.identity = identity
    }

    func x509Identities() async -> AsyncStream<X509Identity> {
        AsyncStream { $0.yield(identity); $0.finish() }
    }

    func jwtSVID(audience: [String]) async throws -> String { throw CommandError("not served by the benchmark") }
    func jwtBundle() async throws -> [UInt8] { throw CommandError("not served by the benchmark") }
}
