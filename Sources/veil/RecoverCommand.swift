import ArgumentParser
import Foundation
import VeilAPI
import VeilClient
import VeilAttestation
import VeilCore
import VeilLauncher
import VeilLauncherCommands
import VeilManifest

struct RecoverCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "recover",
        abstract: "Help a coordinator in recovery rebuild its state key with your recovery key.",
        discussion: helpText("""
            Attests the coordinator first (its evidence binds the temporary root it serves during
            recovery), fetches the share encrypted to your key, decrypts it here, and sends it back
            over the attested connection. The private key never leaves this machine. Once the
            manifest's RecoveryThreshold shares arrived, the coordinator seals its state key under its
            current sealing key and starts normally.
            """))

    @Option(help: ArgumentHelp("Your recovery private key (PEM, RSA or P-256).", valueName: "file"))
    var key: String

    @Option(help: ArgumentHelp("Coordinator client API as HOST:PORT (the replica in recovery; env VEIL_COORDINATOR).", valueName: "host:port"))
    var coordinator: String?

    @OptionGroup var trust: CoordinatorPolicyOptions

    @Option(name: .long, help: ArgumentHelp("Client certificate of a user with the Recover action, when the manifest has such users.", valueName: "file"))
    var userCert: String?

    @Option(name: .long, help: ArgumentHelp("The private key of --user-cert.", valueName: "file"))
    var userKey: String?

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let address = coordinator ?? environment[VeilEnvironment.coordinator] ?? VeilDefaults.clientAddress
        guard let pem = FileManager.default.contents(atPath: key) else { throw CommandError("cannot read \(key)") }
        let privateKey = try RecoveryPrivateKey(pem: String(decoding: pem, as: UTF8.self))

        // Shares go only to a coordinator whose code is the expected one.
        let policy = try trust.build(environment: environment)
        let attested = try await CoordinatorAttestation.attest(address: address, policy: policy)
        for warning in attested.warnings { warn("warning: \(warning)") }
        var identity: ClientIdentity?
        if let userCert, let userKey {
            guard let cert = FileManager.default.contents(atPath: userCert), let key = FileManager.default.contents(atPath: userKey) else {
                throw CommandError("cannot read --user-cert/--user-key")
            }
            identity = ClientIdentity(certificatePEM: String(decoding: cert, as: UTF8.self), privateKeyPEM: String(decoding: key, as: UTF8.self))
        }
        let status = try await CoordinatorClient.with(address: address, trust: .pinnedRoot(attested.rootCertificatePEM), identity: identity) { client in
            let info = try await client.call(.GET, "\(API.prefix)/recovery", as: API.RecoveryInfo.self)
            guard let share = info.shares.first(where: { $0.keyFingerprint == privateKey.publicKey.fingerprint }) else {
                throw CommandError("this key is not one of the coordinator's recovery keys (\(info.shares.map(\.name).joined(separator: ", ")))")
            }
            let plaintext = try privateKey.decrypt(encapsulatedKey: share.encapsulatedKey.bytes, ciphertext: share.ciphertext.bytes)
            let submission = API.RecoverySubmission(name: share.name, share: Base64Bytes(plaintext))
            return try await client.call(.POST, "\(API.prefix)/recovery", json: submission, as: API.RecoveryStatus.self)
        }
        if status.recovered {
            print("recovered: the coordinator rebuilt its state key (\(status.received) of \(status.threshold) shares) and restarts normally")
        } else {
            print("share accepted: \(status.received) of \(status.threshold) shares; more recovery key holders must run veil recover")
        }
        if attested.claims.simulated { warn("warning: \(simulationWarning)") }
    }
}
