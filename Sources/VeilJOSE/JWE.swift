import Crypto
import FoundationEssentials
import VeilCore
import _CryptoExtras

/// A JWE in the flattened JSON serialization (RFC 7516 §7.2.2), content encrypted with
/// A256GCM under a fresh key.
///
/// The additional authenticated data is `ASCII(protected)` alone, as RFC 7516 §5.1 step 14
/// gives when there is no `aad` member; no `aad` member is written, so every JOSE library
/// reads it the same way.
public struct FlattenedJWE: Codable, Sendable, Equatable {
    public var protected: String
    public var encryptedKey: String
    public var iv: String
    public var ciphertext: String
    public var tag: String

    enum CodingKeys: String, CodingKey {
        case protected, iv, ciphertext, tag
        case encryptedKey = "encrypted_key"
    }

    /// Encrypts `plaintext` to `recipient`: a random 256-bit content key wrapped with the
    /// recipient's algorithm, a random 96-bit IV.
    public static func encrypt(_ plaintext: [UInt8], to recipient: JWEPublicKey) throws(JOSEError) -> FlattenedJWE {
        let contentKey = SymmetricKey(size: .bits256)
        var header: [String: JSONValue] = ["alg": .string(recipient.algorithm), "enc": .string("A256GCM")]
        let wrapped: [UInt8]
        do {
            switch recipient {
            case .rsaOAEP256(let spki):
                let key = try _RSA.Encryption.PublicKey(derRepresentation: spki)
                wrapped = Array(try key.encrypt(contentKey.withUnsafeBytes { Data($0) }, padding: .PKCS1_OAEP_SHA256))
            case .ecdhESA256KW(let key):
                let ephemeral = P256.KeyAgreement.PrivateKey()
                header["epk"] = JWEPublicKey.jwk(of: ephemeral.publicKey)
                let secret = try ephemeral.sharedSecretFromKeyAgreement(with: key)
                let z = secret.withUnsafeBytes { Array($0) }
                let kek = ConcatKDF.derive(z: z, algorithm: recipient.algorithm, keyBits: 256)
                wrapped = Array(try AES.KeyWrap.wrap(contentKey, using: kek))
            }
        } catch {
            throw .encryptionFailed("\(error)")
        }
        let protected: String
        do {
            protected = Base64URL.encode(try JCS.encode(.object(header)))
        } catch {
            throw .encryptionFailed("\(error)")
        }
        let nonce = AES.GCM.Nonce()
        do {
            let sealed = try AES.GCM.seal(plaintext, using: contentKey, nonce: nonce, authenticating: Array(protected.utf8))
            return FlattenedJWE(
                protected: protected, encryptedKey: Base64URL.encode(wrapped), iv: Base64URL.encode(nonce),
                ciphertext: Base64URL.encode(sealed.ciphertext), tag: Base64URL.encode(sealed.tag))
        } catch {
            throw .encryptionFailed("\(error)")
        }
    }
}

/// The single-pass Concat KDF of NIST SP 800-56A as JWA uses it for ECDH-ES (RFC 7518
/// §4.6.2): `SHA-256(1 ‖ Z ‖ AlgorithmID ‖ PartyUInfo ‖ PartyVInfo ‖ keydatalen)`. Veil
/// writes empty party infos (`apu`/`apv` absent).
enum ConcatKDF {
    static func derive(z: [UInt8], algorithm: String, partyU: [UInt8] = [], partyV: [UInt8] = [], keyBits: Int) -> SymmetricKey {
        precondition(keyBits <= 256, "one SHA-256 round gives at most 256 bits")
        func lengthPrefixed(_ bytes: [UInt8]) -> [UInt8] { bigEndian(UInt32(bytes.count)) + bytes }
        var hasher = SHA256()
        hasher.update(data: bigEndian(1))
        hasher.update(data: z)
        hasher.update(data: lengthPrefixed(Array(algorithm.utf8)))
        hasher.update(data: lengthPrefixed(partyU))
        hasher.update(data: lengthPrefixed(partyV))
        hasher.update(data: bigEndian(UInt32(keyBits)))
        return SymmetricKey(data: Array(hasher.finalize()).prefix(keyBits / 8))
    }

    static func bigEndian(_ value: UInt32) -> [UInt8] {
        [UInt8(value >> 24), UInt8(value >> 16 & 0xFF), UInt8(value >> 8 & 0xFF), UInt8(value & 0xFF)]
    }
}
