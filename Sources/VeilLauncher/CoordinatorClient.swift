import AsyncHTTPClient
import Foundation
import NIOCore
import NIOHTTP1
import NIOSSL
import VeilManifest

/// How a client decides to trust the coordinator's TLS certificate.
public enum CoordinatorTrust: Sendable {
    /// Only a chain to this root (PEM) is accepted, with hostname verification.
    case pinnedRoot(String)
    /// No TLS verification. Only for fetching self-authenticating evidence (`veil attest`).
    case unverifiedForAttestation
}

/// A user's TLS client credentials: how the coordinator recognises a manifest user.
public struct ClientIdentity: Sendable {
    public var certificatePEM: String
    public var privateKeyPEM: String

    public init(certificatePEM: String, privateKeyPEM: String) {
        self.certificatePEM = certificatePEM
        self.privateKeyPEM = privateKeyPEM
    }
}

/// Why a call to the coordinator failed.
public enum CoordinatorClientError: Error, CustomStringConvertible {
    case invalidAddress(String)
    case connection(address: String, reason: String)
    /// The coordinator answered with an error body.
    case refused(status: Int, code: String, message: String, problems: [String])
    case unexpectedResponse(status: Int, detail: String)

    public var description: String {
        switch self {
        case .invalidAddress(let address): return "coordinator address '\(address)' must be HOST:PORT"
        case .connection(let address, let reason): return "cannot reach the coordinator at \(address): \(reason)"
        case .refused(let status, _, let message, let problems):
            return "coordinator refused (\(status)): \(message)" + (problems.isEmpty || message.contains(problems[0]) ? "" : "\n  " + problems.joined(separator: "\n  "))
        case .unexpectedResponse(let status, let detail): return "unexpected coordinator response (\(status)): \(detail)"
        }
    }
}

/// A small JSON-over-HTTPS client for the coordinator's API.
public final class CoordinatorClient: Sendable {
    public let address: String
    let http: HTTPClient
    let baseURL: String

    /// - Parameter address: `HOST:PORT`.
    public init(address: String, trust: CoordinatorTrust, identity: ClientIdentity? = nil) throws {
        guard let colon = address.lastIndex(of: ":"), let port = Int(address[address.index(after: colon)...]),
            (1...65535).contains(port), colon != address.startIndex
        else { throw CoordinatorClientError.invalidAddress(address) }
        self.address = address
        var tls = TLSConfiguration.makeClientConfiguration()
        switch trust {
        case .pinnedRoot(let pem):
            tls.trustRoots = .certificates(try NIOSSLCertificate.fromPEMBytes(Array(pem.utf8)))
        case .unverifiedForAttestation:
            tls.certificateVerification = .none
        }
        if let identity {
            tls.certificateChain = try NIOSSLCertificate.fromPEMBytes(Array(identity.certificatePEM.utf8)).map { .certificate($0) }
            tls.privateKey = .privateKey(try NIOSSLPrivateKey(bytes: Array(identity.privateKeyPEM.utf8), format: .pem))
        }
        var configuration = HTTPClient.Configuration(tlsConfiguration: tls, redirectConfiguration: .disallow)
        configuration.timeout = .init(connect: .seconds(10), read: .seconds(60))
        http = HTTPClient(eventLoopGroupProvider: .singleton, configuration: configuration)
        baseURL = "https://\(address)"
    }

    /// Runs `body` with a client and always shuts the client down afterwards.
    public static func with<Result>(
        address: String, trust: CoordinatorTrust, identity: ClientIdentity? = nil, _ body: (CoordinatorClient) async throws -> Result
    ) async throws -> Result {
        let client = try CoordinatorClient(address: address, trust: trust, identity: identity)
        do {
            let result = try await body(client)
            await client.shutdown()
            return result
        } catch {
            await client.shutdown()
            throw error
        }
    }

    /// Sends a request and returns the body of a 2xx response; error bodies become ``CoordinatorClientError/refused``.
    public func call(_ method: HTTPMethod, _ path: String, body: [UInt8]? = nil) async throws -> [UInt8] {
        var request = HTTPClientRequest(url: baseURL + path)
        request.method = method
        if let body {
            request.headers.add(name: "Content-Type", value: "application/json")
            request.body = .bytes(ByteBuffer(bytes: body))
        }
        let response: HTTPClientResponse
        let bytes: ByteBuffer
        do {
            response = try await http.execute(request, timeout: .seconds(60))
            bytes = try await response.body.collect(upTo: 16 << 20)
        } catch {
            throw CoordinatorClientError.connection(address: address, reason: Self.explain(error))
        }
        let data = Array(bytes.readableBytesView)
        guard (200..<300).contains(response.status.code) else {
            if let error = try? JSONDecoder().decode(API.ErrorResponse.self, from: Data(data)) {
                throw CoordinatorClientError.refused(
                    status: Int(response.status.code), code: error.error.code, message: error.error.message,
                    problems: error.error.problems ?? [])
            }
            throw CoordinatorClientError.unexpectedResponse(status: Int(response.status.code), detail: String(decoding: data.prefix(200), as: UTF8.self))
        }
        return data
    }

    public func call<Response: Decodable>(
        _ method: HTTPMethod, _ path: String, body: [UInt8]? = nil, as type: Response.Type
    ) async throws -> Response {
        let data = try await call(method, path, body: body)
        do {
            return try JSONDecoder().decode(type, from: Data(data))
        } catch {
            throw CoordinatorClientError.unexpectedResponse(status: 200, detail: "body is not a \(type) JSON document")
        }
    }

    public func call<Request: Encodable, Response: Decodable>(
        _ method: HTTPMethod, _ path: String, json: Request, as type: Response.Type
    ) async throws -> Response {
        try await call(method, path, body: Array(try JSONEncoder().encode(json)), as: type)
    }

    public func shutdown() async {
        try? await http.shutdown()
    }

    static func explain(_ error: any Error) -> String {
        if let ssl = error as? NIOSSLError {
            if case .handshakeFailed = ssl {
                return "TLS handshake failed (is the pinned root certificate this coordinator's? run `veil attest`): \(ssl)"
            }
            return "TLS error: \(ssl)"
        }
        if let ssl = error as? BoringSSLError { return "TLS handshake failed: the coordinator's certificate does not chain to the pinned root (\(ssl))" }
        if let http = error as? HTTPClientError { return "\(http)" }
        return "\(error)"
    }
}
