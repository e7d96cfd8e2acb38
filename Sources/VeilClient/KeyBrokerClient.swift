import Crypto
import FoundationEssentials
import VeilAttestation
import VeilCore
import VeilJOSE

/// The client side of the key-broker protocol (Trustee's RCAR handshake, as guest-components
/// speaks it) over Veil's TLS client: `auth`, then `attest` with evidence that binds a fresh
/// P-256 key, the session's nonce and the additional evidence, then resources — each a JWE to
/// that key, which never leaves this value.
///
/// Invariant: a value exists only after the coordinator accepted the evidence; its token is
/// what every resource request presents.
public struct KeyBrokerClient: Sendable {
    /// A step the coordinator answered with something other than success.
    public struct Refused: Error, CustomStringConvertible, Equatable {
        public let step: String
        public let status: Int
        /// The problem document's `title` and `detail` (RFC 7807), or the body's start.
        public let reason: String

        init(step: String, status: Int, body: [UInt8]) {
            self.step = step
            self.status = status
            if let problem = try? JSONValue.parse(body), let title = problem["title"]?.stringValue {
                reason = title + (problem["detail"]?.stringValue.map { ": \($0)" } ?? "")
            } else {
                reason = String(decoding: body.prefix(300), as: UTF8.self)
            }
        }

        public var description: String { "the key broker refused \(step) (\(status)): \(reason)" }
    }

    /// Veil's evidence envelope under the KBS `tee` name `veil`: what Veil's own providers make,
    /// for every TEE Veil verifies.
    public static let veilTEE = "veil"

    let client: CoordinatorClient
    let key: P256.KeyAgreement.PrivateKey
    public let token: String

    /// Runs `auth` and `attest`. `primaryEvidence` gets the 64 bytes of report data to bind
    /// (`SHA-384(JCS({tee-pubkey, nonce, additional-evidence}))`, zero-padded) and returns the
    /// `primary_evidence` JSON for `tee`.
    public static func attest(
        _ client: CoordinatorClient, tee: String, additionalEvidence: String = "",
        primaryEvidence: @Sendable ([UInt8]) throws -> JSONValue
    ) async throws -> KeyBrokerClient {
        let request = JSONValue.object(["version": .string("0.4.0"), "tee": .string(tee), "extra-params": .string("")])
        let auth = try await client.exchange(.POST, "/kbs/v0/auth", body: try request.serialized())
        guard auth.status == 200, let nonce = (try? JSONValue.parse(auth.body))?["nonce"]?.stringValue,
            let cookie = auth.headers.first(where: { $0.0.lowercased() == "set-cookie" })?.1.split(separator: ";").first
        else { throw Refused(step: "auth", status: auth.status, body: auth.body) }
        let key = P256.KeyAgreement.PrivateKey()
        var jwk = JWEPublicKey.jwk(of: key.publicKey).objectValue!
        jwk["alg"] = .string("ECDH-ES+A256KW")
        let bound = JSONValue.object(["tee-pubkey": .object(jwk), "nonce": .string(nonce), "additional-evidence": .string(additionalEvidence)])
        let reportData = Array(SHA384.hash(data: try JCS.encode(bound))) + [UInt8](repeating: 0, count: ReportData.size - SHA384.byteCount)
        let payload = JSONValue.object([
            "runtime-data": .object(["nonce": .string(nonce), "tee-pubkey": .object(jwk)]),
            "tee-evidence": .object(["primary_evidence": try primaryEvidence(reportData), "additional_evidence": .string(additionalEvidence)]),
        ])
        let attest = try await client.exchange(.POST, "/kbs/v0/attest", body: try payload.serialized(), headers: [("Cookie", String(cookie))])
        guard attest.status == 200, let token = (try? JSONValue.parse(attest.body))?["token"]?.stringValue else {
            throw Refused(step: "attest", status: attest.status, body: attest.body)
        }
        return KeyBrokerClient(client: client, key: key, token: token)
    }

    /// `attest` with Veil's own evidence envelope (KBS `tee` `veil`) from `provider`.
    public static func attest(_ client: CoordinatorClient, provider: any EvidenceProvider, additionalEvidence: String = "") async throws -> KeyBrokerClient {
        try await attest(client, tee: veilTEE, additionalEvidence: additionalEvidence) { reportData in
            let evidence = try provider.evidence(reportData: reportData)
            return .object(["format": .string(evidence.format), "data": .string(Data(evidence.data).base64EncodedString())])
        }
    }

    /// The additional evidence that names a container image's measurement: a confidential VM's
    /// report data is the runtime-data hash, so this is where `veil run` binds the image.
    public static func imageBinding(_ measurement: [UInt8]) -> String {
        #"{"veil-image-measurement":"\#(Hex.encode(measurement))"}"#
    }

    /// `GET /kbs/v0/resource/REPOSITORY/TYPE/TAG` on the token, decrypted.
    public func resource(_ path: String) async throws -> [UInt8] {
        let response = try await client.exchange(.GET, "/kbs/v0/resource/\(path)", headers: [("Authorization", "Bearer \(token)")])
        guard response.status == 200 else { throw Refused(step: "resource \(path)", status: response.status, body: response.body) }
        return try JWEDecryption.decrypt(json: response.body, with: [.p256(key)])
    }
}
