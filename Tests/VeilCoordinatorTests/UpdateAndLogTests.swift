import Crypto
import Foundation
import Testing
import VeilAPI
import VeilClient
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilLauncher
import VeilManifest
import X509

@Suite struct ManifestUpdateTests {
    let alice = try! userCertificate("alice")
    let bob = try! userCertificate("bob")
    let carol = try! userCertificate("carol")

    func manifest(_ fixture: Fixture, securityVersion: Int = 1, extraSecret: Bool = false, certName: String = "cache") -> [UInt8] {
        func json(_ text: String) -> String { String(decoding: try! JSONEncoder().encode(text), as: UTF8.self) }
        return Array("""
            {
              "Packages": { "app": { "Kind": "simulated", "SignerID": "\(String(repeating: "cd", count: 32))", "ProductID": 7, "SecurityVersion": \(securityVersion) } },
              "Services": { "cache": { "Package": "app" } },
              "Secrets": { "kept": { "Type": "symmetric-key" }, "tls": { "Type": "cert-ecdsa", "Cert": { "Subject": { "CommonName": "\(certName)" } } }\(extraSecret ? ", \"added\": { \"Type\": \"plain\", \"Size\": 8 }" : "") },
              "Users": { "alice": { "Certificate": \(json(alice.pem)), "Roles": ["updater", "admin"] },
                         "bob": { "Certificate": \(json(bob.pem)), "Roles": ["admin"] },
                         "carol": { "Certificate": \(json(carol.pem)), "Roles": ["reader"] } },
              "Roles": { "updater": { "ResourceType": "Packages", "ResourceNames": ["app"], "Actions": ["UpdatePackage"] },
                         "admin": { "ResourceType": "Manifest", "Actions": ["UpdateManifest"] },
                         "reader": { "ResourceType": "Secrets", "ResourceNames": ["kept", "tls"], "Actions": ["ReadSecret"] } },
              "Config": { "AllowSimulation": true }
            }
            """.utf8)
    }

    func activate(_ coordinator: Coordinator, _ fixture: Fixture, securityVersion: UInt16) async throws -> API.ActivationResponse {
        let nonce = coordinator.issueNonce()
        let provider = SimulatedEvidenceProvider(
            key: fixture.platformKey, measurement: fixture.measurement, signer: [UInt8](repeating: 0xcd, count: 32), productID: 7,
            securityVersion: securityVersion)
        return try await coordinator.activate(try Launcher.activationRequest(service: "cache", nonce: nonce, key: P256.Signing.PrivateKey(), provider: provider))
    }

    @Test func securityVersionBumpAppliesAtOnceAndRefusesOlderServices() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(fixture))
        _ = try await activate(coordinator, fixture, securityVersion: 1)
        let update = Array(#"{"Packages": {"app": {"SecurityVersion": 2}}}"#.utf8)
        #expect(throws: CoordinatorError.self) { try coordinator.authenticate(nil) }
        await #expect(throws: CoordinatorError.forbidden(user: "bob", action: "UpdatePackage", resource: "app")) {
            try await coordinator.updatePackages(update, by: coordinator.user(bob))
        }
        try await coordinator.updatePackages(update, by: coordinator.user(alice))
        #expect(coordinator.manifest?.packages["app"]?.securityVersion == 2)
        await #expect(throws: CoordinatorError.self) { try await activate(coordinator, fixture, securityVersion: 1) }
        _ = try await activate(coordinator, fixture, securityVersion: 2)
        await #expect(throws: CoordinatorError.securityVersionLowered(package: "app", current: 2, proposed: 1)) {
            try await coordinator.updatePackages(Array(#"{"Packages": {"app": {"SecurityVersion": 1}}}"#.utf8), by: coordinator.user(alice))
        }
        await #expect(throws: CoordinatorError.self) {
            try await coordinator.updatePackages(Array(#"{"Packages": {"app": {"SecurityVersion": 3, "ProductID": 8}}}"#.utf8), by: coordinator.user(alice))
        }
        // Survives a restart, and `manifest get` shows it.
        let restarted = try await fixture.coordinator()
        #expect(restarted.manifest?.packages["app"]?.securityVersion == 2)
        #expect(String(decoding: restarted.manifest!.raw, as: UTF8.self).contains("\"SecurityVersion\" : 2"))
    }

    /// A TD or SEV-SNP guest has no SecurityVersion: raising one is refused saying so, not by a
    /// manifest that no longer validates.
    @Test func aPackageWithoutSecurityVersionsCannotBeRaised() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(Array("""
            {"Packages": {"guest": {"Kind": "snp", "Measurement": "\(String(repeating: "ab", count: 48))", "MinimumTCB": "any"}},
             "Services": {"vm": {"Package": "guest"}},
             "Users": {"alice": {"Certificate": \(String(decoding: try JSONEncoder().encode(alice.pem), as: UTF8.self)), "Roles": ["updater"]}},
             "Roles": {"updater": {"ResourceType": "Packages", "ResourceNames": ["guest"], "Actions": ["UpdatePackage"]}}}
            """.utf8))
        await #expect(throws: CoordinatorError.invalidUpdate(
            "package 'guest' is snp: only sgx and simulated packages have a SecurityVersion (a TD or an SEV-SNP guest is pinned by its measurements; change those with veil manifest update)"
        )) {
            try await coordinator.updatePackages(Array(#"{"Packages": {"guest": {"SecurityVersion": 2}}}"#.utf8), by: coordinator.user(alice))
        }
    }

    @Test func fullUpdateWaitsForEveryRequiredAcknowledgement() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(fixture))
        let before = try coordinator.readSecrets(["kept", "tls"], by: coordinator.user(carol))
        let proposal = manifest(fixture, securityVersion: 3, extraSecret: true, certName: "cache.example")

        await #expect(throws: CoordinatorError.forbidden(user: "carol", action: "UpdateManifest", resource: nil)) {
            try await coordinator.proposeUpdate(proposal, by: coordinator.user(carol))
        }
        let proposed = try await coordinator.proposeUpdate(proposal, by: coordinator.user(alice))
        #expect(!proposed.applied && proposed.acknowledgedBy == ["alice"] && proposed.required == 2)
        #expect(coordinator.manifest?.packages["app"]?.securityVersion == 1, "nothing changes before enough acknowledgements")
        _ = try await activate(coordinator, fixture, securityVersion: 1)
        #expect(try await coordinator.acknowledgeUpdate(proposal, by: coordinator.user(alice)).applied == false, "the proposer counts once")
        await #expect(throws: CoordinatorError.self) { try await coordinator.acknowledgeUpdate(manifest(fixture, securityVersion: 4), by: coordinator.user(bob)) }

        let applied = try await coordinator.acknowledgeUpdate(proposal, by: coordinator.user(bob))
        #expect(applied.applied && applied.acknowledgedBy == ["alice", "bob"])
        #expect(coordinator.manifest?.digest == Array(SHA256.hash(data: proposal)))
        await #expect(throws: CoordinatorError.self) { try await activate(coordinator, fixture, securityVersion: 1) }
        let after = try coordinator.readSecrets(["kept", "tls"], by: coordinator.user(carol))
        #expect(after["kept"] == before["kept"], "unchanged secrets keep their values")
        #expect(after["tls"]?.certificate != before["tls"]?.certificate, "a changed certificate is reissued")
        #expect(coordinator.updateStatus().pendingDigest == nil)
    }

    @Test func proposalsLoweringAVersionOrInvalidAreRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(fixture, securityVersion: 5))
        await #expect(throws: CoordinatorError.securityVersionLowered(package: "app", current: 5, proposed: 4)) {
            try await coordinator.proposeUpdate(manifest(fixture, securityVersion: 4), by: coordinator.user(alice))
        }
        await #expect(throws: CoordinatorError.self) { try await coordinator.proposeUpdate(Array("{}".utf8), by: coordinator.user(alice)) }
        await #expect(throws: CoordinatorError.noPendingUpdate) { try await coordinator.acknowledgeUpdate(manifest(fixture, securityVersion: 6), by: coordinator.user(bob)) }
    }
}

