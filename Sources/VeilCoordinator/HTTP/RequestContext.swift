import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import NIOSSL
import VeilAPI
import VeilAttestation
import VeilCore
import VeilManifest

/// Request context of every coordinator listener: carries the connection, so the
/// authentication middleware can read the TLS client certificate, and the user it found.
public struct CoordinatorRequestContext: RequestContext {
    public var coreContext: CoreRequestContextStorage
    let channel: any Channel
    /// Set by ``RequireUser`` before any handler (and any body read) runs.
    public var user: AuthenticatedUser?

    public init(source: ApplicationRequestContextSource) {
        coreContext = .init(source: source)
        channel = source.channel
    }

    public var maxUploadSize: Int { API.maximumBodySize }

    /// DER of the certificate the client presented in the TLS handshake (which proved it holds
    /// the private key), or nil.
    func clientCertificateDER() async -> [UInt8]? {
        guard let certificate = try? await channel.nioSSL_peerCertificate().get() else { return nil }
        return try? certificate.toDERBytes()
    }

    /// The authenticated user; only reachable behind ``RequireUser``.
    func requireUser() throws(CoordinatorError) -> AuthenticatedUser {
        guard let user else { throw .unauthenticated("this endpoint needs a manifest user's client certificate") }
        return user
    }
}

/// Authenticates the client certificate against the manifest's users before the handler
/// runs, so no request body is read for an unknown or anonymous client.
struct RequireUser: RouterMiddleware {
    let coordinator: Coordinator

    func handle(_ request: Request, context: CoordinatorRequestContext, next: (Request, CoordinatorRequestContext) async throws -> Response) async throws -> Response {
        var context = context
        context.user = try coordinator.authenticate(await context.clientCertificateDER())
        return try await next(request, context)
    }
}

/// A JSON response body (sorted keys, unescaped slashes).
struct JSON<Body: Encodable & Sendable>: ResponseGenerator {
    var body: Body
    var status: HTTPResponse.Status = .ok

    init(_ body: Body, status: HTTPResponse.Status = .ok) {
        self.body = body
        self.status = status
    }

    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(
            status: status, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try CanonicalJSON.encode(body))))
    }
}

/// A PEM response body.
struct PEMBody: ResponseGenerator {
    var text: String
    func response(from request: Request, context: some RequestContext) throws -> Response {
        Response(status: .ok, headers: [.contentType: "application/x-pem-file"], body: .init(byteBuffer: ByteBuffer(string: text)))
    }
}

/// Coordinator errors leave as `{"error": {"code", "message", "problems"?}}` with their status.
extension CoordinatorError: HTTPResponseError {
    public var status: HTTPResponse.Status { .init(code: httpStatus) }

    public func response(from request: Request, context: some RequestContext) throws -> Response {
        var problems: [String]?
        if case .invalidManifest(let validation) = self { problems = validation.problems.map(\.description) }
        return ErrorBody(status: httpStatus, code: code, message: description, problems: problems).response
    }
}

struct ErrorBody {
    var status: Int
    var code: String
    var message: String
    var problems: [String]?

    var response: Response {
        let body = (try? JSONEncoder().encode(API.ErrorResponse(code: code, message: message, problems: problems))) ?? Data()
        return Response(
            status: HTTPResponse.Status(code: status), headers: [.contentType: "application/json"],
            body: .init(byteBuffer: ByteBuffer(bytes: body)))
    }
}

/// Turns every other error (Hummingbird's, decoding) into the same JSON error body, and
/// refuses announced oversized bodies on every endpoint, including those that read none.
struct JSONErrorMiddleware<Context: RequestContext>: RouterMiddleware {
    /// Which listener this is: a 404 for a path of the other API says which one the caller wanted.
    enum Listener { case client, mesh }
    let listener: Listener

    init(_ listener: Listener) { self.listener = listener }

    /// The hint for a path this listener does not serve but the other one does.
    func wrongAPIHint(_ path: String) -> String? {
        let api = API.prefix + "/"
        guard path.hasPrefix(api) else { return nil }
        let endpoint = path.dropFirst(api.count)
        switch listener {
        case .client where endpoint.hasPrefix("activation") || endpoint.hasPrefix("peer/"):
            return "this is the coordinator's client API; launchers (veil launch, veil run, veil mesh) talk to its mesh API "
                + "(veil coordinator --mesh-addr, default 127.0.0.1:2001)"
        case .mesh where ["status", "manifest", "secrets", "update", "log", "recovery", "certificate/chain"].contains(where: { endpoint.hasPrefix($0) }):
            return "this is the coordinator's mesh API (launchers and peer replicas); veil status, attest, manifest, secret and recover "
                + "talk to its client API (veil coordinator --client-addr, default 127.0.0.1:4433)"
        default: return nil
        }
    }

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        if let length = request.headers[.contentLength].flatMap(Int.init), length > API.maximumBodySize {
            return Self.tooLarge.response
        }
        do {
            return try await next(request, context)
        } catch let error as CoordinatorError {
            return try error.response(from: request, context: context)
        } catch is NIOTooManyBytesError {
            return Self.tooLarge.response
        } catch let error as DecodingError {
            return ErrorBody(status: 400, code: "badRequest", message: "request body is not the expected JSON: \(Self.describe(error))").response
        } catch let error as HTTPError {
            let message: String
            switch error.status {
            case .contentTooLarge: message = "request body is larger than \(API.maximumBodySize) bytes"
            case .notFound:
                message = "no such endpoint: \(request.method) \(request.uri.path)" + (wrongAPIHint(request.uri.path).map { " — \($0)" } ?? "")
            default: message = error.body ?? error.status.reasonPhrase
            }
            return ErrorBody(status: error.status.code, code: "http\(error.status.code)", message: message).response
        } catch {
            return ErrorBody(status: 500, code: "internal", message: "internal error").response
        }
    }

    static var tooLarge: ErrorBody { ErrorBody(status: 413, code: "http413", message: "request body is larger than \(API.maximumBodySize) bytes") }

    static func describe(_ error: DecodingError) -> String { error.explanation }
}

extension Request {
    /// The whole body (at most ``API/maximumBodySize`` bytes).
    func bytes() async throws -> [UInt8] {
        var request = self
        return Array(try await request.collectBody(upTo: API.maximumBodySize).readableBytesView)
    }

    /// The hex `nonce` query parameter.
    func nonceParameter() throws(CoordinatorError) -> [UInt8] {
        guard let text = uri.queryParameters.get("nonce"), let nonce = Hex.decode(text) else {
            throw .badRequest("query parameter 'nonce' must be hex")
        }
        return nonce
    }
}
