import Crypto
import Foundation
import Testing
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilManifest
import X509

/// A self-signed user certificate, as `openssl req -x509` would make it.
func userCertificate(_ name: String, validFrom: Date = Date() - 60, until: Date = Date() + 86400) throws -> (pem: String, der: [UInt8]) {
    let key = P256.Signing.PrivateKey()
    let subject = try DistinguishedName { CommonName(name) }
    let certificate = try Certificate(
        version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: validFrom, notValidAfter: until,
        issuer: subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: .init(), issuerPrivateKey: .init(key))
    return (try certificate.serializeAsPEM().pemString, try certificate.derBytes)
}

extension Coordinator {
    /// The manifest user behind a test certificate, as the authentication middleware finds it.
    func user(_ certificate: (pem: String, der: [UInt8])) throws -> AuthenticatedUser { try authenticate(certificate.der) }
}

@Suite struct UserAccessTests {
    let alice = try! userCertificate("alice")
    let bob = try! userCertificate("bob")
    let stranger = try! userCertificate("mallory")

    func manifest(_ fixture: Fixture, bobCertificate: String? = nil) -> [UInt8] {
        func json(_ text: String) -> String { String(decoding: try! JSONEncoder().encode(text), as: UTF8.self) }
        return Array("""
            {
              "Packages": { "app": { "Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))" } },
              "Services": { "cache": { "Package": "app", "Parameters": { "Env": { "API_KEY": "{{ raw .Secrets.apiKey }}" } } } },
              "Secrets": { "apiKey": { "Type": "plain", "UserDefined": true },
                           "dbKey": { "Type": "symmetric-key", "Size": 128, "UserDefined": true },
                           "generated": { "Type": "plain", "Size": 16 } },
              "Users": { "alice": { "Certificate": \(json(alice.pem)), "Roles": ["apiKeyAdmin"] },
                         "bob": { "Certificate": \(json(bobCertificate ?? bob.pem)), "Roles": ["reader"] } },
              "Roles": { "apiKeyAdmin": { "ResourceType": "Secrets", "ResourceNames": ["apiKey", "generated"], "Actions": ["ReadSecret", "WriteSecret"] },
                         "reader": { "ResourceType": "Secrets", "ResourceNames": ["apiKey", "dbKey", "generated"], "Actions": ["ReadSecret"] } },
              "Config": { "AllowSimulation": true }
            }
            """.utf8)
    }

    @Test func authorizedUserSetsASecretThatLaterActivationsGet() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(fixture))
        try await coordinator.setSecret("apiKey", value: Array("s3cret-value".utf8), by: coordinator.user(alice))
        let (request, _) = try fixture.request(coordinator)
        let env = try #require(try await coordinator.activate(request).env["API_KEY"])
        #expect(try env.assemble(servicePrivateKeyDER: []) == Array("s3cret-value".utf8))
        let read = try coordinator.readSecrets(["apiKey", "generated"], by: coordinator.user(bob))
        #expect(read["apiKey"]?.value?.bytes == Array("s3cret-value".utf8))
        #expect(read["generated"]?.value?.bytes.count == 16)
        // The value survives a restart (sealed state).
        let restarted = try await fixture.coordinator()
        #expect(try restarted.readSecrets(["apiKey"], by: restarted.user(alice))["apiKey"]?.value == read["apiKey"]?.value)
    }

    @Test func everyUnauthorizedRequestIsRefusedWithoutChangingState() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(fixture))
        let value = Array("never-stored".utf8)
        // Anonymous and unknown clients are refused by authentication, before any body is read (RequireUser).
        #expect(throws: CoordinatorError.unauthenticated("present a user's client certificate (veil --user-cert/--user-key)")) {
            try coordinator.authenticate(nil)
        }
        #expect(throws: CoordinatorError.unauthenticated("the client certificate belongs to no user of the manifest")) {
            try coordinator.authenticate(stranger.der)
        }
        await #expect(throws: CoordinatorError.forbidden(user: "alice", action: "WriteSecret", resource: "dbKey")) {
            try await coordinator.setSecret("dbKey", value: [UInt8](repeating: 1, count: 16), by: coordinator.user(alice))
        }
        await #expect(throws: CoordinatorError.forbidden(user: "bob", action: "WriteSecret", resource: "apiKey")) {
            try await coordinator.setSecret("apiKey", value: value, by: coordinator.user(bob))
        }
        #expect(throws: CoordinatorError.forbidden(user: "alice", action: "ReadSecret", resource: "dbKey")) {
            try coordinator.readSecrets(["apiKey", "dbKey"], by: coordinator.user(alice))
        }
        // Generated secrets cannot be overwritten, even with WriteSecret; values never appear in errors.
        await #expect {
            try await coordinator.setSecret("generated", value: value, by: coordinator.user(alice))
        } throws: { error in
            guard case CoordinatorError.invalidSecretValue(let name, let reason) = error else { return false }
            return name == "generated" && !reason.contains("never-stored")
        }
        #expect(try coordinator.readSecrets(["apiKey"], by: coordinator.user(bob))["apiKey"]?.value == nil, "nothing was set")
    }

    @Test func anExpiredUserCertificateIsRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let expired = try userCertificate("alice", validFrom: Date() - 7200, until: Date() - 3600)
        let text = String(decoding: manifest(fixture), as: UTF8.self).replacingOccurrences(
            of: String(decoding: try JSONEncoder().encode(alice.pem), as: UTF8.self),
            with: String(decoding: try JSONEncoder().encode(expired.pem), as: UTF8.self))
        try await coordinator.setManifest(Array(text.utf8))
        #expect {
            try coordinator.authenticate(expired.der)
        } throws: { error in
            guard case CoordinatorError.unauthenticated(let why) = error else { return false }
            return why.contains("not valid now")
        }
    }

    @Test func usersAndRolesAreValidated() async throws {
        let fixture = try Fixture()
        let good = String(decoding: manifest(fixture), as: UTF8.self)
        let cases: [(String, String, String)] = [
            ("\"Roles\": [\"apiKeyAdmin\"]", "\"Roles\": [\"nope\"]", "$.Users.alice.Roles[0]"),
            ("\"Actions\": [\"ReadSecret\"]", "\"Actions\": [\"UpdatePackage\"]", "$.Roles.reader.Actions[0]"),
            ("\"ResourceNames\": [\"apiKey\", \"dbKey\", \"generated\"]", "\"ResourceNames\": [\"missing\"]", "$.Roles.reader.ResourceNames[0]"),
            ("\"ResourceType\": \"Secrets\", \"ResourceNames\": [\"apiKey\", \"generated\"]", "\"ResourceType\": \"Vaults\", \"ResourceNames\": [\"apiKey\"]", "$.Roles.apiKeyAdmin.ResourceType"),
        ]
        for (original, replacement, path) in cases {
            let bad = good.replacingOccurrences(of: original, with: replacement)
            #expect(bad != good)
            #expect {
                try Manifest.parse(Array(bad.utf8))
            } throws: { error in
                (error as? ManifestValidationError)?.problems.contains { $0.path == path } == true
            }
        }
        let badCertificate = good.replacingOccurrences(of: "BEGIN CERTIFICATE-----\\n", with: "BEGIN CERTIFICATE-----\\nAAAA")
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(badCertificate.utf8)) }
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(manifest(fixture, bobCertificate: alice.pem)) }
    }
}
