import HTTPTypes
import Hummingbird
import Synchronization

/// The methods each registered path serves, noted as routes are added, so a request for a
/// known path with another method gets 405 and an `Allow` header instead of 404 (RFC 9110
/// §15.5.6) — clients and API checkers then learn the path exists.
final class RouteTable: Sendable {
    private let routes = Mutex<[(segments: [Substring], methods: Set<HTTPRequest.Method>)]>([])

    func note(_ path: RouterPath, _ method: HTTPRequest.Method) {
        let segments = Self.segments(path.description)
        routes.withLock { routes in
            if let index = routes.firstIndex(where: { $0.segments == segments }) {
                routes[index].methods.insert(method)
            } else {
                routes.append((segments, [method]))
            }
        }
    }

    /// Every route noted, as `METHOD /path/{parameter}` (OpenAPI's spelling), sorted.
    var operations: [String] {
        routes.withLock { routes in
            routes.flatMap { route in
                let path = "/" + route.segments.map { $0.hasPrefix(":") ? "{\($0.dropFirst())}" : String($0) }.joined(separator: "/")
                return route.methods.map { "\($0.rawValue) \(path)" }
            }
        }.sorted()
    }

    /// The methods served at `path`, empty when no route matches it.
    func methods(at path: String) -> Set<HTTPRequest.Method> {
        let requested = Self.segments(path)
        return routes.withLock { routes in
            routes.filter { Self.matches($0.segments, requested) }.reduce(into: Set()) { $0.formUnion($1.methods) }
        }
    }

    private static func segments(_ path: String) -> [Substring] { path.split(separator: "/") }

    /// A parameter (`:name`, `{name}`) or `*` matches one segment, `**` the rest.
    private static func matches(_ pattern: [Substring], _ path: [Substring]) -> Bool {
        for (index, segment) in pattern.enumerated() {
            if segment == "**" { return true }
            guard index < path.count else { return false }
            if segment.hasPrefix(":") || segment.hasPrefix("{") || segment == "*" || segment == path[index] { continue }
            return false
        }
        return pattern.count == path.count
    }
}

/// Routes added through this note themselves in a ``RouteTable`` before reaching the router;
/// groups made from it forward to it, so every route of the listener is noted.
struct NotedRoutes<Context: RequestContext>: RouterMethods {
    let router: Router<Context>
    let table: RouteTable

    @discardableResult func on<Responder: HTTPResponder>(_ path: RouterPath, method: HTTPRequest.Method, responder: Responder) -> Self
    where Responder.Context == Context {
        table.note(path, method)
        router.on(path, method: method, responder: responder)
        return self
    }

    @discardableResult func add(middleware: any MiddlewareProtocol<Request, Response, Context>) -> Self {
        router.add(middleware: middleware)
        return self
    }
}

/// Turns the router's 404 for a known path into 405 with `Allow`.
struct MethodNotAllowed<Context: RequestContext>: RouterMiddleware {
    let table: RouteTable

    func handle(_ request: Request, context: Context, next: (Request, Context) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            let allowed = table.methods(at: request.uri.path)
            guard !allowed.isEmpty else { throw error }
            let list = allowed.map(\.rawValue).sorted().joined(separator: ", ")
            var response = ErrorBody(status: 405, code: "http405", message: "\(request.method) is not served at \(request.uri.path); allowed: \(list)").response
            response.headers[.allow] = list
            return response
        }
    }
}

extension Router {
    /// Routes whose paths answer 405 for other methods: adds the middleware (innermost so far)
    /// and returns the view that notes routes in `table` as it registers them.
    func notingRoutes(in table: RouteTable) -> NotedRoutes<Context> {
        add(middleware: MethodNotAllowed<Context>(table: table))
        return NotedRoutes(router: self, table: table)
    }
}
