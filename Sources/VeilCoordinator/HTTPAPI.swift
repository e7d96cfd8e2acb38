import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOSSL
import VeilAttestation
import VeilManifest

/// Routes of the coordinator's two listeners. Handlers are thin: decode, call
/// ``Coordinator``, encode. Every error leaves as `{"error": {…}}` with a 4xx/5xx status.
public enum HTTPAPI {
    /// The client API: users, operators and relying parties. Anonymous clients may read status,
    /// attestation, certificates and the manifest (and set the first manifest); everything
    /// else authorizes the TLS client certificate against the manifest's users and roles.
    public static func clientRouter(_ coordinator: Coordinator) -> Router<ClientRequestContext> {
        let router = Router(context: ClientRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.get("/healthz") { _, _ in json(["status": "ok"]) }
        let api = router.group(RouterPath(API.prefix))
        api.get("status") { _, _ in try json(coordinator.status()) }
        api.get("attestation") { request, _ in try attestation(coordinator, request) }
        api.get("manifest") { _, _ in
            guard let manifest = coordinator.manifest else { throw CoordinatorError.noManifest }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: manifest.raw)))
        }
        api.post("manifest") { request, _ in
            let body = try await collect(request)
            let digest = try coordinator.setManifest(body)
            return try json(API.ManifestSetResponse(digest: Hex.encode(digest)))
        }
        api.post("manifest/with-secrets") { request, _ in
            let body = try await collect(request)
            guard let set = try? JSONDecoder().decode(API.ManifestSetRequest.self, from: Data(body)),
                let manifest = Data(base64Encoded: set.manifest)
            else { throw CoordinatorError.badRequest("body must be {\"manifest\": BASE64, \"secrets\": {NAME: BASE64}}") }
            var secrets: [String: [UInt8]] = [:]
            for (name, value) in set.secrets {
                guard let bytes = Data(base64Encoded: value) else {
                    throw CoordinatorError.invalidSecretValue(name: name, reason: "value is not base64")
                }
                secrets[name] = Array(bytes)
            }
            let digest = try coordinator.setManifest(Array(manifest), userDefinedSecrets: secrets)
            return try json(API.ManifestSetResponse(digest: Hex.encode(digest)))
        }
        api.get("certificate/root") { _, _ in pem(coordinator.rootCertificatePEM) }
        api.get("certificate/chain") { _, _ in pem(coordinator.chainPEM) }
        // The manifest's history: digests and names only, readable like the manifest itself.
        api.get("log") { _, _ in try json(coordinator.log) }
        api.get("update") { _, _ in try json(coordinator.updateStatus()) }
        api.post("update/packages") { request, context in
            let digest = try coordinator.updatePackages(try await collect(request), by: await context.clientCertificateDER())
            return try json(API.ManifestSetResponse(digest: Hex.encode(digest)))
        }
        api.post("update/manifest") { request, context in
            try json(try coordinator.proposeUpdate(try await collect(request), by: await context.clientCertificateDER()))
        }
        api.post("update/acknowledge") { request, context in
            try json(try coordinator.acknowledgeUpdate(try await collect(request), by: await context.clientCertificateDER()))
        }
        api.put("secrets/:name") { request, context in
            let name = try context.parameters.require("name")
            let body = try await collect(request)
            guard let set = try? JSONDecoder().decode(API.SecretSetRequest.self, from: Data(body)),
                let value = Data(base64Encoded: set.value)
            else { throw CoordinatorError.badRequest("body must be {\"value\": BASE64}") }
            try coordinator.setSecret(name, value: Array(value), by: await context.clientCertificateDER())
            return Response(status: .noContent)
        }
        api.get("secrets") { request, context in
            let names = request.uri.queryParameters.getAll("name").map { String($0) }
            return try json(try coordinator.readSecrets(names, by: await context.clientCertificateDER()))
        }
        return router
    }

    /// The mesh API: launchers activating services.
    public static func meshRouter(_ coordinator: Coordinator) -> Router<BasicRequestContext> {
        let router = Router()
        router.add(middleware: JSONErrorMiddleware())
        router.get("/healthz") { _, _ in json(["status": "ok"]) }
        let api = router.group(RouterPath(API.prefix))
        api.post("activation/nonce") { _, _ in
            try json(API.NonceResponse(nonce: Hex.encode(try coordinator.issueNonce())))
        }
        api.post("activation") { request, _ in
            let body = try await collect(request)
            let activation: API.ActivationRequest
            do {
                activation = try JSONDecoder().decode(API.ActivationRequest.self, from: Data(body))
            } catch {
                throw CoordinatorError.badRequest("activation body is not a valid activation request JSON")
            }
            return try json(try coordinator.activate(activation))
        }
        api.get("certificate/root") { _, _ in pem(coordinator.rootCertificatePEM) }
        api.get("attestation") { request, _ in try attestation(coordinator, request) }
        return router
    }

    /// Both listeners while the state is locked: status, evidence, and share collection.
    public static func recoveryRouter(_ recovery: RecoveryCoordinator, onRecovered: @escaping @Sendable () -> Void) -> Router<ClientRequestContext> {
        let router = Router(context: ClientRequestContext.self)
        router.add(middleware: JSONErrorMiddleware())
        router.get("/healthz") { _, _ in json(["status": "recovery"]) }
        let api = router.group(RouterPath(API.prefix))
        api.get("status") { _, _ in try json(recovery.status()) }
        api.get("attestation") { request, _ in
            guard let text = request.uri.queryParameters.get("nonce"), let nonce = Hex.decode(text) else {
                throw CoordinatorError.badRequest("query parameter 'nonce' must be hex")
            }
            return try json(try recovery.attestation(nonce: nonce))
        }
        api.get("certificate/root") { _, _ in pem(recovery.rootCertificatePEM) }
        api.get("log") { _, _ in try json([LogEntry]()) }
        api.get("recovery") { _, _ in try json(recovery.info()) }
        api.post("recovery") { request, context in
            let body = try await collect(request)
            guard let submission = try? JSONDecoder().decode(API.RecoverySubmission.self, from: Data(body)),
                let share = Data(base64Encoded: submission.share)
            else { throw CoordinatorError.badRequest("body must be {\"name\": KEY NAME, \"share\": BASE64}") }
            let status = try recovery.submit(name: submission.name, share: Array(share), by: await context.clientCertificateDER())
            if status.recovered { onRecovered() }
            return try json(status)
        }
        return router
    }

    static func attestation(_ coordinator: Coordinator, _ request: Request) throws -> Response {
        guard let text = request.uri.queryParameters.get("nonce"), let nonce = Hex.decode(text) else {
            throw CoordinatorError.badRequest("query parameter 'nonce' must be hex")
        }
        return try json(try coordinator.attestation(nonce: nonce))
    }

    static func collect(_ request: Request) async throws -> [UInt8] {
        var request = request
        let buffer = try await request.collectBody(upTo: API.maximumBodySize)
        return Array(buffer.readableBytesView)
    }

    static func json(_ value: some Encodable, status: HTTPResponse.Status = .ok) throws -> Response {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        let body = try encoder.encode(value)
        return Response(status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }

    static func json(_ value: [String: String]) -> Response {
        // Encoding a string dictionary cannot fail.
        try! json(value, status: .ok)
    }

    static func pem(_ text: String) -> Response {
        Response(status: .ok, headers: [.contentType: "application/x-pem-file"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Turns every error (ours, Hummingbird's, decoding) into a JSON error body.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        // Refuse announced oversized bodies on every endpoint, including those that read none.
        if let length = request.headers[.contentLength].flatMap(Int.init), length > API.maximumBodySize {
            return Self.tooLarge()
        }
        do {
            return try await next(request, context)
        } catch is NIOTooManyBytesError {
            return Self.tooLarge()
        } catch let error as CoordinatorError {
            var problems: [String]?
            if case .invalidManifest(let validation) = error { problems = validation.problems.map(\.description) }
            return Self.response(status: error.httpStatus, code: error.code, message: error.description, problems: problems)
        } catch let error as HTTPError {
            let message: String
            switch error.status {
            case .contentTooLarge: message = "request body is larger than \(API.maximumBodySize) bytes"
            case .notFound: message = "no such endpoint: \(request.method) \(request.uri.path)"
            default: message = error.body ?? error.status.reasonPhrase
            }
            return Self.response(status: error.status.code, code: "http\(error.status.code)", message: message, problems: nil)
        } catch {
            return Self.response(status: 500, code: "internal", message: "internal error", problems: nil)
        }
    }

    static func tooLarge() -> Response {
        response(status: 413, code: "http413", message: "request body is larger than \(API.maximumBodySize) bytes", problems: nil)
    }

    static func response(status: Int, code: String, message: String, problems: [String]?) -> Response {
        let body = (try? JSONEncoder().encode(API.ErrorResponse(code: code, message: message, problems: problems))) ?? Data()
        return Response(
            status: HTTPResponse.Status(code: status), headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Request context of the client API: carries the connection, so handlers can read the TLS
/// client certificate that identifies a user.
public struct ClientRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    /// DER of the certificate the client presented in the TLS handshake (which proved it holds
    /// the private key), or nil.
    func clientCertificateDER() async -> [UInt8]? {
        guard let certificate = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        return try? certificate.toDERBytes()
    }
}
