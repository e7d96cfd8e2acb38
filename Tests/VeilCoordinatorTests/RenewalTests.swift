import Crypto
import Foundation
import Testing
import VeilAPI
import VeilCoordinator
import VeilCore
import VeilLauncher
import VeilManifest
import SwiftASN1
import X509

/// Certificate renewal on a real coordinator: a running service presents its current
/// certificate and a CSR for a new key, and gets a certificate with the manifest's lifetime
/// and its files rendered again — only while the manifest still lists it with the package its
/// certificate names. Every refusal says why.
@Suite struct RenewalTests {
    struct Setup {
        let fixture: Fixture
        let coordinator: Coordinator

        init() async throws {
            fixture = try Fixture()
            coordinator = try await fixture.coordinator()
            try await coordinator.setManifest(Array("""
                {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(Hex.encode(fixture.measurement))"}},
                 "Services": {
                   "web": {"Package": "app", "CertificateLifetime": "1h", "Reload": "SIGHUP",
                           "Parameters": {"Files": {"/dev/shm/web/cert.pem": "{{ pem .Veil.Service.Cert }}", "/dev/shm/web/key.pem": "{{ pem .Veil.Service.Private }}"}}},
                   "batch": {"Package": "app", "MaxActivations": 5}},
                 "Config": {"AllowSimulation": true}}
                """.utf8))
        }

        /// `service`'s activation certificate (DER) and answer.
        func activate(_ service: String) async throws -> (certificate: [UInt8], response: API.ActivationResponse) {
            let (certificate, response, _) = try await activateWithKey(service)
            return (certificate, response)
        }

        func activateWithKey(_ service: String) async throws -> (certificate: [UInt8], response: API.ActivationResponse, key: P256.Signing.PrivateKey) {
            let (request, key) = try fixture.request(coordinator, service: service)
            let response = try await coordinator.activate(request)
            let first = try #require(try PEMDocument.parseMultiple(pemString: response.certificateChain).first)
            return (first.derBytes, response, key)
        }

        func csr(for key: P256.Signing.PrivateKey = .init(), service: String = "web") throws -> [UInt8] {
            let csr = try CertificateSigningRequest(
                version: .v1, subject: try DistinguishedName { CommonName(service) }, privateKey: .init(key), attributes: .init(),
                signatureAlgorithm: .ecdsaWithSHA256)
            return Array(try csr.serializeAsPEM().pemString.utf8)
        }
    }

    @Test func aRenewalIssuesTheManifestsLifetimeForTheNewKeyAndRendersTheFilesAgain() async throws {
        let setup = try await Setup()
        let (current, response) = try await setup.activate("web")
        #expect(response.renewal == API.RenewalPolicy(lifetimeSeconds: 3600, reload: .hangup))
        let activated = try Certificate(derEncoded: current)
        #expect(activated.notValidAfter.timeIntervalSinceNow > 3500 && activated.notValidAfter.timeIntervalSinceNow <= 3601, "seconds in X.509 times")
        #expect(CertificateAuthority.package(of: activated) == "app")

        let key = P256.Signing.PrivateKey()
        let renewal = try setup.coordinator.renew(csrPEM: try setup.csr(for: key), certificate: current)
        let renewed = try Certificate(derEncoded: renewal.certificateChain[0])
        #expect(renewed.publicKey == Certificate.PublicKey(key.publicKey))
        #expect(renewed.serialNumber != activated.serialNumber)
        #expect(renewed.notValidAfter.timeIntervalSinceNow > 3500 && renewed.notValidAfter.timeIntervalSinceNow <= 3601, "seconds in X.509 times")
        #expect(try renewed.extensions.subjectAlternativeNames == activated.extensions.subjectAlternativeNames, "the same SPIFFE ID")
        #expect(renewal.certificateChain[1] == setup.coordinator.authority.intermediateDER)
        #expect(renewal.reload == .hangup)
        let certFile = try renewal.files["/dev/shm/web/cert.pem"].map { try $0.assemble(servicePrivateKeyDER: Array(key.derRepresentation)) }
        #expect(certFile == Array(PEM.encode(renewal.certificateChain[0], label: "CERTIFICATE").utf8))
        let keyFile = try #require(try renewal.files["/dev/shm/web/key.pem"]?.assemble(servicePrivateKeyDER: Array(key.derRepresentation)))
        #expect(try P256.Signing.PrivateKey(pemRepresentation: String(decoding: keyFile, as: UTF8.self)).publicKey.rawRepresentation == key.publicKey.rawRepresentation)
        // The renewed certificate renews in turn.
        #expect(throws: Never.self) { try setup.coordinator.renew(csrPEM: try setup.csr(), certificate: renewal.certificateChain[0]) }
    }

