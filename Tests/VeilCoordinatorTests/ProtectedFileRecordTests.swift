import Crypto
import Foundation
import Testing
import VeilAPI
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilImage
import VeilManifest
import VeilImageFormat

/// The coordinator's side of protected files: initial user-defined key, header checks and
/// the recorded version per file (rollback protection across restarts).
@Suite struct ProtectedFileRecordTests {
    let key = SymmetricKey(size: .bits256)
    let path = "/data/db"

    func manifest(_ fixture: Fixture) -> [UInt8] {
        Array("""
            {
              "Packages": { "app": { "Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))" } },
              "Services": { "cache": { "Package": "app", "ProtectedFilesKey": "filesKey" } },
              "Secrets": { "filesKey": { "Type": "symmetric-key", "Size": 256, "UserDefined": true } },
              "Config": { "AllowSimulation": true }
            }
            """.utf8)
    }

    func header(version: UInt64, content: String = "rows", key: SymmetricKey? = nil, path: String? = nil) throws -> API.ProtectedFileHeader {
        let sealed = try ProtectedFile.seal(Array(content.utf8), path: path ?? self.path, secret: key ?? self.key, version: version)
        return API.ProtectedFileHeader(path: self.path, header: Base64Bytes(sealed.prefix(ProtectedFile.headerSize)))
    }

    func activate(_ coordinator: Coordinator, _ fixture: Fixture, _ files: [API.ProtectedFileHeader]) async throws -> API.ActivationResponse {
        var (request, _) = try fixture.request(coordinator)
        request.protectedFiles = files
        return try await coordinator.activate(request)
    }

    func keyBytes() -> [UInt8] { key.withUnsafeBytes { Array($0) } }

    @Test func keyIsReleasedOnlyAfterHeadersCheckAndVersionsPersistAcrossRestart() async throws {
        let fixture = try Fixture()
        var coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(fixture), userDefinedSecrets: ["filesKey": keyBytes()])
        let response = try await activate(coordinator, fixture, [try header(version: 2)])
        #expect(response.protectedFilesKey?.bytes == keyBytes())

        coordinator = try await fixture.coordinator()  // restart: the record is sealed state
        await #expect(throws: CoordinatorError.protectedFileRollback(path: path, recorded: 2, presented: 1)) {
            try await activate(coordinator, fixture, [try header(version: 1)])
        }
        await #expect(throws: CoordinatorError.protectedFileForked(path: path, version: 2)) {
            try await activate(coordinator, fixture, [try header(version: 2, content: "other rows")])
        }
        _ = try await activate(coordinator, fixture, [try header(version: 3)])
        await #expect(throws: CoordinatorError.protectedFileRollback(path: path, recorded: 3, presented: 2)) {
            try await activate(coordinator, fixture, [try header(version: 2)])
        }
    }

    @Test func headersFromAnotherKeyOrPathOrTamperedAreRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(fixture), userDefinedSecrets: ["filesKey": keyBytes()])
        await #expect(throws: CoordinatorError.protectedFileRejected(path: path, reason: "\(ProtectedFile.Error.wrongKey)")) {
            try await activate(coordinator, fixture, [try header(version: 9, key: SymmetricKey(size: .bits256))])
        }
        await #expect(throws: CoordinatorError.self) { try await activate(coordinator, fixture, [try header(version: 9, path: "/other")]) }
        var tampered = try header(version: 1)
        tampered.header.bytes[15] = 99  // version field
        await #expect(throws: CoordinatorError.protectedFileRejected(path: path, reason: "\(ProtectedFile.Error.headerTampered)")) {
            try await activate(coordinator, fixture, [tampered])
        }
        // None of the refusals recorded anything: version 1 is still acceptable.
        _ = try await activate(coordinator, fixture, [try header(version: 1)])
    }

    @Test func userDefinedSecretValuesAreValidated() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        await #expect(throws: CoordinatorError.self) { try await coordinator.setManifest(manifest(fixture), userDefinedSecrets: ["filesKey": [1, 2, 3]]) }
        await #expect(throws: CoordinatorError.self) { try await coordinator.setManifest(manifest(fixture), userDefinedSecrets: ["nope": keyBytes()]) }
        #expect(coordinator.manifest == nil, "nothing set by a refused request")
        // Without the value, the key cannot be released.
        try await coordinator.setManifest(manifest(fixture))
        await #expect(throws: CoordinatorError.self) { try await activate(coordinator, fixture, [try header(version: 1)]) }
        await #expect(throws: CoordinatorError.manifestAlreadySet(updatable: false)) {
            try await coordinator.setManifest(manifest(fixture), userDefinedSecrets: ["filesKey": keyBytes()])
        }
    }

    @Test func manifestRefusesAProtectedFilesKeyThatIsNotA256BitKey() async throws {
        let text = """
            { "Packages": { "p": { "Kind": "simulated" } }, "Services": { "s": { "Package": "p", "ProtectedFilesKey": "k" } },
              "Secrets": { "k": { "Type": "plain", "Size": 32 } }, "Config": { "AllowSimulation": true } }
            """
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(text.utf8)) }
        let missing = text.replacingOccurrences(of: "\"ProtectedFilesKey\": \"k\"", with: "\"ProtectedFilesKey\": \"absent\"")
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(missing.utf8)) }
    }
}
