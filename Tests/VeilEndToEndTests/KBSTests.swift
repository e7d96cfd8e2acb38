import Foundation
import Testing

/// The key-broker protocol against an independent client (Tests/Scripts/kbs_client.py:
/// Python, jwcrypto, rfc8785, written from Trustee's spec, no Veil code) and a real
/// `veil coordinator`: every outcome below is what that client saw on the wire.
@Suite(.timeLimit(.minutes(5))) struct KBSTests {
    static let fixtures = repositoryRoot + "/../shared/testdata/kbs"
    static let podMeasurement = String(repeating: "01", count: 32)
    static let otherMeasurement = String(repeating: "02", count: 32)
    static let countedMeasurement = String(repeating: "03", count: 32)
    /// Long enough for a loaded CI machine between two client runs; the expiry test sets a short one.
    static let sessionLifetime = 300

    /// A coordinator with KBS services, its KDS stub (for the SNP fixture's ASK/ARK) and the client's arguments.
    final class Setup {
        let scratch: Scratch
        let kds: KDSStub
        let coordinator: CoordinatorProcess
        /// A manifest user allowed to update the manifest, and the manifest as set.
        let alice: (cert: String, key: String)
        let manifest: String
        let sessionLifetime: Int

        /// `azure`: the KDS stub serves the Milan chain of Trustee's Azure SNP vTPM fixtures instead.
        init(azure: Bool = false, sessionLifetime: Int = KBSTests.sessionLifetime) async throws {
            scratch = try Scratch()
            self.sessionLifetime = sessionLifetime
            let (reportPath, vcekPath, chainPEM, snpMeasurement) = azure ? try Self.azureFixture(scratch) : try Self.snpFixture(scratch)
            // KDS's cert_chain is the ASK then the ARK (the fixture files add the ASVK).
            let blocks = try String(contentsOfFile: chainPEM, encoding: .utf8).components(separatedBy: "-----END CERTIFICATE-----").prefix(2)
            let chain = try scratch.write(blocks.map { $0 + "-----END CERTIFICATE-----\n" }.joined(), to: "chain.pem")
            kds = try await KDSStub(scratch: scratch, product: azure ? "Milan" : "Genoa", report: reportPath, vcek: vcekPath, chain: chain)
            coordinator = try await CoordinatorProcess(
                scratch: scratch, arguments: ["--kbs-session-lifetime", "\(sessionLifetime)", "--kds", kds.url])
            let secret = try scratch.write("the database key", to: "dbkey")
            let alice = try await UserCLITests().makeUser("alice", in: scratch)
            self.alice = alice
            let aliceCert = String(decoding: try JSONEncoder().encode(try String(contentsOfFile: alice.cert, encoding: .utf8)), as: UTF8.self)
            manifest = """
                {"Packages": {"pod": {"Kind": "simulated", "Measurement": "\(KBSTests.podMeasurement)"},
                              "other": {"Kind": "simulated", "Measurement": "\(KBSTests.otherMeasurement)"},
                              "counted": {"Kind": "simulated", "Measurement": "\(KBSTests.countedMeasurement)"},
                              "snp": {"Kind": "snp", "Measurement": "\(snpMeasurement)", "MinimumTCB": "any"}},
                 "Services": {"pod": {"Package": "pod", "KBS": {"Resources": {
                                  "default/key/db": "{{ raw .Secrets.dbkey }}", "default/tls/key": "{{ pem .Secrets.tls.Private }}"}}},
                              "other": {"Package": "other", "KBS": {"Resources": {"other/key/x": "{{ hex .Secrets.dbkey }}"}}},
                              "counted": {"Package": "counted", "MaxActivations": 2, "KBS": {"Resources": {"default/key/db": "{{ raw .Secrets.dbkey }}"}}},
                              "snp": {"Package": "snp", "KBS": {"Resources": {}}},
                              "launched": {"Package": "pod"}},
                 "Secrets": {"dbkey": {"Type": "plain", "UserDefined": true}, "tls": {"Type": "cert-ecdsa", "Cert": {"Subject": {"CommonName": "db"}}}},
                 "Users": {"alice": {"Certificate": \(aliceCert), "Roles": ["admin"]}},
                 "Roles": {"admin": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}},
                 "Config": {"AllowSimulation": true}}
                """
            let set = try await coordinator.veil(["manifest", "set", try scratch.write(manifest, to: "manifest.json"), "--secret", "dbkey=\(secret)"])
            guard set.status == 0 else { throw CoordinatorProcess.CoordinatorStartError(log: set.stderr) }
        }

        /// Trustee's SNP attester evidence: a raw report holding its chip ID (what the stub reads), its VCEK, the Genoa chain, its measurement.
        static func snpFixture(_ scratch: Scratch) throws -> (String, String, String, String) {
            let evidence = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: KBSTests.fixtures + "/evidence/snp/evidence.json"))) as! [String: Any]
            let report = evidence["attestation_report"] as! [String: Any]
            var raw = [UInt8](repeating: 0, count: 0x4A0)
            raw.replaceSubrange(0x1A0..<0x1E0, with: (report["chip_id"] as! [Int]).map(UInt8.init))
            let reportPath = scratch.path + "/chip-report.bin"
            try Data(raw).write(to: URL(fileURLWithPath: reportPath))
            let vcekPath = scratch.path + "/vcek.der"
            try Data(((evidence["cert_chain"] as! [[String: Any]])[0]["data"] as! [Int]).map(UInt8.init)).write(to: URL(fileURLWithPath: vcekPath))
            let measurement = (report["measurement"] as! [Int]).map { String(format: "%02x", $0) }.joined()
            return (reportPath, vcekPath, KBSTests.fixtures + "/evidence/snp/genoa_ask_ark_asvk.pem", measurement)
        }

        /// Trustee's Azure SNP vTPM evidence: the SNP report inside its HCL report, its VCEK, the Milan chain, its measurement.
        static func azureFixture(_ scratch: Scratch) throws -> (String, String, String, String) {
            let evidence = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: KBSTests.fixtures + "/evidence/az-snp-vtpm/evidence-v2.json"))) as! [String: Any]
            func base64URL(_ text: String) -> Data {
                var standard = text.replacingOccurrences(of: "-", with: "+").replacingOccurrences(of: "_", with: "/").replacingOccurrences(of: "=", with: "")
                standard += String(repeating: "=", count: (4 - standard.count % 4) % 4)
                return Data(base64Encoded: standard)!
            }
            let report = base64URL(evidence["hcl_report"] as! String).subdata(in: 0x20..<(0x20 + 0x4A0))
            let reportPath = scratch.path + "/azure-report.bin"
            try report.write(to: URL(fileURLWithPath: reportPath))
            let vcekPath = scratch.path + "/azure-vcek.der"
            try base64URL(evidence["vcek"] as! String).write(to: URL(fileURLWithPath: vcekPath))
            let measurement = report.subdata(in: 0x90..<0xC0).map { String(format: "%02x", $0) }.joined()
            return (reportPath, vcekPath, repositoryRoot + "/../shared/testdata/attestation/trustee/upstream/milan_ask_ark_asvk.pem", measurement)
        }

        /// Runs the client's scenarios; one result object per scenario, by name.
        func client(
            _ scenarios: [String], measurement: String = KBSTests.podMeasurement, resource: String = "default/key/db", count: Int = 1, extra: [String] = []
        ) async throws -> [String: [String: Any]] {
            let arguments = [
                repositoryRoot + "/Tests/Scripts/kbs_client.py", "--url", "https://\(coordinator.meshAddress)", "--cacert", coordinator.rootPath,
                "--simulation-key", coordinator.simulationKey, "--measurement", measurement, "--other-measurement", KBSTests.otherMeasurement,
                "--resource", resource, "--other-resource", "other/key/x", "--other-service", "other",
                "--snp-fixture", KBSTests.fixtures + "/evidence/snp/evidence.json", "--azure-fixtures", KBSTests.fixtures + "/evidence/az-snp-vtpm",
                "--session-lifetime", "\(sessionLifetime)",
                "--count", "\(count)",
            ] + extra + scenarios
            let result = try await run(which("python3") ?? "/usr/bin/python3", arguments, scratch: scratch, timeout: 120)
            #expect(result.status == 0, "\(result.stderr)")
            var outcomes: [String: [String: Any]] = [:]
            for line in result.stdout.split(separator: "\n") {
                let object = try JSONSerialization.jsonObject(with: Data(line.utf8)) as! [String: Any]
                outcomes[object["scenario"] as! String] = object["result"] as? [String: Any]
            }
            for (name, outcome) in outcomes { #expect(outcome["error"] == nil, "\(name): \(outcome)") }
            return outcomes
        }
    }

    static func refusal(_ outcome: [String: Any]?) -> String {
        "\(outcome?["status"] as? Int ?? -1) \(outcome?["type"] as? String ?? "")"
    }

    @Test func releasesDecryptForRSAAndECKeysAndEveryRefusalHasItsProblemType() async throws {
        let setup = try await Setup()
        let outcomes = try await setup.client([
            "release-rsa", "release-ec", "bearer-only", "tampered-token", "unlisted-resource", "unknown-resource", "wrong-service",
            "unknown-measurement", "missing-cookie", "replayed-attestation", "unbound-key", "rsa1_5", "wrong-version", "sample-tee",
            "negotiated-hash",
        ])
        let rsa = try #require(outcomes["release-rsa"])
        #expect(rsa["status"] as? Int == 200 && rsa["plaintext"] as? String == "the database key" && rsa["alg"] as? String == "RSA-OAEP-256", "\(rsa)")
        let claims = try #require(rsa["tokenClaims"] as? [String: Any])
        #expect(claims["veil.service"] as? String == "pod" && claims["tee"] as? String == "veil-simulated" && claims["veil.simulated"] as? Bool == true)
        let lifetime = (claims["exp"] as? Double ?? 0) - (claims["iat"] as? Double ?? 0)
        #expect(lifetime == Double(Self.sessionLifetime), "token lifetime \(lifetime)")
        #expect((rsa["tokenHeader"] as? [String: Any])?["alg"] as? String == "ES256")
        for name in ["release-ec", "bearer-only"] {
            let outcome = outcomes[name]
            #expect(outcome?["status"] as? Int == 200 && outcome?["plaintext"] as? String == "the database key" && outcome?["alg"] as? String == "ECDH-ES+A256KW", "\(name): \(outcome ?? [:])")
        }
        #expect(Self.refusal(outcomes["tampered-token"]) == "401 TokenInvalid")
        #expect(Self.refusal(outcomes["unlisted-resource"]) == "403 PolicyDeny")
        #expect(outcomes["unlisted-resource"]?["contentType"] as? String == "application/problem+json")
        #expect(Self.refusal(outcomes["unknown-resource"]) == "404 ResourceNotFound")
        #expect(Self.refusal(outcomes["wrong-service"]) == "403 PolicyDeny")
        #expect(Self.refusal(outcomes["unknown-measurement"]) == "401 NoMatchingService")
        #expect(Self.refusal(outcomes["missing-cookie"]) == "401 NotAuthenticated")
        let replay = try #require(outcomes["replayed-attestation"])
        #expect(replay["first"] as? Int == 200)
        #expect(Self.refusal(replay["sameSession"] as? [String: Any]) == "401 ChallengeUsed")
        #expect(Self.refusal(replay["newSession"] as? [String: Any]) == "401 NonceMismatch")
        #expect(Self.refusal(outcomes["unbound-key"]) == "401 ReportDataMismatch")
        #expect(Self.refusal(outcomes["rsa1_5"]) == "400 TeeKeyRefused")
        #expect((outcomes["rsa1_5"]?["detail"] as? String)?.contains("RSA1_5") == true)
        #expect(Self.refusal(outcomes["wrong-version"]) == "401 ProtocolVersion")
        #expect(Self.refusal(outcomes["sample-tee"]) == "401 UnsupportedTee")
        let negotiated = try #require(outcomes["negotiated-hash"])
        #expect(negotiated["selected"] as? String == "sha512" && negotiated["plaintext"] as? String == "the database key", "\(negotiated)")
        #expect(Self.refusal(negotiated["unsupported"] as? [String: Any]) == "401 HashAlgorithm")

        // A certificate secret's private key as a resource.
        let key = try await setup.client(["release-ec"], resource: "default/tls/key")
        #expect((key["release-ec"]?["plaintext"] as? String)?.hasPrefix("-----BEGIN PRIVATE KEY-----") == true, "\(key)")
    }

    @Test func realSNPEvidenceVerifiesUpToReportDataBindingAndCookiesExpire() async throws {
        // Sessions of 3 s: the client waits 4 s before fetching with its cookie.
        let setup = try await Setup(sessionLifetime: 3)
        let outcomes = try await setup.client(["real-snp-evidence", "expired-cookie"])
        let snp = try #require(outcomes["real-snp-evidence"])
        // The fixture's signature, VCEK and chain verify (the ASK/ARK came from the KDS stub);
        // it was made for Trustee's nonce and key, so the binding is what fails.
        #expect(Self.refusal(snp["genuine"] as? [String: Any]) == "401 ReportDataMismatch", "\(snp)")
        #expect(Self.refusal(snp["flippedMeasurement"] as? [String: Any]) == "401 AttestationFailed")
        #expect((snp["flippedMeasurement"] as? [String: Any])?["detail"] as? String == "evidence rejected: SEV-SNP report rejected: report signature does not verify with the VCEK")
        #expect(setup.kds.requests.contains { $0.hasSuffix("/cert_chain") })
        #expect(Self.refusal(outcomes["expired-cookie"]) == "401 SessionExpired")
    }

    /// Azure's paravisor SNP VMs: the SNP report, the HCL binding, the vTPM quote's signature and
    /// PCR digest verify (versions 1 and 2); the fixtures were made for another nonce, so the
    /// binding is what fails; a changed PCR fails before it.
    @Test func azureSNPVTPMEvidenceVerifiesUpToItsBinding() async throws {
        let setup = try await Setup(azure: true)
        let outcomes = try await setup.client(["azure-evidence"])
        let azure = try #require(outcomes["azure-evidence"])
        for name in ["evidence-v1.json", "evidence-v2.json"] {
            #expect(Self.refusal(azure[name] as? [String: Any]) == "401 ReportDataMismatch", "\(name): \(azure)")
        }
        let changed = azure["changedPCR"] as? [String: Any]
        #expect(Self.refusal(changed) == "401 AttestationFailed" && (changed?["detail"] as? String)?.contains("PCR values do not match") == true, "\(azure)")
        #expect(setup.kds.requests.contains("/vcek/v1/Milan/cert_chain"), "\(setup.kds.requests)")
    }

    /// A bearer token from before a manifest update that removes the resource gets nothing after it.
    @Test func aManifestUpdateThatRemovesTheResourceRefusesTheNextRelease() async throws {
        let setup = try await Setup()
        let issued = try #require(try await setup.client(["token"])["token"])
        let (token, key) = (try #require(issued["token"] as? String), try #require(issued["key"] as? String))
        let before = try await setup.client(["fetch-bearer"], extra: ["--token", token, "--key-jwk", key])
        #expect(before["fetch-bearer"]?["plaintext"] as? String == "the database key", "\(before)")

        let removed = setup.manifest.replacingOccurrences(of: #""default/key/db": "{{ raw .Secrets.dbkey }}", "#, with: "")
        #expect(removed != setup.manifest)
        let update = try await setup.coordinator.veil(
            ["manifest", "update", try setup.scratch.write(removed, to: "removed.json")], environment: ["VEIL_USER_CERT": setup.alice.cert, "VEIL_USER_KEY": setup.alice.key])
        #expect(update.status == 0, "\(update.stderr)")
        let after = try await setup.client(["fetch-bearer"], extra: ["--token", token, "--key-jwk", key])
        #expect(Self.refusal(after["fetch-bearer"]) == "403 PolicyDeny", "\(after)")
    }

    @Test func releasesAreCountedAgainstMaxActivationsAndSignedIntoTheHistory() async throws {
        let setup = try await Setup()
        let outcomes = try await setup.client(["releases"], measurement: Self.countedMeasurement, count: 3)
        let releases = try #require(outcomes["releases"]?["outcomes"] as? [[String: Any]])
        #expect(releases.map { $0["status"] as? Int } == [200, 200, 403], "\(releases)")
        #expect(releases.last?["type"] as? String == "ReleaseLimitReached")

        let log = try await setup.coordinator.veil(["manifest", "log"])
        #expect(log.status == 0, "\(log.stderr)")
        #expect(log.stdout.components(separatedBy: "kbsResourceReleased").count - 1 == 2, "\(log.stdout)")
        #expect(log.stdout.contains("default/key/db") && log.stdout.contains("counted"))
    }

    /// `veil-bench kbs`, small: every KBS handshake and release succeeds (it stops at the first
    /// refusal) and both rates come out beside the activation rate of the same run.
    @Test func benchKBSRunsEveryOperationAgainstActivations() async throws {
        let scratch = try Scratch()
        let result = try await run(veilBenchBinary, ["kbs", "--count", "40", "--concurrency", "4"], scratch: scratch, timeout: 180)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        for row in ["activations (peer)", "KBS handshakes (auth+attest+resource)", "KBS releases on a bearer token"] {
            let line = result.stdout.split(separator: "\n").first { $0.contains(row) }
            let rate = line.flatMap { $0.split(separator: " ").compactMap { Double($0) }.first }
            #expect((rate ?? 0) > 0, "\(row): \(result.stdout)")
        }
    }
}
