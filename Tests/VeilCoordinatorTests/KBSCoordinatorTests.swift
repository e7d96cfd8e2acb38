import Crypto
import Foundation
import Testing
import VeilAttestation
import VeilCore
import VeilJOSE
import VeilManifest

@testable import VeilCoordinator

/// The key-broker core on a coordinator in-process: what the manifest decides, init-data, and
/// the evidence shapes of Confidential Containers' attesters.
@Suite struct KBSCoordinatorTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .appendingPathComponent("../shared/testdata/kbs").standardized.path
    let fixture: Fixture
    let alice = try! userCertificate("alice")

    init() throws { fixture = try Fixture() }

    func manifest(resource: Bool) -> [UInt8] {
        func json(_ text: String) -> String { String(decoding: try! JSONEncoder().encode(text), as: UTF8.self) }
        let resources = resource ? #""default/key/db": "{{ hex .Secrets.db }}""# : ""
        return Array("""
            {"Packages": {"pod": {"Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))"}},
             "Services": {"pod": {"Package": "pod", "KBS": {"Resources": {\(resources)}}}},
             "Secrets": {"db": {"Type": "symmetric-key"}},
             "Users": {"alice": {"Certificate": \(json(alice.pem)), "Roles": ["admin"]}},
             "Roles": {"admin": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}},
             "Config": {"AllowSimulation": true}}
            """.utf8)
    }

    /// auth → attest with simulated evidence binding a fresh EC key, as a Kata guest would.
    func attest(_ coordinator: Coordinator, initData: JSONValue? = nil) async throws -> KBSGrant {
        let session = try coordinator.kbsAuth(Array(#"{"version": "0.4.0", "tee": "veil-simulated", "extra-params": ""}"#.utf8))
        var jwk = JWEPublicKey.jwk(of: P256.KeyAgreement.PrivateKey().publicKey).objectValue!
        jwk["alg"] = .string("ECDH-ES+A256KW")
        let bound = JSONValue.object(["tee-pubkey": .object(jwk), "nonce": .string(session.nonce), "additional-evidence": .string("")])
        let reportData = Array(SHA384.hash(data: try JCS.encode(bound))) + [UInt8](repeating: 0, count: 16)
        let evidence = try SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement).evidence(reportData: reportData)
        var payload: [String: JSONValue] = [
            "runtime-data": .object(["nonce": .string(session.nonce), "tee-pubkey": .object(jwk)]),
            "tee-evidence": .object(["primary_evidence": try JSONValue.parse(evidence.data), "additional_evidence": .string("")]),
        ]
        payload["init-data"] = initData
        return try await coordinator.kbsAttest(sessionID: session.sessionID, body: try JSONValue.object(payload).serialized()).grant
    }

    /// Veil's own clients (`veil run`) send Veil's evidence envelope under the `tee` name `veil`;
    /// the image they claim in a confidential VM rides in the additional evidence.
    @Test func veilEvidenceEnvelopesAttestAndNameTheirImageInTheAdditionalEvidence() async throws {
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(resource: true))
        func attest(envelope: (Evidence) -> JSONValue) async throws -> KBSGrant {
            let session = try coordinator.kbsAuth(Array(#"{"version": "0.4.0", "tee": "veil", "extra-params": ""}"#.utf8))
            var jwk = JWEPublicKey.jwk(of: P256.KeyAgreement.PrivateKey().publicKey).objectValue!
            jwk["alg"] = .string("ECDH-ES+A256KW")
            let bound = JSONValue.object(["tee-pubkey": .object(jwk), "nonce": .string(session.nonce), "additional-evidence": .string("")])
            let reportData = Array(SHA384.hash(data: try JCS.encode(bound))) + [UInt8](repeating: 0, count: 16)
            let evidence = try SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement).evidence(reportData: reportData)
            let payload = JSONValue.object([
                "runtime-data": .object(["nonce": .string(session.nonce), "tee-pubkey": .object(jwk)]),
                "tee-evidence": .object(["primary_evidence": envelope(evidence), "additional_evidence": .string("")]),
            ])
            return try await coordinator.kbsAttest(sessionID: session.sessionID, body: try payload.serialized()).grant
        }
        let grant = try await attest { .object(["format": .string($0.format), "data": .string(Data($0.data).base64EncodedString())]) }
        #expect(grant.service == "pod" && grant.tee == "veil")
        #expect(!(try await coordinator.kbsRelease("default/key/db", to: grant)).isEmpty)
        await #expect(throws: KBSError.malformedEvidence(#"veil evidence is Veil's envelope {"format", "data": standard base64}"#)) {
            try await attest { .object(["format": .string($0.format), "data": .string("not base64!")]) }
        }

        let image = [UInt8](repeating: 7, count: 32)
        #expect(try KBSAttestation.imageMeasurement(in: #"{"veil-image-measurement":"\#(Hex.encode(image))"}"#) == image)
        #expect(try KBSAttestation.imageMeasurement(in: "") == nil)
        #expect(try KBSAttestation.imageMeasurement(in: #"{"other-attester":"its own evidence"}"#) == nil)
        for bad in ["abcd", String(repeating: "00", count: 32), String(repeating: "zz", count: 32)] {
            #expect(throws: KBSError.self) { try KBSAttestation.imageMeasurement(in: #"{"veil-image-measurement":"\#(bad)"}"#) }
        }
    }

    @Test func aManifestUpdateThatRemovesTheResourceRefusesTheNextRelease() async throws {
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(resource: true))
        let grant = try await attest(coordinator)
        let released = try await coordinator.kbsRelease("default/key/db", to: grant)
        #expect(released == Array(Hex.encode(coordinator.current.state.secrets["db"]!.bytes!).utf8))

        let update = try await coordinator.proposeUpdate(manifest(resource: false), by: coordinator.user(alice))
        #expect(update.applied)
        await #expect(throws: KBSError.resourceNotFound("default/key/db")) { try await coordinator.kbsRelease("default/key/db", to: grant) }
        #expect(coordinator.log.filter { $0.event == "kbsResourceReleased" }.count == 1)
    }

    @Test func simulatedEvidenceNeedsAllowSimulationAndCannotCarryInitData() async throws {
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(manifest(resource: true))
        let initData = JSONValue.object(["format": .string("toml"), "body": .string("algorithm = \"sha256\"\nversion = \"0.1.0\"\n")])
        await #expect(throws: KBSError.initDataRejected("a simulated TEE has no register that binds init-data")) {
            _ = try await attest(coordinator, initData: initData)
        }
        let strict = try await Fixture().coordinator()
        try await strict.setManifest(Array("""
            {"Packages": {"td": {"Kind": "tdx", "MRTD": "\(String(repeating: "22", count: 48))"}},
             "Services": {"td": {"Package": "td", "KBS": {"Resources": {}}}}}
            """.utf8))
        await #expect(throws: KBSError.evidenceRejected(.simulationNotAllowed)) { _ = try await attest(strict) }
    }

    @Test func initDataDigestIsOverTheRawTOMLAndBindsMRCONFIGID() throws {
        let toml = try String(contentsOfFile: Self.fixtures + "/initdata/simple-init-data.toml", encoding: .utf8)
        let initData = try InitData(format: "toml", body: toml)
        // The fixture README's SHA-256 of these exact bytes.
        #expect(Hex.encode(initData.digest) == "df0973f1d4ab240854df02e467d1f30a5aef52b9c126beba333055e346065c8c")
        #expect(throws: KBSError.self) { try InitData(format: "json", body: "{}") }
        #expect(throws: KBSError.self) { try InitData(format: "toml", body: "algorithm = \"md5\"\n") }

        var claims = Claims(tee: .tdx, measurement: [UInt8](repeating: 1, count: 48), reportData: [UInt8](repeating: 0, count: 64), simulated: false)
        claims.tdx = TDXMeasurements(rtmrs: [], mrConfigID: initData.fitted(to: 48), mrOwner: [], mrOwnerConfig: [], mrSeam: [])
        #expect(initData.fitted(to: 48) == initData.digest + [UInt8](repeating: 0, count: 16))
        try Coordinator.checkInitData(initData, claims: claims, pinned: initData.digest)
        #expect(throws: KBSError.self) { try Coordinator.checkInitData(initData, claims: claims, pinned: [UInt8](repeating: 9, count: 32)) }
        #expect(throws: KBSError.self) { try Coordinator.checkInitData(nil, claims: claims, pinned: initData.digest) }
        claims.tdx = TDXMeasurements(rtmrs: [], mrConfigID: [UInt8](repeating: 0, count: 48), mrOwner: [], mrOwnerConfig: [], mrSeam: [])
        #expect(throws: KBSError.self) { try Coordinator.checkInitData(initData, claims: claims, pinned: nil) }
    }

    /// The SNP attester's serde report becomes the exact bytes the firmware signed (the
    /// signature itself is checked end to end in KBSTests).
    @Test func snpAttesterEvidenceRebuildsTheReport() throws {
        let primary = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/evidence/snp/evidence.json"))))
        let evidence = try TrusteeEvidence.evidence(tee: "snp", primary: primary)
        let report = try #require(SNPEvidence.reportNeedingChain(evidence))
        func bytes(_ name: String) -> [UInt8] { primary["attestation_report"]![name]!.arrayValue!.map { UInt8($0.numberValue!) } }
        #expect(report.measurement == bytes("measurement") && report.chipID == bytes("chip_id") && report.reportData == bytes("report_data"))
        #expect(report.version == 3 && report.policy.raw == 196608)
        #expect(report.currentFirmware.major == 1 && report.currentFirmware.minor == 55 && report.currentFirmware.build == 40)
        var broken = primary.objectValue!
        var fields = broken["attestation_report"]!.objectValue!
        fields["measurement"] = .array([.number(1)])
        broken["attestation_report"] = .object(fields)
        #expect(throws: KBSError.self) { try TrusteeEvidence.evidence(tee: "snp", primary: .object(broken)) }
        #expect(throws: KBSError.unsupportedTEE("az-snp-vtpm")) { try TrusteeEvidence.evidence(tee: "az-snp-vtpm", primary: primary) }
    }

    @Test func manifestValidationExplainsKBSBlocks() throws {
        func problems(_ services: String) -> [String] {
            let text = """
                {"Packages": {"a": {"Kind": "simulated", "Measurement": "\(String(repeating: "11", count: 32))"},
                              "t": {"Kind": "tdx", "MRTD": "\(String(repeating: "22", count: 48))", "ImageMeasurement": "\(String(repeating: "33", count: 32))"}},
                 "Services": \(services), "Secrets": {"s": {"Type": "symmetric-key"}}, "Config": {"AllowSimulation": true}}
                """
            do {
                _ = try Manifest.parse(Array(text.utf8))
                return []
            } catch {
                return error.problems.map(\.description)
            }
        }
        #expect(problems(#"{"x": {"Package": "a", "KBS": {"Resources": {"r/t/g": "{{ raw .Secrets.s }}"}}}}"#).isEmpty)
        #expect(problems(#"{"x": {"Package": "a", "KBS": {"Resources": {"r/t": "{{ raw .Secrets.s }}"}}}}"#).joined().contains("three segments"))
        #expect(problems(#"{"x": {"Package": "a", "KBS": {"Resources": {"r/../g": "{{ raw .Secrets.s }}"}}}}"#).joined().contains("'..'"))
        #expect(problems(#"{"x": {"Package": "a", "KBS": {"Resources": {"r/t/g": "{{ pem .Veil.Service.Cert }}"}}}}"#).joined().contains("no Veil certificate"))
        #expect(problems(#"{"x": {"Package": "a", "KBS": {"Resources": {}}}, "y": {"Package": "a", "KBS": {"Resources": {}}}}"#).joined().contains("already serves KBS clients"))
        #expect(problems(#"{"x": {"Package": "t", "KBS": {"Resources": {}}}}"#).isEmpty, "a package pinning an image serves Veil's KBS clients")
        #expect(problems(#"{"x": {"Package": "a", "KBS": {"InitDataDigest": "abcd"}}}"#).joined().contains("InitDataDigest"))
    }
}
