import FoundationEssentials
import SwiftASN1
import VeilManifest
import X509

/// Accepts a TLS chain only when it is the coordinator's: leaf ← coordinator TLS CA ← the
/// pinned root, the leaf naming ``CoordinatorIdentity/uri``. A workload certificate (issued by
/// the workload intermediate) fails here whatever host names it carries, so a service or a
/// certificate secret can never intercept a launcher's or a user's coordinator connection.
struct CoordinatorIdentityPolicy: VerifierPolicy {
    let verifyingCriticalExtensions: [ASN1ObjectIdentifier] = []

    mutating func chainMeetsPolicyRequirements(chain: UnverifiedCertificateChain) async -> PolicyEvaluationResult {
        let certificates = Array(chain)
        guard certificates.count == 3 else {
            return .failsToMeetPolicy(reason: "chain of \(certificates.count) certificates; the coordinator's is leaf, coordinator TLS CA, root")
        }
        guard CoordinatorIdentity.isCoordinatorCA(certificates[1].subject) else {
            return .failsToMeetPolicy(reason: "the server certificate is issued by '\(certificates[1].subject)', not the coordinator TLS CA: "
                + "this is a workload certificate, not the coordinator")
        }
        let uris = ((try? certificates[0].extensions.subjectAlternativeNames) ?? nil)?.compactMap { name -> String? in
            if case .uniformResourceIdentifier(let uri) = name { return uri }
            return nil
        } ?? []
        guard uris.contains(CoordinatorIdentity.uri) else {
            return .failsToMeetPolicy(reason: "the server certificate does not name \(CoordinatorIdentity.uri)")
        }
        return .meetsPolicy
    }
}

/// Why a server was not accepted as the coordinator.
public struct CoordinatorIdentityError: Error, CustomStringConvertible {
    public let reason: String
    public var description: String { "the server is not the attested coordinator: \(reason)" }
}

enum CoordinatorIdentityCheck {
    /// Verifies `chain` (DER, leaf first, as presented) under `root`, now.
    static func verify(_ chain: [[UInt8]], root: Certificate) async throws(CoordinatorIdentityError) {
        let certificates: [Certificate]
        do {
            certificates = try chain.map { try Certificate(derEncoded: $0) }
        } catch {
            throw CoordinatorIdentityError(reason: "its certificate does not parse (\(error))")
        }
        guard let leaf = certificates.first else { throw CoordinatorIdentityError(reason: "it presented no certificate") }
        var verifier = Verifier(rootCertificates: CertificateStore([root])) {
            RFC5280Policy()
            CoordinatorIdentityPolicy()
        }
        switch await verifier.validate(leaf: leaf, intermediates: CertificateStore(certificates.dropFirst())) {
        case .validCertificate:
            return
        case .couldNotValidate(let failures):
            let reasons = failures.map(\.policyFailureReason.description)
            throw CoordinatorIdentityError(
                reason: reasons.first.map { reasons.count > 1 ? "\($0) (and \(reasons.count - 1) more)" : $0 }
                    ?? "its certificate does not chain to the pinned root (is the pinned root this coordinator's? run `veil attest`); "
                    + "it presented \(certificates.map { "'\($0.subject)' issued by '\($0.issuer)'" }.joined(separator: ", "))")
        }
    }
}
