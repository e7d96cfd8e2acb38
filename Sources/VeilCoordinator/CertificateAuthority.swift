import Crypto
import Foundation
import SwiftASN1
import VeilManifest
import X509

/// The coordinator's CA: a long-lived root users pin, and two intermediates under it with
/// separate keys and jobs:
/// - the **workload intermediate** signs every workload certificate (activations, certificate
///   secrets);
/// - the **coordinator TLS CA** signs only the coordinator's own TLS certificates.
///
/// Clients of the coordinator accept only a chain through the coordinator TLS CA
/// (``CoordinatorIdentity``), so no workload certificate — whatever names a manifest gives
/// it — can pass as the coordinator.
///
/// Invariant: the keys are only ever serialized into the sealed state.
public struct CertificateAuthority: Sendable {
    public let rootKey: P256.Signing.PrivateKey
    public let root: Certificate
    public let intermediateKey: P256.Signing.PrivateKey
    public let intermediate: Certificate
    public let coordinatorCAKey: P256.Signing.PrivateKey
    public let coordinatorCA: Certificate

    public let rootDER: [UInt8]
    public let intermediateDER: [UInt8]
    public let coordinatorCADER: [UInt8]

    public init(
        rootKey: P256.Signing.PrivateKey, root: Certificate, intermediateKey: P256.Signing.PrivateKey, intermediate: Certificate,
        coordinatorCAKey: P256.Signing.PrivateKey, coordinatorCA: Certificate
    ) throws {
        self.rootKey = rootKey
        self.root = root
        self.intermediateKey = intermediateKey
        self.intermediate = intermediate
        self.coordinatorCAKey = coordinatorCAKey
        self.coordinatorCA = coordinatorCA
        rootDER = try root.derBytes
        intermediateDER = try intermediate.derBytes
        coordinatorCADER = try coordinatorCA.derBytes
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

    /// `spiffe://ID.veil/…` names this coordinator's services; ID is the first 16 bytes (hex) of SHA-256 of the
    /// root's SubjectPublicKeyInfo, stable across restarts and shared by all replicas.
    public var coordinatorID: String { CoordinatorIdentity.coordinatorID(root: root) }

    /// Creates a fresh root (20 years), workload intermediate (10 years) and coordinator TLS CA (10 years).
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
        let intermediate = try issueCA(
            subject: try DistinguishedName {
                OrganizationName("Veil")
                CommonName("\(commonName) Intermediate CA")
            }, key: intermediateKey, root: root, rootKey: rootKey, now: now)
        let coordinatorCA = try issueCoordinatorCA(root: root, rootKey: rootKey, now: now)
        return try CertificateAuthority(
            rootKey: rootKey, root: root, intermediateKey: intermediateKey, intermediate: intermediate,
            coordinatorCAKey: coordinatorCA.key, coordinatorCA: coordinatorCA.certificate)
    }

