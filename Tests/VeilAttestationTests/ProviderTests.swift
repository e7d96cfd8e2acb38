import Foundation
import Testing
@testable import VeilAttestation

/// Evidence providers against directory trees laid out like configfs-tsm and Gramine's
/// /dev/attestation, filled with the shared real vectors. Only the file interface is a
/// double; the verifiers are the real ones.
@Suite struct ProviderTests {
    let snpDirectory = SNPTests.directory
    let reportData = ReportData.binding(Array("launcher key".utf8), nonce: [9, 9])

    func scratch() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("veil-tee-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func write(_ bytes: [UInt8], _ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

    /// The SEV certificate table the SNP firmware hands the guest, built from the specification
    /// (``SNPReferenceTests/specTable(_:)``) with AMD's real certificates as DER.
    func certificateTable() throws -> [UInt8] {
        let vcek = Array(try Data(contentsOf: URL(fileURLWithPath: "\(snpDirectory)/vcek_milan.der")))
        let chain = try AMDCertificate.parsePEM(try String(contentsOfFile: "\(snpDirectory)/ask_ark_milan.pem", encoding: .utf8))
        return SNPReferenceTests.specTable([
            ("63da758de6644564adc5f4b93be8accd", vcek), ("4ab7b379bbac4fe4a02f05aef327c782", chain[0].der), ("c0b406a4a803495297433fb6014cd0ae", chain[1].der),
        ])
    }

    @Test func configfsTSMOnAnSNPGuest() throws {
        let root = try scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let entry = "\(root)/veil"
        try FileManager.default.createDirectory(atPath: entry, withIntermediateDirectories: true)
        try write(Array("sev_guest\n".utf8), "\(entry)/provider")
        try write(Array("1\n".utf8), "\(entry)/generation")
        try write(Array(try Data(contentsOf: URL(fileURLWithPath: "\(snpDirectory)/snp_report_milan.bin"))), "\(entry)/outblob")
        try write(try certificateTable(), "\(entry)/auxblob")

        let evidence = try ConfigfsTSMProvider(root: root, entry: "veil").evidence(reportData: reportData)
        #expect(evidence.format == SNPEvidence.format)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: "\(entry)/inblob"))) == reportData, "the report data went to inblob")
        let verifier = Verifier(policy: VerificationPolicy(allowSNP: true))
        let claims = try verifier.verify(evidence)
        #expect(claims.tee == .snp && Hex.encode(claims.measurement).hasPrefix("b07af962"))
        // The recorded report binds 01 02 03 04 05, not our data: a real kernel would have bound ours.
        #expect(throws: AttestationError.reportDataMismatch) { try verifier.verify(evidence, expectedReportData: reportData) }
        #expect(throws: AttestationError.unsupportedFormat(SNPEvidence.format)) { try Verifier(policy: .init()).verify(evidence) }

        try write(Array("quantum_guest\n".utf8), "\(entry)/provider")
        #expect(throws: ProviderError.unexpectedProvider("quantum_guest")) { try ConfigfsTSMProvider(root: root, entry: "veil").evidence(reportData: reportData) }
        try write(Array("sev_guest\n".utf8), "\(entry)/provider")
        try write([UInt8](repeating: 0, count: 10), "\(entry)/auxblob")
        #expect(throws: ProviderError.self) { try ConfigfsTSMProvider(root: root, entry: "veil").evidence(reportData: reportData) }
    }

    @Test func configfsTSMOnATDXGuest() throws {
        let root = try scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let entry = "\(root)/veil"
        try FileManager.default.createDirectory(atPath: entry, withIntermediateDirectories: true)
        try write(Array("tdx_guest\n".utf8), "\(entry)/provider")
        try write(Array("7\n".utf8), "\(entry)/generation")
        try write(try Vectors.bytes("tdx_quote"), "\(entry)/outblob")
        let evidence = try ConfigfsTSMProvider(root: root, entry: "veil").evidence(reportData: reportData)
        #expect(evidence.format == DCAPEvidence.format)
        // Asking for SNP on a TDX guest is refused, not silently served TDX evidence.
        #expect(throws: ProviderError.self) {
            try TEESelection.snp.hardwareProvider(tsmRoot: root, tsmEntry: "veil").evidence(reportData: reportData)
        }
        #expect(try TEESelection.tdx.hardwareProvider(tsmRoot: root, tsmEntry: "veil").evidence(reportData: reportData).format == DCAPEvidence.format)
        let source = try FileDCAPCollateralSource(path: "\(Vectors.directory)/tdx_quote_collateral.json")
        let dcap = DCAPEvidenceVerifier(source: source, clock: { Date(timeIntervalSince1970: 1_750_331_763) })
        let claims = try Verifier(policy: VerificationPolicy(dcap: dcap)).verify(evidence)
        #expect(claims.tee == .tdx && claims.tcb?.status == .upToDate)
    }

