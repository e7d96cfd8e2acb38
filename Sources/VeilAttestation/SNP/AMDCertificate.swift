import Crypto
import FoundationEssentials
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
    static let sha384: ASN1ObjectIdentifier = [2, 16, 840, 1, 101, 3, 4, 2, 2]
    static let mgf1: ASN1ObjectIdentifier = [1, 2, 840, 113549, 1, 1, 8]

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

    /// `true` when `issuer`'s RSA key signed this certificate with RSASSA-PSS, SHA-384,
    /// MGF1-SHA-384 and a 48-byte salt (AMD's only choice).
    func isSigned(by issuer: AMDCertificate) -> Bool {
        guard Self.isPSSWithSHA384(signatureAlgorithm), let key = _RSA.Signing.PublicKey(issuer.publicKey) else { return false }
        return key.isValidSignature(_RSA.Signing.RSASignature(rawRepresentation: signature), for: SHA384.hash(data: tbs), padding: .PSS)
    }

    /// Parses `AlgorithmIdentifier { rsassaPSS, RSASSA-PSS-params }` and accepts exactly
    /// SHA-384, MGF1(SHA-384), salt 48, trailer 1 (explicit, as AMD encodes it, or default).
    static func isPSSWithSHA384(_ der: [UInt8]) -> Bool {
        guard let node = try? DER.parse(der), case .constructed(let parts) = node.content else { return false }
        let items = Array(parts)
        guard items.count == 2, (try? ASN1ObjectIdentifier(derEncoded: items[0])) == rsassaPSS,
            case .constructed(let params) = items[1].content
        else { return false }
        var hashOK = false, mgfOK = false, saltOK = false, trailerOK = true
        for param in params {
            guard param.identifier.tagClass == .contextSpecific, case .constructed(let inner) = param.content,
                let value = inner.first(where: { _ in true })
            else { return false }
            switch param.identifier.tagNumber {
            case 0: hashOK = algorithm(value) == sha384
            case 1:
                guard case .constructed(let mgf) = value.content else { return false }
                let mgfItems = Array(mgf)
                mgfOK = mgfItems.count == 2 && (try? ASN1ObjectIdentifier(derEncoded: mgfItems[0])) == mgf1 && algorithm(mgfItems[1]) == sha384
            case 2: saltOK = (try? Int(derEncoded: value)) == 48
            case 3: trailerOK = (try? Int(derEncoded: value)) == 1
            default: return false
            }
        }
        return hashOK && mgfOK && saltOK && trailerOK
    }

    /// The OID of an `AlgorithmIdentifier` whose parameters are absent or NULL.
    private static func algorithm(_ node: ASN1Node) -> ASN1ObjectIdentifier? {
        guard case .constructed(let parts) = node.content else { return nil }
        let items = Array(parts)
        guard let first = items.first, items.count <= 2 else { return nil }
        if items.count == 2, items[1].identifier != .null { return nil }
        return try? ASN1ObjectIdentifier(derEncoded: first)
    }

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
