import Foundation
import Testing
import VeilAttestation
import VeilCore

/// Evidence from the Confidential Containers guest API (`--tee coco`) against a double that
/// follows its OpenAPI document (Tests/Scripts/guest_api_double.py) and answers real fixtures:
/// Trustee's SNP attester evidence and a TD's quote with an OVMF event log.
@Suite(.timeLimit(.minutes(3))) struct GuestAPITests {
    static let kbs = repositoryRoot + "/../shared/testdata/kbs"
    static let attestation = repositoryRoot + "/../shared/testdata/attestation"
    let reportData = ReportData.binding(Array("launcher key".utf8), nonce: [7, 7])

    final class Double {
        let url: String
        let logPath: String
        private let process: Spawned

        init(scratch: Scratch, evidence: String) async throws {
            let port = freePort()
            url = "http://127.0.0.1:\(port)"
            logPath = scratch.path + "/guest-api-\(port).log"
            process = try Spawned(
                which("python3") ?? "/usr/bin/python3",
                [repositoryRoot + "/Tests/Scripts/guest_api_double.py", "\(port)", "--evidence", evidence, "--log", logPath], scratch: scratch)
            let process = process
            guard await eventually(within: 20, { isListening(port: port) || !process.isRunning }), isListening(port: port) else {
                throw TSMDouble.DoubleFailed(what: "the guest API double did not start: \(process.stderr)")
            }
        }

        deinit { process.kill9() }

        /// The runtime data of every request, hex.
        var requests: [String] { ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
    }

    /// Trustee's SNP evidence with the Genoa ASK and ARK the host would add to `cert_chain`.
    static func snpEvidence(_ scratch: Scratch) throws -> String {
        var evidence = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: kbs + "/evidence/snp/evidence.json"))) as! [String: Any]
        let pem = try String(contentsOfFile: kbs + "/evidence/snp/genoa_ask_ark_asvk.pem", encoding: .utf8)
        let ders = pem.components(separatedBy: "-----END CERTIFICATE-----").prefix(2).map { block -> [Int] in
            let base64 = block.components(separatedBy: "\n").filter { !$0.hasPrefix("-----") && !$0.isEmpty }.joined()
            return Array(Data(base64Encoded: base64)!).map(Int.init)
        }
        var chain = evidence["cert_chain"] as! [[String: Any]]
        chain += [["cert_type": "ASK", "data": ders[0]], ["cert_type": "ARK", "data": ders[1]]]
        evidence["cert_chain"] = chain
        return try scratch.write(String(decoding: try JSONSerialization.data(withJSONObject: evidence), as: UTF8.self), to: "snp-evidence.json")
    }

    @Test func snpEvidenceFromTheGuestAPIVerifiesAndCarriesTheReportDataAsked() async throws {
        let scratch = try Scratch()
        let double = try await Double(scratch: scratch, evidence: try Self.snpEvidence(scratch))
        let provider = try TEESelection.coco.hardwareProvider(guestAPI: double.url)
        #expect(provider.isConfidentialVM && !provider.isSimulated)
        let reportData = self.reportData
        let evidence = try await offThread { try provider.evidence(reportData: reportData) }
        #expect(evidence.format == SNPEvidence.format)
        let claims = try Verifier(policy: VerificationPolicy(allowSNP: true)).verify(evidence)
        let fixture = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.kbs + "/evidence/snp/evidence.json"))) as! [String: Any]
        let measurement = ((fixture["attestation_report"] as! [String: Any])["measurement"] as! [Int]).map(UInt8.init)
        #expect(claims.tee == .snp && claims.measurement == measurement)
        // The guest API was asked for exactly the report data (base64url, encoding=base64).
        #expect(double.requests == [Hex.encode(reportData)])
        // The fixture was made for other report data: bound to this key and nonce, it is refused.
        #expect(throws: AttestationError.reportDataMismatch) {
            try Verifier(policy: VerificationPolicy(allowSNP: true)).verify(evidence, expectedReportData: reportData)
        }
    }

    @Test func aTDQuoteFromTheGuestAPIVerifiesWithItsCollateral() async throws {
        let scratch = try Scratch()
        let quote = try Data(contentsOf: URL(fileURLWithPath: Self.attestation + "/dcap-qvl/tdx_quote"))
        let eventLog = try Data(contentsOf: URL(fileURLWithPath: Self.kbs + "/eventlog/CCEL_data_ovmf"))
        let body = #"{"cc_eventlog": "\#(eventLog.base64EncodedString())", "quote": "\#(quote.base64EncodedString())"}"#
        let double = try await Double(scratch: scratch, evidence: try scratch.write(body, to: "tdx-evidence.json"))
        let provider = try TEESelection.coco.hardwareProvider(guestAPI: double.url)
        let reportData = self.reportData
        let evidence = try await offThread { try provider.evidence(reportData: reportData) }
        #expect(evidence.format == DCAPEvidence.format && evidence.data == Array(quote))
        let source = try FileDCAPCollateralSource(path: Self.attestation + "/dcap-qvl/tdx_quote_collateral.json")
        let dcap = DCAPEvidenceVerifier(source: source, clock: { Date(timeIntervalSince1970: 1_750_331_763) })
        #expect(try Verifier(policy: VerificationPolicy(dcap: dcap)).verify(evidence).tee == .tdx)
    }

    @Test func aGuestAPIThatIsAbsentOrAnswersSomethingElseIsRefusedWithTheReason() async throws {
        let scratch = try Scratch()
        let absent = try TEESelection.coco.hardwareProvider(guestAPI: "http://127.0.0.1:\(freePort())")
        let reportData = self.reportData
        await #expect(throws: ProviderError.self) { try await offThread { try absent.evidence(reportData: reportData) } }
        do {
            _ = try await offThread { try absent.evidence(reportData: reportData) }
        } catch {
            #expect("\(error)".contains("cannot reach the guest API"), "\(error)")
        }
        let double = try await Double(scratch: scratch, evidence: try scratch.write(#"{"svn": "1", "report_data": "eHh4eA=="}"#, to: "sample.json"))
        let sample = try TEESelection.coco.hardwareProvider(guestAPI: double.url)
        await #expect(throws: ProviderError.malformed("guest API evidence is not an SNP or TDX attester's JSON")) {
            try await offThread { try sample.evidence(reportData: reportData) }
        }
        #expect(throws: ProviderError.self) { try GuestAPIProvider(url: "https://127.0.0.1:8006") }
    }

    /// The coordinator itself in a Confidential Containers pod: it starts with the guest API's
    /// evidence as its identity (no configfs-tsm, no sev-guest device, no simulation key) and
    /// hands that evidence out; clients verify it for real.
    @Test func aCoordinatorRunsOnTheGuestAPI() async throws {
        let scratch = try Scratch()
        let double = try await Double(scratch: scratch, evidence: try Self.snpEvidence(scratch))
        let replica = await CoordinatorTEETests.Replica(scratch: scratch, tee: "coco", environment: ["VEIL_GUEST_API": double.url])
        let failure = try await replica.start()
        try #require(failure == nil, "\(failure ?? "")")
        let log = replica.process?.stderr ?? ""
        #expect(log.contains("tee=snp") && !log.contains("NO confidentiality"), "\(log)")
        let attestation = await replica.get("/api/v1/attestation?nonce=\(String(repeating: "cd", count: 32))")
        let evidence = try #require(attestation["evidence"] as? [String: Any])
        #expect(evidence["format"] as? String == SNPEvidence.format && attestation["simulated"] as? Bool == false)
        #expect(double.requests.count >= 2, "start and the attestation each asked the guest API: \(double.requests)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/data/simulation-platform-key.pem"))

        let absent = await CoordinatorTEETests.Replica(
            scratch: scratch, tee: "coco", environment: ["VEIL_GUEST_API": "http://127.0.0.1:\(freePort())"], arguments: ["--data-dir", scratch.path + "/d2"])
        let refused = try await absent.start()
        #expect(refused?.contains("cannot reach the guest API") == true, "\(refused ?? "it started")")
    }
}