    @Test func gramineOnAnSGXEnclave() throws {
        let root = try scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        try write(Array("dcap\n".utf8), "\(root)/attestation_type")
        try write(try Vectors.bytes("sgx_quote"), "\(root)/quote")
        let evidence = try GramineProvider(root: root).evidence(reportData: reportData)
        #expect(Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/user_report_data"))) == reportData)
        let source = try FileDCAPCollateralSource(path: Vectors.directory)
        let dcap = DCAPEvidenceVerifier(source: source, clock: { Date(timeIntervalSince1970: 1_750_334_171) })
        let claims = try Verifier(policy: VerificationPolicy(dcap: dcap)).verify(evidence)
        #expect(claims.tee == .sgx)
        try write(Array("epid\n".utf8), "\(root)/attestation_type")
        #expect(throws: ProviderError.self) { try GramineProvider(root: root).evidence(reportData: reportData) }
    }

    @Test func autoDetectsAndNeverFallsBackToSimulation() throws {
        let root = try scratch()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let error = try #require(throws: ProviderError.self) {
            try TEESelection.auto.hardwareProvider(tsmRoot: "\(root)/tsm", gramineRoot: "\(root)/attestation")
        }
        #expect(error.description.contains("--tee simulated"))
        #expect(throws: ProviderError.self) { try TEESelection.snp.hardwareProvider(tsmRoot: "\(root)/tsm") }
        #expect(throws: ProviderError.self) { try TEESelection.sgxGramine.hardwareProvider(gramineRoot: "\(root)/attestation") }
        try FileManager.default.createDirectory(atPath: "\(root)/tsm", withIntermediateDirectories: true)
        #expect(try TEESelection.auto.hardwareProvider(tsmRoot: "\(root)/tsm", gramineRoot: "\(root)/attestation") is ConfigfsTSMProvider)
        try FileManager.default.createDirectory(atPath: "\(root)/attestation", withIntermediateDirectories: true)
        try write([1], "\(root)/attestation/quote")
        #expect(try TEESelection.sgxGramine.hardwareProvider(gramineRoot: "\(root)/attestation") is GramineProvider)
        #expect(try TEESelection.auto.hardwareProvider(tsmRoot: "\(root)/none", gramineRoot: "\(root)/attestation").isSimulated == false)
    }

    /// A directory of collateral for several platforms: the one for the quote's TEE and FMSPC is used.
    @Test func collateralDirectoryPicksTheQuotesPlatform() throws {
        let source = try FileDCAPCollateralSource(path: Vectors.directory)
        for (name, fmspc) in [("sgx_quote", "00A067110000"), ("tdx_quote", "B0C06F000000"), ("tdx_quote_outdated", "90C06F000000")] {
            let chosen = try source.collateral(for: try DCAPQuote(try Vectors.bytes(name)))
            #expect(String(decoding: chosen.tcbInfo, as: UTF8.self).contains("\"fmspc\":\"\(fmspc)\""), "\(name)")
        }
    }
}
