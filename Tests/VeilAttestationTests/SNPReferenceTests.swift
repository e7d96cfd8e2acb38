import Foundation
import Testing
@testable import VeilAttestation
import VeilCore

/// Real SEV-SNP captures beyond go-sev-guest's Milan report: Veraison's configfs-tsm capture
/// from a Genoa guest (report v3, certificate table with RFC 4122 GUIDs and PEM payloads) and
/// virtee's Milan report. Sources and licences: ../shared/testdata/attestation/*/SOURCE.md.
@Suite struct SNPReferenceTests {
    static let root = URL(fileURLWithPath: SNPTests.directory).deletingLastPathComponent().path
    static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/\(name)"))) }

    @Test func veraisonGenoaCaptureVerifiesAsTheKernelServedIt() throws {
        let evidence = try SNPEvidence.make(report: try Self.bytes("veraison/upstream/outblob.bin"), certificateTable: try Self.bytes("veraison/upstream/auxblob.bin"))
        let claims = try Verifier(policy: .init(allowSNP: true)).verify(evidence)
        let report = try SNPReport(try Self.bytes("veraison/genoa_report.bin"))
        #expect(report.version == 3 && report.product == .genoa, "the product comes from the report's CPUID")
        // CURRENT_MAJOR/MINOR/BUILD at 0x1EA/0x1E9/0x1E8: this Genoa runs SNP firmware 1.55.40
        // (KEY_SEL understood), go-sev-guest's Milan 1.49.3 (not).
        #expect(report.currentFirmware == (1, 55, 40))
        #expect(try SNPReport(try Self.bytes("go-sev-guest/snp_report_milan.bin")).currentFirmware == (1, 49, 3))
        #expect(claims.tee == .snp && claims.measurement == report.measurement && claims.snp?.vmpl == 0)
        // The capture binds Veraison's nonce, not this launch's key: refused for exactly that.
        let reportData = ReportData.binding(Array("key".utf8), nonce: [1])
        #expect(throws: AttestationError.reportDataMismatch) { try Verifier(policy: .init(allowSNP: true)).verify(evidence, expectedReportData: reportData) }
    }

    /// Upstream KVM hands the guest no certificates unless the VMM opts in: the auxblob is
    /// empty. The evidence then carries no VCEK, verification says so, and the VCEK a verifier
    /// fetched (AMD KDS; here the one KDS serves for this chip, from the capture) completes it.
    @Test func anEmptyAuxblobGivesEvidenceThatNeedsAVCEK() throws {
        let outblob = try Self.bytes("veraison/upstream/outblob.bin")
        let evidence = try SNPEvidence.make(report: outblob, certificateTable: [])
        let report = try #require(SNPEvidence.reportNeedingEndorsement(evidence))
        #expect(report.chipID == (try SNPReport(outblob)).chipID)
        #expect(throws: AttestationError.snp(.endorsementMissing)) { try Verifier(policy: .init(allowSNP: true)).verify(evidence) }
        let chain = try String(contentsOfFile: "\(Self.root)/veraison/upstream/chain_ask_ark_genoa.pem", encoding: .utf8)
        let endorsed = try SNPEvidence.withEndorsement(evidence, vcek: try Self.bytes("veraison/upstream/vcek.der"), chain: chain)
        #expect(SNPEvidence.reportNeedingEndorsement(endorsed) == nil)
        #expect(try Verifier(policy: .init(allowSNP: true)).verify(endorsed).measurement == report.measurement)
        // Another chip's VCEK (go-sev-guest's Milan) does not complete it.
        let wrong = try SNPEvidence.withEndorsement(evidence, vcek: try Self.bytes("go-sev-guest/vcek_milan.der"), chain: chain)
        #expect(throws: AttestationError.self) { try Verifier(policy: .init(allowSNP: true)).verify(wrong) }
        // A table that is present but truncated is still malformed, not "no certificates".
        #expect(throws: ProviderError.self) { try SNPEvidence.make(report: outblob, certificateTable: [UInt8](repeating: 0, count: 10)) }
    }

    /// A certificate table built from the GHCB specification alone: each entry is the GUID's
    /// 16 bytes in RFC 4122 order (the text's hex digits in sequence), a little-endian u32
    /// offset and u32 length; a zero entry ends the table. ARK is `c0b406a4-…`, ASK `4ab7b379-…`.
    static func specTable(_ entries: [(guidHex: String, payload: [UInt8])]) -> [UInt8] {
        var header: [UInt8] = []
        var payload: [UInt8] = []
        let headerSize = (entries.count + 1) * 24
        for (guidHex, bytes) in entries {
            let guid = stride(from: 0, to: 32, by: 2).map { offset -> UInt8 in
                let start = guidHex.index(guidHex.startIndex, offsetBy: offset)
                return UInt8(guidHex[start..<guidHex.index(start, offsetBy: 2)], radix: 16)!
            }
            let offset = UInt32(headerSize + payload.count), length = UInt32(bytes.count)
            header += guid + [0, 8, 16, 24].map { UInt8(truncatingIfNeeded: offset >> $0) } + [0, 8, 16, 24].map { UInt8(truncatingIfNeeded: length >> $0) }
            payload += bytes
        }
        return header + [UInt8](repeating: 0, count: 24) + payload
    }

