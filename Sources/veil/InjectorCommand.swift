import ArgumentParser
import Logging
import VeilConnections
import VeilKubernetes
import VeilLauncherCommands
import VeilManifest

struct InjectorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "injector",
        abstract: "Run the Kubernetes mutating admission webhook that makes labelled pods Veil services.",
        discussion: helpText("""
            Pods labelled \(PodKeys.service)=NAME get what the launcher needs: the coordinator address,
            the service name and the pinned root (ConfigMap veil-root, key root.pem), memory-backed
            volumes, TEE resources or runtime class, and — for containers with an explicit command —
            an init container that copies the launcher and a command rewritten to run through it.
            Other pods pass unchanged. A pod asking for the simulated TEE (no confidentiality) outside
            --simulation-namespaces is denied. See docs/kubernetes.md.
            """))

    @Option(help: ArgumentHelp("HTTPS address to listen on.", valueName: "host:port"))
    var listen = "0.0.0.0:8443"

    @Option(help: ArgumentHelp("Serving certificate chain (PEM).", valueName: "file"))
    var tlsCert: String

    @Option(help: ArgumentHelp("Private key of --tls-cert (PEM).", valueName: "file"))
    var tlsKey: String

    @Option(help: ArgumentHelp("TEE of pods that do not ask (\(PodKeys.tee)): \(PodTEE.allCases.map(\.rawValue).joined(separator: ", ")).", valueName: "tee"))
    var tee: String

    @Option(help: ArgumentHelp("Coordinator mesh API as pods reach it (HOST:PORT, replicas comma-separated).", valueName: "host:port"))
    var coordinator: String

    @Option(help: ArgumentHelp("Image whose /veil/bin/veil-launcher the init container copies.", valueName: "image"))
    var launcherImage: String

    @Option(help: ArgumentHelp("Namespaces whose pods may run simulated (comma-separated; default none).", valueName: "names"))
    var simulationNamespaces = ""

    @Option(help: ArgumentHelp("ConfigMap with the attested root (root.pem).", valueName: "name"))
    var rootConfigmap = "veil-root"

    @Option(help: ArgumentHelp("Runtime class of confidential-vm pods.", valueName: "name"))
    var runtimeClass = "kata-cc-isolation"

    @Option(help: ArgumentHelp("EPC each container of an sgx pod requests.", valueName: "quantity"))
    var sgxEpc = "64Mi"

    @Option(help: ArgumentHelp("Open connections allowed from one peer address; more are closed at once.", valueName: "n"))
    var maxConnectionsPerPeer = ConnectionLimits().perPeer

    @Option(help: ArgumentHelp("Open connections allowed in total.", valueName: "n"))
    var maxConnections = ConnectionLimits().total

    @Option(help: ArgumentHelp("Log level (trace, debug, info, notice, warning, error, critical).", valueName: "level"))
    var logLevel = "info"

    @Option(help: "Log format: text, or json (one object per line).") var logFormat: LogFormat = .text

    func run() async throws {
        guard let defaultTEE = PodTEE(rawValue: tee) else {
            throw ValidationError("--tee '\(tee)' is not one of \(PodTEE.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard let (host, port) = HostPort.parse(listen) else { throw ValidationError("--listen '\(listen)' is not HOST:PORT") }
        var policy = InjectorPolicy(defaultTEE: defaultTEE, coordinator: coordinator, launcherImage: launcherImage)
        policy.simulationNamespaces = Set(simulationNamespaces.split(separator: ",").map(String.init))
        policy.rootConfigMap = rootConfigmap
        policy.runtimeClass = runtimeClass
        policy.sgxEPC = sgxEpc
        var logger = logFormat.logger(label: "veil.injector")
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level '\(logLevel)'") }
        logger.logLevel = level
        if defaultTEE == .simulated || !policy.simulationNamespaces.isEmpty {
            logger.warning("simulated pods are admitted in namespaces \(policy.simulationNamespaces.sorted()): the simulated TEE gives NO confidentiality")
        }
        guard maxConnectionsPerPeer >= 1, maxConnections >= maxConnectionsPerPeer else {
            throw ValidationError("--max-connections-per-peer must be at least 1 and at most --max-connections (\(maxConnections))")
        }
        var limits = ConnectionLimits()
        (limits.perPeer, limits.total) = (maxConnectionsPerPeer, maxConnections)
        try await InjectorServer.run(
            mutator: PodMutator(policy: policy), host: host, port: port, certificatePath: tlsCert, keyPath: tlsKey, limits: limits, logger: logger)
    }
}
