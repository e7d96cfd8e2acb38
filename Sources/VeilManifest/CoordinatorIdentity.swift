import Crypto
import VeilCore
import X509

/// How the coordinator's TLS identity is told apart from every workload's.
///
/// The coordinator's TLS certificates come only from its **coordinator TLS CA**, an
/// intermediate under the root whose subject carries ``caOrganizationalUnit``, and name
/// ``uri``. Workload certificates (activations, certificate secrets) come from the other
/// intermediate and never carry ``uri``. Clients of the coordinator check both, so a
/// workload certificate that names `localhost` or `127.0.0.1` still cannot pass as the
/// coordinator; services identify each other by ``serviceURI(coordinatorID:service:)``.
public enum CoordinatorIdentity {
    /// URI SAN of every coordinator TLS certificate.
    public static let uri = "veil:coordinator"
    /// OrganizationalUnit of the coordinator TLS CA's subject.
    public static let caOrganizationalUnit = "Veil Coordinator TLS"

    /// `O=Veil, OU=Veil Coordinator TLS, CN=Veil Coordinator TLS CA`.
    public static func caSubject() throws -> DistinguishedName {
        try DistinguishedName {
            OrganizationName("Veil")
            OrganizationalUnitName(caOrganizationalUnit)
            CommonName("Veil Coordinator TLS CA")
        }
    }

    /// Whether `subject` is a coordinator TLS CA's.
    public static func isCoordinatorCA(_ subject: DistinguishedName) -> Bool {
        subject.contains { rdn in rdn.contains { $0.type == .RDNAttributeType.organizationalUnitName && "\($0.value)" == caOrganizationalUnit } }
    }

    /// A coordinator's ID in service identities: the first 16 bytes (hex) of SHA-256 of its
    /// root's SubjectPublicKeyInfo, stable across restarts and shared by all replicas.
    public static func coordinatorID(root: Certificate) -> String {
        let spki = (try? root.publicKey.subjectPublicKeyInfoDER) ?? []
        return Hex.encode(SHA256.hash(data: spki).prefix(16))
    }

    /// The SPIFFE trust domain of a coordinator's services unless the manifest names one
    /// (`Config.TrustDomain`): `COORDINATOR-ID.veil`.
    public static func defaultTrustDomain(coordinatorID: String) -> String { "\(coordinatorID).veil" }

    /// `spiffe://TRUST-DOMAIN/service/NAME`: a service's identity in its activation certificate,
    /// its only URI SAN, so the certificate is an X.509-SVID.
    public static func serviceURI(trustDomain: String, service: String) -> String {
        "spiffe://\(trustDomain)/service/\(service)"
    }

    /// ``serviceURI(trustDomain:service:)`` in the default trust domain.
    public static func serviceURI(coordinatorID: String, service: String) -> String {
        serviceURI(trustDomain: defaultTrustDomain(coordinatorID: coordinatorID), service: service)
    }

    /// The trust domain and service name of a service identity URI, or nil. The
    /// `veil://COORDINATOR-ID/service/NAME` of certificates issued before SPIFFE IDs counts as
    /// the coordinator's default trust domain.
    public static func service(fromURI uri: String) -> (trustDomain: String, service: String)? {
        for scheme in ["spiffe://", "veil://"] where uri.hasPrefix(scheme) {
            let parts = uri.dropFirst(scheme.count).split(separator: "/", omittingEmptySubsequences: false)
            guard parts.count == 3, parts[1] == "service", !parts[2].isEmpty, !parts[0].isEmpty else { return nil }
            let authority = String(parts[0])
            if scheme == "veil://" { return (defaultTrustDomain(coordinatorID: authority), String(parts[2])) }
            return isTrustDomain(authority) ? (authority, String(parts[2])) : nil
        }
        return nil
    }

    /// SPIFFE's trust domain rule: 1–255 of lowercase letters, digits, `.`, `-`, `_`.
    public static func isTrustDomain(_ name: String) -> Bool {
        (1...255).contains(name.utf8.count) && name.utf8.allSatisfy { byte in
            (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || Array(".-_".utf8).contains(byte)
        }
    }
}
