import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOSSL
import VeilAPI
import VeilAttestation
import VeilCore

/// A replica without the state key asks its peers for it.
public enum PeerKeyClient {
    /// Asks `peer` (HOST:PORT of its mesh listener) for the state key, proving itself with
    /// `provider`'s evidence and checking the answer's evidence under `policy`.
    public static func fetch(from peer: String, provider: any EvidenceProvider, policy: ReplicaPolicy, http: HTTPClient) async throws -> SymmetricKey {
        let ephemeral = P256.KeyAgreement.PrivateKey()
        let publicKey = Array(ephemeral.publicKey.x963Representation)
        let nonce = Array(SymmetricKey(size: .bits256).withUnsafeBytes { Array($0) })
        let evidence = try provider.evidence(reportData: ReplicaPolicy.requestBinding(publicKey: publicKey, nonce: nonce))
        let body = try JSONEncoder().encode(API.StateKeyRequest(publicKey: Base64Bytes(publicKey), nonce: Base64Bytes(nonce), evidence: evidence))
        var request = HTTPClientRequest(url: "https://\(peer)\(API.prefix)/peer/state-key")
        request.method = .POST
        request.headers.add(name: "Content-Type", value: "application/json")
        request.body = .bytes(ByteBuffer(data: body))
        let response = try await http.execute(request, timeout: .seconds(5))
        let bytes = try await response.body.collect(upTo: 1 << 20)
        guard response.status == .ok else {
            let message = (try? JSONDecoder().decode(API.ErrorResponse.self, from: Data(bytes.readableBytesView)))?.error.message
            throw CoordinatorError.stateUnavailable("peer \(peer) refused (\(response.status.code)): \(message ?? "no reason given")")
        }
        guard let answer = try? JSONDecoder().decode(API.StateKeyResponse.self, from: Data(bytes.readableBytesView)) else {
            throw CoordinatorError.stateUnavailable("peer \(peer) answered malformed JSON")
        }
        let (encapsulated, ciphertext) = (answer.encapsulatedKey.bytes, answer.ciphertext.bytes)
        // The peer must be a replica the policy trusts, answering this very request.
        _ = try await policy.verifiedClaims(
            answer.evidence,
            binding: ReplicaPolicy.responseBinding(publicKey: publicKey, nonce: nonce, encapsulatedKey: encapsulated, ciphertext: ciphertext),
            manifest: nil)
        var recipient = try HPKE.Recipient(
            privateKey: ephemeral, ciphersuite: .P256_SHA256_AES_GCM_256, info: ReplicaPolicy.hpkeInfo, encapsulatedKey: Data(encapsulated))
        let key = try recipient.open(ciphertext)
        guard key.count == 32 else { throw CoordinatorError.stateUnavailable("peer \(peer) sent a key of \(key.count) bytes") }
        return SymmetricKey(data: key)
    }

    /// An HTTP client for peers: their TLS certificate is not checked, because the answer is
    /// self-authenticating (HPKE to our key, their evidence over it).
    public static func makeHTTPClient() -> HTTPClient {
        var tls = TLSConfiguration.makeClientConfiguration()
        tls.certificateVerification = .none
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow)
        configuration.timeout = .init(connect: .seconds(2), read: .seconds(5))
        return HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
    }
}
