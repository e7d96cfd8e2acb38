import Crypto
import Foundation
import Logging
import Testing
@testable import VeilClient
import VeilAttestation
@testable import VeilCoordinator
@testable import VeilLauncher
import VeilManifest
import X509
import VeilCore

/// Coordinator identity, stateless nonces, mandatory policies and the history encoding.
@Suite struct TrustHardeningTests {
    @Test func onlyTheCoordinatorTLSCAMakesACoordinatorIdentity() async throws {
        let authority = try CertificateAuthority.generate()
        let key = P256.Signing.PrivateKey()
        let tls = try authority.issueCoordinatorTLS(publicKey: .init(key.publicKey), dnsNames: ["localhost"], ipAddresses: [[127, 0, 0, 1]], validFor: 60)
        try await CoordinatorIdentityCheck.verify([try tls.derBytes, authority.coordinatorCADER], root: authority.root)

        // A workload certificate with the very same names, from the workload intermediate.
        let workload = try authority.issueLeaf(publicKey: .init(key.publicKey), commonName: "Veil Coordinator", dnsNames: ["localhost"], ipAddresses: [[127, 0, 0, 1]], validFor: 60)
        await #expect(throws: CoordinatorIdentityError.self) {
            try await CoordinatorIdentityCheck.verify([try workload.derBytes, authority.intermediateDER], root: authority.root)
        }
        // The coordinator's chain under another coordinator's root, and an expired one.
        await #expect(throws: CoordinatorIdentityError.self) {
            try await CoordinatorIdentityCheck.verify([try tls.derBytes, authority.coordinatorCADER], root: try CertificateAuthority.generate().root)
        }
        let expired = try authority.issueCoordinatorTLS(publicKey: .init(key.publicKey), dnsNames: [], ipAddresses: [], validFor: 1, now: Date() - 3600)
        await #expect(throws: CoordinatorIdentityError.self) {
            try await CoordinatorIdentityCheck.verify([try expired.derBytes, authority.coordinatorCADER], root: authority.root)
        }
        // Services carry their identity as a URI.
        let service = try authority.issueServiceLeaf(publicKey: .init(key.publicKey), service: "cache", validFor: 60)
        let uris = try #require(try service.extensions.subjectAlternativeNames).compactMap { name -> String? in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        }
        #expect(uris == ["spiffe://\(authority.coordinatorID).veil/service/cache"])
        #expect(CoordinatorIdentity.service(fromURI: uris[0])?.service == "cache")
        #expect(CoordinatorIdentity.service(fromURI: uris[0])?.trustDomain == "\(authority.coordinatorID).veil")
        // Certificates issued before the SPIFFE IDs count as the default trust domain; other shapes name no service.
        #expect(CoordinatorIdentity.service(fromURI: "veil://abc/service/cache")?.trustDomain == "abc.veil")
        #expect(CoordinatorIdentity.service(fromURI: "spiffe://example.org/service/cache")?.trustDomain == "example.org")
        let named = try authority.issueServiceLeaf(publicKey: .init(key.publicKey), service: "cache", trustDomain: "shop.example", validFor: 60)
        #expect(try #require(try named.extensions.subjectAlternativeNames).contains(.uniformResourceIdentifier("spiffe://shop.example/service/cache")))
        for other in ["spiffe://Example.org/service/cache", "spiffe:///service/cache", "spiffe://abc.veil/ns/cache", "spiffe://abc.veil/service/", "https://abc.veil/service/cache"] {
            #expect(CoordinatorIdentity.service(fromURI: other) == nil, "\(other)")
        }
    }

    @Test func aNonceFloodLeavesNoStateAndARealLauncherStillActivates() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest())
        // More than the 100,000 pending nonces that used to stop every activation.
        var last: [UInt8] = []
        for _ in 0..<150_000 { last = coordinator.issueNonce() }
        #expect(last.count == 32)
        let (request, _) = try fixture.request(coordinator)
        #expect(try await coordinator.activate(request).simulated)
        // Still single use, and bound to the replica (and the run) that issued it.
        await #expect(throws: CoordinatorError.unknownNonce) { try await coordinator.activate(request) }
        let other = try await fixture.coordinator()
        let (foreign, _) = try fixture.request(coordinator)
        await #expect(throws: CoordinatorError.unknownNonce) { try await other.activate(foreign) }
        var (tampered, _) = try fixture.request(coordinator)
        var bytes = Hex.decode(tampered.nonce)!
        bytes[5] ^= 1
        tampered.nonce = Hex.encode(bytes)
        await #expect(throws: CoordinatorError.unknownNonce) { try await coordinator.activate(tampered) }
    }

    @Test func hardwareEvidenceNeedsAnExpectedMeasurementAndSha256PrefixesParse() throws {
        let directory = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("shared/testdata/attestation/go-sev-guest").path
        let report = Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/snp_report_milan.bin")))
        let claims = try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true)).verify(
            report: report, vcek: Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/vcek_milan.der"))),
            chainPEM: try String(contentsOfFile: "\(directory)/ask_ark_milan.pem", encoding: .utf8), at: try Date("2022-09-24T01:00:00Z", strategy: .iso8601)).1
        #expect(!claims.simulated)
        let open = try CoordinatorPolicy.build(expect: [], policyFile: nil, allowSimulation: false, simulationKey: nil, acceptAnyMeasurement: false)
        #expect(throws: CoordinatorAttestationError.self) { try open.check(claims) }
        // This Milan report's guest policy allows debugging: refused even when pinned, unless
        // debug is allowed explicitly (changed with the debug rule for coordinators, issue 22).
        #expect(claims.debug)
        let pinned = try CoordinatorPolicy.build(
            expect: ["sha256:" + Hex.encode(claims.measurement)], policyFile: nil, allowSimulation: false, simulationKey: nil, acceptAnyMeasurement: false)
        #expect(throws: CoordinatorAttestationError.self) { try pinned.check(claims) }
        let pinnedDebug = try CoordinatorPolicy.build(
            expect: ["sha256:" + Hex.encode(claims.measurement)], policyFile: nil, allowSimulation: false, simulationKey: nil, acceptAnyMeasurement: false,
            allowDebug: true)
        try pinnedDebug.check(claims)
        let insecure = try CoordinatorPolicy.build(
            expect: [], policyFile: nil, allowSimulation: false, simulationKey: nil, acceptAnyMeasurement: true, allowDebug: true)
        try insecure.check(claims)
        #expect(throws: CoordinatorAttestationError.self) {
            try CoordinatorPolicy.build(expect: ["sha256:nothex"], policyFile: nil, allowSimulation: false, simulationKey: nil, acceptAnyMeasurement: false)
        }
        // Simulated evidence without an expectation is allowed (development), with its key.
        var simulated = claims
        simulated.simulated = true
        simulated.debug = false  // simulated reports carry no debug bit
        try open.check(simulated)
    }

    /// Version 2 entries hash a defined byte encoding; version 1 entries (Foundation JSON)
    /// stay verifiable, also mixed in one chain.
    @Test func historyEntriesHashADefinedEncoding() throws {
        var entry = LogEntry(index: 1, time: "2026-01-02T03:04:05Z", event: "secretSet", user: "al", detail: ["b": "2", "a": "1"], previous: "00")
        var expected = Array("veil-log-v2\0".utf8)
        expected += [0, 0, 0, 0, 0, 0, 0, 1]
        for text in ["2026-01-02T03:04:05Z", "secretSet"] { expected += [0, 0, 0, UInt8(text.utf8.count)] + Array(text.utf8) }
        expected += [1, 0, 0, 0, 2] + Array("al".utf8)
        expected += [0, 0, 0, 2]
        for text in ["a", "1", "b", "2", "00"] { expected += [0, 0, 0, UInt8(text.utf8.count)] + Array(text.utf8) }
        #expect(entry.canonicalEncoding == expected)
        #expect(entry.hash == Array(SHA256.hash(data: expected)))
        entry.user = nil
        #expect(entry.canonicalEncoding != expected)

        // A legacy chain (no version field) followed by new entries verifies.
        let key = P256.Signing.PrivateKey()
        var legacy = LogEntry(index: 0, time: "2025-01-01T00:00:00Z", event: "manifestSet", user: nil, detail: ["digest": "ab"], previous: Hex.encode(AuditLog.emptyHead))
        legacy.version = nil
        legacy.signature = try key.signature(for: legacy.hash).derRepresentation.base64EncodedString()
        let decoded = try JSONDecoder().decode(LogEntry.self, from: try JSONEncoder().encode(legacy))
        #expect(decoded.version == nil && decoded.hash == legacy.hash)
        var log = [decoded]
        try AuditLog.append(to: &log, event: "secretSet", user: "al", detail: ["secret": "s"], key: key)
        #expect(log[1].version == 2)
        #expect(try AuditLog.verify(log, rootKey: key.publicKey, head: AuditLog.head(log)) == 2)
    }

    /// A replica hands the state key only to evidence of its own measurement, or of a package
    /// the manifest names in Config.CoordinatorPackages (a new coordinator version).
    @Test func replicaPolicyAcceptsOwnMeasurementOrACoordinatorPackage() throws {
        let platform = SimulationPlatformKey(privateKey: P256.Signing.PrivateKey())
        let own = [UInt8](repeating: 1, count: 32), next = [UInt8](repeating: 2, count: 32)
        let policy = ReplicaPolicy(ownMeasurement: own, verification: .init(allowSimulation: true, simulationKey: platform.publicKey))
        let binding = ReplicaPolicy.requestBinding(publicKey: [9, 9], nonce: [7])
        let ownEvidence = try SimulatedEvidenceProvider(key: platform, measurement: own).evidence(reportData: binding)
        let nextEvidence = try SimulatedEvidenceProvider(key: platform, measurement: next).evidence(reportData: binding)
        _ = try policy.check(ownEvidence, binding: binding, manifest: nil)
        #expect(throws: CoordinatorError.self) { try policy.check(nextEvidence, binding: binding, manifest: nil) }
        // Bound to this request only.
        #expect(throws: CoordinatorError.self) { try policy.check(ownEvidence, binding: ReplicaPolicy.requestBinding(publicKey: [9, 9], nonce: [8]), manifest: nil) }
        let manifest = try Manifest.parse(Array("""
            {"Packages": {"next": {"Kind": "simulated", "Measurement": "\(Hex.encode(next))"}}, "Services": {},
             "Config": {"AllowSimulation": true, "CoordinatorPackages": ["next"]}}
            """.utf8))
        _ = try policy.check(nextEvidence, binding: binding, manifest: manifest)
        #expect(throws: ManifestValidationError.self) {
            try Manifest.parse(Array(#"{"Packages": {}, "Services": {}, "Config": {"CoordinatorPackages": ["missing"]}}"#.utf8))
        }
    }
}
