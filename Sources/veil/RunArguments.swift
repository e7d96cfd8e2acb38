import ArgumentParser
import Foundation
import VeilAPI
import VeilAttestation
import VeilCore
import VeilImage
import VeilLauncherCommands
import VeilRuntime

/// What `run` was asked to do, as plain values: from `RunCommand` (the argument parser) or from
/// `parse(_:)` (``LeanCommandLine``), since every `veil run` is a container start.
struct RunArguments: Equatable, Sendable {
    var image: String
    var tee: String?
    var coordinatorConnection = CoordinatorConnection()
    var stateDir = RunArguments.defaultStateDirectory
    var decryptionKeys: [String] = []

    static let defaultStateDirectory = "/var/lib/veil/run"

    static let grammar = LeanCommandLine.Grammar(
        values: ["tee", "coordinator", "simulation-key", "root-ca", "state-dir", "decryption-key"], repeatable: ["decryption-key"], positionals: 1)

    /// `arguments` after the executable's name, starting with `run`; nil when the argument
    /// parser must read them.
    static func parse(_ arguments: [String]) -> RunArguments? {
        guard arguments.first == "run", let line = LeanCommandLine.read(arguments.dropFirst(), grammar), let image = line.positionals.first else { return nil }
        return RunArguments(
            image: image, tee: line.value("tee"),
            coordinatorConnection: CoordinatorConnection(coordinator: line.value("coordinator"), simulationKey: line.value("simulation-key"), rootCA: line.value("root-ca")),
            stateDir: line.value("state-dir") ?? defaultStateDirectory, decryptionKeys: line.values["decryption-key"] ?? [])
    }

    /// Runs the image and returns the exit status to leave with: the container's own, or 125
    /// when it could not be run. A usage mistake is thrown (`ValidationError`).
    func run() async throws(ValidationError) -> Int32 {
        let spec: ContainerSpec, stateDirectory: String, memory: MemoryRootfs?
        do {
            (spec, stateDirectory, memory) = try await prepare()
        } catch let error as ValidationError {
            throw error
        } catch {
            warn("veil run: \(error)")
            return LaunchCommand.couldNotLaunch
        }
        defer { memory?.remove() }
        // The container's own status, or 125 from the launcher inside when it could not launch.
        do {
            return try ContainerRunner(stateDirectory: stateDirectory).run(spec)
        } catch {
            warn("veil run: \(error)")
            return LaunchCommand.couldNotLaunch
        }
    }

    private func prepare() async throws -> (ContainerSpec, String, MemoryRootfs?) {
        let environment = ProcessInfo.processInfo.environment
        let reference = try ImageReference(parsing: image)
        let source = try SourceImage.open(reference)
        var connection: LauncherConnection?
        if source.config.labels[RunPlan.serviceLabel] != nil {
            let containerTEE: ContainerTEE
            switch tee ?? environment[VeilEnvironment.tee] {
            case "simulated":
                guard let key = coordinatorConnection.simulationKeyPath(environment) else {
                    throw ValidationError("--tee simulated needs --simulation-key FILE or \(SimulationPlatformKey.environmentVariable)")
                }
                containerTEE = .simulated(simulationKey: URL(fileURLWithPath: key).standardizedFileURL.path)
                warn("veil run: \(simulationWarning)")
            case let name? where ConfidentialVMDevices.Kind(rawValue: name) != nil:
                // VEIL_TSM_ROOT: for guests whose configfs is mounted elsewhere.
                containerTEE = .confidentialVM(try ConfidentialVMDevices.detect(
                    ConfidentialVMDevices.Kind(rawValue: name)!, tsmRoot: environment[VeilEnvironment.tsmRoot] ?? ConfidentialVMDevices.defaultTSMRoot))
            case let name:
                throw ValidationError("\(image) is a Veil image: pass --tee snp or tdx (in such a guest) or simulated (development only)\(name.map { "; '\($0)' is none of them" } ?? "")")
            }
            connection = LauncherConnection(
                coordinator: coordinatorConnection.address(environment), tee: containerTEE,
                rootCA: coordinatorConnection.rootCAPath(environment).map { URL(fileURLWithPath: $0).standardizedFileURL.path },
                traceLaunch: environment[VeilEnvironment.launchTrace] == "1")
        }
        let stateDirectory = URL(fileURLWithPath: stateDir).standardizedFileURL.path
        let encryptedLayers = source.layers.filter(\.isEncrypted).count
        guard encryptedLayers > 0 else {
            guard decryptionKeys.isEmpty else { throw ValidationError("--decryption-key: \(image) has no encrypted layer") }
            let (rootfs, _) = try BundleCache(directory: stateDirectory).rootfs(for: source)
            return (try RunPlan.spec(for: source, rootfs: rootfs, connection: connection), stateDirectory, nil)
        }
        guard source.config.labels[RunPlan.serviceLabel] != nil else { throw ImageKeyRelease.Failure.noMeasurement }
        guard let connection else { throw ImageKeyRelease.Failure.needsTEE }
        let started = ContinuousClock.now
        let keys = try await ImageKeyRelease.keyring(for: source, decryptionKeys: decryptionKeys, connection: connection)
        let released = ContinuousClock.now
        let memory = try MemoryRootfs.unpack(source, keys: keys, stateDirectory: stateDirectory)
        if connection.traceLaunch {
            func ms(_ duration: Duration) -> String { String(format: "%.1f ms", Double(duration.components.attoseconds) / 1e15 + Double(duration.components.seconds) * 1000) }
            warn("veil run: keys released in \(ms(released - started)), layers decrypted and unpacked in \(ms(ContinuousClock.now - released))")
        }
        warn("veil run: \(encryptedLayers) encrypted layer\(encryptedLayers == 1 ? "" : "s") opened with keys the coordinator released after attestation; unpacked into memory (ramfs), nothing decrypted on disk")
        do {
            return (try RunPlan.spec(for: source, rootfs: memory.rootfs, connection: connection), stateDirectory, memory)
        } catch {
            memory.remove()
            throw error
        }
    }
}
