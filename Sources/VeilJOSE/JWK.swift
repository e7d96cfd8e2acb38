import Crypto
import VeilCore
import _CryptoExtras

/// A public key a JWE is encrypted to, with the key-management algorithm it names.
///
/// Only algorithms without known weaknesses are constructible: RSA-OAEP-256 (RSA ≥ 2048
/// bits) and ECDH-ES+A256KW on P-256. `RSA1_5` (Bleichenbacher-style padding oracles) and
/// plain `RSA-OAEP` (SHA-1) are refused with their own error, so a client learns why.
public enum JWEPublicKey: Sendable {
    /// The key's SubjectPublicKeyInfo DER (swift-crypto's RSA key type is not `Sendable`).
    case rsaOAEP256(spki: [UInt8])
    case ecdhESA256KW(P256.KeyAgreement.PublicKey)

    public var algorithm: String {
        switch self {
        case .rsaOAEP256: return "RSA-OAEP-256"
        case .ecdhESA256KW: return "ECDH-ES+A256KW"
        }
    }

    /// Reads a JWK object (`kty`, `alg`, and `n`/`e` or `crv`/`x`/`y`). A missing `alg` takes the
    /// key type's one supported algorithm.
    public init(jwk: JSONValue) throws(JOSEError) {
        guard let members = jwk.objectValue else { throw .malformedKey("the key is not a JSON object") }
        func member(_ name: String) throws(JOSEError) -> String {
            guard let text = members[name]?.stringValue else { throw .malformedKey("member '\(name)' is missing or not a string") }
            return text
        }
        func bytes(_ name: String) throws(JOSEError) -> [UInt8] {
            guard let decoded = Base64URL.decode(try member(name)), !decoded.isEmpty else {
                throw .malformedKey("member '\(name)' is not unpadded base64url")
            }
            return decoded
        }
        let alg = members["alg"]?.stringValue
        switch try member("kty") {
        case "RSA":
            let algorithm = alg ?? "RSA-OAEP-256"
            guard algorithm == "RSA-OAEP-256" else { throw .unsupportedAlgorithm(algorithm) }
            let key: _RSA.Encryption.PublicKey
            do {
                key = try _RSA.Encryption.PublicKey(n: try bytes("n"), e: try bytes("e"))
            } catch let error as JOSEError {
                throw error
            } catch {
                throw .malformedKey("not an RSA public key: \(error)")
            }
            guard key.keySizeInBits >= 2048 else { throw .malformedKey("RSA keys under 2048 bits are refused (\(key.keySizeInBits))") }
            self = .rsaOAEP256(spki: Array(key.derRepresentation))
        case "EC":
            let algorithm = alg ?? "ECDH-ES+A256KW"
            guard algorithm == "ECDH-ES+A256KW" else { throw .unsupportedAlgorithm(algorithm) }
            let curve = try member("crv")
            guard curve == "P-256" else { throw .unsupportedCurve(curve) }
            let x = try bytes("x"), y = try bytes("y")
            guard x.count == 32, y.count == 32, let key = try? P256.KeyAgreement.PublicKey(rawRepresentation: x + y) else {
                throw .malformedKey("x and y are not a point on P-256")
            }
            self = .ecdhESA256KW(key)
        case let type:
            throw .malformedKey("key type '\(type)' is not RSA or EC")
        }
    }

    /// A PEM public key (`PUBLIC KEY`, SubjectPublicKeyInfo): RSA (≥ 2048 bits) → RSA-OAEP-256,
    /// P-256 → ECDH-ES+A256KW.
    public init(pem: String) throws(JOSEError) {
        if let key = try? _RSA.Encryption.PublicKey(unsafePEMRepresentation: pem) {
            guard key.keySizeInBits >= 2048 else { throw .malformedKey("RSA keys under 2048 bits are refused (\(key.keySizeInBits))") }
            self = .rsaOAEP256(spki: Array(key.derRepresentation))
        } else if let key = try? P256.KeyAgreement.PublicKey(pemRepresentation: pem) {
            self = .ecdhESA256KW(key)
        } else {
            throw .malformedKey("not an RSA or P-256 public key in PEM (SubjectPublicKeyInfo)")
        }
    }

    /// The public JWK of a P-256 key (how ECDH-ES headers carry their ephemeral key).
    public static func jwk(of key: P256.KeyAgreement.PublicKey) -> JSONValue {
        let raw = Array(key.rawRepresentation)
        return .object([
            "kty": .string("EC"), "crv": .string("P-256"),
            "x": .string(Base64URL.encode(raw.prefix(32))), "y": .string(Base64URL.encode(raw.suffix(32))),
        ])
    }
}

/// Why a JOSE object could not be made or read.
public enum JOSEError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedKey(String)
    case unsupportedAlgorithm(String)
    case unsupportedCurve(String)
    case malformedToken(String)
    case badSignature
    case encryptionFailed(String)
    case decryptionFailed(String)

    public var description: String {
        switch self {
        case .malformedKey(let why): return "malformed key: \(why)"
        case .unsupportedAlgorithm(let alg):
            return alg == "RSA1_5"
                ? "key algorithm RSA1_5 is refused (PKCS #1 v1.5 encryption is open to padding-oracle attacks); use RSA-OAEP-256 or ECDH-ES+A256KW"
                : "key algorithm '\(alg)' is not supported (RSA-OAEP-256 or ECDH-ES+A256KW)"
        case .unsupportedCurve(let curve): return "curve '\(curve)' is not supported (P-256)"
        case .malformedToken(let why): return "malformed token: \(why)"
        case .badSignature: return "the token's signature does not verify"
        case .encryptionFailed(let why): return "encryption failed: \(why)"
        case .decryptionFailed(let why): return "decryption failed: \(why)"
        }
    }
}
