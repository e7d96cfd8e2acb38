import ArgumentParser
import Crypto
import Foundation
import VeilAPI
import VeilClient
import VeilAttestation
import VeilCore
import VeilLauncher
import VeilManifest
import X509

/// `veil attest` end to end (evidence + history verification) with a long history, against
/// the same command on a one-entry history, in one run.
struct BenchAttestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attest", abstract: "veil attest latency with a 1,000-entry history vs a 1-entry one.",
        discussion: "Starts its own simulated coordinator (development only: no confidentiality).")

    @Option(help: "History entries to create.") var entries = 1000
    @Option(help: "Runs of veil attest to time (median reported).") var runs = 10
    @OptionGroup var record: RecordOption

    func run() async throws {
        let (veil, work) = try Bench.setUp("attest")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let coordinator = try await BenchCoordinator.start(veil: veil, work: work)
        defer { coordinator.stop() }

        // A user allowed to set one secret: every set appends a history entry.
        let userKey = P256.Signing.PrivateKey()
        let subject = try DistinguishedName { CommonName("bench") }
        let certificate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(userKey.publicKey), notValidBefore: Date() - 60, notValidAfter: Date() + 86400,
            issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: .init(), issuerPrivateKey: .init(userKey))
        let pem = try certificate.serializeAsPEM().pemString
        let manifest: [String: Any] = [
            "Packages": ["p": ["Kind": "simulated", "Measurement": String(repeating: "ab", count: 32)]],
            "Services": ["s": ["Package": "p"]],
            "Secrets": ["value": ["Type": "plain", "UserDefined": true]],
            "Users": ["bench": ["Certificate": pem, "Roles": ["writer"]]],
            "Roles": ["writer": ["ResourceType": "Secrets", "ResourceNames": ["value"], "Actions": ["WriteSecret"]]],
            "Config": ["AllowSimulation": true],
        ]
        try await coordinator.setManifest(String(decoding: try JSONSerialization.data(withJSONObject: manifest), as: UTF8.self))

        var environment = ProcessInfo.processInfo.environment
        environment[VeilEnvironment.configDirectory] = work + "/config"
        let attest = [veil, "attest", "--coordinator", coordinator.client, "--allow-simulation", "--simulation-key", coordinator.keyPath]
        let short = try (0..<runs).map { _ in try Bench.time(attest, environment: environment) }

        let identity = ClientIdentity(certificatePEM: pem, privateKeyPEM: userKey.pemRepresentation)
        try await CoordinatorClient.with(address: coordinator.client, trust: .pinnedRoot(coordinator.attested.rootCertificatePEM), identity: identity) { client in
            for index in 1..<entries {
                let body = Array(try JSONEncoder().encode(API.SecretSetRequest(value: Base64Bytes("value \(index)".utf8))))
                _ = try await client.call(.PUT, "\(API.prefix)/secrets/value", body: body)
            }
        }
        let long = try (0..<runs).map { _ in try Bench.time(attest, environment: environment) }
        let shortMedian = Bench.median(short), longMedian = Bench.median(long)
        print("veil attest end to end (new process, evidence + history verification), median of \(runs); simulated TEE, no confidentiality:")
        print(String(format: "  history of 1 entry (peer)          %8.1f ms", shortMedian * 1000))
        print(String(format: "  history of %5d entries           %8.1f ms   %.2fx", entries, longMedian * 1000, longMedian / shortMedian))
        var results = BenchRecord(benchmark: "attest")
        results.add(
            "`veil attest`, \(entries)-entry history", longMedian * 1000, "ms", better: .lower, peer: "the same with a 1-entry history", shortMedian * 1000)
        try record.keep(results)
    }
}
