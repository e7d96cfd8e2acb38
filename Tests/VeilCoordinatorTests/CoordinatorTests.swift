import Crypto
import _CryptoExtras
import Foundation
import Logging
import Testing
import VeilAPI
import VeilClient
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilLauncher
import VeilManifest
import SwiftASN1
import X509

/// A coordinator on a temporary data directory with a fresh simulation platform key.
struct Fixture {
    let directory: String
    let platformKey = SimulationPlatformKey(privateKey: P256.Signing.PrivateKey())
    let sealingKey = SymmetricKey(size: .bits256)
    let measurement = Array(SHA256.hash(data: Array("redis-server bytes".utf8)))

    init() throws {
        directory = FileManager.default.temporaryDirectory.appendingPathComponent("veil-test-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
    }

    func coordinator(sealingKey: SymmetricKey? = nil) async throws -> Coordinator {
        try await Coordinator.open(
            store: FileStateStore(directory: directory), vault: StateVault(directory: directory, sealingKey: sealingKey ?? self.sealingKey),
            evidenceProvider: SimulatedEvidenceProvider(key: platformKey, measurement: measurement),
            verification: .init(simulationKey: platformKey.publicKey), logger: Logger(label: "test"))
    }

    func manifest(maxActivations: Int = 0, allowSimulation: Bool = true, measurement: [UInt8]? = nil) -> [UInt8] {
        Array("""
            {
              "Packages": { "redis": { "Kind": "simulated", "Measurement": "\(Hex.encode(measurement ?? self.measurement))" } },
              "Services": { "cache": { "Package": "redis", "MaxActivations": \(maxActivations),
                "Parameters": {
                  "Files": { "/tls/cert.pem": "{{ pem .Veil.Service.Cert }}", "/tls/key.pem": "{{ pem .Veil.Service.Private }}",
                             "/tls/secret.pem": "{{ pem .Secrets.tlsCert.Private }}" },
                  "Env": { "PASSWORD": "{{ hex .Secrets.password }}" },
                  "Argv": ["redis-server", "--requirepass", "{{ hex .Secrets.password }}"] } } },
              "Secrets": { "password": { "Type": "plain", "Size": 16 },
                           "tlsCert": { "Type": "cert-ecdsa", "Cert": { "Subject": { "CommonName": "cache" } } } },
              "Config": { "AllowSimulation": \(allowSimulation) }
            }
            """.utf8)
    }

    /// An activation request as the launcher builds it, for the measured program.
    func request(
        _ coordinator: Coordinator, service: String = "cache", measurement: [UInt8]? = nil, key: SimulationPlatformKey? = nil
    ) throws -> (API.ActivationRequest, P256.Signing.PrivateKey) {
        let nonce = coordinator.issueNonce()
        let privateKey = P256.Signing.PrivateKey()
        let provider = SimulatedEvidenceProvider(key: key ?? platformKey, measurement: measurement ?? self.measurement)
        return (try Launcher.activationRequest(service: service, nonce: nonce, key: privateKey, provider: provider), privateKey)
    }
}

@Suite struct CoordinatorActivationTests {
    @Test func activationIssuesACertificateAndRendersParameters() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest())
        let (request, key) = try fixture.request(coordinator)
        let response = try await coordinator.activate(request)

        #expect(response.simulated)
        let chain = try PEMDocument.parseMultiple(pemString: response.certificateChain).map { try Certificate(derEncoded: $0.derBytes) }
        #expect(chain.count == 2)
        #expect(chain[0].publicKey == Certificate.PublicKey(key.publicKey))
        #expect(chain[0].issuer == coordinator.authority.intermediate.subject)
        #expect(chain[0].subject.description.contains("cache"))
        #expect(coordinator.authority.intermediate.publicKey.isValidSignature(chain[0].signature, for: chain[0]))

