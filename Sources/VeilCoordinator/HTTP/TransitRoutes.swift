import Crypto
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import VeilCore

/// Vault's transit API (`/v1/transit/*`) on the mesh listener, the subset OpenBao's
/// `seal "transit"` uses: the caller is the service its TLS client certificate (from its
/// activation) names, and the manifest's `TransitKeys` decide. `X-Vault-Token` is not read: the
/// certificate is the credential. Vault's API, not Veil's: not in docs/openapi.yaml
/// (docs/transit.md describes it).
enum TransitRoutes {
    struct EncryptRequest: Decodable { var plaintext: String }
    struct DecryptRequest: Decodable { var ciphertext: String }
    struct DataKeyRequest: Decodable { var bits: Int? }

    /// Vault's clients write with PUT, its documentation says POST: both are served.
    static func add(to router: Router<CoordinatorRequestContext>, _ coordinator: Coordinator) {
        let transit = router.group("v1/transit")
        for method in [HTTPRequest.Method.post, .put] { add(method, to: transit, coordinator) }
    }

    static func add(_ method: HTTPRequest.Method, to transit: RouterGroup<CoordinatorRequestContext>, _ coordinator: Coordinator) {
        transit.on("encrypt/:name", method: method) { request, context -> Response in
            let name = try context.parameters.require("name")
            let body = try await request.decode(as: EncryptRequest.self, context: context)
            guard let plaintext = Data(base64Encoded: body.plaintext) else { throw CoordinatorError.badRequest("plaintext must be base64") }
            let sealed = try await coordinator.transitEncrypt(Array(plaintext), key: name, certificate: await context.clientCertificateDER())
            return try answer(["ciphertext": .string(sealed.ciphertext), "key_version": .number(Double(sealed.version))])
        }
        transit.on("decrypt/:name", method: method) { request, context -> Response in
            let name = try context.parameters.require("name")
            let body = try await request.decode(as: DecryptRequest.self, context: context)
            let plaintext = try coordinator.transitDecrypt(body.ciphertext, key: name, certificate: await context.clientCertificateDER())
            return try answer(["plaintext": .string(Data(plaintext).base64EncodedString())])
        }
        transit.on("datakey/:kind/:name", method: method) { request, context -> Response in
            let (kind, name) = (try context.parameters.require("kind"), try context.parameters.require("name"))
            guard kind == "plaintext" || kind == "wrapped" else { throw CoordinatorError.badRequest("a data key is 'plaintext' or 'wrapped', not '\(kind)'") }
            let bits = (try? await request.decode(as: DataKeyRequest.self, context: context))?.bits ?? 256
            guard [128, 256, 512].contains(bits) else { throw CoordinatorError.badRequest("bits must be 128, 256 or 512") }
            let key = Array(SymmetricKey(size: .init(bitCount: bits)).withUnsafeBytes { Array($0) })
            let sealed = try await coordinator.transitEncrypt(key, key: name, certificate: await context.clientCertificateDER())
            var data: [String: JSONValue] = ["ciphertext": .string(sealed.ciphertext), "key_version": .number(Double(sealed.version))]
            if kind == "plaintext" { data["plaintext"] = .string(Data(key).base64EncodedString()) }
            return try answer(data)
        }
        transit.on("keys/:name/rotate", method: method) { _, context -> Response in
            let version = try await coordinator.transitRotate(key: try context.parameters.require("name"), certificate: await context.clientCertificateDER())
            return try answer(["latest_version": .number(Double(version))])
        }
    }

    /// Vault's envelope: `{"data": {…}}`.
    static func answer(_ data: [String: JSONValue]) throws -> Response {
        Response(
            status: .ok, headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: try CanonicalJSON.encode(JSONValue.object(["data": .object(data)])))))
    }
}
