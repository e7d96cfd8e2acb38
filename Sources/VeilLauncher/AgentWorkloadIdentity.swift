import Crypto
import VeilCore
import VeilManifest
import VeilMesh
import VeilWorkloadAPI
import X509

/// The agent as the Workload API's identity source: its credentials as X.509-SVIDs (a new one
/// at each renewal), JWT-SVIDs and the JWT bundle from the coordinator.
struct AgentWorkloadIdentity: WorkloadIdentitySource {
    let agent: ServiceAgent

    func x509Identities() async -> AsyncStream<X509Identity> {
        let updates = await agent.credentialUpdates()
        return AsyncStream { continuation in
            let forwarding = Task {
                for await credentials in updates {
                    if let identity = X509Identity(credentials: credentials) { continuation.yield(identity) }
                }
                continuation.finish()
            }
            continuation.onTermination = { _ in forwarding.cancel() }
        }
    }

    func jwtSVID(audience: [String]) async throws -> String { try await agent.jwtSVID(audience: audience) }

    func jwtBundle() async throws -> [UInt8] { try await agent.jwtBundle() }
}

extension X509Identity {
    /// The SVID `credentials` hold: the SPIFFE ID of the leaf's URI SAN, the chain and root as
    /// DER, the key as PKCS#8 DER; nil when they do not parse or name no service.
    public init?(credentials: MeshCredentials) {
        guard let chain = PEM.decodeAll(credentials.certificateChainPEM, label: "CERTIFICATE"), let leafDER = chain.first,
            let roots = PEM.decodeAll(credentials.rootCertificatePEM, label: "CERTIFICATE"),
            let leaf = try? Certificate(derEncoded: leafDER), let names = try? leaf.extensions.subjectAlternativeNames,
            let key = try? P256.Signing.PrivateKey(pemRepresentation: credentials.privateKeyPEM)
        else { return nil }
        for name in names {
            guard case .uniformResourceIdentifier(let uri) = name, let identity = CoordinatorIdentity.service(fromURI: uri) else { continue }
            self.init(spiffeID: uri, trustDomain: identity.trustDomain, chain: chain, privateKey: Array(key.derRepresentation), bundle: roots)
            return
        }
        return nil
    }
}
