import Crypto
import FoundationEssentials
import VeilCore
import VeilJOSE

/// Validates a JWT-SVID as the Workload API's `ValidateJWTSVID` must: signed (ES256) by the
/// key of the bundle named by its `kid`, `aud` containing the audience, not expired, and `sub`
/// a SPIFFE ID. Returns the claims.
public enum JWTSVIDCheck {
    public enum Failure: Error, CustomStringConvertible, Equatable {
        case malformed(String)
        case unknownKey(String)
        case badSignature
        case audience(expected: String, presented: [String])
        case expired(Date)
        case subject(String)

        public var description: String {
            switch self {
            case .malformed(let why): return "the JWT-SVID is malformed: \(why)"
            case .unknownKey(let kid): return "no key '\(kid)' in the trust domain's JWT bundle"
            case .badSignature: return "the JWT-SVID's signature does not verify"
            case .audience(let expected, let presented): return "audience '\(expected)' is not in the token's \(presented)"
            case .expired(let when): return "the JWT-SVID expired at \(when)"
            case .subject(let subject): return "the subject '\(subject)' is not a SPIFFE ID"
            }
        }
    }

    public static func verify(_ token: String, audience: String, bundle: [UInt8], now: Date) throws(Failure) -> [String: JSONValue] {
        let header: [String: JSONValue]
        do {
            header = try JWT.unverifiedHeader(token)
        } catch {
            throw .malformed("\(error)")
        }
        guard let kid = header["kid"]?.stringValue else { throw .malformed("no kid in its header") }
        guard let key = try key(kid, in: bundle) else { throw .unknownKey(kid) }
        let jwt: JWT
        do {
            jwt = try JWT.verified(token, key: key)
        } catch .badSignature {
            throw .badSignature
        } catch {
            throw .malformed("\(error)")
        }
        let claims = jwt.claims
        let audiences: [String]
        switch claims["aud"] {
        case .string(let single): audiences = [single]
        case .array(let items): audiences = items.compactMap(\.stringValue)
        default: audiences = []
        }
        guard audiences.contains(audience) else { throw .audience(expected: audience, presented: audiences) }
        guard case .number(let expiry) = claims["exp"] else { throw .malformed("no exp claim") }
        guard now.timeIntervalSince1970 < expiry else { throw .expired(Date(timeIntervalSince1970: expiry)) }
        guard let subject = claims["sub"]?.stringValue, subject.hasPrefix("spiffe://") else { throw .subject(claims["sub"]?.stringValue ?? "") }
        return claims
    }

    /// The P-256 key `kid` of a JWKS.
    static func key(_ kid: String, in bundle: [UInt8]) throws(Failure) -> P256.Signing.PublicKey? {
        guard let document = try? JSONValue.parse(bundle), case .array(let keys)? = document["keys"] else {
            throw .malformed("the trust domain's JWT bundle is not a JWKS")
        }
        for key in keys where key["kid"]?.stringValue == kid {
            guard key["kty"]?.stringValue == "EC", key["crv"]?.stringValue == "P-256",
                let x = key["x"]?.stringValue.flatMap(Base64URL.decode), let y = key["y"]?.stringValue.flatMap(Base64URL.decode),
                let publicKey = try? P256.Signing.PublicKey(rawRepresentation: x + y)
            else { throw .malformed("key '\(kid)' of the bundle is not a P-256 JWK") }
            return publicKey
        }
        return nil
    }
}