    @Test func specBuiltTableWithDERAndPEMEntriesIsRead() throws {
        let chainPEM = try String(contentsOfFile: "\(Self.root)/go-sev-guest/ask_ark_milan.pem", encoding: .utf8)
        let blocks = chainPEM.components(separatedBy: "-----END CERTIFICATE-----").filter { $0.contains("BEGIN") }
            .map { $0.trimmingCharacters(in: .whitespacesAndNewlines) + "\n-----END CERTIFICATE-----\n" }
        let askPEM = Array(blocks[0].utf8), arkPEM = Array(blocks[1].utf8)
        let vcek = try Self.bytes("go-sev-guest/vcek_milan.der")
        let table = Self.specTable([
            ("c0b406a4a803495297433fb6014cd0ae", arkPEM), ("4ab7b379bbac4fe4a02f05aef327c782", askPEM), ("63da758de6644564adc5f4b93be8accd", vcek),
        ])
        let evidence = try SNPEvidence.make(report: try Self.bytes("go-sev-guest/snp_report_milan.bin"), certificateTable: table)
        let claims = try Verifier(policy: .init(allowSNP: true)).verify(evidence)
        #expect(Hex.encode(claims.measurement).hasPrefix("b07af962"))

        // ASK and ARK swapped in the table: the chain no longer leads to AMD's ARK.
        let swapped = Self.specTable([
            ("c0b406a4a803495297433fb6014cd0ae", askPEM), ("4ab7b379bbac4fe4a02f05aef327c782", arkPEM), ("63da758de6644564adc5f4b93be8accd", vcek),
        ])
        let misfiled = try SNPEvidence.make(report: try Self.bytes("go-sev-guest/snp_report_milan.bin"), certificateTable: swapped)
        #expect(throws: AttestationError.snp(.untrustedARK(product: "Milan"))) { try Verifier(policy: .init(allowSNP: true)).verify(misfiled) }
        // A table without a VCEK or VLEK: evidence that needs one fetched (the table's ARK alone is not used).
        let milan = try Self.bytes("go-sev-guest/snp_report_milan.bin")
        let arkOnly = try SNPEvidence.make(report: milan, certificateTable: Self.specTable([("c0b406a4a803495297433fb6014cd0ae", arkPEM)]))
        #expect(SNPEvidence.reportNeedingEndorsement(arkOnly) != nil)
        #expect(throws: AttestationError.snp(.endorsementMissing)) { try Verifier(policy: .init(allowSNP: true)).verify(arkOnly) }
    }

    @Test func virteeMilanReportVerifiesAndAFlippedByteDoesNot() throws {
        let report = try Self.bytes("virtee-sev/report_milan.bin")
        let vcek = try Self.bytes("virtee-sev/vcek_milan.der")
        let chain = try String(contentsOfFile: "\(Self.root)/virtee-sev/chain_milan.pem", encoding: .utf8)
        let verifier = SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true))
        _ = try verifier.verify(report: report, vcek: vcek, chainPEM: chain, at: try Date("2024-01-01T00:00:00Z", strategy: .iso8601))
        var flipped = report
        flipped[21] ^= 0xFF  // upstream's milan_report_invalid
        #expect(throws: SNPError.self) { try verifier.verify(report: flipped, vcek: vcek, chainPEM: chain, at: try Date("2024-01-01T00:00:00Z", strategy: .iso8601)) }
    }

    @Test func reservedBytesOfTheSignatureMustBeZero() throws {
        var report = try Self.bytes("go-sev-guest/snp_report_milan.bin")
        report[0x400] = 1
        #expect(throws: QuoteParseError.nonZeroReserved(field: "signature.reserved", offset: 0x400)) { try SNPReport(report) }
    }

    @Test func requiredVMPLAndProductAreEnforced() throws {
        let report = try Self.bytes("go-sev-guest/snp_report_milan.bin")
        let vcek = try Self.bytes("go-sev-guest/vcek_milan.der")
        let chain = try String(contentsOfFile: "\(Self.root)/go-sev-guest/ask_ark_milan.pem", encoding: .utf8)
        let time = try Date("2022-09-24T01:00:00Z", strategy: .iso8601)
        #expect(throws: SNPError.policy(.vmpl(reported: 0, required: 1))) {
            try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, vmpl: 1, allowDebug: true)).verify(report: report, vcek: vcek, chainPEM: chain, at: time)
        }
        _ = try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, vmpl: 0, allowDebug: true)).verify(report: report, vcek: vcek, chainPEM: chain, at: time)

        // The Genoa report carries its CPUID: verifying it as a Milan chip is refused.
        let genoa = try Self.bytes("veraison/genoa_report.bin")
        let genoaVCEK = try Self.bytes("veraison/genoa_vcek.der")
        let genoaChain = try String(contentsOfFile: "\(Self.root)/veraison/genoa_chain.pem", encoding: .utf8)
        let milanVerifier = SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true))
        #expect(throws: SNPError.self) { try milanVerifier.verify(report: genoa, vcek: genoaVCEK, chainPEM: genoaChain) }
        let genoaVerifier = SNPVerifier(product: .genoa, policy: .init(minimumTCB: .any))
        let checked = try genoaVerifier.verifyChain(vcek: genoaVCEK, chainPEM: genoaChain, at: Date())
        #expect(throws: SNPError.productMismatch(certificate: "Milan", expected: "Genoa (the report's CPUID)", key: .vcek)) {
            try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any)).verify(report: try SNPReport(genoa), bytes: genoa, vcek: checked, at: Date())
        }
        _ = try genoaVerifier.verify(report: try SNPReport(genoa), bytes: genoa, vcek: checked, at: Date())
        #expect(AMDProduct(family: 0x19, model: 0x01) == .milan && AMDProduct(family: 0x19, model: 0x11) == .genoa)
        #expect(AMDProduct(family: 0x1A, model: 0x02) == .turin && AMDProduct(family: 0x17, model: 0x31) == nil)
    }
}
