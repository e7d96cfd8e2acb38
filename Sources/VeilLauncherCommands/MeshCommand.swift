import ArgumentParser
import FoundationEssentials
import Glibc
import Logging
import VeilClient
import VeilAttestation
import VeilLauncher
import VeilMesh

public struct MeshCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "Run a service's mutual-TLS mesh proxy as a sidecar: attest, activate, then proxy.",
        discussion: helpText("""
            `veil launch` starts the proxy itself for a service whose manifest entry has a Mesh;
            this command is for a sidecar container sharing the app's network (a pod). The sidecar
            is measured as this veil binary with the one argument `mesh`:
              veil measure --service NAME --mesh-sidecar
            It writes the service's Files like the launcher (into a memory volume the app shares)
            and ignores Env and Argv. SIGTERM or SIGINT stops it.
            """))

    @OptionGroup var trust: LaunchTrustOptions

    @Option(help: .hidden) var inheritedConfig: Int32?
    @Option(help: "Log format: text, or json (one object per line).") var logFormat: LogFormat = .text
    @Option(help: .hidden) var readyFd: Int32?
    @Option(help: .hidden) var parent: Int32?
    @Option(help: .hidden) var parentLink: String = MeshHandover.ParentLink.deathSignal.rawValue

    public init() {}

    public func run() async throws {
        let logger = logFormat.logger(label: inheritedConfig == nil ? "veil.mesh" : "veil.agent")
        if let inheritedConfig {
            guard let readyFd, let parent, let link = MeshHandover.ParentLink(rawValue: parentLink) else {
                throw ValidationError("--inherited-config needs --ready-fd, --parent and a --parent-link of death-signal or polling")
            }
            let status = await ResidentAgent.serveInherited(configFD: inheritedConfig, readyFD: readyFd, parent: parent, link: link, logger: logger)
            throw ExitCode(status)
        }
        do {
            try await sidecar(logger: logger)
        } catch let error as ExitCode {
            throw error
        } catch {
            warn("veil mesh: \(error)")
            throw ExitCode(1)
        }
    }

    private func sidecar(logger: Logger) async throws {
        let environment = ProcessInfo.processInfo.environment
        let trust = self.trust.values
        guard let service = trust.serviceName(environment) else { throw ValidationError("--service is required") }
        let choice = try trust.teeChoice(environment)
        let rootPEM = try await trust.rootCertificatePEM(environment, choice: choice)
        let program = try OpenedProgram.open("/proc/self/exe", path: nil)
        var options = LaunchOptions(service: service, command: MeshSidecar.command, tee: choice, environment: [:])
        options.coordinatorAddresses = trust.address(environment)
        let plan = try await CoordinatorClient.with(address: trust.address(environment), trust: .pinnedRoot(rootPEM)) {
            try await Launcher.activate(options, program: program, client: $0)
        }
        guard let mesh = plan.mesh else { throw CommandError("the manifest gives service '\(service)' no Mesh: nothing to proxy") }
        try plan.provision()
        if plan.simulated { warn("veil mesh: \(service) activated; \(simulationWarning)") }
        let proxy = try MeshProxy(credentials: mesh.credentials, policy: mesh.policy, logger: logger)
        try await proxy.start()
        // With a CertificateLifetime the sidecar renews like the launcher's agent (no app to signal).
        let renewing = ResidentAgent.renewing(plan, proxy: proxy, logger: logger)
        defer { renewing?.cancel() }
        for signal in [SIGTERM, SIGINT] {
            // As a container's PID 1 a signal without a handler is ignored.
            Glibc.signal(signal) { _ in _exit(0) }
        }
        await proxy.wait()
    }
}
