import ArgumentParser
import Foundation
import VeilAPI
import VeilAttestation
import VeilCore
import VeilImage
import VeilLauncherCommands
import VeilRuntime

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run an OCI image with runc on this machine (the embedded single-machine runtime).",
        discussion: helpText("""
            The image is unpacked once into the state directory (verified against its digests) and
            reused read-only by later runs; /run and /tmp are fresh memory filesystems per run. The
            container shares the host's network (loopback included). Its output and exit status are
            passed through, and the container is removed afterwards.

            A Veil image (from `veil image convert`) starts with its launcher, which must reach the
            coordinator's mesh API. In an SEV-SNP or TDX guest (--tee snp|tdx) the container gets
            the guest's configfs-tsm report directory (for the launcher alone: it detaches it before
            the application can reach it), and the launcher binds the image's measurement into the
            VM's evidence (packages pin it with ImageMeasurement). Elsewhere only --tee simulated
            runs: development only, no confidentiality.

            An image whose layers are ocicrypt-encrypted (skopeo copy --encryption-key, veil image
            convert --encrypt-layers-to) runs only as a Veil image: veil run attests as its service
            to the coordinator's key broker, which releases the keys the manifest gives that
            service (--decryption-key names the resource holding the private key; CoCo key
            packets name their own); the layers are decrypted and unpacked into a ramfs for this
            run alone (nothing decrypted is written to disk) and removed afterwards.

            Exit codes: the container's own; 64 usage; 125 Veil could not run it (the image, runc,
            or the launcher inside could not launch: activation refused, no evidence, …).
            """))

    @Argument(help: ArgumentHelp("Image: oci:DIR[:TAG].", valueName: "image"))
    var image: String

    @Option(help: ArgumentHelp("TEE for Veil images: snp or tdx (this machine is such a guest), or simulated (development only, no confidentiality). Env VEIL_TEE.", valueName: "tee"))
    var tee: String?

    @OptionGroup var coordinatorOptions: CoordinatorConnectionOptions

    @Option(help: ArgumentHelp("Where unpacked images and run bundles live.", valueName: "dir"))
    var stateDir = "/var/lib/veil/run"

    @Option(name: .customLong("decryption-key"), help: ArgumentHelp(
        "For encrypted layers: the key-broker resource holding the private key (PEM) they are wrapped for, released after attestation. Repeatable.",
        valueName: "kbs:///repository/type/tag"))
    var decryptionKeys: [String] = []

    func run() async throws {
        let spec: ContainerSpec, stateDirectory: String, memory: MemoryRootfs?
        do {
            (spec, stateDirectory, memory) = try await prepare()
        } catch let error as ValidationError {
            throw error
        } catch {
            warn("veil run: \(error)")
            throw ExitCode(LaunchCommand.couldNotLaunch)
        }
        defer { memory?.remove() }
        // The container's own status, or 125 from the launcher inside when it could not launch.
        let status: Int32
        do {
            status = try ContainerRunner(stateDirectory: stateDirectory).run(spec)
        } catch {
            warn("veil run: \(error)")
            throw ExitCode(LaunchCommand.couldNotLaunch)
        }
        throw ExitCode(status)
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
                guard let key = coordinatorOptions.simulationKeyPath(environment) else {
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
                coordinator: coordinatorOptions.address(environment), tee: containerTEE,
                rootCA: coordinatorOptions.rootCAPath(environment).map { URL(fileURLWithPath: $0).standardizedFileURL.path },
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
