import Crypto
import Foundation
import Testing
@testable import VeilAttestation

/// VLEK-signed reports. AMD publishes no VLEK sample, so OpenSSL (an independent
/// implementation) builds an AMD-shaped PKI — ARK and ASVK signing with RSASSA-PSS/SHA-384,
/// a P-384 VLEK with SPL extensions and no hwID — and the test signs the real Milan report's
/// bytes with the VLEK after marking it VLEK-signed.
@Suite struct VLEKTests {
    struct PKI {
        let arkPEM: String
        let chainPEM: String
        let vlekDER: [UInt8]
        let vlekKey: P384.Signing.PrivateKey
        /// CRLs issued by the test ARK: one revoking nothing, one revoking the ASVK.
        let emptyCRL: [UInt8]
        let revokingCRL: [UInt8]
    }

    static func makePKI(report: SNPReport) throws -> PKI {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("veil-vlek-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let tcb = SNPReport.TCBVersion(raw: report.reportedTCB)
        func int(_ value: UInt8) -> String { String(format: "DER:02:01:%02x", value) }
        let pss = "-sha384 -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:48 -sigopt rsa_mgf1_md:sha384"
        let script = """
            set -e
            cd '\(dir)'
            printf 'basicConstraints=critical,CA:TRUE\\n' > ca.ext
            printf '1.3.6.1.4.1.3704.1.2=DER:16:08:4d:69:6c:61:6e:2d:42:30\\n1.3.6.1.4.1.3704.1.3.1=\(int(tcb.bootloader))\\n1.3.6.1.4.1.3704.1.3.2=\(int(tcb.tee))\\n1.3.6.1.4.1.3704.1.3.3=\(int(tcb.snp))\\n1.3.6.1.4.1.3704.1.3.8=\(int(tcb.microcode))\\n' > vlek.ext
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ark.key -subj '/CN=ARK-Milan' -days 3650 \(pss) -addext basicConstraints=critical,CA:TRUE -out ark.pem 2>/dev/null
            openssl req -new -newkey rsa:2048 -nodes -keyout asvk.key -subj '/CN=SEV-VLEK-Milan' -out asvk.csr 2>/dev/null
            openssl x509 -req -in asvk.csr -CA ark.pem -CAkey ark.key -CAcreateserial -days 3650 \(pss) -extfile ca.ext -out asvk.pem 2>/dev/null
            openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-384 -out vlek.key
            openssl req -new -key vlek.key -subj '/CN=SEV-VLEK' -out vlek.csr
            openssl x509 -req -in vlek.csr -CA asvk.pem -CAkey asvk.key -CAcreateserial -days 365 \(pss) -extfile vlek.ext -outform DER -out vlek.der 2>/dev/null
            touch index.txt && echo 01 > crlnumber
            printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\ncrlnumber=crlnumber\\ndefault_md=sha384\\ndefault_crl_days=30\\n' > ca.cnf
            openssl ca -config ca.cnf -keyfile ark.key -cert ark.pem -gencrl \(pss.replacingOccurrences(of: "-sha384 ", with: "")) -out empty.crl 2>/dev/null
            openssl ca -config ca.cnf -keyfile ark.key -cert ark.pem -revoke asvk.pem 2>/dev/null
            openssl ca -config ca.cnf -keyfile ark.key -cert ark.pem -gencrl \(pss.replacingOccurrences(of: "-sha384 ", with: "")) -out revoking.crl 2>/dev/null
            openssl crl -in empty.crl -outform DER -out empty.der
            openssl crl -in revoking.crl -outform DER -out revoking.der
            """
        try runShell(script)
        func text(_ name: String) throws -> String { try String(contentsOfFile: "\(dir)/\(name)", encoding: .utf8) }
        return PKI(
            arkPEM: try text("ark.pem"), chainPEM: try text("asvk.pem") + (try text("ark.pem")),
            vlekDER: Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/vlek.der"))),
            vlekKey: try P384.Signing.PrivateKey(pemRepresentation: try text("vlek.key")),
            emptyCRL: Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/empty.der"))),
            revokingCRL: Array(try Data(contentsOf: URL(fileURLWithPath: "\(dir)/revoking.der"))))
    }

    /// The real report, marked VLEK-signed (flags bits 2–4 = 1) and re-signed with `key`.
    static func vlekSigned(_ original: [UInt8], key: P384.Signing.PrivateKey) throws -> [UInt8] {
        var bytes = original
        bytes[0x48] = (bytes[0x48] & ~0x1c) | (1 << 2)
        let signature = try key.signature(for: bytes[..<SNPReport.signedLength]).rawRepresentation
        let r = Array(signature.prefix(48).reversed()) + [UInt8](repeating: 0, count: 24)
        let s = Array(signature.suffix(48).reversed()) + [UInt8](repeating: 0, count: 24)
        bytes.replaceSubrange(0x2A0..<0x2A0 + 144, with: r + s)
        return bytes
    }

    @Test func vlekSignedReportVerifiesAndKeyTypesCannotBeSwapped() throws {
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: "\(SNPTests.directory)/snp_report_milan.bin")))
        let pki = try Self.makePKI(report: try SNPReport(original))
        let report = try Self.vlekSigned(original, key: pki.vlekKey)
        let verifier = SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true), trustedARKPEM: pki.arkPEM)

        let (parsed, claims) = try verifier.verify(report: report, vcek: pki.vlekDER, chainPEM: pki.chainPEM)
        #expect(parsed.signingKey == 1)
        #expect(claims.measurement == (try SNPReport(original)).measurement)

        // A VLEK cannot vouch for a report that says VCEK, nor a VCEK for one that says VLEK.
        var saysVCEK = report
        saysVCEK[0x48] &= ~0x1c
        #expect(throws: SNPError.self) { try verifier.verify(report: saysVCEK, vcek: pki.vlekDER, chainPEM: pki.chainPEM) }
        let realVCEK = Array(try Data(contentsOf: URL(fileURLWithPath: "\(SNPTests.directory)/vcek_milan.der")))
        let milanChain = try String(contentsOfFile: "\(SNPTests.directory)/ask_ark_milan.pem", encoding: .utf8)
        let error = try #require(throws: SNPError.self) {
            try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true)).verify(report: report, vcek: realVCEK, chainPEM: milanChain)
        }
        guard case .signingKeyMismatch = error else { Issue.record("\(error)"); return }

        // The test PKI is not AMD's: the production verifier refuses its ARK.
        #expect(throws: SNPError.untrustedARK(product: "Milan")) {
            try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true)).verify(report: report, vcek: pki.vlekDER, chainPEM: pki.chainPEM)
        }
        // A flipped measurement breaks the VLEK signature.
        var flipped = report
        flipped[0x90] ^= 1
        #expect(throws: SNPError.signatureInvalid(.vlek)) { try verifier.verify(report: flipped, vcek: pki.vlekDER, chainPEM: pki.chainPEM) }
        #expect(SNPError.signatureInvalid(.vlek).description.contains("VLEK"))
        // Errors about a VLEK's chain name the VLEK and the ASVK, not the VCEK and ASK.
        let asvkOnly = String(pki.chainPEM[..<pki.chainPEM.range(of: "-----END CERTIFICATE-----")!.upperBound]) + "\n"
        #expect(throws: SNPError.chainUntrusted("cert_chain must hold the ASVK and the ARK, found 1 certificates")) {
            try verifier.verify(report: report, vcek: pki.vlekDER, chainPEM: asvkOnly)
        }
    }

    /// AMD's CRL (issued by the ARK with RSASSA-PSS) revokes the ASVK/ASK: checked when given.
    @Test func amdCRLIsVerifiedAndEnforced() throws {
        let original = Array(try Data(contentsOf: URL(fileURLWithPath: "\(SNPTests.directory)/snp_report_milan.bin")))
        let pki = try Self.makePKI(report: try SNPReport(original))
        let report = try Self.vlekSigned(original, key: pki.vlekKey)
        let verifier = SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true), trustedARKPEM: pki.arkPEM)
        let checked = try verifier.verifyChain(vcek: pki.vlekDER, chainPEM: pki.chainPEM, crl: pki.emptyCRL, at: Date())
        #expect(checked.revocationChecked && checked.key == .vlek)
        #expect(try !verifier.verifyChain(vcek: pki.vlekDER, chainPEM: pki.chainPEM, at: Date()).revocationChecked)
        #expect(SNPEvidence.product(ofCRL: pki.emptyCRL) == .milan)

        let revoked = try #require(throws: SNPError.self) { try verifier.verify(report: report, vcek: pki.vlekDER, chainPEM: pki.chainPEM, crl: pki.revokingCRL) }
        guard case .certificateRevoked(let subject) = revoked else { Issue.record("\(revoked)"); return }
        #expect(subject.contains("SEV-VLEK-Milan"))
        // Past its nextUpdate (30 days) the CRL is refused rather than trusted stale.
        let late = Date().addingTimeInterval(40 * 86400)
        let expired = try #require(throws: SNPError.self) { try verifier.verifyChain(vcek: pki.vlekDER, chainPEM: pki.chainPEM, crl: pki.emptyCRL, at: late) }
        guard case .crlInvalid(let why) = expired else { Issue.record("\(expired)"); return }
        #expect(why.contains("expired"))
        // A CRL not signed by the ARK: one bit of its signature flipped.
        var forged = pki.emptyCRL
        forged[forged.count - 10] ^= 1
        let badSignature = try #require(throws: SNPError.self) { try verifier.verifyChain(vcek: pki.vlekDER, chainPEM: pki.chainPEM, crl: forged, at: Date()) }
        guard case .crlInvalid(let reason) = badSignature else { Issue.record("\(badSignature)"); return }
        #expect(reason.contains("signature"))
        // Not a CRL at all.
        #expect(throws: SNPError.self) { try verifier.verifyChain(vcek: pki.vlekDER, chainPEM: pki.chainPEM, crl: [0x30, 0x00], at: Date()) }
    }

    @Test func pssParametersAreCheckedNotJustTheOID() {
        let amd = [UInt8]([0x30, 0x46, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x0a]) + [
            0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
            0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09,
            0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02,
            0x01, 0x01,
        ]
        #expect(AMDCertificate.isPSSWithSHA384(amd))
        var salt32 = amd
        salt32[salt32.count - 6] = 0x20
        #expect(!AMDCertificate.isPSSWithSHA384(salt32))
        var sha256 = amd
        sha256[13 + 17] = 0x01  // hashAlgorithm OID ends …04 02 01 (SHA-256)
        #expect(!AMDCertificate.isPSSWithSHA384(sha256))
    }
}
