import Crypto
import FoundationEssentials
import VeilCore
import VeilJOSE
import VeilManifest

/// JWT-SVIDs (SPIFFE's JWT identity documents) for services, on request: `sub` the service's
/// SPIFFE ID, `aud` what the caller names, `exp` five minutes on, ES256 with `kid`. The signing
/// key is derived from the workload CA's key in the sealed state, so every replica signs with
/// and publishes the same one (``jwtBundle``); a relying party verifies with that bundle.
extension Coordinator {
    static let jwtSVIDLifetime: TimeInterval = 300

    /// The JWT-SVID signing key: HKDF-SHA256 of the workload intermediate's key.
    var jwtSVIDKey: P256.Signing.PrivateKey {
        let material = SymmetricKey(data: authority.intermediateKey.rawRepresentation)
        for counter in UInt8(0)...UInt8(255) {
            let derived = HKDF<SHA256>.deriveKey(inputKeyMaterial: material, info: Array("veil jwt-svid signing key".utf8) + [counter], outputByteCount: 32)
            if let key = derived.withUnsafeBytes({ try? P256.Signing.PrivateKey(rawRepresentation: Array($0)) }) { return key }
        }
        preconditionFailure("no valid P-256 scalar in 256 HKDF outputs")
    }

    /// `kid`: the first 16 bytes (hex) of SHA-256 of the key's SubjectPublicKeyInfo.
    static func keyID(_ key: P256.Signing.PublicKey) -> String { Hex.encode(SHA256.hash(data: key.derRepresentation).prefix(16)) }

    /// A JWT-SVID for the service `certificate` (its activation certificate) names.
    public func jwtSVID(audience: [String], certificate: [UInt8]?, now: Date = Date()) throws(CoordinatorError) -> (token: String, spiffeID: String, expiresAt: Date) {
        let service = try serviceCaller(certificate, now: now, needing: "a JWT-SVID")
        guard manifest?.services[service] != nil else { throw .unknownService(service) }
        guard !audience.isEmpty, audience.allSatisfy({ !$0.isEmpty }) else { throw .badRequest("a JWT-SVID needs a non-empty audience") }
        let spiffeID = CoordinatorIdentity.serviceURI(trustDomain: trustDomain, service: service)
        let expiry = now.addingTimeInterval(Self.jwtSVIDLifetime)
        let key = jwtSVIDKey
        let claims: [String: JSONValue] = [
            "sub": .string(spiffeID), "aud": .array(audience.map(JSONValue.string)),
            "iat": .number(now.timeIntervalSince1970.rounded(.down)), "exp": .number(expiry.timeIntervalSince1970.rounded(.down)),
        ]
        do {
            return (try JWT.sign(claims: claims, extraHeader: ["kid": .string(Self.keyID(key.publicKey))], with: key), spiffeID, expiry)
        } catch {
            throw .storage("cannot sign the JWT-SVID: \(error)")
        }
    }

    /// The trust domain's JWT bundle: a JWKS with the signing key (`use: jwt-svid`).
    public var jwtBundle: JSONValue {
        let key = jwtSVIDKey.publicKey
        let raw = Array(key.rawRepresentation)
        return .object(["keys": .array([.object([
            "kty": .string("EC"), "crv": .string("P-256"), "use": .string("jwt-svid"), "kid": .string(Self.keyID(key)),
            "x": .string(Base64URL.encode(raw.prefix(32))), "y": .string(Base64URL.encode(raw.suffix(32))),
        ])])])
    }
}
