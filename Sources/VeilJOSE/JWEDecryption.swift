import Crypto
import FoundationEssentials
import VeilCore
import _CryptoExtras

/// A private key a JWE is decrypted with. Decryption accepts what image encryption tools write
/// (skopeo/ocicrypt: `RSA-OAEP` with SHA-1, `RSA-OAEP-256`, `ECDH-ES+A256KW` on P-256, P-384 or
/// P-521): SHA-1 in OAEP is not a weakness for decryption, and refusing it would refuse every
/// image skopeo encrypts. `RSA1_5` stays refused (a padding oracle needs only a decryptor).
public enum JWEPrivateKey: Sendable {
    /// PKCS#8 or PKCS#1 DER (swift-crypto's RSA key type is not `Sendable`).
    case rsa(der: [UInt8])
    case p256(P256.KeyAgreement.PrivateKey)
    case p384(P384.KeyAgreement.PrivateKey)
    case p521(P521.KeyAgreement.PrivateKey)

    /// A PEM private key: `PRIVATE KEY` (PKCS#8, RSA or EC), `RSA PRIVATE KEY` or `EC PRIVATE KEY`.
    public init(pem: String) throws(JOSEError) {
        if let key = try? _RSA.Encryption.PrivateKey(unsafePEMRepresentation: pem) {
            guard key.keySizeInBits >= 2048 else { throw .malformedKey("RSA keys under 2048 bits are refused (\(key.keySizeInBits))") }
            self = .rsa(der: Array(key.derRepresentation))
        } else if let key = try? P256.KeyAgreement.PrivateKey(pemRepresentation: pem) {
            self = .p256(key)
        } else if let key = try? P384.KeyAgreement.PrivateKey(pemRepresentation: pem) {
            self = .p384(key)
        } else if let key = try? P521.KeyAgreement.PrivateKey(pemRepresentation: pem) {
            self = .p521(key)
        } else {
            throw .malformedKey("not an RSA or EC (P-256, P-384, P-521) private key in PEM")
        }
    }
}

/// Decrypts JWEs in the JSON serializations (RFC 7516 §7.2): flattened, and general with several
/// recipients. Content encryption is A256GCM only (what ocicrypt writes).
///
/// Each recipient's header is the union of the protected header, the shared `unprotected`
/// header and its own `header`, which must not repeat a name (RFC 7516 §7.2.1). The additional
/// authenticated data is `ASCII(protected)`, followed by `.` and `aad` when present. go-jose v2
/// (skopeo ≤ 1.x) also writes a top-level `encrypted_key` beside `recipients`, a copy of the
/// first recipient's; it is ignored, as the recipients say everything.
public enum JWEDecryption {
    /// The plaintext, from the first recipient one of `keys` opens; an error naming every
    /// recipient's reason when none does.
    public static func decrypt(json: [UInt8], with keys: [JWEPrivateKey]) throws(JOSEError) -> [UInt8] {
        guard let object = (try? JSONValue.parse(json))?.objectValue else { throw .malformedToken("the JWE is not a JSON object") }
        let protectedText = object["protected"]?.stringValue ?? ""
        let protected = try headerObject(protectedText.isEmpty ? nil : protectedText, name: "protected")
        let shared = try plainHeader(object["unprotected"], name: "unprotected")
        let recipients: [(header: [String: JSONValue], encryptedKey: [UInt8])]
        if let list = object["recipients"] {
            guard case .array(let entries) = list, !entries.isEmpty else { throw .malformedToken("'recipients' is not a non-empty array") }
            recipients = try entries.map { entry throws(JOSEError) in
                guard let members = entry.objectValue else { throw .malformedToken("a recipient is not an object") }
                return (try plainHeader(members["header"], name: "header"), try bytes(members["encrypted_key"], "encrypted_key", allowEmpty: true))
            }
        } else {
            recipients = [(try plainHeader(object["header"], name: "header"), try bytes(object["encrypted_key"], "encrypted_key", allowEmpty: true))]
        }
        let iv = try bytes(object["iv"], "iv"), ciphertext = try bytes(object["ciphertext"], "ciphertext", allowEmpty: true), tag = try bytes(object["tag"], "tag")
        var aad = Array(protectedText.utf8)
        if let extra = object["aad"]?.stringValue { aad += Array(".\(extra)".utf8) }

        var reasons: [String] = []
        for (index, recipient) in recipients.enumerated() {
            let header = try merged([protected, shared, recipient.header])
            guard header["enc"]?.stringValue == "A256GCM" else { throw .unsupportedAlgorithm("enc \(header["enc"]?.stringValue ?? "(none)")") }
            guard let alg = header["alg"]?.stringValue else { throw .malformedToken("recipient \(index) names no 'alg'") }
            for key in keys {
                guard let contentKey = try? unwrap(recipient.encryptedKey, alg: alg, header: header, with: key) else { continue }
                do {
                    let box = try AES.GCM.SealedBox(nonce: AES.GCM.Nonce(data: iv), ciphertext: ciphertext, tag: tag)
                    return Array(try AES.GCM.open(box, using: contentKey, authenticating: aad))
                } catch {
                    // A key that unwraps to the wrong content key fails here: a changed ciphertext or tag.
                    throw .decryptionFailed("the content does not decrypt under recipient \(index)'s key (changed ciphertext, tag, IV or header)")
                }
            }
            if alg == "RSA1_5" { throw .unsupportedAlgorithm(alg) }
            reasons.append("recipient \(index) (\(alg)): none of the \(keys.count) key(s) unwraps it")
        }
        throw .decryptionFailed(reasons.joined(separator: "; "))
    }

