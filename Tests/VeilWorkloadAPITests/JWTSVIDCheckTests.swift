import Crypto
import Foundation
import Testing
import VeilCore
import VeilJOSE
import VeilWorkloadAPI

/// `ValidateJWTSVID`'s rules: a JWT-SVID verifies only with the bundle key its `kid` names, for
/// an audience it lists, before its expiry, with a SPIFFE ID as subject; each refusal says which.
@Suite struct JWTSVIDCheckTests {
    let key = P256.Signing.PrivateKey()
    let now = Date(timeIntervalSince1970: 1_800_000_000)

    func bundle(_ key: P256.Signing.PublicKey, kid: String = "k1") throws -> [UInt8] {
        let raw = Array(key.rawRepresentation)
        return try CanonicalJSON.encode(JSONValue.object(["keys": .array([.object([
            "kty": .string("EC"), "crv": .string("P-256"), "kid": .string(kid),
            "x": .string(Base64URL.encode(raw.prefix(32))), "y": .string(Base64URL.encode(raw.suffix(32))),
        ])])]))
    }

    func token(sub: String = "spiffe://shop.example/service/web", aud: [String] = ["db"], exp: Double? = nil, kid: String = "k1", signer: P256.Signing.PrivateKey? = nil) throws -> String {
        try JWT.sign(
            claims: ["sub": .string(sub), "aud": .array(aud.map(JSONValue.string)), "exp": .number(exp ?? now.timeIntervalSince1970 + 300)],
            extraHeader: ["kid": .string(kid)], with: signer ?? key)
    }

    @Test func aValidSVIDGivesItsClaims() throws {
        let claims = try JWTSVIDCheck.verify(try token(aud: ["db", "cache"]), audience: "cache", bundle: try bundle(key.publicKey), now: now)
        #expect(claims["sub"]?.stringValue == "spiffe://shop.example/service/web")
    }

    @Test func everyRefusalSaysWhich() throws {
        let bundle = try bundle(key.publicKey)
        #expect(throws: JWTSVIDCheck.Failure.badSignature) {
            try JWTSVIDCheck.verify(try token(signer: P256.Signing.PrivateKey()), audience: "db", bundle: bundle, now: now)
        }
        #expect(throws: JWTSVIDCheck.Failure.unknownKey("k2")) { try JWTSVIDCheck.verify(try token(kid: "k2"), audience: "db", bundle: bundle, now: now) }
        #expect(throws: JWTSVIDCheck.Failure.audience(expected: "other", presented: ["db"])) {
            try JWTSVIDCheck.verify(try token(), audience: "other", bundle: bundle, now: now)
        }
        #expect(throws: JWTSVIDCheck.Failure.expired(now)) {
            try JWTSVIDCheck.verify(try token(exp: now.timeIntervalSince1970), audience: "db", bundle: bundle, now: now)
        }
        #expect(throws: JWTSVIDCheck.Failure.subject("web")) { try JWTSVIDCheck.verify(try token(sub: "web"), audience: "db", bundle: bundle, now: now) }
        #expect(throws: JWTSVIDCheck.Failure.self, "not a JWT") { try JWTSVIDCheck.verify("a.b", audience: "db", bundle: bundle, now: now) }
        #expect(throws: JWTSVIDCheck.Failure.self, "not a JWKS") { try JWTSVIDCheck.verify(try token(), audience: "db", bundle: Array("[]".utf8), now: now) }
        // A changed payload under the original signature.
        var parts = try token().split(separator: ".").map(String.init)
        parts[1] = Base64URL.encode(try CanonicalJSON.encode(JSONValue.object([
            "sub": .string("spiffe://shop.example/service/admin"), "aud": .array([.string("db")]), "exp": .number(now.timeIntervalSince1970 + 300),
        ])))
        #expect(throws: JWTSVIDCheck.Failure.badSignature) { try JWTSVIDCheck.verify(parts.joined(separator: "."), audience: "db", bundle: bundle, now: now) }
    }
}
