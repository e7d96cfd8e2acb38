import Crypto
import Foundation
import SwiftASN1
import X509
import _CryptoExtras

/// An AMD SEV certificate (ARK, ASK, VCEK, VLEK). AMD signs these with RSASSA-PSS/SHA-384,
/// which swift-certificates does not parse, so the outer structure is read with swift-asn1
/// and every component with the library's own types (`DistinguishedName`,
/// `Certificate.PublicKey`); the signature is checked by _CryptoExtras' RSA-PSS.
///
/// The serial number is kept as raw INTEGER bytes: AMD's Milan VCEKs carry a non-positive
/// serial (RFC 5280 forbids it) and are still genuine; nothing else is relaxed.
struct AMDCertificate: Sendable {
    var der: [UInt8]
    var tbs: [UInt8]
    var serial: [UInt8]
    var issuer: DistinguishedName
    var subject: DistinguishedName
    var notBefore: Date
    var notAfter: Date
    var publicKey: Certificate.PublicKey
    /// Extension OID (dotted) → the extension's value bytes.
    var extensions: [String: [UInt8]]
    var signatureAlgorithm: [UInt8]
    var signature: [UInt8]

    static let rsassaPSS: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 10]
    /// DER of RSASSA-PSS-params { SHA-384, MGF1(SHA-384), salt 48, trailer 1 }: AMD's only choice.
    static let pssSHA384Parameters: [UInt8] = [
        0x30, 0x39, 0xa0, 0x0f, 0x30, 0x0d, 0x06, 0x09, 0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00,
        0xa1, 0x1c, 0x30, 0x1a, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x08, 0x30, 0x0d, 0x06, 0x09,
        0x60, 0x86, 0x48, 0x01, 0x65, 0x03, 0x04, 0x02, 0x02, 0x05, 0x00, 0xa2, 0x03, 0x02, 0x01, 0x30, 0xa3, 0x03, 0x02,
        0x01, 0x01,
    ]

    init(derEncoded der: [UInt8]) throws(SNPError) {
        do {
            let root = try DER.parse(der)
            guard case .constructed(let top) = root.content else { throw SNPError.malformedCertificate("not a SEQUENCE") }
            let parts = Array(top)
            guard parts.count == 3, case .constructed(let tbsFields) = parts[0].content else {
                throw SNPError.malformedCertificate("not a Certificate")
            }
            self.der = der
            tbs = Array(parts[0].encodedBytes)
            signatureAlgorithm = Array(parts[1].encodedBytes)
            signature = Array(try ASN1BitString(derEncoded: parts[2]).bytes)
            var fields = Array(tbsFields)
            if let first = fields.first, first.identifier == ASN1Identifier(tagWithNumber: 0, tagClass: .contextSpecific) { fields.removeFirst() }
            guard fields.count >= 6, case .primitive(let serialBytes) = fields[0].content else {
                throw SNPError.malformedCertificate("tbsCertificate too short")
            }
            serial = Array(serialBytes)
            guard Array(fields[1].encodedBytes) == Array(parts[1].encodedBytes) else {
                throw SNPError.malformedCertificate("inner and outer signature algorithms differ")
            }
            issuer = try DistinguishedName(derEncoded: fields[2])
            guard case .constructed(let validity) = fields[3].content else { throw SNPError.malformedCertificate("bad validity") }
            let times = Array(validity)
            guard times.count == 2 else { throw SNPError.malformedCertificate("bad validity") }
            notBefore = try RevocationList.time(times[0])
            notAfter = try RevocationList.time(times[1])
            subject = try DistinguishedName(derEncoded: fields[4])
            publicKey = try Certificate.PublicKey(derEncoded: fields[5])
            var extensions: [String: [UInt8]] = [:]
            if let container = fields.dropFirst(6).first(where: { $0.identifier == ASN1Identifier(tagWithNumber: 3, tagClass: .contextSpecific) }),
                case .constructed(let wrapped) = container.content, let list = wrapped.first(where: { _ in true }),
                case .constructed(let items) = list.content
            {
                for item in items {
                    guard case .constructed(let parts) = item.content else { continue }
                    let values = Array(parts)
                    guard let oidNode = values.first, let valueNode = values.last else { continue }
                    let oid = try ASN1ObjectIdentifier(derEncoded: oidNode)
                    extensions[oid.description] = Array(try ASN1OctetString(derEncoded: valueNode).bytes)
                }
            }
            self.extensions = extensions
        } catch let error as SNPError {
            throw error
        } catch {
            throw .malformedCertificate("\(error)")
        }
    }

    static func parsePEM(_ text: String) throws(SNPError) -> [AMDCertificate] {
        guard let documents = try? PEMDocument.parseMultiple(pemString: text) else { throw .malformedCertificate("not PEM") }
        var certificates: [AMDCertificate] = []
        for document in documents { certificates.append(try AMDCertificate(derEncoded: document.derBytes)) }
        return certificates
    }

    /// `true` when `issuer`'s RSA key signed this certificate with RSASSA-PSS/SHA-384 (salt 48).
    func isSigned(by issuer: AMDCertificate) -> Bool {
        let expectedAlgorithm = Self.algorithmIdentifier
        guard signatureAlgorithm == expectedAlgorithm, let key = _RSA.Signing.PublicKey(issuer.publicKey) else { return false }
        return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA384.hash(data: tbs), padding: .PSS)
    }

    static let algorithmIdentifier: [UInt8] = {
        var serializer = DER.Serializer()
        // A SEQUENCE of the PSS OID and its parameters.
        try! serializer.appendConstructedNode(identifier: .sequence) { coder in
            try coder.serialize(rsassaPSS)
            coder.serializeRawBytes(pssSHA384Parameters)
        }
        return serializer.serializedBytes
    }()

    /// An INTEGER-valued extension (VCEK TCB fields).
    func integerExtension(_ oid: String) -> Int? {
        guard let value = extensions[oid], let node = try? DER.parse(value) else { return nil }
        return try? Int(derEncoded: node)
    }

    /// An IA5String-valued extension (product name).
    func stringExtension(_ oid: String) -> String? {
        guard let value = extensions[oid], let node = try? DER.parse(value), let string = try? ASN1IA5String(derEncoded: node) else {
            return nil
        }
        return String(string)
    }
}