    @Test func aServiceWithoutALifetimeKeepsAYearAndIsNotRenewed() async throws {
        let setup = try await Setup()
        let (current, response) = try await setup.activate("batch")
        #expect(response.renewal == nil)
        #expect(try Certificate(derEncoded: current).notValidAfter.timeIntervalSinceNow > 364 * 86400)
        #expect(throws: CoordinatorError.renewalRefused(service: "batch", reason: "the manifest gives it no CertificateLifetime (its certificates are not renewed)")) {
            try setup.coordinator.renew(csrPEM: try setup.csr(service: "batch"), certificate: current)
        }
    }

    @Test func everyRefusalSaysWhy() async throws {
        let setup = try await Setup()
        let coordinator = setup.coordinator
        let (current, _, currentKey) = try await setup.activateWithKey("web")
        let csr = try setup.csr()

        #expect(throws: CoordinatorError.unauthenticated("a renewal needs a service's activation certificate as the TLS client certificate")) {
            try coordinator.renew(csrPEM: csr, certificate: nil)
        }
        let stranger = try await Setup()
        let (foreign, _) = try await stranger.activate("web")
        #expect(throws: CoordinatorError.unauthenticated("the client certificate was not issued by this coordinator at an activation")) {
            try coordinator.renew(csrPEM: csr, certificate: foreign)
        }
        let expired = #expect(throws: CoordinatorError.self) { try coordinator.renew(csrPEM: csr, certificate: current, now: Date().addingTimeInterval(3700)) }
        #expect("\(expired.map { "\($0)" } ?? "")".contains("not valid now"))

        // Activated under a package the manifest no longer gives the service; a service it no longer lists.
        let authority = coordinator.authority
        let otherKey = P256.Signing.PrivateKey()
        let movedPackage = try authority.issueServiceLeaf(publicKey: .init(otherKey.publicKey), service: "web", package: "app-v1", trustDomain: nil, validFor: 60).derBytes
        #expect(throws: CoordinatorError.renewalRefused(service: "web", reason: "it was activated under package 'app-v1' and the manifest now gives it 'app': activate again")) {
            try coordinator.renew(csrPEM: csr, certificate: movedPackage)
        }
        let removed = try authority.issueServiceLeaf(publicKey: .init(otherKey.publicKey), service: "gone", package: "app", validFor: 60).derBytes
        #expect(throws: CoordinatorError.renewalRefused(service: "gone", reason: "the manifest no longer lists it")) {
            try coordinator.renew(csrPEM: csr, certificate: removed)
        }
        let unnamed = try authority.issueServiceLeaf(publicKey: .init(otherKey.publicKey), service: "web", validFor: 60).derBytes
        #expect(throws: CoordinatorError.self, "a certificate naming no package") { try coordinator.renew(csrPEM: csr, certificate: unnamed) }

        // The current key again; a CSR that is not one.
        #expect(throws: CoordinatorError.renewalRefused(service: "web", reason: "a renewal needs a new key pair, not the current one")) {
            try coordinator.renew(csrPEM: try setup.csr(for: currentKey), certificate: current)
        }
        #expect(throws: CoordinatorError.self, "malformed CSR") { try coordinator.renew(csrPEM: Array("-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----\n".utf8), certificate: current) }
    }
}

