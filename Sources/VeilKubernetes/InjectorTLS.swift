import Crypto
import FoundationEssentials
import SwiftASN1
import X509

/// A private CA and certificates issued by it, made fresh by `veil kubernetes render` (valid a
/// year): the injector's serving certificate (its CA is the webhook's `caBundle`), and etcd's
/// member and client certificates.
public struct GeneratedCA: Sendable {
    public let caPEM: String
    let name: DistinguishedName
    let key: P256.Signing.PrivateKey
    let validity: TimeInterval
    let now: Date

    /// A certificate and its private key (PEM).
    public struct Issued: Sendable {
        public var certificatePEM: String
        public var privateKeyPEM: String
    }

    public init(commonName: String, validity: TimeInterval = 365 * 86400, now: Date = Date()) throws {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName(commonName) }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey), notValidBefore: now - 300, notValidAfter: now + validity,
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(caKey.publicKey))
            },
            issuerPrivateKey: .init(caKey))
        key = caKey
        name = caName
        self.validity = validity
        self.now = now
        caPEM = try ca.serializeAsPEM().pemString
    }

    public func issue(commonName: String, dnsNames: [String], usages: [ExtendedKeyUsage.Usage]) throws -> Issued {
        let leafKey = P256.Signing.PrivateKey()
        let key = self.key
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(leafKey.publicKey), notValidBefore: now - 300, notValidAfter: now + validity,
            issuer: name, subject: try DistinguishedName { CommonName(commonName) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage(usages)
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(key.publicKey)).keyIdentifier)
                if !dnsNames.isEmpty { SubjectAlternativeNames(dnsNames.map { .dnsName($0) }) }
            },
            issuerPrivateKey: .init(key))
        return Issued(certificatePEM: try leaf.serializeAsPEM().pemString, privateKeyPEM: leafKey.pemRepresentation)
    }
}

/// The injector's serving certificate and the CA the API server pins for it.
public struct InjectorTLS: Sendable {
    public var caPEM: String
    public var certificatePEM: String
    public var privateKeyPEM: String

    public static func generate(service: String, namespace: String) throws -> InjectorTLS {
        let ca = try GeneratedCA(commonName: "Veil injector CA (\(namespace))")
        let names = ["\(service).\(namespace).svc", "\(service).\(namespace).svc.cluster.local"]
        let leaf = try ca.issue(commonName: names[0], dnsNames: names, usages: [.serverAuth])
        return InjectorTLS(caPEM: ca.caPEM, certificatePEM: leaf.certificatePEM, privateKeyPEM: leaf.privateKeyPEM)
    }
}

/// etcd's mutual TLS: one certificate for every member (server and peer), one for the
/// coordinator replicas as etcd clients, under a CA of their own.
public struct EtcdTLS: Sendable {
    public var caPEM: String
    public var member: GeneratedCA.Issued
    public var coordinator: GeneratedCA.Issued

    public static func generate(namespace: String) throws -> EtcdTLS {
        let ca = try GeneratedCA(commonName: "Veil etcd CA (\(namespace))")
        let member = try ca.issue(
            commonName: "veil-etcd",
            dnsNames: ["*.veil-etcd.\(namespace).svc", "*.veil-etcd.\(namespace).svc.cluster.local", "veil-etcd.\(namespace).svc", "localhost"],
            usages: [.serverAuth, .clientAuth])
        let coordinator = try ca.issue(commonName: "veil-coordinator", dnsNames: [], usages: [.clientAuth])
        return EtcdTLS(caPEM: ca.caPEM, member: member, coordinator: coordinator)
    }
}