@Suite struct AuditLogTests {
    func history(_ count: Int) throws -> ([LogEntry], P256.Signing.PrivateKey) {
        let key = P256.Signing.PrivateKey()
        var log: [LogEntry] = []
        for index in 0..<count {
            try AuditLog.append(to: &log, event: "secretSet", user: "alice", detail: ["secret": "s\(index)"], key: key)
        }
        return (log, key)
    }

    @Test func verifiesAndNamesTheFirstBadEntry() async throws {
        let (log, key) = try history(6)
        #expect(try AuditLog.verify(log, rootKey: key.publicKey, head: AuditLog.head(log)) == 6)
        #expect(try AuditLog.verify(log, rootKey: key.publicKey, head: log[3].hash) == 4, "entries after the attested head are fine")

        var altered = log
        altered[2].detail["secret"] = "other"
        #expect(throws: AuditLog.VerificationError.badSignature(index: 2)) { try AuditLog.verify(altered, rootKey: key.publicKey, head: AuditLog.head(log)) }

        var resigned = log  // rewritten and re-signed by someone with another key
        let other = P256.Signing.PrivateKey()
        resigned[4].user = "mallory"
        resigned[4].signature = try other.signature(for: resigned[4].hash).derRepresentation.base64EncodedString()
        #expect(throws: AuditLog.VerificationError.badSignature(index: 4)) { try AuditLog.verify(resigned, rootKey: key.publicKey, head: AuditLog.head(log)) }

        var removed = log
        removed.remove(at: 1)
        #expect(throws: AuditLog.VerificationError.wrongIndex(position: 1, found: 2)) { try AuditLog.verify(removed, rootKey: key.publicKey, head: AuditLog.head(log)) }

        var spliced = log  // renumbered after a removal: the chain breaks
        spliced.remove(at: 1)
        for index in spliced.indices { spliced[index].index = index }
        #expect(throws: AuditLog.VerificationError.self) { try AuditLog.verify(spliced, rootKey: key.publicKey, head: AuditLog.head(log)) }

        let truncated = Array(log.prefix(3))
        #expect(throws: AuditLog.VerificationError.headNotFound(head: Hex.encode(AuditLog.head(log)), entries: 3)) {
            try AuditLog.verify(truncated, rootKey: key.publicKey, head: AuditLog.head(log))
        }
    }

    @Test func coordinatorEvidenceBindsTheHeadOfItsHistory() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest())
        #expect(coordinator.log.map(\.event) == ["manifestSet"])
        let nonce = [UInt8](repeating: 5, count: 32)
        let response = try coordinator.attestation(nonce: nonce)
        let policy = CoordinatorPolicy(measurements: [], verification: .init(allowSimulation: true, simulationKey: fixture.platformKey.publicKey))
        let attested = try CoordinatorAttestation.verify(response, nonce: nonce, policy: policy)
        #expect(attested.logHead == coordinator.log.last?.hash)
        try AuditLog.verify(coordinator.log, rootKey: coordinator.authority.rootKey.publicKey, head: attested.logHead)
        // A response claiming another head fails the evidence binding.
        var forged = response
        forged.logHead = Hex.encode(AuditLog.emptyHead)
        #expect(throws: CoordinatorAttestationError.self) { try CoordinatorAttestation.verify(forged, nonce: nonce, policy: policy) }
    }
}
