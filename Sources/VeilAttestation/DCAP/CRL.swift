import Crypto
import FoundationEssentials
import SwiftASN1
import X509

/// An X.509 certificate revocation list (RFC 5280 §5), parsed with swift-asn1: issuer, update
/// window, revoked serial numbers, and the signature over `tbsCertList`.
struct RevocationList: Sendable {
    var issuer: DistinguishedName
    var thisUpdate: Date
    var nextUpdate: Date?
    /// Content bytes of each revoked serial number INTEGER.
    var revokedSerials: Set<[UInt8]>
    var tbsBytes: [UInt8]
    /// The outer AlgorithmIdentifier, DER.
    var signatureAlgorithm: [UInt8]
    var signature: [UInt8]

    init(derEncoded bytes: [UInt8]) throws(DCAPError) {
        do {
            let root = try DER.parse(bytes)
            guard case .constructed(let top) = root.content else { throw DCAPError.crlInvalid("not a SEQUENCE") }
            var parts = top.makeIterator()
            guard let tbs = parts.next(), let algorithm = parts.next(), let signatureNode = parts.next(), parts.next() == nil,
                case .constructed(let fields) = tbs.content
            else { throw DCAPError.crlInvalid("not a CertificateList") }
            tbsBytes = Array(tbs.encodedBytes)
            signatureAlgorithm = Array(algorithm.encodedBytes)
            signature = Array(try ASN1BitString(derEncoded: signatureNode).bytes)
            var items = Array(fields)
            if let first = items.first, first.identifier == .integer { items.removeFirst() }  // version
            guard items.count >= 3 else { throw DCAPError.crlInvalid("tbsCertList too short") }
            issuer = try DistinguishedName(derEncoded: items[1])
            thisUpdate = try Self.time(items[2])
            var index = 3
            nextUpdate = nil
            if index < items.count, items[index].identifier == .utcTime || items[index].identifier == .generalizedTime {
                nextUpdate = try Self.time(items[index])
                index += 1
            }
            var serials = Set<[UInt8]>()
            if index < items.count, items[index].identifier == .sequence, case .constructed(let revoked) = items[index].content {
                for entry in revoked {
                    guard case .constructed(let entryFields) = entry.content, let serialNode = entryFields.first(where: { _ in true }),
                        case .primitive(let serial) = serialNode.content
                    else { throw DCAPError.crlInvalid("bad revoked certificate entry") }
                    serials.insert(Array(serial))
                }
            }
            revokedSerials = serials
        } catch let error as DCAPError {
            throw error
        } catch {
            throw .crlInvalid("not a DER CertificateList (\(error))")
        }
    }

    static func time(_ node: ASN1Node) throws -> Date {
        var components = DateComponents()
        components.timeZone = TimeZone(identifier: "UTC")
        if node.identifier == .utcTime {
            let time = try UTCTime(derEncoded: node)
            (components.year, components.month, components.day) = (time.year, time.month, time.day)
            (components.hour, components.minute, components.second) = (time.hours, time.minutes, time.seconds)
        } else {
            let time = try GeneralizedTime(derEncoded: node)
            (components.year, components.month, components.day) = (time.year, time.month, time.day)
            (components.hour, components.minute, components.second) = (time.hours, time.minutes, time.seconds)
        }
        var calendar = Calendar(identifier: .gregorian)
        calendar.timeZone = TimeZone(identifier: "UTC")!
        guard let date = calendar.date(from: components) else { throw DCAPError.crlInvalid("bad time") }
        return date
    }

    /// Checks the CRL's signature by `issuer` and that `time` is inside its update window.
    func validate(issuedBy issuerCertificate: Certificate, at time: Date, name: String) throws(DCAPError) {
        try verifySignature(issuedBy: issuerCertificate, name: name)
        try checkWindow(at: time, name: name)
    }

    /// Checks the CRL's signature by `issuer`.
    func verifySignature(issuedBy issuerCertificate: Certificate, name: String) throws(DCAPError) {
        guard issuerCertificate.subject == issuer else { throw .crlInvalid("\(name) is not issued by \(issuerCertificate.subject)") }
        guard let key = P256.Signing.PublicKey(issuerCertificate.publicKey),
            let ecdsa = try? P256.Signing.ECDSASignature(derRepresentation: signature),
            key.isValidSignature(ecdsa, for: tbsBytes)
        else { throw .crlInvalid("\(name) signature does not verify") }
    }

    /// Checks that `time` is inside the CRL's update window.
    func checkWindow(at time: Date, name: String) throws(DCAPError) {
        guard time >= thisUpdate else { throw .crlInvalid("\(name) is not valid before \(thisUpdate)") }
        if let nextUpdate, time > nextUpdate { throw .crlInvalid("\(name) expired at its nextUpdate \(nextUpdate)") }
    }

    func revokes(_ certificate: Certificate) -> Bool {
        revokedSerials.contains(Array(certificate.serialNumber.bytes))
    }
}