        let keyPEM = String(decoding: try #require(response.files["/tls/key.pem"]).assemble(servicePrivateKeyDER: Array(key.derRepresentation)), as: UTF8.self)
        #expect(try P256.Signing.PrivateKey(pemRepresentation: keyPEM).publicKey.rawRepresentation == key.publicKey.rawRepresentation)
        let password = String(decoding: try #require(response.env["PASSWORD"]).assemble(servicePrivateKeyDER: []), as: UTF8.self)
        #expect(password.count == 32 && Hex.decode(password) != nil)
        let argv = try #require(response.argv).map { String(decoding: try $0.assemble(servicePrivateKeyDER: []), as: UTF8.self) }
        #expect(argv == ["redis-server", "--requirepass", password])
        #expect(coordinator.status().activations["cache"] == 1)
    }

    @Test func wrongMeasurementIsRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest())
        var other = fixture.measurement
        other[0] ^= 1
        let (request, _) = try fixture.request(coordinator, measurement: other)
        let error = try await #require(throws: CoordinatorError.self) { try await coordinator.activate(request) }
        guard case .packageMismatch(let service, let package, let reason) = error else { Issue.record("\(error)"); return }
        #expect(service == "cache" && package == "redis" && reason.contains("measurement"))
        #expect(error.httpStatus == 403)
        #expect(coordinator.status().activations["cache"] == nil)
    }

    @Test func replayedActivationIsRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest())
        let (request, _) = try fixture.request(coordinator)
        _ = try await coordinator.activate(request)
        await #expect(throws: CoordinatorError.unknownNonce) { try await coordinator.activate(request) }
    }

    @Test func evidenceNotBindingTheCSRKeyIsRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest())
        // An earlier activation's evidence replayed with a fresh nonce and the attacker's own CSR.
        let (earlier, _) = try fixture.request(coordinator)
        var (replay, _) = try fixture.request(coordinator)
        replay.evidence = earlier.evidence
        await #expect(throws: CoordinatorError.evidenceRejected(.reportDataMismatch)) { try await coordinator.activate(replay) }
        // Same evidence and nonce, different key in the CSR.
        var (swapped, _) = try fixture.request(coordinator)
        let (other, _) = try fixture.request(coordinator)
        swapped.csr = other.csr
        await #expect(throws: CoordinatorError.evidenceRejected(.reportDataMismatch)) { try await coordinator.activate(swapped) }
    }

    @Test func evidenceFromAnotherPlatformKeyIsRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest())
        let stranger = SimulationPlatformKey(privateKey: P256.Signing.PrivateKey())
        let (request, _) = try fixture.request(coordinator, key: stranger)
        let error = try await #require(throws: CoordinatorError.self) { try await coordinator.activate(request) }
        #expect(error.code == "untrustedPlatformKey")
    }

    @Test func maxActivationsIsEnforcedAcrossRestarts() async throws {
        let fixture = try Fixture()
        var coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest(maxActivations: 2))
        _ = try await coordinator.activate(try fixture.request(coordinator).0)
        coordinator = try await fixture.coordinator()
        _ = try await coordinator.activate(try fixture.request(coordinator).0)
        await #expect(throws: CoordinatorError.activationLimitReached(service: "cache", limit: 2)) {
            try await coordinator.activate(try fixture.request(coordinator).0)
        }
        coordinator = try await fixture.coordinator()
        await #expect(throws: CoordinatorError.activationLimitReached(service: "cache", limit: 2)) {
            try await coordinator.activate(try fixture.request(coordinator).0)
        }
    }

    @Test func malformedRequestsAreRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        await #expect(throws: CoordinatorError.noManifest) { try await coordinator.activate(try fixture.request(coordinator).0) }
        try await coordinator.setManifest(fixture.manifest())
        var (request, _) = try fixture.request(coordinator)
        request.csr = "-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n"
        await #expect(throws: CoordinatorError.badRequest(CertificateAuthority.IssueError.malformedCSR.description)) { try await coordinator.activate(request) }
        (request, _) = try fixture.request(coordinator, service: "nope")
        await #expect(throws: CoordinatorError.unknownService("nope")) { try await coordinator.activate(request) }
        (request, _) = try fixture.request(coordinator)
        request.nonce = "zz"
        await #expect(throws: CoordinatorError.self) { try await coordinator.activate(request) }
        (request, _) = try fixture.request(coordinator)
        request.evidence = Evidence(format: SimulatedReport.format, data: Array("{}".utf8))
        let error = try await #require(throws: CoordinatorError.self) { try await coordinator.activate(request) }
        #expect(error.httpStatus == 403)
    }

    @Test func csrWithForeignSignatureIsRefused() async throws {
        let key = P256.Signing.PrivateKey()
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName("x") }, privateKey: .init(key), attributes: .init(),
            signatureAlgorithm: .ecdsaWithSHA256)
        let other = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName("x") }, publicKey: .init(P256.Signing.PrivateKey().publicKey),
            attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256, signature: csr.signature)
        #expect(throws: CertificateAuthority.IssueError.csrSignatureInvalid) {
            try CertificateAuthority.parseCSR(Array(try other.serializeAsPEM().pemString.utf8))
        }
    }
}

