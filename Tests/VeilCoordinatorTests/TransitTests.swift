import Crypto
import Foundation
import Testing
import VeilAPI
import VeilCoordinator
import VeilCore
import VeilManifest
import SwiftASN1
import X509

/// The transit subset (Vault's API, for OpenBao's transit seal) on a real coordinator: the
/// caller is the service its activation certificate names, the manifest's `TransitKeys`
/// decide, versions rotate and old ones still decrypt, and every refusal says why.
@Suite struct TransitTests {
    struct Setup {
        let fixture: Fixture
        let coordinator: Coordinator

        init() async throws {
            fixture = try Fixture()
            coordinator = try await fixture.coordinator()
            try await coordinator.setManifest(Array("""
                {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))"}},
                 "Services": {"bao": {"Package": "app", "TransitKeys": ["unseal", "other"]}, "web": {"Package": "app"}},
                 "Config": {"AllowSimulation": true}}
                """.utf8))
        }

        /// The DER of `service`'s activation certificate.
        func certificate(_ service: String) async throws -> [UInt8] {
            let (request, _) = try fixture.request(coordinator, service: service)
            let response = try await coordinator.activate(request)
            let first = try #require(try PEMDocument.parseMultiple(pemString: response.certificateChain).first)
            return first.derBytes
        }
    }

    @Test func aListedServiceEncryptsDecryptsAndRotates() async throws {
        let setup = try await Setup()
        let bao = try await setup.certificate("bao")
        let (first, version) = try await setup.coordinator.transitEncrypt(Array("root key".utf8), key: "unseal", certificate: bao)
        #expect(version == 1 && first.hasPrefix("vault:v1:"))
        #expect(try setup.coordinator.transitDecrypt(first, key: "unseal", certificate: bao) == Array("root key".utf8))

        #expect(try await setup.coordinator.transitRotate(key: "unseal", certificate: bao) == 2)
        let (second, latest) = try await setup.coordinator.transitEncrypt(Array("root key".utf8), key: "unseal", certificate: bao)
        #expect(latest == 2 && second.hasPrefix("vault:v2:"))
        #expect(try setup.coordinator.transitDecrypt(first, key: "unseal", certificate: bao) == Array("root key".utf8), "version 1 still decrypts")
        let events = setup.coordinator.log.map(\.event)
        #expect(events.contains("transitKeyCreated") && events.contains("transitKeyRotated"), "\(events)")
    }

    @Test func everyRefusalSaysWhy() async throws {
        let setup = try await Setup()
        let coordinator = setup.coordinator
        let bao = try await setup.certificate("bao")
        let (sealed, _) = try await coordinator.transitEncrypt([1, 2, 3], key: "unseal", certificate: bao)

        let web = try await setup.certificate("web")
        #expect(throws: CoordinatorError.transitRefused(key: "unseal", reason: "service 'web' is not allowed to use it (the manifest lists 'bao')")) {
            try coordinator.transitDecrypt(sealed, key: "unseal", certificate: web)
        }
        await #expect(throws: CoordinatorError.self, "no certificate") { _ = try await coordinator.transitEncrypt([1], key: "unseal", certificate: nil) }
        let stranger = try await Setup()
        let foreign = try await stranger.certificate("bao")
        #expect(throws: CoordinatorError.unauthenticated("the client certificate was not issued by this coordinator at an activation")) {
            try coordinator.transitDecrypt(sealed, key: "unseal", certificate: foreign)
        }
        // A changed byte, and a ciphertext of one key presented for another.
        var parts = sealed.split(separator: ":").map(String.init)
        var bytes = Array(try #require(Data(base64Encoded: parts[2])))
        bytes[bytes.count - 1] ^= 1
        parts[2] = Data(bytes).base64EncodedString()
        #expect(throws: CoordinatorError.self) { try coordinator.transitDecrypt(parts.joined(separator: ":"), key: "unseal", certificate: bao) }
        _ = try await coordinator.transitEncrypt([9], key: "other", certificate: bao)
        let crossed = #expect(throws: CoordinatorError.self) { try coordinator.transitDecrypt(sealed, key: "other", certificate: bao) }
        #expect("\(crossed.map { "\($0)" } ?? "")".contains("does not open"))
        #expect(throws: CoordinatorError.self, "no version 7") { try coordinator.transitDecrypt("vault:v7:" + parts[2], key: "unseal", certificate: bao) }
        #expect(throws: CoordinatorError.self, "not vault:vN:") { try coordinator.transitDecrypt("garbage", key: "unseal", certificate: bao) }
    }

    /// With `Config.TrustDomain`, certificates and JWT-SVIDs name it, and the transit API takes them.
    @Test func theManifestsTrustDomainNamesTheServices() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(Array("""
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))"}},
             "Services": {"bao": {"Package": "app", "TransitKeys": ["unseal"]}}, "Config": {"AllowSimulation": true, "TrustDomain": "vault.example"}}
            """.utf8))
        let (request, _) = try fixture.request(coordinator, service: "bao")
        let chain = try await coordinator.activate(request).certificateChain
        let leaf = try Certificate(derEncoded: try #require(try PEMDocument.parseMultiple(pemString: chain).first).derBytes)
        #expect(try #require(try leaf.extensions.subjectAlternativeNames).contains(.uniformResourceIdentifier("spiffe://vault.example/service/bao")))
        let (sealed, _) = try await coordinator.transitEncrypt([7], key: "unseal", certificate: try leaf.derBytes)
        #expect(try coordinator.transitDecrypt(sealed, key: "unseal", certificate: try leaf.derBytes) == [7])
        #expect(try coordinator.jwtSVID(audience: ["x"], certificate: try leaf.derBytes).spiffeID == "spiffe://vault.example/service/bao")

        let invalid = #expect(throws: ManifestValidationError.self) {
            try Manifest.parse(Array(#"{"Packages": {}, "Services": {}, "Config": {"TrustDomain": "Vault.Example"}}"#.utf8))
        }
        #expect("\(invalid.map { "\($0)" } ?? "")".contains("$.Config.TrustDomain"))
    }

    @Test func transitKeyNamesAreValidated() {
        let manifest = """
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(String(repeating: "ab", count: 32))"}},
             "Services": {"bao": {"Package": "app", "TransitKeys": ["ok", "no/slash", ".."]}}, "Config": {"AllowSimulation": true}}
            """
        let error = #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(manifest.utf8)) }
        let text = "\(error.map { "\($0)" } ?? "")"
        #expect(text.contains("TransitKeys[1]") && text.contains("TransitKeys[2]") && !text.contains("TransitKeys[0]"), "\(text)")
    }
}
