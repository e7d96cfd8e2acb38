import Foundation
import Testing
import X509
@testable import VeilAttestation

/// Revocation with CRLs that OpenSSL (an independent implementation) produced for a test CA.
@Suite struct CRLTests {
    struct TestCA {
        let root: Certificate
        let leaf: Certificate
        let emptyCRL: [UInt8]
        let revokingCRL: [UInt8]
    }

    static func makeCA() throws -> TestCA {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("veil-crl-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let script = """
            set -e
            cd '\(dir)'
            printf '[ca]\\ndefault_ca=test\\n[test]\\ndatabase=index.txt\\ncrlnumber=crlnumber\\ndefault_md=sha256\\ndefault_crl_days=30\\n' > ca.cnf
            touch index.txt; echo 01 > crlnumber
            openssl ecparam -name prime256v1 -genkey -noout -out root.key
            openssl req -x509 -new -key root.key -subj '/CN=Test PCK CA' -days 3650 -out root.pem \
              -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign
            openssl ecparam -name prime256v1 -genkey -noout -out leaf.key
            openssl req -new -key leaf.key -subj '/CN=Test PCK Certificate' -out leaf.csr
            openssl x509 -req -in leaf.csr -CA root.pem -CAkey root.key -CAcreateserial -days 365 -out leaf.pem 2>/dev/null
            openssl ca -config ca.cnf -gencrl -keyfile root.key -cert root.pem -out empty.pem 2>/dev/null
            openssl ca -config ca.cnf -revoke leaf.pem -keyfile root.key -cert root.pem 2>/dev/null
            openssl ca -config ca.cnf -gencrl -keyfile root.key -cert root.pem -out revoking.pem 2>/dev/null
            openssl crl -in empty.pem -outform DER -out empty.der
            openssl crl -in revoking.pem -outform DER -out revoking.der
            """
        try runShell(script)
        func read(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: dir + "/" + name))) }
        return TestCA(
            root: try Certificate(pemEncoded: String(decoding: try read("root.pem"), as: UTF8.self)),
            leaf: try Certificate(pemEncoded: String(decoding: try read("leaf.pem"), as: UTF8.self)),
            emptyCRL: try read("empty.der"), revokingCRL: try read("revoking.der"))
    }

    @Test func revokedCertificateIsRefusedAndOthersPass() throws {
        let ca = try Self.makeCA()
        let verifier = DCAPVerifier(trustedRoot: ca.root)
        let now = Date()

        var verified: [Certificate] = []
        let empty = try RevocationList(derEncoded: ca.emptyCRL)
        try empty.validate(issuedBy: ca.root, at: now, name: "test CRL")
        #expect(!empty.revokes(ca.leaf))
        #expect(try verifier.verifyChain([ca.leaf, ca.root], name: "PCK", at: now, rootCRL: empty, pckCRL: nil, verified: &verified).count == 1)

        let revoking = try RevocationList(derEncoded: ca.revokingCRL)
        try revoking.validate(issuedBy: ca.root, at: now, name: "test CRL")
        #expect(revoking.revokes(ca.leaf))
        #expect(throws: DCAPError.certificateRevoked(chain: "PCK", subject: "\(ca.leaf.subject)")) {
            try verifier.verifyChain([ca.leaf], name: "PCK", at: now, rootCRL: revoking, pckCRL: nil, verified: &verified)
        }
        // Also when the CRL is the PCK CRL of the leaf's issuer.
        #expect(throws: DCAPError.certificateRevoked(chain: "PCK", subject: "\(ca.leaf.subject)")) {
            try verifier.verifyChain([ca.leaf], name: "PCK", at: now, rootCRL: empty, pckCRL: revoking, verified: &verified)
        }
    }

    @Test func tamperedExpiredOrForeignCRLIsRejected() throws {
        let ca = try Self.makeCA()
        var tampered = ca.revokingCRL
        tampered[tampered.count - 40] ^= 0x01
        let error = try #require(throws: DCAPError.self) {
            try RevocationList(derEncoded: tampered).validate(issuedBy: ca.root, at: Date(), name: "test CRL")
        }
        if case .crlInvalid = error {} else { Issue.record("unexpected \(error)") }
        let crl = try RevocationList(derEncoded: ca.emptyCRL)
        #expect(throws: DCAPError.self) { try crl.validate(issuedBy: ca.root, at: Date().addingTimeInterval(31 * 86400), name: "test CRL") }
        #expect(throws: DCAPError.self) { try crl.validate(issuedBy: DCAPVerifier.intelSGXRootCA, at: Date(), name: "test CRL") }
        #expect(throws: DCAPError.self) { try RevocationList(derEncoded: [0x30, 0x03, 0x02, 0x01, 0x00]) }
    }
}