@Suite struct CoordinatorManifestAndStateTests {
    @Test func invalidManifestListsEveryProblemAndChangesNothing() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let bad = Array(#"{"Packages": {"p": {"Kind": "simulated"}}, "Services": {"s": {"Package": "q"}}, "Bogus": 1}"#.utf8)
        let error = try await #require(throws: CoordinatorError.self) { try await coordinator.setManifest(bad) }
        guard case .invalidManifest(let validation) = error else { Issue.record("\(error)"); return }
        #expect(validation.problems.count >= 3)
        #expect(coordinator.phase == .awaitingManifest)
    }

    @Test func secondDifferentManifestIsRefusedAndStateUnchanged() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let first = try await coordinator.setManifest(fixture.manifest())
        #expect(try await coordinator.setManifest(fixture.manifest()) == first)
        await #expect(throws: CoordinatorError.manifestAlreadySet(updatable: false)) { try await coordinator.setManifest(fixture.manifest(maxActivations: 5)) }
        #expect(coordinator.manifest?.digest == first)
        #expect(try await fixture.coordinator().manifest?.digest == first)
    }

    @Test func restartKeepsRootSecretsAndManifest() async throws {
        let fixture = try Fixture()
        let first = try await fixture.coordinator()
        try await first.setManifest(fixture.manifest())
        let (request1, _) = try fixture.request(first)
        let password1 = try #require(try await first.activate(request1).env["PASSWORD"])
        let second = try await fixture.coordinator()
        #expect(second.rootCertificatePEM == first.rootCertificatePEM)
        #expect(second.manifest == first.manifest)
        let (request2, _) = try fixture.request(second)
        #expect(try await second.activate(request2).env["PASSWORD"] == password1)
    }

    @Test func stateIsSealedAndTamperingOrAnotherKeyIsDetected() async throws {
        let fixture = try Fixture()
        try await fixture.coordinator().setManifest(fixture.manifest())
        let path = fixture.directory + "/" + FileStateStore.fileName
        let sealed = try Data(contentsOf: URL(fileURLWithPath: path))
        #expect(sealed.range(of: Data("redis".utf8)) == nil, "state must not be plaintext")
        func openError(sealingKey: SymmetricKey? = nil) async -> (any Error)? {
            do {
                _ = try await fixture.coordinator(sealingKey: sealingKey)
                return nil
            } catch {
                return error
            }
        }
        // Another sealing key cannot open the sealed state key: the state key must come from recovery (none here) or a peer.
        guard case .needsStateKey(.noStateKey, nil)? = await openError(sealingKey: SymmetricKey(size: .bits256)) as? Coordinator.OpenError else {
            Issue.record("another sealing key must not open the state"); return
        }
        var flipped = sealed
        flipped[flipped.count - 20] ^= 1
        try flipped.write(to: URL(fileURLWithPath: path))
        guard case .needsStateKey(.wrongStateKey, _)? = await openError() as? Coordinator.OpenError else { Issue.record("tampering must be detected"); return }
        try Data("garbage".utf8).write(to: URL(fileURLWithPath: path))
        guard case .store(.corrupt)? = await openError() as? Coordinator.OpenError else { Issue.record("garbage must be refused"); return }
    }

    @Test func attestationBindsRootAndNonceAndVerifiesClientSide() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let nonce: [UInt8] = Array(repeating: 5, count: 32)
        let response = try coordinator.attestation(nonce: nonce)
        let policy = CoordinatorPolicy(
            measurements: [fixture.measurement], verification: .init(allowSimulation: true, simulationKey: fixture.platformKey.publicKey))
        let attested = try CoordinatorAttestation.verify(response, nonce: nonce, policy: policy)
        #expect(attested.rootCertificatePEM == coordinator.rootCertificatePEM)

        #expect(throws: CoordinatorAttestationError.self) {
            try CoordinatorAttestation.verify(response, nonce: Array(repeating: 6, count: 32), policy: policy)
        }
        var otherRoot = response
        otherRoot.rootCertificate = PEM.encode(try CertificateAuthority.generate().rootDER, label: "CERTIFICATE")
        #expect(throws: CoordinatorAttestationError.self) { try CoordinatorAttestation.verify(otherRoot, nonce: nonce, policy: policy) }
        let wrongMeasurement = CoordinatorPolicy(measurements: [Array(repeating: 0, count: 32)], verification: policy.verification)
        #expect(throws: CoordinatorAttestationError.self) { try CoordinatorAttestation.verify(response, nonce: nonce, policy: wrongMeasurement) }
        let noSimulation = CoordinatorPolicy(measurements: [], verification: .init())
        #expect(throws: CoordinatorAttestationError.self) { try CoordinatorAttestation.verify(response, nonce: nonce, policy: noSimulation) }
    }

    @Test func expiredNonceIsRefused() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(fixture.manifest())
        let past = Date().addingTimeInterval(-Coordinator.nonceLifetime - 1)
        let nonce = coordinator.issueNonce(now: past)
        let provider = SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement)
        let request = try Launcher.activationRequest(service: "cache", nonce: nonce, key: P256.Signing.PrivateKey(), provider: provider)
        await #expect(throws: CoordinatorError.unknownNonce) { try await coordinator.activate(request) }
    }

    @Test func everySecretTypeIsGenerated() async throws {
        let fixture = try Fixture()
        let coordinator = try await fixture.coordinator()
        let manifest = """
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))"}},
             "Services": {"s": {"Package": "p", "Parameters": {"Files": {
                "/rsa": "{{ pem .Secrets.rsa.Cert }}{{ pem .Secrets.rsa.Private }}{{ pem .Secrets.rsa.Public }}",
                "/ed": "{{ pem .Secrets.ed.Cert }}{{ pem .Secrets.ed.Private }}",
                "/ec": "{{ pem .Secrets.ec.Cert }}",
                "/sym": "{{ raw .Secrets.sym }}"}}}},
             "Secrets": {"rsa": {"Type": "cert-rsa", "Size": 2048, "Cert": {"Subject": {"CommonName": "r"}}},
                         "ed": {"Type": "cert-ed25519", "Cert": {"Subject": {"CommonName": "e"}}},
                         "ec": {"Type": "cert-ecdsa", "Size": 384, "Cert": {"Subject": {"CommonName": "e"}, "DNSNames": ["a.example"], "IPAddresses": ["10.0.0.1"]}},
                         "sym": {"Type": "symmetric-key", "Size": 192}},
             "Config": {"AllowSimulation": true}}
            """
        try await coordinator.setManifest(Array(manifest.utf8))
        let (request, _) = try fixture.request(coordinator, service: "s")
        let files = try await coordinator.activate(request).files.mapValues { try $0.assemble(servicePrivateKeyDER: []) }
        #expect(try #require(files["/sym"]).count == 24)
        let rsa = String(decoding: try #require(files["/rsa"]), as: UTF8.self)
        let rsaCert = try Certificate(pemEncoded: String(rsa[..<rsa.range(of: "-----END CERTIFICATE-----\n")!.upperBound]))
        #expect(_RSAKeyBits(rsaCert) == 2048)
        #expect(rsa.contains("BEGIN PUBLIC KEY"))
        let ec = try Certificate(pemEncoded: String(decoding: try #require(files["/ec"]), as: UTF8.self))
        #expect(P384.Signing.PublicKey(ec.publicKey) != nil)
        let names = try #require(try ec.extensions.subjectAlternativeNames)
        #expect(names.contains(.dnsName("a.example")))
        #expect(coordinator.authority.intermediate.publicKey.isValidSignature(ec.signature, for: ec))
        let ed = String(decoding: try #require(files["/ed"]), as: UTF8.self)
        #expect(ed.contains("BEGIN CERTIFICATE") && ed.contains("BEGIN PRIVATE KEY"))
    }
}

private func _RSAKeyBits(_ certificate: Certificate) -> Int? {
    guard let key = _RSA.Signing.PublicKey(certificate.publicKey) else { return nil }
    return key.keySizeInBits
}
