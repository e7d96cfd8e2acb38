import Crypto
import Foundation
import VeilManifest
import X509
import _CryptoExtras

/// A secret's value as the coordinator holds it (inside the sealed state only).
public struct SecretValue: Codable, Sendable, Equatable {
    /// Plain and symmetric-key secrets. `nil` for a user-defined secret not set yet.
    @OptionalStoredBytes public var bytes: [UInt8]? = nil
    /// Certificate secrets: certificate DER, PKCS#8 private key DER, SubjectPublicKeyInfo DER.
    @OptionalStoredBytes public var certificate: [UInt8]? = nil
    @OptionalStoredBytes public var privateKey: [UInt8]? = nil
    @OptionalStoredBytes public var publicKey: [UInt8]? = nil

    /// What a template reference to this secret yields.
    func value(for part: Template.SecretPart?, name: String) throws -> ReferenceValue {
        switch part {
        case nil:
            guard let bytes else { throw RenderError.secretNotSet(name) }
            return .bytes(bytes)
        case .cert?:
            guard let certificate else { throw RenderError.secretNotSet(name) }
            return .der(certificate, pemLabel: "CERTIFICATE")
        case .privateKey?:
            guard let privateKey else { throw RenderError.secretNotSet(name) }
            return .der(privateKey, pemLabel: "PRIVATE KEY")
        case .publicKey?:
            guard let publicKey else { throw RenderError.secretNotSet(name) }
            return .der(publicKey, pemLabel: "PUBLIC KEY")
        }
    }
}

/// Generates the values of a manifest's secrets.
enum SecretGenerator {
    static func generate(_ spec: SecretSpec, authority: CertificateAuthority, now: Date = Date()) throws -> SecretValue {
        if spec.userDefined { return SecretValue() }
        switch spec.kind {
        case .plain:
            return SecretValue(bytes: randomBytes(spec.size))
        case .symmetricKey:
            return SecretValue(bytes: randomBytes(spec.size / 8))
        case .certECDSA, .certRSA, .certEd25519:
            let key = try privateKey(spec)
            // Validation guarantees certificate secrets carry a certificate spec.
            let certSpec = spec.certificate!
            let certificate = try authority.issueLeaf(
                publicKey: key.publicKey, commonName: certSpec.commonName, organization: certSpec.organization,
                dnsNames: certSpec.dnsNames, ipAddresses: certSpec.ipAddresses.compactMap(IPAddress.bytes),
                validFor: TimeInterval(certSpec.validForDays) * 86400, now: now)
            return SecretValue(
                certificate: try certificate.derBytes, privateKey: try key.serializeAsPEM().derBytes,
                publicKey: try key.publicKey.subjectPublicKeyInfoDER)
        }
    }

    private static func privateKey(_ spec: SecretSpec) throws -> Certificate.PrivateKey {
        switch (spec.kind, spec.size) {
        case (.certECDSA, 384): return .init(P384.Signing.PrivateKey())
        case (.certECDSA, _): return .init(P256.Signing.PrivateKey())
        case (.certEd25519, _): return .init(Curve25519.Signing.PrivateKey())
        default: return .init(try _RSA.Signing.PrivateKey(keySize: .init(bitCount: spec.size)))
        }
    }

    static func randomBytes(_ count: Int) -> [UInt8] {
        SymmetricKey(size: .init(bitCount: count * 8)).withUnsafeBytes { Array($0) }
    }
}