extension RenewalTests {
    /// The agent's long poll: the files as they render now, answered at once without a revision,
    /// and with one only once the state moved past it (or at the deadline); refused like a renewal.
    @Test func serviceFilesWaitForTheStateToMoveAndAreRefusedLikeARenewal() async throws {
        let setup = try await Setup()
        let coordinator = setup.coordinator
        let (current, _) = try await setup.activate("web")
        let now = try await coordinator.serviceFiles(certificate: current, after: nil)
        let certificateFile = try #require(now.files["/dev/shm/web/cert.pem"]).assemble(servicePrivateKeyDER: [])
        #expect(certificateFile == Array(PEM.encode(current, label: "CERTIFICATE").utf8), "rendered for the certificate presented")
        #expect(now.reload == .hangup)

        let started = ContinuousClock.now
        let unchanged = try await coordinator.serviceFiles(certificate: current, after: now.revision, waitingUpTo: .milliseconds(600))
        #expect(unchanged.revision == now.revision && ContinuousClock.now - started >= .milliseconds(600), "nothing changed: answered at the deadline")

        async let moved = coordinator.serviceFiles(certificate: current, after: now.revision, waitingUpTo: .seconds(20))
        try await Task.sleep(for: .milliseconds(300))
        _ = try await setup.activate("batch")  // a counted activation: one state transaction
        let answer = try await moved
        #expect(answer.revision > now.revision)

        await #expect(throws: CoordinatorError.unauthenticated("the service's files needs a service's activation certificate as the TLS client certificate")) {
            _ = try await coordinator.serviceFiles(certificate: nil, after: nil)
        }
        let removed = try coordinator.authority.issueServiceLeaf(publicKey: .init(P256.Signing.PrivateKey().publicKey), service: "gone", package: "app", validFor: 60).derBytes
        await #expect(throws: CoordinatorError.renewalRefused(service: "gone", reason: "the manifest no longer lists it")) {
            _ = try await coordinator.serviceFiles(certificate: removed, after: nil)
        }
    }
}

@Suite struct CertificateLifetimeManifestTests {
    func problems(_ service: String) -> [String] {
        let text = """
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(String(repeating: "00", count: 32))"}},
             "Services": {"web": {"Package": "app", \(service)}}, "Config": {"AllowSimulation": true}}
            """
        do {
            _ = try Manifest.parse(Array(text.utf8))
            return []
        } catch {
            return ["\(error)"]
        }
    }

    @Test func lifetimesAndReloadSignalsParse() throws {
        for text in ["2s", "90s", "30m", "1h", "7d", "366d"] { #expect(CertificateLifetime(text) != nil, "\(text)") }
        #expect(CertificateLifetime("1h")?.seconds == 3600 && CertificateLifetime("1h")?.renewAfterSeconds == 1800)
        #expect(problems("\"CertificateLifetime\": \"1h\", \"Reload\": \"SIGUSR1\"").isEmpty)
    }

    @Test func badLifetimesAndSignalsAreRefusedWithTheRule() throws {
        for text in ["0s", "1s", "367d", "1.5h", "-1h", "1x", "h", "", "1 h", "١h", "99999999999999999999d"] {
            #expect(CertificateLifetime(text) == nil, "\(text)")
        }
        let lifetime = problems("\"CertificateLifetime\": \"1w\"")
        #expect(lifetime.first?.contains("CertificateLifetime") == true && lifetime.first?.contains("from 2s to 366d") == true, "\(lifetime)")
        let signal = problems("\"CertificateLifetime\": \"1h\", \"Reload\": \"SIGKILL\"")
        #expect(signal.first?.contains("'SIGKILL' is not one of SIGHUP, SIGUSR1, SIGUSR2") == true, "\(signal)")
        let orphan = problems("\"Reload\": \"SIGHUP\"")
        #expect(orphan.first?.contains("needs a CertificateLifetime") == true, "\(orphan)")
        let socketWithoutAgent = problems("\"WorkloadAPISocket\": \"/run/spiffe/agent.sock\"")
        #expect(socketWithoutAgent.first?.contains("WorkloadAPISocket: needs a CertificateLifetime") == true, "\(socketWithoutAgent)")
        let relative = problems("\"CertificateLifetime\": \"1h\", \"WorkloadAPISocket\": \"agent.sock\"")
        #expect(relative.first?.contains("WorkloadAPISocket") == true, "\(relative)")
        let long = problems("\"CertificateLifetime\": \"1h\", \"WorkloadAPISocket\": \"/\(String(repeating: "a", count: 120))\"")
        #expect(long.first?.contains("at most 107 bytes") == true, "\(long)")
        #expect(problems("\"CertificateLifetime\": \"1h\", \"WorkloadAPISocket\": \"/run/spiffe/agent.sock\"").isEmpty)
    }
}
