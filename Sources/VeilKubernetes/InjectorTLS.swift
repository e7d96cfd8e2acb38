import Crypto
import FoundationEssentials
import SwiftASN1
import X509

/// The injector's serving certificate and the CA the API server pins for it (the webhook's
/// `caBundle`): made fresh by `veil kubernetes render`, valid for a year.
public struct InjectorTLS: Sendable {
    public var caPEM: String
    public var certificatePEM: String
    public var privateKeyPEM: String

    public static func generate(service: String, namespace: String, validity: TimeInterval = 365 * 86400, now: Date = Date()) throws -> InjectorTLS {
        let caKey = P256.Signing.PrivateKey()
        let caName = try DistinguishedName { CommonName("Veil injector CA (\(namespace))") }
        let ca = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(caKey.publicKey), notValidBefore: now - 300, notValidAfter: now + validity,
            issuer: caName, subject: caName, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.isCertificateAuthority(maxPathLength: 0))
                Critical(KeyUsage(keyCertSign: true, cRLSign: true))
                SubjectKeyIdentifier(hash: .init(caKey.publicKey))
            },
            issuerPrivateKey: .init(caKey))
        let key = P256.Signing.PrivateKey()
        let names = ["\(service).\(namespace).svc", "\(service).\(namespace).svc.cluster.local"]
        let leaf = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: now - 300, notValidAfter: now + validity,
            issuer: caName, subject: try DistinguishedName { CommonName(names[0]) }, signatureAlgorithm: .ecdsaWithSHA256,
            extensions: try Certificate.Extensions {
                Critical(BasicConstraints.notCertificateAuthority)
                Critical(KeyUsage(digitalSignature: true))
                try ExtendedKeyUsage([.serverAuth])
                AuthorityKeyIdentifier(keyIdentifier: SubjectKeyIdentifier(hash: .init(caKey.publicKey)).keyIdentifier)
                SubjectAlternativeNames(names.map { .dnsName($0) })
            },
            issuerPrivateKey: .init(caKey))
        return InjectorTLS(
            caPEM: try ca.serializeAsPEM().pemString, certificatePEM: try leaf.serializeAsPEM().pemString, privateKeyPEM: key.pemRepresentation)
    }
}
