import Crypto
import FoundationEssentials
import Glibc
import Logging
import VeilAPI
import VeilClient
import VeilCore
import VeilImageFormat
import VeilManifest
import VeilMesh
import X509

/// Keeps a running service's certificate fresh: at half-life it makes a new key, asks the
/// coordinator for a certificate over mutual TLS with the current one, rewrites the
/// provisioned files whose rendering changed (atomically, by rename), hands the mesh proxy the
/// new certificate for new connections, and signals the app when the manifest asks.
///
/// A refused or failed renewal is retried (every tenth of the lifetime, 1–30 s) until the
/// current certificate expires; then the service has no identity and the agent says so.
final class CertificateRenewer: Sendable {
    let plan: RenewalPlan
    let app: pid_t
    let proxy: MeshProxy?
    let logger: Logger
    private let initial: MeshCredentials

    init(plan: RenewalPlan, credentials: MeshCredentials, app: pid_t, proxy: MeshProxy?, logger: Logger) {
        self.plan = plan
        self.initial = credentials
        self.app = app
        self.proxy = proxy
        self.logger = logger
    }

    func run() async {
        var credentials = initial
        var digests = plan.writtenDigests
        let retryEvery = Duration.seconds(min(30, max(1, Double(plan.lifetimeSeconds) / 10)))
        while !Task.isCancelled {
            guard let expiry = Self.expiry(of: credentials.certificateChainPEM) else {
                logger.error("renewal stopped: the current certificate cannot be read")
                return
            }
            let renewAt = expiry.addingTimeInterval(-Double(plan.lifetimeSeconds) / 2)
            if renewAt.timeIntervalSinceNow > 0 { try? await Task.sleep(for: .seconds(renewAt.timeIntervalSinceNow)) }
            while !Task.isCancelled {
                do {
                    credentials = try await renew(credentials, digests: &digests)
                    break
                } catch {
                    guard expiry.timeIntervalSinceNow > 0 else {
                        logger.error("certificate expired without renewal: the service has no valid identity until it is launched again", metadata: ["reason": "\(error)"])
                        return
                    }
                    logger.warning("renewal failed, retrying", metadata: ["reason": "\(error)", "expires": "\(expiry)"])
                    try? await Task.sleep(for: retryEvery)
                }
            }
        }
    }

    /// One renewal: new key, request, files, proxy, signal. Returns the new credentials.
    func renew(_ current: MeshCredentials, digests: inout [String: String]) async throws -> MeshCredentials {
        let key = P256.Signing.PrivateKey()
        let csr = try Launcher.certificateSigningRequest(service: current.service, key: key)
        let identity = ClientIdentity(certificatePEM: current.certificateChainPEM, privateKeyPEM: current.privateKeyPEM)
        let response = try await CoordinatorClient.with(address: plan.coordinator, trust: .pinnedRoot(current.rootCertificatePEM), identity: identity) {
            try await $0.call(.POST, "\(API.prefix)/activation/renew", json: API.RenewalRequest(csr: csr), as: API.RenewalResponse.self)
        }
        let renewed = MeshCredentials(
            service: current.service, certificateChainPEM: response.certificateChain, privateKeyPEM: key.pemRepresentation,
            rootCertificatePEM: current.rootCertificatePEM)
        let rewritten = try rewriteFiles(response.files, key: Array(key.derRepresentation), digests: &digests)
        try proxy?.replaceCertificate(chainPEM: renewed.certificateChainPEM, privateKeyPEM: renewed.privateKeyPEM)
        var metadata: Logger.Metadata = ["service": "\(current.service)", "files": "\(rewritten)"]
        if let expiry = Self.expiry(of: renewed.certificateChainPEM) { metadata["expires"] = "\(expiry)" }
        if !rewritten.isEmpty, let reload = response.reload {
            kill(app, reload.number)
            metadata["signalled"] = "\(reload.rawValue)"
        }
        logger.info("certificate renewed", metadata: metadata)
        return renewed
    }

    /// Writes each file whose bytes differ from what was last written; returns their paths.
    func rewriteFiles(_ files: [String: RenderedValue], key: [UInt8], digests: inout [String: String]) throws -> [String] {
        let owner = plan.ownerUID.map { uid in
            var user = ImageUser.root
            (user.uid, user.gid) = (uid, plan.ownerGID ?? 0)
            return user
        }
        var rewritten: [String] = []
        for (path, value) in files.sorted(by: { $0.key < $1.key }) {
            if let problem = FilePathRule.problem(path) { throw LaunchError.provisioning(path: path, reason: problem) }
            let bytes = try value.assemble(servicePrivateKeyDER: key)
            let digest = Hex.encode(Array(SHA256.hash(data: bytes)))
            guard digests[path] != digest else { continue }
            try SafeWriter.write(bytes, to: path, owner: owner, allowDisk: plan.allowDiskFiles)
            digests[path] = digest
            rewritten.append(path)
        }
        return rewritten
    }

    /// When the first certificate of a PEM chain expires.
    static func expiry(of chainPEM: String) -> Date? {
        let firstBlock = chainPEM.split(separator: "\n").prefix { !$0.hasPrefix("-----END") }
        guard let leaf = try? Certificate(pemEncoded: firstBlock.joined(separator: "\n") + "\n-----END CERTIFICATE-----\n") else { return nil }
        return leaf.notValidAfter
    }
}
