import Crypto
import FoundationEssentials
import _CryptoExtras
import VeilCore

/// A manifest recovery key: the public half of a key whose holder can help restore a
/// coordinator that can no longer unseal its state. RSA (≥ 2048 bits, OAEP-SHA256) or P-256
/// (HPKE, RFC 9180: DHKEM(P-256), HKDF-SHA256, AES-256-GCM).
public struct RecoveryKey: Sendable, Equatable {
    public enum Kind: String, Codable, Sendable { case rsaOAEP = "rsa-oaep-sha256", hpkeP256 = "hpke-p256-sha256-aes256gcm" }

    public let kind: Kind
    /// SubjectPublicKeyInfo DER.
    public let publicKeyDER: [UInt8]
    /// Hex SHA-256 of ``publicKeyDER``: how shares are matched to keys.
    public var fingerprint: String { Hex.encode(SHA256.hash(data: publicKeyDER)) }

    static let info = Data("veil-recovery-share-v1".utf8)

    public init(pem: String) throws {
        if let key = try? _RSA.Encryption.PublicKey(pemRepresentation: pem) {
            guard key.keySizeInBits >= 2048 else { throw RecoveryKeyError.unsupportedKey("RSA keys need at least 2048 bits") }
            kind = .rsaOAEP
            publicKeyDER = Array(key.derRepresentation)
        } else if let key = try? P256.KeyAgreement.PublicKey(pemRepresentation: pem) {
            kind = .hpkeP256
            publicKeyDER = Array(key.derRepresentation)
        } else {
            throw RecoveryKeyError.unsupportedKey("not a PEM RSA or P-256 public key")
        }
    }

    /// Encrypts `share` to this key: (encapsulated key, ciphertext); the encapsulated key is empty for RSA.
    public func encrypt(_ share: [UInt8]) throws -> (encapsulatedKey: [UInt8], ciphertext: [UInt8]) {
        switch kind {
        case .rsaOAEP:
            let key = try _RSA.Encryption.PublicKey(derRepresentation: publicKeyDER)
            return ([], Array(try key.encrypt(share, padding: .PKCS1_OAEP_SHA256)))
        case .hpkeP256:
            let key = try P256.KeyAgreement.PublicKey(derRepresentation: publicKeyDER)
            var sender = try HPKE.Sender(recipientKey: key, ciphersuite: .P256_SHA256_AES_GCM_256, info: Self.info)
            return (Array(sender.encapsulatedKey), Array(try sender.seal(share)))
        }
    }
}

/// The private half, used by `veil recover` on the holder's machine only.
public struct RecoveryPrivateKey {
    enum Backing {
        case rsa(_RSA.Encryption.PrivateKey)
        case p256(P256.KeyAgreement.PrivateKey)
    }

    let backing: Backing
    public let publicKey: RecoveryKey

    public init(pem: String) throws {
        if let key = try? _RSA.Encryption.PrivateKey(pemRepresentation: pem) {
            backing = .rsa(key)
            publicKey = try RecoveryKey(pem: key.publicKey.pemRepresentation)
        } else if let key = try? P256.KeyAgreement.PrivateKey(pemRepresentation: pem) {
            backing = .p256(key)
            publicKey = try RecoveryKey(pem: key.publicKey.pemRepresentation)
        } else {
            throw RecoveryKeyError.unsupportedKey("not a PEM RSA or P-256 private key")
        }
    }

    public func decrypt(encapsulatedKey: [UInt8], ciphertext: [UInt8]) throws -> [UInt8] {
        do {
            switch backing {
            case .rsa(let key):
                return Array(try key.decrypt(ciphertext, padding: .PKCS1_OAEP_SHA256))
            case .p256(let key):
                var recipient = try HPKE.Recipient(
                    privateKey: key, ciphersuite: .P256_SHA256_AES_GCM_256, info: RecoveryKey.info, encapsulatedKey: Data(encapsulatedKey))
                return Array(try recipient.open(ciphertext))
            }
        } catch {
            throw RecoveryKeyError.cannotDecrypt
        }
    }
}

public enum RecoveryKeyError: Error, Equatable, CustomStringConvertible {
    case unsupportedKey(String)
    case cannotDecrypt

    public var description: String {
        switch self {
        case .unsupportedKey(let why): return "recovery key: \(why)"
        case .cannotDecrypt: return "the recovery share does not decrypt with this key"
        }
    }
}