    /// The content key `encryptedKey` wraps for `key`, or an error when `key` is not the
    /// recipient's (wrong type, curve, or a failed unwrap).
    static func unwrap(_ encryptedKey: [UInt8], alg: String, header: [String: JSONValue], with key: JWEPrivateKey) throws -> SymmetricKey {
        switch (alg, key) {
        case ("RSA-OAEP", .rsa(let der)), ("RSA-OAEP-256", .rsa(let der)):
            let rsa = try _RSA.Encryption.PrivateKey(derRepresentation: der)
            let plain = try rsa.decrypt(encryptedKey, padding: alg == "RSA-OAEP" ? .PKCS1_OAEP : .PKCS1_OAEP_SHA256)
            guard plain.count == 32 else { throw JOSEError.decryptionFailed("the unwrapped key is not 256 bits") }
            return SymmetricKey(data: plain)
        case ("ECDH-ES+A256KW", _):
            guard let epk = header["epk"]?.objectValue, epk["kty"]?.stringValue == "EC", let curve = epk["crv"]?.stringValue,
                let x = epk["x"]?.stringValue.flatMap(Base64URL.decode), let y = epk["y"]?.stringValue.flatMap(Base64URL.decode)
            else { throw JOSEError.malformedToken("ECDH-ES needs an EC 'epk'") }
            let z: [UInt8]
            switch (curve, key) {
            case ("P-256", .p256(let own)):
                z = try own.sharedSecretFromKeyAgreement(with: P256.KeyAgreement.PublicKey(rawRepresentation: x + y)).withUnsafeBytes { Array($0) }
            case ("P-384", .p384(let own)):
                z = try own.sharedSecretFromKeyAgreement(with: P384.KeyAgreement.PublicKey(rawRepresentation: x + y)).withUnsafeBytes { Array($0) }
            case ("P-521", .p521(let own)):
                z = try own.sharedSecretFromKeyAgreement(with: P521.KeyAgreement.PublicKey(rawRepresentation: x + y)).withUnsafeBytes { Array($0) }
            default: throw JOSEError.unsupportedCurve(curve)
            }
            let partyU = try party(header["apu"], "apu"), partyV = try party(header["apv"], "apv")
            let kek = ConcatKDF.derive(z: z, algorithm: alg, partyU: partyU, partyV: partyV, keyBits: 256)
            return try AES.KeyWrap.unwrap(encryptedKey, using: kek)
        default:
            throw JOSEError.unsupportedAlgorithm(alg)
        }
    }

    /// `apu`/`apv` decoded, empty when absent.
    static func party(_ value: JSONValue?, _ name: String) throws(JOSEError) -> [UInt8] {
        guard let text = value?.stringValue else { return [] }
        guard let decoded = Base64URL.decode(text) else { throw .malformedToken("'\(name)' is not base64url") }
        return decoded
    }

    static func headerObject(_ encoded: String?, name: String) throws(JOSEError) -> [String: JSONValue] {
        guard let encoded else { return [:] }
        guard let bytes = Base64URL.decode(encoded), let object = (try? JSONValue.parse(bytes))?.objectValue else {
            throw .malformedToken("'\(name)' is not base64url of a JSON object")
        }
        return object
    }

    static func plainHeader(_ value: JSONValue?, name: String) throws(JOSEError) -> [String: JSONValue] {
        guard let value else { return [:] }
        guard let object = value.objectValue else { throw .malformedToken("'\(name)' is not an object") }
        return object
    }

    static func merged(_ parts: [[String: JSONValue]]) throws(JOSEError) -> [String: JSONValue] {
        var header: [String: JSONValue] = [:]
        for part in parts {
            for (name, value) in part {
                guard header[name] == nil else { throw .malformedToken("header parameter '\(name)' appears twice") }
                header[name] = value
            }
        }
        return header
    }

    static func bytes(_ value: JSONValue?, _ name: String, allowEmpty: Bool = false) throws(JOSEError) -> [UInt8] {
        guard let text = value?.stringValue, let decoded = Base64URL.decode(text), allowEmpty || !decoded.isEmpty else {
            throw .malformedToken("'\(name)' is missing or not base64url")
        }
        return decoded
    }
}
