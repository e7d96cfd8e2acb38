import ArgumentParser
import Foundation
import VeilAttestation
import VeilImage
import VeilLauncher

struct LaunchCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Attest, activate as a service, provision files/env/argv, then exec the program.",
        discussion: """
            The program becomes this process (same PID, signals and exit code). On any failure
            the program is not started and veil exits 1 with one line on stderr.
            """)

    @Option(help: ArgumentHelp("Coordinator mesh API as HOST:PORT, or several replicas HOST:PORT,HOST:PORT (env VEIL_COORDINATOR).", valueName: "host:port"))
    var coordinator: String?

    @Option(help: ArgumentHelp("Manifest service to activate as (env VEIL_SERVICE).", valueName: "name"))
    var service: String?

    @Option(help: ArgumentHelp(
        "TEE providing evidence (env VEIL_TEE): auto (default: configfs-tsm or Gramine, never simulation), snp, tdx, sgx-gramine, or simulated (development only, no confidentiality).",
        valueName: "tee"))
    var tee: String?

    @Option(help: ArgumentHelp("Simulation platform key (env \(SimulationPlatformKey.environmentVariable)).", valueName: "file"))
    var simulationKey: String?

    @Option(help: ArgumentHelp(
        "Coordinator root certificate to pin (env VEIL_ROOT_CA). Without it the launcher attests the coordinator first.",
        valueName: "file"))
    var rootCA: String?

    @Option(help: ArgumentHelp(
        "Expected coordinator measurement when attesting it (hex or sha256:hex, repeatable); required when the coordinator's evidence is hardware evidence.",
        valueName: "hex"))
    var coordinatorMeasurement: [String] = []

    @Option(help: ArgumentHelp("Coordinator policy JSON when attesting it (see veil attest --policy).", valueName: "file"))
    var coordinatorPolicy: String?

    @Flag(help: "DANGEROUS: when attesting the coordinator, trust hardware evidence of any measurement.")
    var insecureAnyCoordinator = false

    @Option(help: ArgumentHelp(
        "Launch a converted image from inside its container: read its launch configuration (/veil/image.json), measure the whole root filesystem and unlock its protected files. The command, environment and service come from the measured image.",
        valueName: "file"))
    var image: String?

    @Argument(parsing: .postTerminator, help: "The program and its arguments.")
    var command: [String] = []

    func run() async throws {
        let signals = SignalDispositions.capture()
        do {
            try await launch(signals: signals)
        } catch {
            warn("veil launch: \(error)")
            throw ExitCode(1)
        }
    }

    private func launch(signals: SignalDispositions) async throws -> Never {
        let environment = ProcessInfo.processInfo.environment
        var command = self.command
        var appEnvironment = environment
        var imageLaunch: ImageLaunch?
        if let image {
            guard command.isEmpty else { throw ValidationError("--image takes no command: the image's measured configuration fixes it") }
            let prepared = try ImageLaunch.prepare(configPath: image)
            if let requested = service ?? environment["VEIL_SERVICE"], requested != prepared.config.service {
                throw ValidationError("the image was converted for service '\(prepared.config.service)', not '\(requested)'")
            }
            command = prepared.config.command
            appEnvironment = prepared.config.environment
            imageLaunch = prepared
        }
        guard let program = command.first else { throw LaunchError.emptyCommand }
        guard let service = imageLaunch?.config.service ?? service ?? environment["VEIL_SERVICE"] else { throw ValidationError("--service is required") }
        let address = coordinator ?? environment["VEIL_COORDINATOR"] ?? "127.0.0.1:2001"
        let teeName = tee ?? environment["VEIL_TEE"] ?? TEESelection.auto.rawValue
        guard let selection = TEESelection(rawValue: teeName) else {
            throw ValidationError("--tee '\(teeName)' is not one of \(TEESelection.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        let choice: TEEChoice
        if selection == .simulated {
            guard let keyPath = simulationKey ?? environment[SimulationPlatformKey.environmentVariable] else {
                throw ValidationError("--tee simulated needs the simulation platform key: --simulation-key FILE or \(SimulationPlatformKey.environmentVariable)")
            }
            let platformKey = try SimulationPlatformKey.load(at: keyPath)
            choice = .simulated(platformKey)
        } else {
            choice = .hardware(try selection.hardwareProvider(
                tsmRoot: environment["VEIL_TSM_ROOT"] ?? ConfigfsTSMProvider.defaultRoot, tsmEntry: environment["VEIL_TSM_ENTRY"],
                gramineRoot: environment["VEIL_GRAMINE_ROOT"] ?? GramineProvider.defaultRoot))
        }

        let rootPEM: String
        if let path = rootCA ?? environment["VEIL_ROOT_CA"] {
            guard let data = FileManager.default.contents(atPath: path) else { throw CommandError("cannot read root certificate \(path)") }
            rootPEM = String(decoding: data, as: UTF8.self)
        } else {
            var policy = try CoordinatorPolicy.build(
                expect: coordinatorMeasurement, policyFile: coordinatorPolicy, allowSimulation: false, simulationKey: nil,
                acceptAnyMeasurement: insecureAnyCoordinator)
            if case .simulated(let platformKey) = choice {
                // A simulated launcher trusts the coordinator's simulated evidence under its own platform key.
                policy.verification.allowSimulation = true
                policy.verification.simulationKey = platformKey.publicKey
            }
            rootPEM = try await CoordinatorAttestation.attest(address: address, policy: policy).rootCertificatePEM
        }

        let opened = try OpenedProgram.open(program, path: appEnvironment["PATH"])
        let options = LaunchOptions(service: service, command: command, tee: choice, environment: appEnvironment, image: imageLaunch)
        let plan = try await CoordinatorClient.with(address: address, trust: .pinnedRoot(rootPEM)) {
            try await Launcher.activate(options, program: opened, client: $0)
        }
        try plan.provision()
        if plan.simulated { warn("veil launch: \(service) activated; \(simulationWarning)") }
        try plan.exec(signals: signals)
    }
}
