import Crypto
import Foundation
import Testing
import VeilAttestation
@testable import VeilCoordinator
import VeilManifest
import _CryptoExtras

@Suite struct ShamirTests {
    @Test func anyThresholdSubsetRebuildsTheSecretAndFewerDoNot() throws {
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

    @Test func lostSealingKeyIsRecoveredByAThresholdOfKeyHolders() throws {
        let fixture = try Fixture()
        let original = try fixture.coordinator()
        try original.setManifest(manifest(fixture))
        let root = original.rootCertificatePEM

        // New hardware: another sealing key. The state cannot be unsealed, recovery is needed.
        let newSealingKey = SymmetricKey(size: .bits256)
        let needed: RecoveryNeeded
        do {
            _ = try fixture.coordinator(sealingKey: newSealingKey)
            Issue.record("a foreign sealing key must not open the state")
            return
        } catch let error as RecoveryNeeded {
            needed = error
        }
        #expect(needed.data.threshold == 2 && needed.data.shares.count == 3)
        let store = SealedFileStore(directory: fixture.directory, sealingKey: newSealingKey)
        let recovery = try RecoveryCoordinator(
            store: store, data: needed.data, evidenceProvider: SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement),
            logger: .init(label: "test"))

        let rsaKey = try RecoveryPrivateKey(pem: rsa.pemRepresentation)
        let ecKey = try RecoveryPrivateKey(pem: ecA.pemRepresentation)
        let rsaShare = try share(needed.data, "rsa", rsaKey)
        // A share not made for that key, or bytes from someone without a recovery key, are refused.
        #expect(throws: CoordinatorError.self) { try recovery.submit(name: "ecA", share: rsaShare, by: nil) }
        #expect(throws: CoordinatorError.self) { try recovery.submit(name: "rsa", share: [1] + [UInt8](repeating: 7, count: 32), by: nil) }
        #expect(throws: CoordinatorError.self) { try recovery.submit(name: "mallory", share: rsaShare, by: nil) }
        // Another P-256 key cannot decrypt ecA's share.
        #expect(throws: RecoveryKeyError.cannotDecrypt) { try share(needed.data, "ecA", try RecoveryPrivateKey(pem: ecB.pemRepresentation)) }

        let first = try recovery.submit(name: "rsa", share: rsaShare, by: nil)
        #expect(first == API.RecoveryStatus(received: 1, threshold: 2, recovered: false))
        #expect(throws: (any Error).self, "fewer than k shares unlock nothing") { _ = try fixture.coordinator(sealingKey: newSealingKey) }

        let second = try recovery.submit(name: "ecA", share: try share(needed.data, "ecA", ecKey), by: nil)
        #expect(second.recovered)
        let restored = try fixture.coordinator(sealingKey: newSealingKey)
        #expect(restored.rootCertificatePEM == root, "same CA, secrets and manifest after recovery")
        #expect(restored.manifest?.digest == Array(SHA256.hash(data: manifest(fixture))))
        #expect(restored.log.map(\.event) == ["manifestSet", "recovered"])
        #expect(restored.log.last?.detail["keys"] == "ecA,rsa")
        #expect(try fixture.coordinator(sealingKey: newSealingKey).log.count == 2, "recorded once")
    }

    @Test func recoveryKeysAreValidated() throws {
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
