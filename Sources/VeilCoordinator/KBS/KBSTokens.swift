import Crypto
import FoundationEssentials
import VeilCore
import VeilJOSE
import VeilManifest
import X509

/// Signs and checks the attestation tokens `/kbs/v0/attest` returns: ES256 JWTs whose `x5c`
/// header carries a signing certificate the coordinator TLS CA issued (so the token chains
/// to the coordinator's root like the coordinator's own TLS identity), and which every
/// replica verifies against that CA — a token works on any replica.
///
/// Claims: `iss` (the coordinator ID), `iat`, `exp`, `tee`, `tee-pubkey` (as the client sent
/// it), `veil.service`, `veil.package`, `veil.simulated`, and `init_data` (hex digest) when
/// init-data was presented.
struct KBSTokenSigner: Sendable {
    static let signerURI = CoordinatorIdentity.uri + ":kbs-token"
    let key: P256.Signing.PrivateKey
    let chain: [[UInt8]]

    init(authority: CertificateAuthority, now: Date = Date()) throws {
        key = P256.Signing.PrivateKey()
        let certificate = try authority.issueCoordinatorSigner(publicKey: .init(key.publicKey), uri: Self.signerURI, validFor: 30 * 86400, now: now)
        chain = [try certificate.derBytes, authority.coordinatorCADER]
    }

    func token(for grant: KBSGrant, issuer: String, now: Date) throws -> String {
        var claims: [String: JSONValue] = [
            "iss": .string(issuer), "iat": .number(now.timeIntervalSince1970.rounded(.down)),
            "exp": .number(grant.expires.timeIntervalSince1970.rounded(.down)),
            "tee": .string(grant.tee), "tee-pubkey": grant.teeKeyJWK,
            "veil.service": .string(grant.service), "veil.package": .string(grant.package), "veil.simulated": .bool(grant.simulated),
        ]
        if let digest = grant.initDataDigest { claims["init_data"] = .string(Hex.encode(digest)) }
        return try JWT.sign(claims: claims, extraHeader: ["x5c": .array(chain.map { .string(Data($0).base64EncodedString()) })], with: key)
    }

    /// The grant a token carries, after checking its chain to this coordinator's TLS CA, the
    /// signer's identity, the signature, the issuer and the expiry.
    static func grant(from token: String, authority: CertificateAuthority, now: Date) throws(KBSError) -> KBSGrant {
        let header: [String: JSONValue]
        do {
            header = try JWT.unverifiedHeader(token)
        } catch {
            throw .tokenInvalid("\(error)")
        }
        guard let first = header["x5c"]?.arrayValue?.first?.stringValue, let der = Data(base64Encoded: first),
            let signer = try? Certificate(derEncoded: Array(der))
        else { throw .tokenInvalid("no x5c signing certificate") }
        guard signer.issuer == authority.coordinatorCA.subject, authority.coordinatorCA.publicKey.isValidSignature(signer.signature, for: signer),
            (try? signer.extensions.subjectAlternativeNames)??.contains(.uniformResourceIdentifier(signerURI)) == true,
            signer.notValidBefore <= now, now < signer.notValidAfter,
            let publicKey = P256.Signing.PublicKey(signer.publicKey)
        else { throw .tokenInvalid("the signing certificate is not this coordinator's token signer") }
        let jwt: JWT
        do {
            jwt = try JWT.verified(token, key: publicKey)
        } catch {
            throw .tokenInvalid("\(error)")
        }
        let claims = jwt.claims
        guard claims["iss"]?.stringValue == authority.coordinatorID else { throw .tokenInvalid("issued by another coordinator") }
        guard let exp = claims["exp"]?.numberValue, now.timeIntervalSince1970 < exp else { throw .tokenInvalid("expired") }
        guard let tee = claims["tee"]?.stringValue, let service = claims["veil.service"]?.stringValue,
            let package = claims["veil.package"]?.stringValue, let jwk = claims["tee-pubkey"]
        else { throw .tokenInvalid("claims missing") }
        let teeKey: JWEPublicKey
        do {
            teeKey = try JWEPublicKey(jwk: jwk)
        } catch {
            throw .teeKeyRefused(error)
        }
        return KBSGrant(
            tee: tee, service: service, package: package, teeKeyJWK: jwk, teeKey: teeKey,
            initDataDigest: claims["init_data"]?.stringValue.flatMap(Hex.decode), simulated: claims["veil.simulated"] == .bool(true),
            expires: Date(timeIntervalSince1970: exp))
    }
}
