import Crypto
import Foundation
import Testing
import VeilAttestation
@testable import VeilCoordinator
import VeilManifest
import _CryptoExtras
import VeilCore

@Suite struct ShamirTests {
    @Test func anyThresholdSubsetRebuildsTheSecretAndFewerDoNot() async throws {
        let secret = SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) }
        let shares = Shamir.split(secret, threshold: 3, count: 5)
        #expect(Set(shares.map(\.x)).count == 5)
        for a in 0..<5 { for b in (a + 1)..<5 { for c in (b + 1)..<5 {
            #expect(Shamir.combine([shares[a], shares[b], shares[c]]) == secret)
        } } }
        #expect(Shamir.combine(Array(shares.prefix(2))) != secret)
        #expect(Shamir.combine([shares[0], shares[0]]) == nil, "duplicate points are refused")
        #expect(Shamir.split(secret, threshold: 1, count: 3).allSatisfy { Shamir.combine([$0]) == secret })
    }

    @Test func fieldArithmeticIsTheAESField() {
        #expect(Shamir.multiply(0x57, 0x83) == 0xc1)  // FIPS-197 §4.2 example
        for a in 1...255 { #expect(Shamir.multiply(Shamir.divide(UInt8(a), 0x53), 0x53) == UInt8(a)) }
    }
}

@Suite struct RecoveryTests {
    let rsa = try! _RSA.Encryption.PrivateKey(keySize: .bits2048)
    let ecA = P256.KeyAgreement.PrivateKey()
    let ecB = P256.KeyAgreement.PrivateKey()

    func manifest(_ fixture: Fixture) -> [UInt8] {
        func json(_ text: String) -> String { String(decoding: try! JSONEncoder().encode(text), as: UTF8.self) }
        return Array("""
            { "Packages": { "p": { "Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))" } },
              "Services": { "s": { "Package": "p" } },
              "Secrets": { "k": { "Type": "symmetric-key" } },
              "RecoveryKeys": { "rsa": \(json(rsa.publicKey.pemRepresentation)), "ecA": \(json(ecA.publicKey.pemRepresentation)),
                                "ecB": \(json(ecB.publicKey.pemRepresentation)) },
              "Config": { "AllowSimulation": true, "RecoveryThreshold": 2 } }
            """.utf8)
    }

    func share(_ data: RecoveryData, _ name: String, _ key: RecoveryPrivateKey) throws -> [UInt8] {
        let entry = try #require(data.shares.first { $0.name == name })
        return try key.decrypt(encapsulatedKey: Array(Data(base64Encoded: entry.encapsulatedKey)!), ciphertext: Array(Data(base64Encoded: entry.ciphertext)!))
    }

    @Test func lostSealingKeyIsRecoveredByAThresholdOfKeyHolders() async throws {
        let fixture = try Fixture()
        let original = try await fixture.coordinator()
        try await original.setManifest(manifest(fixture))
        let root = original.rootCertificatePEM

        // New hardware: another sealing key. The state cannot be unsealed, recovery is needed.
        let newSealingKey = SymmetricKey(size: .bits256)
        let data: RecoveryData
        do {
            _ = try await fixture.coordinator(sealingKey: newSealingKey)
            Issue.record("a foreign sealing key must not open the state")
            return
        } catch Coordinator.OpenError.needsStateKey(let reason, let recovery?) {
            #expect(reason == .noStateKey)
            data = recovery
        }
        #expect(data.threshold == 2 && data.shares.count == 3)
        let recovery = try RecoveryCoordinator(
            store: FileStateStore(directory: fixture.directory), vault: StateVault(directory: fixture.directory, sealingKey: newSealingKey),
            data: data, reason: "test", evidenceProvider: SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement),
            logger: .init(label: "test"))

        let rsaKey = try RecoveryPrivateKey(pem: rsa.pemRepresentation)
        let ecKey = try RecoveryPrivateKey(pem: ecA.pemRepresentation)
        let rsaShare = try share(data, "rsa", rsaKey)
        // A share not made for that key, or bytes from someone without a recovery key, are refused.
        await #expect(throws: CoordinatorError.self) { try await recovery.submit(name: "ecA", share: rsaShare, by: [UInt8]?.none) }
        await #expect(throws: CoordinatorError.self) { try await recovery.submit(name: "rsa", share: [1] + [UInt8](repeating: 7, count: 32), by: [UInt8]?.none) }
        await #expect(throws: CoordinatorError.self) { try await recovery.submit(name: "mallory", share: rsaShare, by: [UInt8]?.none) }
        // Another P-256 key cannot decrypt ecA's share.
        #expect(throws: RecoveryKeyError.cannotDecrypt) { try share(data, "ecA", try RecoveryPrivateKey(pem: ecB.pemRepresentation)) }

        let first = try await recovery.submit(name: "rsa", share: rsaShare, by: [UInt8]?.none)
        #expect((first.received, first.threshold, first.recovered) == (1, 2, false))
        await #expect(throws: (any Error).self, "fewer than k shares unlock nothing") { _ = try await fixture.coordinator(sealingKey: newSealingKey) }

        let second = try await recovery.submit(name: "ecA", share: try share(data, "ecA", ecKey), by: [UInt8]?.none)
        #expect(second.recovered)
        let restored = try await fixture.coordinator(sealingKey: newSealingKey)
        try await restored.recordRecovery(recovery)
        #expect(restored.rootCertificatePEM == root, "same CA, secrets and manifest after recovery")
        #expect(restored.manifest?.digest == Array(SHA256.hash(data: manifest(fixture))))
        #expect(restored.log.map(\.event) == ["manifestSet", "recovered"])
        #expect(restored.log.last?.detail["keys"] == "ecA,rsa")
        #expect(try await fixture.coordinator(sealingKey: newSealingKey).log.count == 2, "recorded in the stored history")
    }

    @Test func recoveryKeysAreValidated() async throws {
        let fixture = try Fixture()
        let text = String(decoding: manifest(fixture), as: UTF8.self)
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(text.replacingOccurrences(of: "\"RecoveryThreshold\": 2", with: "\"RecoveryThreshold\": 4").utf8)) }
        let weak = try _RSA.Encryption.PrivateKey(unsafeKeySize: .init(bitCount: 1024))
        let weakManifest = text.replacingOccurrences(
            of: String(decoding: try JSONEncoder().encode(rsa.publicKey.pemRepresentation), as: UTF8.self),
            with: String(decoding: try JSONEncoder().encode(weak.publicKey.pemRepresentation), as: UTF8.self))
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(weakManifest.utf8)) }
    }
}
