import Crypto
import FoundationEssentials

/// A service's X.509 identity as the Workload API hands it out.
public struct X509Identity: Sendable, Equatable {
    public var spiffeID: String
    public var trustDomain: String
    /// DER: the leaf, then the intermediates.
    public var chain: [[UInt8]]
    /// PKCS#8 DER of the leaf's key.
    public var privateKey: [UInt8]
    /// DER: the trust domain's roots (the coordinator's root).
    public var bundle: [[UInt8]]

    public init(spiffeID: String, trustDomain: String, chain: [[UInt8]], privateKey: [UInt8], bundle: [[UInt8]]) {
        self.spiffeID = spiffeID
        self.trustDomain = trustDomain
        self.chain = chain
        self.privateKey = privateKey
        self.bundle = bundle
    }
}

/// Where the Workload API gets what it serves: the agent's current identity (and each renewal),
/// JWT-SVIDs and the JWT bundle from the coordinator.
public protocol WorkloadIdentitySource: Sendable {
    /// The current identity first, then each renewed one, until the caller stops listening.
    func x509Identities() async -> AsyncStream<X509Identity>
    /// A JWT-SVID for the service, for `audience`.
    func jwtSVID(audience: [String]) async throws -> String
    /// The trust domain's JWT bundle (a JWKS, JSON).
    func jwtBundle() async throws -> [UInt8]
}
