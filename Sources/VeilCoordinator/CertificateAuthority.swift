import Crypto
import Foundation
import SwiftASN1
import VeilAttestation
import VeilManifest
import X509

/// The coordinator's two-level CA: a long-lived root users pin, and an intermediate that
/// signs every leaf (activations, certificate secrets, the coordinator's TLS certificate).
///
/// Invariant: the keys are only ever serialized into the sealed state.
public struct CertificateAuthority: Sendable {
    public let rootKey: P256.Signing.PrivateKey
    public let root: Certificate
    public let intermediateKey: P256.Signing.PrivateKey
    public let intermediate: Certificate

    public let rootDER: [UInt8]
    public let intermediateDER: [UInt8]

    public init(
        rootKey: P256.Signing.PrivateKey, root: Certificate, intermediateKey: P256.Signing.PrivateKey, intermediate: Certificate
    ) throws {
        self.rootKey = rootKey
        self.root = root
        self.intermediateKey = intermediateKey
        self.intermediate = intermediate
        rootDER = try root.derBytes
        intermediateDER = try intermediate.derBytes
    }

    /// Clock skew tolerated between the coordinator and relying parties.
    static let backdate: TimeInterval = 300

    public enum IssueError: Error, Equatable, CustomStringConvertible {
        case malformedCSR
        case csrSignatureInvalid
        public var description: String {
            switch self {
            case .malformedCSR: return "certificate signing request is not a DER or PEM PKCS#10 request"
            case .csrSignatureInvalid: return "certificate signing request is not signed by its own key"
            }
        }
    }

    /// Creates a fresh root (20 years) and intermediate (10 years).
    public static func generate(commonName: String = "Veil Coordinator", now: Date = Date()) throws -> CertificateAuthority {
        let rootKey = P256.Signing.PrivateKey()
        let rootName = try DistinguishedName {
            OrganizationName("Veil")
            CommonName("\(commonName) Root CA")
        }
        let root = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(rootKey.publicKey),
            notValidBefore: now - backdate, notValidAfter: now + 20 * 365 * 86400,
            issuer: rootName, subject: rootName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 1))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(rootKey.publicKey))
            },
            issuerPrivateKey: .init(rootKey))
        let intermediateKey = P256.Signing.PrivateKey()
        let intermediateName = try DistinguishedName {
            OrganizationName("Veil")
            CommonName("\(commonName) Intermediate CA")
        }
        let intermediate = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(intermediateKey.publicKey),
            notValidBefore: now - backdate, notValidAfter: now + 10 * 365 * 86400,
            issuer: rootName, subject: intermediateName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(intermediateKey.publicKey))
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(rootKey.publicKey)).keyIdentifier)
            },
            issuerPrivateKey: .init(rootKey))
        return try CertificateAuthority(rootKey: rootKey, root: root, intermediateKey: intermediateKey, intermediate: intermediate)
    }

    /// Parses a PKCS#10 request (PEM or DER) and checks its self-signature.
    public static func parseCSR(_ bytes: [UInt8]) throws(IssueError) -> CertificateSigningRequest {
        let csr: CertificateSigningRequest
        if bytes.starts(with: Array("-----BEGIN".utf8)),
            let parsed = try? CertificateSigningRequest(pemEncoded: String(decoding: bytes, as: UTF8.self))
        {
            csr = parsed
        } else if let parsed = try? CertificateSigningRequest(derEncoded: bytes) {
            csr = parsed
        } else {
            throw .malformedCSR
        }
        guard csr.publicKey.isValidSignature(csr.signature, for: csr) else { throw .csrSignatureInvalid }
        return csr
    }

    /// Issues an end-entity certificate for `publicKey`, usable for TLS server and client auth.
    public func issueLeaf(
        publicKey: Certificate.PublicKey, commonName: String, organization: String? = nil,
        dnsNames: [String], ipAddresses: [[UInt8]] = [], validFor: TimeInterval, now: Date = Date()
    ) throws -> Certificate {
        let subject = try DistinguishedName {
            if let organization { OrganizationName(organization) }
            CommonName(commonName)
        }
        var names: [GeneralName] = dnsNames.map { .dnsName($0) }
        names += ipAddresses.map { .ipAddress(ASN1OctetString(contentBytes: $0[...])) }
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: publicKey,
            notValidBefore: now - Self.backdate, notValidAfter: now + validFor,
            issuer: intermediate.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(intermediateKey.publicKey)).keyIdentifier)
                if !names.isEmpty { SubjectAlternativeNames(names) }
            },
            issuerPrivateKey: .init(intermediateKey))
    }
}
