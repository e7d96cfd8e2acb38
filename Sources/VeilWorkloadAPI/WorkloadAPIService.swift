import Crypto
import FoundationEssentials
import NIOHPACK
import SwiftProtobuf
import VeilCore
import VeilJOSE

/// The SPIFFE Workload API for one service: X.509-SVIDs as a stream that pushes each renewal,
/// X.509 and JWT bundles, JWT-SVIDs, and JWT-SVID validation against the trust domain's bundle.
/// What the service may fetch is its own identity. Every request must carry the
/// `workload.spiffe.io: true` header, as the standard requires, so a browser or another program
/// tricked into a request is refused.
public struct WorkloadAPIService: Sendable {
    let source: any WorkloadIdentitySource

    public init(source: any WorkloadIdentitySource) { self.source = source }

    /// The methods by gRPC path (`/SpiffeWorkloadAPI/NAME`, the standard's service has no package).
    var methods: [String: GRPCMethod] {
        let service = self
        func method<Request: SwiftProtobuf.Message>(
            _ name: String, _ type: Request.Type, _ body: @escaping @Sendable (WorkloadAPIService, Request, GRPCResponseWriter) async throws(GRPCStatus) -> Void
        ) -> (String, GRPCMethod) {
            ("/SpiffeWorkloadAPI/\(name)", { bytes, metadata, writer throws(GRPCStatus) in
                guard metadata[canonicalForm: "workload.spiffe.io"].contains(where: { $0 == "true" }) else {
                    throw .invalidArgument("security header missing from request")
                }
                guard let request = try? Request(serializedBytes: bytes) else { throw .invalidArgument("the request is not a \(Request.protoMessageName)") }
                try await body(service, request, writer)
            })
        }
        return Dictionary(uniqueKeysWithValues: [
            method("FetchX509SVID", X509SVIDRequest.self) { service, _, writer throws(GRPCStatus) in try await service.fetchX509SVID(writer: writer) },
            method("FetchX509Bundles", X509BundlesRequest.self) { service, _, writer throws(GRPCStatus) in try await service.fetchX509Bundles(writer: writer) },
            method("FetchJWTSVID", JWTSVIDRequest.self) { service, request, writer throws(GRPCStatus) in
                try await writer.send(try await service.fetchJWTSVID(request))
            },
            method("FetchJWTBundles", JWTBundlesRequest.self) { service, _, writer throws(GRPCStatus) in try await service.fetchJWTBundles(writer: writer) },
            method("ValidateJWTSVID", ValidateJWTSVIDRequest.self) { service, request, writer throws(GRPCStatus) in
                try await writer.send(try await service.validateJWTSVID(request))
            },
        ])
    }

    func fetchX509SVID(writer: GRPCResponseWriter) async throws(GRPCStatus) {
        for await identity in await source.x509Identities() {
            var svid = X509SVID()
            svid.spiffeID = identity.spiffeID
            svid.x509Svid = Data(identity.chain.joined())
            svid.x509SvidKey = Data(identity.privateKey)
            svid.bundle = Data(identity.bundle.joined())
            var message = X509SVIDResponse()
            message.svids = [svid]
            try await writer.send(message)
        }
    }

    func fetchX509Bundles(writer: GRPCResponseWriter) async throws(GRPCStatus) {
        var last: [[UInt8]]?
        for await identity in await source.x509Identities() where identity.bundle != last {
            last = identity.bundle
            var message = X509BundlesResponse()
            message.bundles = [identity.trustDomain: Data(identity.bundle.joined())]
            try await writer.send(message)
        }
    }

    func fetchJWTSVID(_ request: JWTSVIDRequest) async throws(GRPCStatus) -> JWTSVIDResponse {
        guard !request.audience.isEmpty, request.audience.allSatisfy({ !$0.isEmpty }) else { throw .invalidArgument("audience must be specified") }
        let own = try await currentIdentity()
        if !request.spiffeID.isEmpty && request.spiffeID != own.spiffeID {
            throw .permissionDenied("no identity issued for \(request.spiffeID) (this workload is \(own.spiffeID))")
        }
        let token: String
        do {
            token = try await source.jwtSVID(audience: request.audience)
        } catch {
            throw .unavailable("the coordinator did not issue a JWT-SVID: \(error)")
        }
        var svid = JWTSVID()
        svid.spiffeID = own.spiffeID
        svid.svid = token
        var message = JWTSVIDResponse()
        message.svids = [svid]
        return message
    }

    func fetchJWTBundles(writer: GRPCResponseWriter) async throws(GRPCStatus) {
        var message = JWTBundlesResponse()
        message.bundles = [try await currentIdentity().trustDomain: Data(try await bundle())]
        try await writer.send(message)
        // The JWT key does not change while the coordinator runs: the stream stays open, quiet.
        while !Task.isCancelled { try? await Task.sleep(for: .seconds(3600)) }
    }

    func validateJWTSVID(_ request: ValidateJWTSVIDRequest) async throws(GRPCStatus) -> ValidateJWTSVIDResponse {
        guard !request.audience.isEmpty else { throw .invalidArgument("audience must be specified") }
        guard !request.svid.isEmpty else { throw .invalidArgument("svid must be specified") }
        let claims: [String: JSONValue]
        do {
            claims = try JWTSVIDCheck.verify(request.svid, audience: request.audience, bundle: try await bundle(), now: Date())
        } catch let error as JWTSVIDCheck.Failure {
            throw .invalidArgument(error.description)
        } catch {
            throw error as? GRPCStatus ?? .internalError("\(error)")
        }
        var message = ValidateJWTSVIDResponse()
        if case .string(let subject) = claims["sub"] { message.spiffeID = subject }
        message.claims = Google_Protobuf_Struct(fields: claims.mapValues(Self.protobufValue))
        return message
    }

    private func currentIdentity() async throws(GRPCStatus) -> X509Identity {
        for await identity in await source.x509Identities() { return identity }
        throw .unavailable("the agent has no identity")
    }

    private func bundle() async throws(GRPCStatus) -> [UInt8] {
        do {
            return try await source.jwtBundle()
        } catch {
            throw .unavailable("the coordinator did not give the JWT bundle: \(error)")
        }
    }

    static func protobufValue(_ value: JSONValue) -> Google_Protobuf_Value {
        switch value {
        case .null: return Google_Protobuf_Value(nilLiteral: ())
        case .bool(let flag): return Google_Protobuf_Value(booleanLiteral: flag)
        case .number(let number): return Google_Protobuf_Value(floatLiteral: number)
        case .string(let text): return Google_Protobuf_Value(stringLiteral: text)
        case .array(let items): return Google_Protobuf_Value(listValue: Google_Protobuf_ListValue(values: items.map(protobufValue)))
        case .object(let fields): return Google_Protobuf_Value(structValue: Google_Protobuf_Struct(fields: fields.mapValues(protobufValue)))
        }
    }
}

extension GRPCResponseWriter {
    func send(_ message: some SwiftProtobuf.Message) async throws(GRPCStatus) {
        do {
            try await send(Array(message.serializedBytes() as [UInt8]))
        } catch {
            throw .unavailable("the client went away: \(error)")
        }
    }
}
