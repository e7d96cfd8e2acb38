import FoundationEssentials
import Glibc
import Logging
import VeilManifest
import VeilMesh
import VeilWorkloadAPI

/// What a launcher hands the process it leaves beside the app: the service's credentials, its
/// mesh policy (a proxy) and its renewal plan (a certificate-renewing agent); either or both.
///
/// Its JSON keeps ``MeshConfiguration``'s keys, so a mesh-only configuration (`veil-bench`'s
/// proxies) is one of these.
public struct ResidentConfiguration: Codable, Sendable {
    public var credentials: MeshCredentials
    /// The mesh proxying (the key keeps ``MeshConfiguration``'s name).
    public var policy: MeshPolicy?
    public var renewal: RenewalPlan?

    public init(credentials: MeshCredentials, policy: MeshPolicy?, renewal: RenewalPlan?) {
        precondition(policy != nil || renewal != nil, "a resident process proxies, renews, or both")
        self.credentials = credentials
        self.policy = policy
        self.renewal = renewal
    }
}

/// How the agent renews: where the coordinator is, how long certificates last, which files
/// it rewrites and how it tells the app.
public struct RenewalPlan: Codable, Sendable {
    /// The coordinator's mesh listener (comma-separated replicas), as the launcher used it.
    public var coordinator: String
    public var lifetimeSeconds: Int
    public var reload: ReloadSignal?
    /// Owner of rewritten files (an image's User); nil: the launcher's.
    public var ownerUID: UInt32?
    public var ownerGID: UInt32?
    public var allowDiskFiles: Bool
    /// Where the SPIFFE Workload API is served (a Unix socket), when the manifest asks.
    public var workloadAPISocket: String?
    /// Path → SHA-256 (hex) of what the launcher wrote: a file is rewritten only when its
    /// rendering changes.
    public var writtenDigests: [String: String]
}

/// The resident process's main loop: the `veil mesh --inherited-config` process a launcher
/// spawns before exec.
public enum ResidentAgent {
    /// Runs until the app exits. Returns the exit status.
    public static func serveInherited(configFD: Int32, readyFD: Int32, parent: pid_t, link: MeshHandover.ParentLink, logger: Logger) async -> Int32 {
        let configuration: ResidentConfiguration
        let proxy: MeshProxy?
        let agent: ServiceAgent?
        let workloadAPI: WorkloadAPIServer?
        do {
            configuration = try MeshHandover.receive(ResidentConfiguration.self, configFD: configFD, parent: parent, link: link)
            proxy = try configuration.policy.map { try MeshProxy(credentials: configuration.credentials, policy: $0, logger: logger) }
            try await proxy?.start()
            agent = configuration.renewal.map { ServiceAgent(plan: $0, credentials: configuration.credentials, app: parent, proxy: proxy, logger: logger) }
            workloadAPI = try await startWorkloadAPI(configuration.renewal, agent: agent)
        } catch {
            MeshHandover.reportFailure("\(error)", to: readyFD)
            return 1
        }
        MeshHandover.reportReady(readyFD)
        let renewing = agent.map { agent in Task { await agent.run() } }
        // With the death signal the kernel kills this process when the app exits; polling is
        // the fallback, and the only link for a polling parent.
        while MeshHandover.parentAlive(parent) {
            try? await Task.sleep(for: .seconds(1))
        }
        renewing?.cancel()
        await workloadAPI?.stop()
        await proxy?.stop()
        return 0
    }

    /// The `veil mesh` sidecar's renewal: the same agent for `proxy`, with no app to signal.
    /// Nil when the service has no `CertificateLifetime`.
    public static func renewing(_ plan: ExecPlan, proxy: MeshProxy, logger: Logger) -> Task<Void, Never>? {
        guard let resident = plan.resident, let renewal = resident.renewal else { return nil }
        let agent = ServiceAgent(plan: renewal, credentials: resident.credentials, app: nil, proxy: proxy, logger: logger)
        return Task { await agent.run() }
    }

    /// The Workload API on the plan's socket, before the app starts (it may connect at once).
    static func startWorkloadAPI(_ plan: RenewalPlan?, agent: ServiceAgent?) async throws -> WorkloadAPIServer? {
        guard let plan, let socket = plan.workloadAPISocket, let agent else { return nil }
        let owner = plan.ownerUID.map { (uid: $0, gid: plan.ownerGID ?? 0) }
        return try await WorkloadAPIServer.start(at: socket, source: AgentWorkloadIdentity(agent: agent), owner: owner)
    }
}
