import Foundation
import Testing
@testable import VeilAttestation

/// Evidence providers against a directory tree laid out like Gramine's /dev/attestation,
/// filled with the shared real vectors; the verifiers are the real ones. configfs-tsm, whose
/// entries the kernel creates and fills, is tested against a FUSE double that behaves like it
/// (VeilEndToEndTests/ConfigfsTSMTests).
@Suite struct ProviderTests {
    let reportData = ReportData.binding(Array("launcher key".utf8), nonce: [9, 9])

    func scratch() throws -> String {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent("veil-tee-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
        return path
    }

    func write(_ bytes: [UInt8], _ path: String) throws { try Data(bytes).write(to: URL(fileURLWithPath: path)) }

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
