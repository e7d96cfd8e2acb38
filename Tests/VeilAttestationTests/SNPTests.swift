import Foundation
import Testing
@testable import VeilAttestation

/// The real Milan report from go-sev-guest (../shared/testdata/attestation/go-sev-guest, Apache 2.0).
@Suite struct SNPTests {
    static let directory = URL(fileURLWithPath: Vectors.directory).deletingLastPathComponent().appendingPathComponent("go-sev-guest").path
    let report = Array(try! Data(contentsOf: URL(fileURLWithPath: "\(directory)/snp_report_milan.bin")))
    let vcek = Array(try! Data(contentsOf: URL(fileURLWithPath: "\(directory)/vcek_milan.der")))
    let milanChain = try! String(contentsOfFile: "\(directory)/ask_ark_milan.pem", encoding: .utf8)
    let genoaChain = try! String(contentsOfFile: "\(directory)/ask_ark_genoa.pem", encoding: .utf8)
    let time = try! Date("2022-09-24T01:00:00Z", strategy: .iso8601)
    /// The report's guest policy (0xb0000) allows debugging, so the positive case must allow it.
    let debugAllowed = SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true))

    func verify(_ bytes: [UInt8], verifier: SNPVerifier? = nil, vcek: [UInt8]? = nil, chain: String? = nil) throws -> (SNPReport, Claims) {
        try (verifier ?? debugAllowed).verify(report: bytes, vcek: vcek ?? self.vcek, chainPEM: chain ?? milanChain, at: time)
    }

    func flipped(_ offset: Int) -> [UInt8] {
        var bytes = report
        bytes[offset] ^= 0x01
        return bytes
    }

    @Test func realMilanReportVerifies() throws {
        let (parsed, claims) = try verify(report)
        #expect(parsed.version == 2)
        #expect(parsed.policy.raw == 0xb0000)
        #expect(Hex.encode(claims.measurement).hasPrefix("b07af962"))
        #expect(claims.reportData.prefix(5) == [1, 2, 3, 4, 5])
        #expect(claims.tee == .snp && claims.debug)
        // The VCEK's serial number is not positive; it is still AMD's certificate.
        #expect(try AMDCertificate(derEncoded: vcek).serial.allSatisfy { $0 == 0 })
        // Also valid today (the VCEK runs until 2029).
        _ = try debugAllowed.verify(report: report, vcek: vcek, chainPEM: milanChain, at: Date())
    }

    @Test func flippedMeasurementReportDataOrSignature() {
        #expect(throws: SNPError.signatureInvalid(.vcek)) { try verify(flipped(0x90 + 5)) }
        #expect(throws: SNPError.signatureInvalid(.vcek)) { try verify(flipped(0x50)) }
        #expect(throws: SNPError.signatureInvalid(.vcek)) { try verify(flipped(0x2A0 + 3)) }
    }

    @Test func vcekOfAnotherChipIsRefused() {
        #expect(throws: SNPError.chipIDMismatch) { try verify(flipped(0x1A0 + 10)) }
    }

    @Test func reportedTCBAboveTheVCEKsIsRefused() throws {
        // Raise the reported SNP SPL (byte 6 of REPORTED_TCB at 0x180).
        var bytes = report
        bytes[0x180 + 6] &+= 1
        let error = try #require(throws: SNPError.self) { try verify(bytes) }
        guard case .reportedTCBMismatch(let component, _, _, _) = error else { Issue.record("\(error)"); return }
        #expect(component == "SNP")
    }

    @Test func genoaRootsForAMilanReportAreRefused() {
        #expect(throws: SNPError.untrustedARK(product: "Milan")) { try verify(report, chain: genoaChain) }
        #expect(throws: SNPError.self) { try verify(report, verifier: SNPVerifier(product: .genoa, policy: .init(minimumTCB: .any, allowDebug: true)), chain: genoaChain) }
    }

    @Test func askNotSignedByTheARKIsRefused() throws {
        // Genoa's ASK presented under Milan's ARK.
        let genoaASK = String(genoaChain[..<genoaChain.range(of: "-----END CERTIFICATE-----")!.upperBound])
        let milanARK = String(milanChain[milanChain.range(of: "-----END CERTIFICATE-----")!.upperBound...])
        let error = try #require(throws: SNPError.self) { try verify(report, chain: genoaASK + milanARK) }
        guard case .chainUntrusted(let why) = error else { Issue.record("\(error)"); return }
        #expect(why.contains("ASK"))
    }

    @Test func debugPolicyRefusedUnlessAllowed() {
        #expect(throws: SNPError.policy(.debugAllowed)) { try verify(report, verifier: SNPVerifier(product: .milan, policy: .init(minimumTCB: .any))) }
    }

    @Test func minimumTCBIsEnforced() throws {
        let (parsed, _) = try verify(report)
        let reported = SNPReport.TCBVersion(raw: parsed.reportedTCB)
        var higher = reported.raw
        higher += 1 << 56  // microcode + 1
        let verifier = SNPVerifier(product: .milan, policy: .init(minimumTCB: .atLeast(.init(raw: higher)), allowDebug: true))
        let error = try #require(throws: SNPError.self) { try verify(report, verifier: verifier) }
        guard case .policy(.tcbBelowMinimum) = error else { Issue.record("\(error)"); return }
        _ = try verify(report, verifier: SNPVerifier(product: .milan, policy: .init(minimumTCB: .atLeast(reported), allowDebug: true)))
    }

    @Test func truncationAtEveryOffsetAndTrailingBytes() {
        for length in 0..<report.count {
            #expect(throws: SNPError.self) { try verify(Array(report.prefix(length))) }
        }
        #expect(throws: SNPError.malformedReport(.trailingBytes(field: "SNP report", count: 1))) { try verify(report + [0]) }
    }

    @Test func expiredVCEKIsRefused() {
        #expect(throws: SNPError.self) { try debugAllowed.verify(report: report, vcek: vcek, chainPEM: milanChain, at: try Date("2030-01-01T00:00:00Z", strategy: .iso8601)) }
    }

    @Test func compiledRootsMatchTheirFingerprints() throws {
        for product in AMDProduct.allCases {
            let ark = try AMDCertificate.parsePEM(product.arkPEM)[0]
            #expect(Hex.encode(SHA256Digest(ark.der)) == product.arkFingerprint)
            #expect(ark.isSigned(by: ark))
        }
    }
}

import Crypto
import VeilCore
private func SHA256Digest(_ bytes: [UInt8]) -> [UInt8] { Array(SHA256.hash(data: bytes)) }
