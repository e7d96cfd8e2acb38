import Crypto
import Foundation
import SwiftASN1
import Testing
import VeilAttestation
import VeilCore
import X509

/// Intel's DCAP trust chain rebuilt with test keys, so a test can sign what only Intel can:
/// two TCB infos for one platform valid at once (a TCB recovery), and quotes binding any report
/// data. The real dcap-qvl SGX quote is the template: its enclave body, QE report and the PCK
/// certificate's SGX extension (FMSPC, TCB components) are kept; every signature is redone with
/// keys under ``root``, which a verifier must be told to trust (`DCAPVerifier(trustedRoot:)`).
final class TestIntelPKI: Sendable {
    let root: Certificate
    let template: [UInt8]
    private let rootKey = P256.Signing.PrivateKey()
    private let pckCAKey = P256.Signing.PrivateKey()
    private let pckKey = P256.Signing.PrivateKey()
    private let signingKey = P256.Signing.PrivateKey()
    private let attestationKey = P256.Signing.PrivateKey()
    private let pckCA: Certificate
    private let pck: Certificate
    private let signing: Certificate
    private let realCollateral: DCAPCollateral

    /// - Parameter from: the start of every certificate's validity (ten years long).
    init(vectors: String, from: Date) throws {
        template = Array(try Data(contentsOf: URL(fileURLWithPath: "\(vectors)/sgx_quote")))
        realCollateral = try DCAPCollateral.parseJSON(Array(try Data(contentsOf: URL(fileURLWithPath: "\(vectors)/sgx_quote_collateral.json"))))
        let realPCK = try #require(try Self.pem(try DCAPQuote(template).pckChainPEM).first)
        let sgxExtension = try #require(realPCK.extensions.first { $0.oid == [1, 2, 840, 113_741, 1, 13, 1] })
        let rootName = try DistinguishedName { CommonName("Intel SGX Root CA"); OrganizationName("Intel Corporation") }
        let until = from.addingTimeInterval(10 * 365 * 86_400)
        func ca() throws -> Certificate.Extensions {
            try Certificate.Extensions { Critical(BasicConstraints.isCertificateAuthority(maxPathLength: nil)); KeyUsage(keyCertSign: true, cRLSign: true) }
        }
        root = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(rootKey.publicKey), notValidBefore: from, notValidAfter: until, issuer: rootName,
            subject: rootName, signatureAlgorithm: .ecdsaWithSHA256, extensions: try ca(), issuerPrivateKey: .init(rootKey))
        pckCA = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(pckCAKey.publicKey), notValidBefore: from, notValidAfter: until, issuer: rootName,
            subject: realPCK.issuer, signatureAlgorithm: .ecdsaWithSHA256, extensions: try ca(), issuerPrivateKey: .init(rootKey))
        pck = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(pckKey.publicKey), notValidBefore: from, notValidAfter: until, issuer: realPCK.issuer,
            subject: realPCK.subject, signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions([sgxExtension]), issuerPrivateKey: .init(pckCAKey))
        let signingName = try DistinguishedName { CommonName("Intel SGX TCB Signing"); OrganizationName("Intel Corporation") }
        signing = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(signingKey.publicKey), notValidBefore: from, notValidAfter: until, issuer: rootName,
            subject: signingName, signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions(), issuerPrivateKey: .init(rootKey))
    }

    /// The template quote binding `reportData`, signed by the test PCK and attestation keys.
    func quote(reportData: [UInt8]) throws -> [UInt8] {
        let authSize = Int(template[1012]) | Int(template[1013]) << 8
        var quote = Array(template[0..<(1014 + authSize)])
        quote.replaceSubrange(368..<432, with: reportData)
        let attestationPublic = Array(attestationKey.publicKey.rawRepresentation)
        quote.replaceSubrange(500..<564, with: attestationPublic)
        let qeReportData = Array(SHA256.hash(data: attestationPublic + quote[1014..<(1014 + authSize)])) + [UInt8](repeating: 0, count: 32)
        quote.replaceSubrange((564 + 320)..<(564 + 384), with: qeReportData)
        quote.replaceSubrange(948..<1012, with: Array(try pckKey.signature(for: quote[564..<948]).rawRepresentation))
        quote.replaceSubrange(436..<500, with: Array(try attestationKey.signature(for: quote[0..<432]).rawRepresentation))
        let chain = Array((try [pck, pckCA, root].map { try PEMDocument(type: "CERTIFICATE", derBytes: Self.der($0)).pemString }.joined(separator: "\n") + "\n").utf8)
        quote += [5, 0] + Self.littleEndian32(chain.count) + chain
        quote.replaceSubrange(432..<436, with: Self.littleEndian32(quote.count - 436))
        return quote
    }

    /// The real documents re-signed and valid `from` for 30 days, every TCB level of the TCB
    /// info set to `status` (no advisories): Intel's answer before and after a TCB recovery.
    func collateral(status: String, from: Date) throws -> DCAPCollateral {
        let until = from.addingTimeInterval(30 * 86_400)
        let dates = ISO8601DateFormatter()
        func redated(_ json: [UInt8], change: (inout [String: Any]) -> Void = { _ in }) throws -> [UInt8] {
            var object = try #require(try JSONSerialization.jsonObject(with: Data(json)) as? [String: Any])
            object["issueDate"] = dates.string(from: from)
            object["nextUpdate"] = dates.string(from: until)
            change(&object)
            return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys]))
        }
        let tcbInfo = try redated(realCollateral.tcbInfo) { info in
            let levels = (info["tcbLevels"] as? [[String: Any]] ?? []).map { level -> [String: Any] in
                var level = level
                level["tcbStatus"] = status
                level.removeValue(forKey: "advisoryIDs")
                return level
            }
            info["tcbLevels"] = levels
        }
        let qeIdentity = try redated(realCollateral.qeIdentity)
        let signingChain = Array((try [signing, root].map { try PEMDocument(type: "CERTIFICATE", derBytes: Self.der($0)).pemString }.joined(separator: "\n")).utf8)
        let pckChain = Array((try [pckCA, root].map { try PEMDocument(type: "CERTIFICATE", derBytes: Self.der($0)).pemString }.joined(separator: "\n")).utf8)
        return DCAPCollateral(
            tcbInfo: tcbInfo, tcbInfoSignature: Array(try signingKey.signature(for: tcbInfo).rawRepresentation), tcbInfoIssuerChain: signingChain,
            qeIdentity: qeIdentity, qeIdentitySignature: Array(try signingKey.signature(for: qeIdentity).rawRepresentation), qeIdentityIssuerChain: signingChain,
            rootCACRL: try crl(issuer: root.subject, key: rootKey, from: from, until: until),
            pckCRL: try crl(issuer: pckCA.subject, key: pckCAKey, from: from, until: until), pckCRLIssuerChain: pckChain)
    }

    /// An empty CRL (RFC 5280 v2) signed by `key`.
    private func crl(issuer: DistinguishedName, key: P256.Signing.PrivateKey, from: Date, until: Date) throws -> [UInt8] {
        let ecdsaWithSHA256: ASN1ObjectIdentifier = [1, 2, 840, 10045, 4, 3, 2]
        var tbs = DER.Serializer()
        try tbs.appendConstructedNode(identifier: .sequence) { fields in
            try fields.serialize(1)
            try fields.appendConstructedNode(identifier: .sequence) { try $0.serialize(ecdsaWithSHA256) }
            try fields.serialize(issuer)
            try fields.serialize(try Self.utcTime(from))
            try fields.serialize(try Self.utcTime(until))
        }
        let signature = Array(try key.signature(for: tbs.serializedBytes).derRepresentation)
        var list = DER.Serializer()
        try list.appendConstructedNode(identifier: .sequence) { parts in
            parts.serializeRawBytes(tbs.serializedBytes)
            try parts.appendConstructedNode(identifier: .sequence) { try $0.serialize(ecdsaWithSHA256) }
            try parts.serialize(ASN1BitString(bytes: ArraySlice(signature)))
        }
        return list.serializedBytes
    }

    static func utcTime(_ date: Date) throws -> UTCTime {
        let parts = Calendar(identifier: .gregorian).dateComponents(in: TimeZone(identifier: "UTC")!, from: date)
        return try UTCTime(year: parts.year!, month: parts.month!, day: parts.day!, hours: parts.hour!, minutes: parts.minute!, seconds: parts.second!)
    }

    static func der(_ certificate: Certificate) throws -> [UInt8] {
        var serializer = DER.Serializer()
        try serializer.serialize(certificate)
        return serializer.serializedBytes
    }

    static func pem(_ bytes: [UInt8]) throws -> [Certificate] {
        try PEMDocument.parseMultiple(pemString: String(decoding: bytes, as: UTF8.self)).map { try Certificate(derEncoded: $0.derBytes) }
    }

    static func littleEndian32(_ value: Int) -> [UInt8] { (0..<4).map { UInt8((value >> (8 * $0)) & 0xFF) } }
}

/// A quoting enclave under the test PKI: the template quote with the report data asked for.
struct TestQuotingEnclave: EvidenceProvider {
    let pki: TestIntelPKI
    var isSimulated: Bool { false }
    func evidence(reportData: [UInt8]) throws -> Evidence {
        Evidence(format: DCAPEvidence.format, data: try pki.quote(reportData: reportData))
    }
}
