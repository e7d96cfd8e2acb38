import FoundationEssentials
import SwiftASN1
import VeilManifest
import X509

/// What a mesh peer proved in its TLS handshake: a chain to the coordinator's root and the
/// identity URI `spiffe://TRUST-DOMAIN/service/NAME` (or the `veil://COORDINATOR-ID/service/NAME`
/// of certificates issued before) of one service in this service's own trust domain.
public enum PeerIdentity {
    /// Why a peer was refused; each names what failed, never a secret.
    public enum Refusal: Error, Equatable, CustomStringConvertible {
        case noCertificate
        case notUnderRoot(String)
        case outsideValidity(notBefore: Date, notAfter: Date)
        case noServiceIdentity
        case otherCoordinator(String)
        case notAllowed(service: String, allowed: [String])
        case wrongService(presented: String, expected: String)

        public var description: String {
            switch self {
            case .noCertificate: return "the peer presented no certificate"
            case .notUnderRoot(let why): return "the peer's certificate is not from this coordinator's CA (\(why))"
            case .outsideValidity(let notBefore, let notAfter):
                return "the peer's certificate is not valid now (valid \(notBefore.formatted(.iso8601)) to \(notAfter.formatted(.iso8601)))"
            case .noServiceIdentity: return "the peer's certificate names no Veil service (spiffe://…/service/NAME)"
            case .otherCoordinator(let domain): return "the peer is a service of another trust domain (\(domain))"
            case .notAllowed(let service, let allowed): return "service '\(service)' is not among the allowed clients (\(allowed.joined(separator: ", ")))"
            case .wrongService(let presented, let expected): return "the peer is service '\(presented)', not '\(expected)'"
            }
        }
    }

    /// The service a chain (DER, leaf first) proves, after checking it leads to `root`.
    /// `knownIntermediates` (this service's own) complete a peer that sends only its leaf.
    /// - Parameter trustDomain: the one this service's own certificate names: peers of the same
    ///   coordinator and manifest share it.
    static func service(of chain: [[UInt8]], root: Certificate, knownIntermediates: [Certificate] = [], trustDomain: String) async throws(Refusal) -> String {
        let certificates: [Certificate]
        do {
            certificates = try chain.map { try Certificate(derEncoded: $0) }
        } catch {
            throw .notUnderRoot("unparsable certificate")
        }
        guard let leaf = certificates.first else { throw .noCertificate }
        let now = Date()
        guard leaf.notValidBefore <= now, now <= leaf.notValidAfter else {
            throw .outsideValidity(notBefore: leaf.notValidBefore, notAfter: leaf.notValidAfter)
        }
        var verifier = Verifier(rootCertificates: CertificateStore([root])) { RFC5280Policy() }
        if case .couldNotValidate(let failures) = await verifier.validate(leaf: leaf, intermediates: CertificateStore(certificates.dropFirst() + knownIntermediates)) {
            throw .notUnderRoot(failures.first?.policyFailureReason.description ?? "no chain to the root")
        }
        let uris = ((try? leaf.extensions.subjectAlternativeNames) ?? nil)?.compactMap { name -> String? in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        } ?? []
        guard let identity = uris.compactMap(CoordinatorIdentity.service(fromURI:)).first else { throw .noServiceIdentity }
        guard identity.trustDomain == trustDomain else { throw .otherCoordinator(identity.trustDomain) }
        return identity.service
    }
}
