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

/// The resident agent's work for a service with a `CertificateLifetime`, in two loops:
///
/// - **renewal**: at half-life it makes a new key, asks the coordinator for a certificate over
///   mutual TLS with the current one, and applies the answer;
/// - **updates**: it waits at the coordinator (a long poll) for the state to change and applies
///   the files as they render now, so a changed secret or manifest reaches the running app
///   within a moment.
///
/// Applying means: rewrite each provisioned file whose rendering changed (atomically, by
/// rename), hand the mesh proxy a new certificate for new connections, and signal the app when
/// the manifest asks. A failed renewal is retried (every tenth of the lifetime, 1–30 s) until the
/// certificate expires; then the service has no identity and the agent says so.
final class ServiceAgent: Sendable {
    let plan: RenewalPlan
    /// The process to signal after rewriting files (nil: a sidecar, with no app of its own).
    let app: pid_t?
    let proxy: MeshProxy?
    let logger: Logger
    private let state: AgentState

    init(plan: RenewalPlan, credentials: MeshCredentials, app: pid_t?, proxy: MeshProxy?, logger: Logger) {
        self.plan = plan
        self.app = app
        self.proxy = proxy
        self.logger = logger
        state = AgentState(credentials: credentials, digests: plan.writtenDigests, plan: plan)
    }

    var retryInterval: Duration { .seconds(min(30, max(1, Double(plan.lifetimeSeconds) / 10))) }

    func run() async {
        await withTaskGroup(of: Void.self) { group in
            group.addTask { await self.renewing() }
            group.addTask { await self.followingUpdates() }
        }
    }

    private func renewing() async {
        while !Task.isCancelled {
            let credentials = await state.credentials
            guard let expiry = Self.expiry(of: credentials.certificateChainPEM) else {
                logger.error("renewal stopped: the current certificate cannot be read")
                return
            }
            // Half of what is left, counted from when these credentials arrived (the activation, or
            // the renewal just made): the half-life of whatever lifetime the coordinator gave, even
            // after a manifest update changed it.
            let remaining = expiry.timeIntervalSinceNow
            if remaining > 0 { try? await Task.sleep(for: .seconds(remaining / 2)) }
            while !Task.isCancelled {
                do {
                    try await renew(credentials)
                    break
                } catch {
                    guard expiry.timeIntervalSinceNow > 0 else {
                        logger.error("certificate expired without renewal: the service has no valid identity until it is launched again", metadata: ["reason": "\(error)"])
                        return
                    }
                    logger.warning("renewal failed, retrying", metadata: ["reason": "\(error)", "expires": "\(expiry)"])
                    try? await Task.sleep(for: retryInterval)
                }
            }
        }
    }

    /// One renewal: new key, request, then the files, the proxy and the signal.
    func renew(_ current: MeshCredentials) async throws {
        let key = Launcher.serviceKey()
        let csr = try Launcher.certificateSigningRequest(service: current.service, key: key)
        let response = try await call(current) {
            try await $0.call(.POST, "\(API.prefix)/activation/renew", json: API.RenewalRequest(csr: csr), as: API.RenewalResponse.self)
        }
        let renewed = MeshCredentials(
            service: current.service, certificateChainPEM: response.certificateChain, privateKeyPEM: key.pemRepresentation,
            rootCertificatePEM: current.rootCertificatePEM)
        let rewritten = try await state.renew(to: renewed, key: Array(key.derRepresentation), files: response.files)
        try proxy?.replaceCertificate(chainPEM: renewed.certificateChainPEM, privateKeyPEM: renewed.privateKeyPEM)
        var metadata: Logger.Metadata = ["service": "\(current.service)", "files": "\(rewritten)"]
        if let expiry = Self.expiry(of: renewed.certificateChainPEM) { metadata["expires"] = "\(expiry)" }
        signal(response.reload, after: rewritten, metadata: &metadata)
        logger.info("certificate renewed", metadata: metadata)
    }

