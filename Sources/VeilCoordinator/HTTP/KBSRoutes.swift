import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import VeilCore
import VeilJOSE

/// The key-broker protocol's HTTP edge (`/kbs/v0/*`, Trustee's `kbs.yaml`) on the mesh
/// listener: cookies and bearer tokens in, challenges, tokens and JWEs out, every refusal an
/// RFC 7807 problem document. These routes follow Trustee's API, not Veil's, so they are not
/// in docs/openapi.yaml (docs/kbs.md describes them).
enum KBSRoutes {
    static let cookieName = "kbs-session-id"
    static let problemTypePrefix = "https://veil.dev/problems/kbs/"

    static func add(to router: Router<CoordinatorRequestContext>, _ coordinator: Coordinator) {
        let kbs = router.group("kbs/v0").add(middleware: KBSProblemMiddleware())
        kbs.post("auth") { request, _ -> Response in
            let session = try coordinator.kbsAuth(try await request.bytes())
            let extra: JSONValue = session.selectedHash.map { .object(["selected-hash-algorithm": .string($0)]) } ?? .string("")
            let challenge: JSONValue = .object(["nonce": .string(session.nonce), "extra-params": extra])
            return try response(challenge, cookie: setCookie(session.sessionID, coordinator))
        }
        kbs.post("attest") { request, _ -> Response in
            let id = sessionID(request)
            let result = try await coordinator.kbsAttest(sessionID: id, body: try await request.bytes())
            return try response(.object(["token": .string(result.token)]), cookie: id.map { setCookie($0, coordinator) })
        }
        kbs.get("resource/:repository/:type/:tag") { request, context -> Response in
            let path = try ["repository", "type", "tag"].map { try context.parameters.require($0) }.joined(separator: "/")
            let grant = try coordinator.kbsGrant(sessionID: sessionID(request), bearerToken: bearerToken(request))
            let plaintext = try await coordinator.kbsRelease(path, to: grant)
            let jwe: FlattenedJWE
            do throws(JOSEError) {
                jwe = try FlattenedJWE.encrypt(plaintext, to: grant.teeKey)
            } catch {
                throw KBSError.teeKeyRefused(error)
            }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try CanonicalJSON.encode(jwe))))
        }
    }

    static func response(_ body: JSONValue, cookie: String?) throws -> Response {
        var headers: HTTPFields = [.contentType: "application/json"]
        if let cookie { headers[.setCookie] = cookie }
        return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: try JCS.encode(body))))
    }

    static func setCookie(_ id: String, _ coordinator: Coordinator) -> String {
        "\(cookieName)=\(id); Max-Age=\(Int(coordinator.kbs.settings.sessionLifetime)); Path=/kbs; Secure; HttpOnly"
    }

    /// The `kbs-session-id` value among the request's cookies.
    static func sessionID(_ request: Request) -> String? {
        for header in request.headers[values: .cookie] {
            for pair in header.split(separator: ";") {
                let parts = pair.split(separator: "=", maxSplits: 1).map { $0.trimmingCharacters(in: .whitespaces) }
                if parts.count == 2, parts[0] == cookieName { return parts[1] }
            }
        }
        return nil
    }

    static func bearerToken(_ request: Request) -> String? {
        guard let value = request.headers[.authorization] else { return nil }
        let parts = value.split(separator: " ", maxSplits: 1)
        guard parts.count == 2, parts[0].lowercased() == "bearer" else { return nil }
        return String(parts[1]).trimmingCharacters(in: .whitespaces)
    }
}

/// Every error under `/kbs/v0` as `application/problem+json` (RFC 7807): `type`, `title`,
/// `status`, `detail`. guest-components reads `type` and `detail`, as in Trustee's
/// `ErrorInformation`.
struct KBSProblemMiddleware: RouterMiddleware {
    func handle(_ request: Request, context: CoordinatorRequestContext, next: (Request, CoordinatorRequestContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as KBSError {
            return Self.problem(status: error.status, type: error.problemType, detail: error.description)
        } catch let error as HTTPError {
            return Self.problem(status: Int(error.status.code), type: "MalformedRequest", detail: error.body ?? error.status.reasonPhrase)
        } catch {
            return Self.problem(status: 400, type: "MalformedRequest", detail: "\(error)")
        }
    }

    static func problem(status: Int, type: String, detail: String) -> Response {
        let code = HTTPResponse.Status(code: status)
        let body: JSONValue = .object([
            "type": .string(KBSRoutes.problemTypePrefix + type), "title": .string(code.reasonPhrase), "status": .number(Double(status)),
            "detail": .string(detail),
        ])
        return Response(
            status: code, headers: [.contentType: "application/problem+json"],
            body: .init(byteBuffer: ByteBuffer(bytes: (try? JCS.encode(body)) ?? [])))
    }
}