    /// A CA under the root with path length 0.
    static func issueCA(subject: DistinguishedName, key: P256.Signing.PrivateKey, root: Certificate, rootKey: P256.Signing.PrivateKey, now: Date) throws
        -> Certificate
    {
        try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey),
            notValidBefore: now - backdate, notValidAfter: now + 10 * 365 * 86400,
            issuer: root.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(key.publicKey))
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(rootKey.publicKey)).keyIdentifier)
            },
            issuerPrivateKey: .init(rootKey))
    }

    /// A new coordinator TLS CA under `root` (also used to add one to states created before it existed).
    static func issueCoordinatorCA(root: Certificate, rootKey: P256.Signing.PrivateKey, now: Date = Date()) throws
        -> (key: P256.Signing.PrivateKey, certificate: Certificate)
    {
        let key = P256.Signing.PrivateKey()
        return (key, try issueCA(subject: try CoordinatorIdentity.caSubject(), key: key, root: root, rootKey: rootKey, now: now))
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

    /// Issues a workload certificate (activations, certificate secrets) from the workload
    /// intermediate, usable for TLS server and client auth. It never carries the coordinator's
    /// identity: that comes only from ``issueCoordinatorTLS(publicKey:dnsNames:ipAddresses:validFor:now:)``.
    public func issueLeaf(
        publicKey: Certificate.PublicKey, commonName: String, organization: String? = nil,
        dnsNames: [String], ipAddresses: [[UInt8]] = [], uris: [String] = [], validFor: TimeInterval, now: Date = Date()
    ) throws -> Certificate {
        precondition(!uris.contains(CoordinatorIdentity.uri), "workload certificates never carry the coordinator's identity")
        return try Self.leaf(
            publicKey: publicKey, commonName: commonName, organization: organization, names: Self.names(dnsNames, ipAddresses, uris),
            validFor: validFor, now: now, issuer: intermediate, issuerKey: intermediateKey)
    }

    /// The certificate of a service's activation: its name as common name and DNS name, and
    /// its identity as the SPIFFE ID `spiffe://TRUST-DOMAIN/service/NAME` (an X.509-SVID).
    /// The manifest package it was activated under is its organizational unit, which a renewal
    /// must find unchanged (``CertificateAuthority/package(of:)``).
    /// - Parameter trustDomain: the manifest's; nil: `COORDINATOR-ID.veil`.
    public func issueServiceLeaf(
        publicKey: Certificate.PublicKey, service: String, package: String? = nil, trustDomain: String? = nil, validFor: TimeInterval, now: Date = Date()
    ) throws -> Certificate {
        let domain = trustDomain ?? CoordinatorIdentity.defaultTrustDomain(coordinatorID: coordinatorID)
        return try Self.leaf(
            publicKey: publicKey, commonName: service, organization: nil, unit: package,
            names: Self.names([service], [], [CoordinatorIdentity.serviceURI(trustDomain: domain, service: service)]),
            validFor: validFor, now: now, issuer: intermediate, issuerKey: intermediateKey)
    }

    /// The package a service certificate was issued under (its organizational unit).
    public static func package(of certificate: Certificate) -> String? {
        for rdn in certificate.subject {
            for attribute in rdn where attribute.type == .RDNAttributeType.organizationalUnitName {
                if let text = try? String(attribute.value) { return text }
            }
        }
        return nil
    }

    /// A TLS server certificate for the coordinator itself, from the coordinator TLS CA, with
    /// the URI ``CoordinatorIdentity/uri``.
    public func issueCoordinatorTLS(
        publicKey: Certificate.PublicKey, dnsNames: [String], ipAddresses: [[UInt8]], validFor: TimeInterval, now: Date = Date()
    ) throws -> Certificate {
        try Self.leaf(
            publicKey: publicKey, commonName: "Veil Coordinator", organization: nil,
            names: Self.names(dnsNames, ipAddresses, [CoordinatorIdentity.uri]), validFor: validFor, now: now, issuer: coordinatorCA,
            issuerKey: coordinatorCAKey)
    }

    /// A signing certificate for the coordinator's own statements (KBS attestation tokens),
    /// from the coordinator TLS CA, named by `uri` alone.
    public func issueCoordinatorSigner(publicKey: Certificate.PublicKey, uri: String, validFor: TimeInterval, now: Date = Date()) throws -> Certificate {
        try Self.leaf(
            publicKey: publicKey, commonName: "Veil Coordinator token signer", organization: nil, names: Self.names([], [], [uri]),
            validFor: validFor, now: now, issuer: coordinatorCA, issuerKey: coordinatorCAKey)
    }

    static func names(_ dnsNames: [String], _ ipAddresses: [[UInt8]], _ uris: [String]) -> [GeneralName] {
        dnsNames.map { .dnsName($0) } + ipAddresses.map { .ipAddress(ASN1OctetString(contentBytes: $0[...])) } + uris.map { .uniformResourceIdentifier($0) }
    }

    static func leaf(
        publicKey: Certificate.PublicKey, commonName: String, organization: String?, unit: String? = nil, names: [GeneralName], validFor: TimeInterval,
        now: Date, issuer: Certificate, issuerKey: P256.Signing.PrivateKey
    ) throws -> Certificate {
        let subject = try DistinguishedName {
            if let organization { OrganizationName(organization) }
            if let unit { OrganizationalUnitName(unit) }
            CommonName(commonName)
        }
        return try Certificate(
            version: .v3, serialNumber: .init(), publicKey: publicKey,
            notValidBefore: now - Self.backdate, notValidAfter: now + validFor,
            issuer: issuer.subject, subject: subject, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true, keyEncipherment: true))
                try ExtendedKeyUsage([.serverAuth, .clientAuth])
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(issuerKey.publicKey)).keyIdentifier)
                if !names.isEmpty { SubjectAlternativeNames(names) }
            },
            issuerPrivateKey: .init(issuerKey))
    }
}
