import ArgumentParser
import FoundationEssentials
import Synchronization
import VeilAttestation
import VeilClient
import VeilImageFormat
import VeilManifest
import VeilCore
import VeilLauncher

/// What `launch` was asked to do, as plain values: from `LaunchCommand` (the argument parser)
/// or from `parse(_:)`, the launcher's own parser for its hot path.
public struct LaunchArguments: Equatable, Sendable {
    var trust = LaunchTrust()
    var image: String?
    var protectedFile: [String] = []
    var command: [String] = []

    /// Launches. Returns only when the launch failed before the program started (the program
    /// replaces this process otherwise), with the exit status to leave with.
    public func run() async -> Int32 {
        let signals = SignalDispositions.capture()
        do {
            try await launch(signals: signals)
        } catch {
            warn("veil launch: \(error)")
            return LaunchCommand.couldNotLaunch
        }
    }

    private func launch(signals: SignalDispositions) async throws -> Never {
        let environment = ProcessInfo.processInfo.environment
        let trace = LaunchTrace(enabled: environment[VeilEnvironment.launchTrace] == "1")
        var command = self.command
        var appEnvironment = environment
        var imageLaunch: ImageLaunch?
        if let image {
            guard command.isEmpty else { throw ValidationError("--image takes no command: the image's measured configuration fixes it") }
            guard protectedFile.isEmpty else { throw ValidationError("--image unlocks the image's own protected files; --protected-file is for process launches") }
            let prepared = try ImageLaunch.prepare(configPath: image)
            if let requested = trust.serviceName(environment), requested != prepared.config.service {
                throw ValidationError("the image was converted for service '\(prepared.config.service)', not '\(requested)'")
            }
            command = prepared.config.command
            appEnvironment = prepared.config.environment
            imageLaunch = prepared
            trace.mark("image configuration read")
        }
        guard let program = command.first else { throw LaunchError.emptyCommand }
        guard let service = imageLaunch?.config.service ?? trust.serviceName(environment) else { throw ValidationError("--service is required") }
        let address = trust.address(environment)
        let choice = try trust.teeChoice(environment)
        let rootPEM = try await trust.rootCertificatePEM(environment, choice: choice)
        trace.mark("coordinator root")

        let opened = try OpenedProgram.open(program, path: appEnvironment["PATH"])
        var options = LaunchOptions(
            service: service, command: command, tee: choice, environment: appEnvironment, image: imageLaunch,
            protectedFiles: try protectedFile.map(Self.protectedEntry))
        options.coordinatorAddresses = address
        let plan = try await CoordinatorClient.with(address: address, trust: .pinnedRoot(rootPEM)) {
            try await Launcher.activate(options, program: opened, client: $0, progress: trace.enabled ? trace.mark : nil)
        }
        trace.mark("connection closed")
        try plan.provision()
        trace.mark("provisioned")
        if plan.simulated { warn("veil launch: \(service) activated; \(simulationWarning)") }
        try plan.exec(signals: signals)
    }
}

extension LaunchArguments {
    /// `STORED=PATH` → the entry that unlocks STORED's plaintext to PATH.
    static func protectedEntry(_ argument: String) throws -> ImageRunConfig.ProtectedEntry {
        guard let equals = argument.firstIndex(of: "="), equals != argument.startIndex, equals != argument.index(before: argument.endIndex) else {
            throw ValidationError("--protected-file '\(argument)' is not STORED=PATH")
        }
        let stored = String(argument[..<equals])
        let path = String(argument[argument.index(after: equals)...])
        if let problem = FilePathRule.problem(path) { throw ValidationError("--protected-file: '\(path)': \(problem)") }
        return ImageRunConfig.ProtectedEntry(path: path, stored: stored, plaintext: path, mode: 0o600)
    }
}

/// `VEIL_LAUNCH_TRACE=1`: how long each launch step took, on stderr (for slow starts).
final class LaunchTrace: Sendable {
    let enabled: Bool
    private let last = Mutex(ContinuousClock.now)

    init(enabled: Bool) { self.enabled = enabled }

    func mark(_ step: String) {
        guard enabled else { return }
        let elapsed = last.withLock { last in
            let now = ContinuousClock.now
            defer { last = now }
            return now - last
        }
        let microseconds = elapsed.components.seconds * 1_000_000 + elapsed.components.attoseconds / 1_000_000_000_000
        warn("veil launch: \(step) after \(microseconds / 1000).\(String(microseconds % 1000 / 100)) ms")
    }
}
