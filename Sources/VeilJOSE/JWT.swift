import Crypto
import FoundationEssentials
import VeilCore

/// A JSON Web Token signed with ES256 (RFC 7519, RFC 7518 §3.4), in the compact form.
///
/// A value of this type has a verified signature: ``verified(_:key:)`` is its only
/// initializer from text.
public struct JWT: Sendable {
    public let header: [String: JSONValue]
    public let claims: [String: JSONValue]

    /// `header.payload.signature`, the header carrying `alg: ES256`, `typ: JWT` and `extraHeader`.
    public static func sign(claims: [String: JSONValue], extraHeader: [String: JSONValue] = [:], with key: P256.Signing.PrivateKey) throws -> String {
        var header = extraHeader
        header["alg"] = .string("ES256")
        header["typ"] = .string("JWT")
        let signingInput = Base64URL.encode(try JCS.encode(.object(header))) + "." + Base64URL.encode(try JCS.encode(.object(claims)))
        let signature = try key.signature(for: Array(signingInput.utf8))
        return signingInput + "." + Base64URL.encode(signature.rawRepresentation)
    }

    /// The header of `token` before any check: to find the key that should verify it.
    public static func unverifiedHeader(_ token: String) throws(JOSEError) -> [String: JSONValue] {
        try parts(token).header
    }

    /// Verifies `token`'s ES256 signature with `key`. The time claims are the caller's to check.
    public static func verified(_ token: String, key: P256.Signing.PublicKey) throws(JOSEError) -> JWT {
        let parsed = try parts(token)
        guard parsed.header["alg"]?.stringValue == "ES256" else {
            throw .unsupportedAlgorithm(parsed.header["alg"]?.stringValue ?? "(none)")
        }
        guard let signature = try? P256.Signing.ECDSASignature(rawRepresentation: parsed.signature),
            key.isValidSignature(signature, for: Array(parsed.signingInput.utf8))
        else { throw .badSignature }
        return JWT(header: parsed.header, claims: parsed.claims)
    }

    static func parts(_ token: String) throws(JOSEError) -> (header: [String: JSONValue], claims: [String: JSONValue], signingInput: Substring, signature: [UInt8]) {
        let pieces = token.split(separator: ".", omittingEmptySubsequences: false)
        guard pieces.count == 3 else { throw .malformedToken("a JWT has three dot-separated parts, this has \(pieces.count)") }
        func object(_ part: Substring, _ name: String) throws(JOSEError) -> [String: JSONValue] {
            guard let bytes = Base64URL.decode(String(part)), let value = try? JSONValue.parse(bytes), let members = value.objectValue else {
                throw .malformedToken("the \(name) is not base64url JSON object")
            }
            return members
        }
        guard let signature = Base64URL.decode(String(pieces[2])) else { throw .malformedToken("the signature is not base64url") }
        let signingInput = token[token.startIndex..<pieces[1].endIndex]
        return (try object(pieces[0], "header"), try object(pieces[1], "payload"), signingInput, signature)
    }
}
