import SwiftASN1
import X509

/// The Intel SGX extension of a PCK certificate (OID 1.2.840.113741.1.13.1): the platform's
/// TCB as Intel certified it.
struct PCKExtensions: Sendable, Equatable {
    /// SGX TCB component SVNs 1…16.
    var componentSVNs: [UInt8]
    var pceSVN: Int
    var cpuSVN: [UInt8]
    var fmspc: [UInt8]
    var pceID: [UInt8]
    var ppid: [UInt8]

    static let sgxExtension: ASN1ObjectIdentifier = [1, 2, 840, 113741, 1, 13, 1]

    init(_ certificate: Certificate) throws(DCAPError) {
        guard let ext = certificate.extensions.first(where: { $0.oid == Self.sgxExtension }) else {
            throw .pckExtensionInvalid("PCK certificate has no SGX extension")
        }
        do {
            var components = [UInt8](repeating: 0, count: 16)
            var seen = Set<Int>()
            var pceSVN: Int?
            var cpuSVN: [UInt8]?
            var fmspc: [UInt8]?
            var pceID: [UInt8]?
            var ppid: [UInt8]?
            for (oid, value) in try Self.entries(DER.parse(Array(ext.value))) {
                switch oid.oidComponents.last {
                case 1 where oid == Self.sgxExtension + [1]: ppid = try ASN1OctetString(derEncoded: value).bytes.map { $0 }
                case 2 where oid == Self.sgxExtension + [2]:
                    for (tcbOID, tcbValue) in try Self.entries(value) {
                        guard tcbOID.oidComponents.dropLast() == (Self.sgxExtension + [2]).oidComponents[...],
                            let last = tcbOID.oidComponents.last
                        else { continue }
                        let index = Int(last)
                        switch index {
                        case 1...16:
                            let svn = try Int(derEncoded: tcbValue)
                            guard (0...255).contains(svn) else { throw DCAPError.pckExtensionInvalid("component SVN \(index) out of range") }
                            components[index - 1] = UInt8(svn)
                            seen.insert(index)
                        case 17: pceSVN = try Int(derEncoded: tcbValue)
                        case 18: cpuSVN = try ASN1OctetString(derEncoded: tcbValue).bytes.map { $0 }
                        default: continue
                        }
                    }
                case 3 where oid == Self.sgxExtension + [3]: pceID = try ASN1OctetString(derEncoded: value).bytes.map { $0 }
                case 4 where oid == Self.sgxExtension + [4]: fmspc = try ASN1OctetString(derEncoded: value).bytes.map { $0 }
                default: continue
                }
            }
            guard seen.count == 16, let pceSVN, let cpuSVN, let fmspc, let pceID, let ppid else {
                throw DCAPError.pckExtensionInvalid("missing TCB components, PCESVN, CPUSVN, FMSPC, PCE-ID or PPID")
            }
            self.componentSVNs = components
            self.pceSVN = pceSVN
            self.cpuSVN = cpuSVN
            self.fmspc = fmspc
            self.pceID = pceID
            self.ppid = ppid
        } catch let error as DCAPError {
            throw error
        } catch {
            throw .pckExtensionInvalid("not the documented ASN.1 structure (\(error))")
        }
    }

    /// `SEQUENCE OF SEQUENCE { OBJECT IDENTIFIER, value }` → pairs.
    private static func entries(_ node: ASN1Node) throws -> [(ASN1ObjectIdentifier, ASN1Node)] {
        guard case .constructed(let items) = node.content else { throw DCAPError.pckExtensionInvalid("expected a SEQUENCE") }
        return try items.map { item in
            guard case .constructed(let pair) = item.content else { throw DCAPError.pckExtensionInvalid("expected an (OID, value) SEQUENCE") }
            var iterator = pair.makeIterator()
            guard let oidNode = iterator.next(), let value = iterator.next(), iterator.next() == nil else {
                throw DCAPError.pckExtensionInvalid("expected an (OID, value) pair")
            }
            return (try ASN1ObjectIdentifier(derEncoded: oidNode), value)
        }
    }
}

extension ASN1ObjectIdentifier {
    fileprivate static func + (lhs: ASN1ObjectIdentifier, rhs: [UInt]) -> ASN1ObjectIdentifier {
        // Appending arcs to a valid OID stays valid.
        try! ASN1ObjectIdentifier(elements: Array(lhs.oidComponents) + rhs)
    }
}

extension DCAPVerifier {
    /// The FMSPC in a PCK certificate's SGX extension, or `nil`.
    public static func fmspc(of pckCertificate: Certificate) -> [UInt8]? {
        (try? PCKExtensions(pckCertificate))?.fmspc
    }
}