    private func followingUpdates() async {
        var revision: Int64?
        while !Task.isCancelled {
            let credentials = await state.credentials
            let query = revision.map { "?after=\($0)" } ?? ""
            do {
                let answer = try await call(credentials) {
                    try await $0.call(.GET, "\(API.prefix)/activation/files\(query)", as: API.ServiceFilesResponse.self)
                }
                // Rendered for the certificate presented: a renewal meanwhile made them stale.
                if let rewritten = try await state.update(files: answer.files, renderedFor: credentials) {
                    if !rewritten.isEmpty {
                        var metadata: Logger.Metadata = ["service": "\(credentials.service)", "files": "\(rewritten)"]
                        signal(answer.reload, after: rewritten, metadata: &metadata)
                        logger.info("files updated", metadata: metadata)
                    }
                    revision = answer.revision
                }
                // The state also moves with other services' activations: at most one look a second.
                try? await Task.sleep(for: .seconds(1))
            } catch {
                logger.debug("waiting for updates failed, retrying", metadata: ["reason": "\(error)"])
                try? await Task.sleep(for: retryInterval)
            }
        }
    }

    func call<Answer: Sendable>(_ credentials: MeshCredentials, _ body: (CoordinatorClient) async throws -> Answer) async throws -> Answer {
        let identity = ClientIdentity(certificatePEM: credentials.certificateChainPEM, privateKeyPEM: credentials.privateKeyPEM)
        return try await CoordinatorClient.with(address: plan.coordinator, trust: .pinnedRoot(credentials.rootCertificatePEM), identity: identity, body)
    }

    private func signal(_ reload: ReloadSignal?, after rewritten: [String], metadata: inout Logger.Metadata) {
        guard !rewritten.isEmpty, let reload, let app, app > 0 else { return }
        kill(app, reload.number)
        metadata["signalled"] = "\(reload.rawValue)"
    }

    /// The current credentials, then each renewed one (the Workload API's stream).
    func credentialUpdates() async -> AsyncStream<MeshCredentials> { await state.subscribe() }

    /// A JWT-SVID from the coordinator, asked for with the current certificate.
    func jwtSVID(audience: [String]) async throws -> String {
        try await call(await state.credentials) {
            try await $0.call(.POST, "\(API.prefix)/svid/jwt", json: API.JWTSVIDRequest(audience: audience), as: API.JWTSVIDResponse.self)
        }.token
    }

    /// The trust domain's JWT bundle from the coordinator.
    func jwtBundle() async throws -> [UInt8] {
        try await call(await state.credentials) { try await $0.call(.GET, "\(API.prefix)/svid/jwt-bundle") }
    }

    /// When the first certificate of a PEM chain expires.
    static func expiry(of chainPEM: String) -> Date? {
        guard let leafDER = PEM.decodeAll(chainPEM, label: "CERTIFICATE")?.first, let leaf = try? Certificate(derEncoded: leafDER) else { return nil }
        return leaf.notValidAfter
    }
}

/// What both loops change: the current credentials and what was last written to each file.
actor AgentState {
    private(set) var credentials: MeshCredentials
    private var digests: [String: String]
    private let plan: RenewalPlan
    /// Workload API streams waiting for the next renewal.
    private var listeners: [Int: AsyncStream<MeshCredentials>.Continuation] = [:]
    private var nextListener = 0

    /// The current credentials, then each renewed one.
    func subscribe() -> AsyncStream<MeshCredentials> {
        let (stream, continuation) = AsyncStream<MeshCredentials>.makeStream(bufferingPolicy: .bufferingNewest(1))
        continuation.yield(credentials)
        let id = nextListener
        nextListener += 1
        listeners[id] = continuation
        continuation.onTermination = { _ in Task { await self.unsubscribe(id) } }
        return stream
    }

    private func unsubscribe(_ id: Int) { listeners[id] = nil }

    init(credentials: MeshCredentials, digests: [String: String], plan: RenewalPlan) {
        self.credentials = credentials
        self.digests = digests
        self.plan = plan
    }

    /// Takes the renewed credentials and writes the files rendered for them.
    func renew(to renewed: MeshCredentials, key: [UInt8], files: [String: RenderedValue]) throws -> [String] {
        credentials = renewed
        for listener in listeners.values { listener.yield(renewed) }
        return try write(files, key: key)
    }

    /// Writes `files` if they were rendered for the current credentials; nil when a renewal
    /// replaced those meanwhile (the files would carry the old certificate).
    func update(files: [String: RenderedValue], renderedFor used: MeshCredentials) throws -> [String]? {
        guard used.certificateChainPEM == credentials.certificateChainPEM else { return nil }
        let key = try P256.Signing.PrivateKey(pemRepresentation: credentials.privateKeyPEM)
        return try write(files, key: Array(key.derRepresentation))
    }

    /// Writes each file whose bytes differ from what was last written; returns their paths.
    private func write(_ files: [String: RenderedValue], key: [UInt8]) throws -> [String] {
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
}
