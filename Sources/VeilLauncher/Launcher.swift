import Crypto
import FoundationEssentials
import Glibc
import Synchronization
import VeilAPI
import VeilAttestation
import VeilClient
import VeilCore
import VeilImageFormat
import VeilManifest
import X509

/// Everything `veil launch` needs.
public struct LaunchOptions: Sendable {
    public var service: String
    /// The original entrypoint: program and arguments.
    public var command: [String]
    public var tee: TEEChoice
    public var environment: [String: String]
    /// Set when launching a converted image: the program is measured as part of the whole root
    /// filesystem, and protected files are unlocked.
    public var image: ImageLaunch?
    /// Protected files a process launch unlocks (an image launch takes its own from the image).
    public var protectedFiles: [ImageRunConfig.ProtectedEntry]
    /// Every coordinator replica the launch may use (comma-separated), which the renewing agent
    /// fails over between; nil: the replica that answered the activation.
    public var coordinatorAddresses: String?

    public init(
        service: String, command: [String], tee: TEEChoice, environment: [String: String], image: ImageLaunch? = nil,
        protectedFiles: [ImageRunConfig.ProtectedEntry] = []
    ) {
        precondition(image == nil || protectedFiles.isEmpty, "an image launch unlocks the image's protected files")
        self.service = service
        self.command = command
        self.tee = tee
        self.environment = environment
        self.image = image
        self.protectedFiles = protectedFiles
    }

    /// The protected files this launch unlocks.
    var protectedEntries: [ImageRunConfig.ProtectedEntry] { image?.config.protectedFiles ?? protectedFiles }
}

/// A converted image about to be launched from inside its container.
public struct ImageLaunch: Sendable {
    public var config: ImageRunConfig
    /// Who the application runs as (the image's `User`); nil keeps the launcher's identity.
    public var user: ImageUser?
    private let rootfs: RootfsMeasurement

    /// Reads the image's launch configuration and resolves its user; the root filesystem
    /// `root` is measured when ``measurement()`` is first asked for (while the launcher's
    /// connection to the coordinator is being set up).
    public static func prepare(configPath: String = ImageRunConfig.path, root: String = "/") throws -> ImageLaunch {
        let config = try ImageRunConfig.load(at: configPath)
        let user = try config.user.map { try ImageUser.resolve($0, root: root) }
        // The launcher's own files, recorded in the measured configuration, are not re-hashed.
        let ownCode = try config.launcherFiles.map { try RootfsDisk.OwnCode.ofThisProcess(launcherFiles: $0) } ?? .none
        return ImageLaunch(config: config, user: user, rootfs: RootfsMeasurement(root: root, ownCode: ownCode))
    }

    /// The image measurement over the whole root filesystem, computed once (a failover to
    /// another replica reuses it).
    public func measurement() throws -> [UInt8] {
        ImageMeasurement.measurement(rootfsDigest: try rootfs.digest())
    }

}

extension Launcher {
    /// The header of every protected file, as presented to the coordinator.
    static func protectedHeaders(_ entries: [ImageRunConfig.ProtectedEntry]) throws -> [(entry: ImageRunConfig.ProtectedEntry, header: [UInt8])] {
        try entries.map { entry in
            let fd = open(entry.stored, O_RDONLY | O_CLOEXEC)
            guard fd >= 0 else { throw LaunchError.protectedFile(entry.path, reason: "cannot open \(entry.stored): \(String(cString: strerror(errno)))") }
            defer { close(fd) }
            var header = [UInt8](repeating: 0, count: ProtectedFile.headerSize)
            guard pread(fd, &header, header.count, 0) == header.count else {
                throw LaunchError.protectedFile(entry.path, reason: "\(entry.stored) is shorter than a protected-file header")
            }
            return (entry, header)
        }
    }
}

/// Which TEE produces the launcher's evidence. There is no default: simulation must be chosen.
public enum TEEChoice: Sendable {
    /// Development only: evidence signed with a simulation platform key; no confidentiality.
    case simulated(SimulationPlatformKey)
    /// A hardware TEE (configfs-tsm, Gramine); the hardware measures, not the launcher.
    case hardware(any EvidenceProvider)

    /// The provider for a program with the given launch measurement.
    func provider(measurement: [UInt8]) -> any EvidenceProvider {
        switch self {
        case .simulated(let key): return SimulatedEvidenceProvider(key: key, measurement: measurement)
        case .hardware(let provider): return provider
        }
    }
}

/// Why a launch stopped before the app started.
public enum LaunchError: Error, CustomStringConvertible {
    case emptyCommand
    case programNotFound(String)
    case cannotOpenProgram(String, reason: String)
    case evidence(String)
    case provisioning(path: String, reason: String)
    case invalidValue(String)
    case exec(String, reason: String)
    case protectedFile(String, reason: String)

    public var description: String {
        switch self {
        case .emptyCommand: return "no command given after '--'"
        case .programNotFound(let name): return "program '\(name)' not found in PATH"
        case .cannotOpenProgram(let path, let reason): return "cannot open program \(path): \(reason)"
        case .evidence(let why): return "cannot get evidence: \(why)"
        case .provisioning(let path, let reason): return "cannot write \(path): \(reason)"
        case .invalidValue(let why): return why
        case .exec(let path, let reason): return "cannot exec \(path): \(reason)"
        case .protectedFile(let path, let reason): return "protected file \(path): \(reason)"
        }
    }
}

/// A program opened for measurement and later `fexecve`: the bytes measured are the bytes run.
public struct OpenedProgram: Sendable {
    public let path: String
    public let descriptor: Int32

    /// Resolves `name` like a shell (PATH search when it has no `/`) and opens it.
    public static func open(_ name: String, path searchPath: String?) throws -> OpenedProgram {
        let resolved: String
        if name.contains("/") {
            resolved = name
        } else {
            let candidates = (searchPath ?? "/usr/local/bin:/usr/bin:/bin").split(separator: ":").map { "\($0)/\(name)" }
            guard let found = candidates.first(where: { access($0, X_OK) == 0 }) else { throw LaunchError.programNotFound(name) }
            resolved = found
        }
        guard access(resolved, X_OK) == 0 else {
            throw LaunchError.cannotOpenProgram(resolved, reason: String(cString: strerror(errno)))
        }
        // Scripts are exec'd by the kernel through /dev/fd/N, so their descriptor must survive exec.
        let fd = Glibc.open(resolved, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw LaunchError.cannotOpenProgram(resolved, reason: String(cString: strerror(errno))) }
        var magic: [UInt8] = [0, 0]
        if pread(fd, &magic, 2, 0) == 2, magic == [UInt8(ascii: "#"), UInt8(ascii: "!")] {
            _ = fcntl(fd, F_SETFD, 0)
        }
        return OpenedProgram(path: resolved, descriptor: fd)
    }
}

/// The launcher: attest, activate, provision, exec.
public enum Launcher {
    /// Environment variables that configure the launcher and are not passed to the app.
    public static let ownVariables = VeilEnvironment.launcherOwned

    /// Activates with the coordinator and returns the ready-to-exec plan. Nothing is written
    /// or executed until activation succeeded.
    /// `progress` hears each step as it completes (`VEIL_LAUNCH_TRACE`).
    ///
    /// The nonce's round trip (connection, TLS handshake, request) runs while the program (or
    /// the image's root filesystem) is measured and the key and CSR are made: none of those
    /// depends on the nonce.
    public static func activate(
        _ options: LaunchOptions, program: OpenedProgram, client: CoordinatorClient, progress: (@Sendable (String) -> Void)? = nil
    ) async throws -> ExecPlan {
        async let nonce = fetchNonce(client, service: options.service)
        let measurement = try options.image?.measurement() ?? LaunchMeasurement.measure(
            programFD: program.descriptor, config: .init(service: options.service, arguments: Array(options.command.dropFirst())))
        progress?(options.image == nil ? "program measured" : "root filesystem measured")
        let protected = try protectedHeaders(options.protectedEntries)
        let key = serviceKey()
        let csr = try certificateSigningRequest(service: options.service, key: key)
        let (fresh, targets) = try await nonce
        progress?("nonce received")
        // A target the writer would refuse is found now, before the activation is used.
        if let targets, let problem = LaunchHostCheck.problems(paths: targets.files, allowDisk: targets.allowDiskFiles).first {
            throw LaunchError.provisioning(path: problem.path, reason: problem.reason + " (found before activating: no activation was used)")
        }
        let provider = options.tee.provider(measurement: measurement)
        // In a confidential VM the hardware measured the VM, not this image: bind the image.
        let imageMeasurement = options.image != nil && provider.isConfidentialVM ? measurement : nil
        var request = try activationRequest(
            service: options.service, nonce: fresh, key: key, csr: csr, provider: provider, imageMeasurement: imageMeasurement)
        if !protected.isEmpty {
            request.protectedFiles = protected.map { API.ProtectedFileHeader(path: $0.entry.path, header: Base64Bytes($0.header)) }
        }
        let response = try await client.call(.POST, "\(API.prefix)/activation", json: request, as: API.ActivationResponse.self)
        progress?("activation answered")
        var plan = try ExecPlan(
            response: response, options: options, program: program, privateKeyDER: Array(key.derRepresentation),
            coordinator: options.coordinatorAddresses ?? client.address)
        if !protected.isEmpty {
            guard let keyBytes = response.protectedFilesKey?.bytes else {
                throw LaunchError.protectedFile(protected[0].entry.path, reason: "the coordinator released no key (set ProtectedFilesKey for the service)")
            }
            plan.files += try unlock(protected, secret: SymmetricKey(data: keyBytes))
        }
        return plan
    }

    /// Decrypts each protected file, insisting it is exactly the version the coordinator
    /// accepted (same header), so a file swapped after the check is refused.
    static func unlock(
        _ protected: [(entry: ImageRunConfig.ProtectedEntry, header: [UInt8])], secret: SymmetricKey
    ) throws -> [ExecPlan.File] {
        try protected.map { entry, presented in
            let accepted: ProtectedFile.Header
            let plaintext: [UInt8]
            do {
                accepted = try ProtectedFile.readHeader(presented, path: entry.path, secret: secret).0
                let opened: ProtectedFile.Header
                (opened, plaintext) = try ProtectedFile.open(fileAt: entry.stored, path: entry.path, secret: secret, minimumVersion: accepted.version)
                guard opened == accepted else { throw ProtectedFile.Error.headerTampered }
            } catch {
                throw LaunchError.protectedFile(entry.path, reason: "\(error)")
            }
            return ExecPlan.File(path: entry.plaintext, bytes: plaintext, mode: entry.mode & 0o777)
        }
    }


    /// One activation exchange with one coordinator replica: a fresh nonce (valid only at that
    /// replica), evidence binding `key` and it, and the activation.
    public static func requestActivation(
        service: String, key: P256.Signing.PrivateKey, provider: any EvidenceProvider, client: CoordinatorClient
    ) async throws -> API.ActivationResponse {
        let nonce = try await fetchNonce(client)
        let request = try activationRequest(
            service: service, nonce: nonce, key: key, csr: try certificateSigningRequest(service: service, key: key), provider: provider)
        return try await client.call(.POST, "\(API.prefix)/activation", json: request, as: API.ActivationResponse.self)
    }

    /// A single-use nonce from the replica `client` talks to.
    static func fetchNonce(_ client: CoordinatorClient) async throws -> [UInt8] {
        try await fetchNonce(client, service: nil).nonce
    }

    /// RFC 3986 unreserved characters as they are, every other byte as %XX.
    static func percentEncoded(_ text: String) -> String {
        text.utf8.map { byte in
            let unreserved = (0x30...0x39).contains(byte) || (0x41...0x5a).contains(byte) || (0x61...0x7a).contains(byte) || "-._~".utf8.contains(byte)
            return unreserved ? String(UnicodeScalar(byte)) : "%" + (byte < 16 ? "0" : "") + String(byte, radix: 16, uppercase: true)
        }.joined()
    }

    /// A single-use nonce, and where `service` gets files (when the coordinator knows it).
    static func fetchNonce(_ client: CoordinatorClient, service: String?) async throws -> (nonce: [UInt8], targets: API.ProvisioningTargets?) {
        var path = "\(API.prefix)/activation/nonce"
        if let service { path += "?service=" + percentEncoded(service) }
        let response = try await client.call(.POST, path, as: API.NonceResponse.self)
        guard let nonce = Hex.decode(response.nonce) else {
            throw CoordinatorClientError.unexpectedResponse(status: 200, detail: "nonce is not hex")
        }
        return (nonce, response.provisioning)
    }

    /// A new key for the service's certificate. Never compact-encoded, so generated without
    /// swift-crypto's default retry for a compact-representable point, which costs a second
    /// generation and FIPS pairwise check half the time.
    public static func serviceKey() -> P256.Signing.PrivateKey {
        P256.Signing.PrivateKey(compactRepresentable: false)
    }

    /// The PKCS#10 request for `key`, PEM (its subject names the service).
    static func certificateSigningRequest(service: String, key: P256.Signing.PrivateKey) throws -> String {
        let csr = try CertificateSigningRequest(
            version: .v1, subject: try DistinguishedName { CommonName(service) }, privateKey: .init(key),
            attributes: .init(), signatureAlgorithm: .ecdsaWithSHA256)
        return try csr.serializeAsPEM().pemString
    }

    /// An activation request for `key` with a CSR made here.
    public static func activationRequest(
        service: String, nonce: [UInt8], key: P256.Signing.PrivateKey, provider: any EvidenceProvider
    ) throws -> API.ActivationRequest {
        try activationRequest(service: service, nonce: nonce, key: key, csr: try certificateSigningRequest(service: service, key: key), provider: provider)
    }

    /// An activation request: the CSR for `key` and evidence whose report data binds
    /// `SHA-256(SubjectPublicKeyInfo DER ‖ nonce)`.
    public static func activationRequest(
        service: String, nonce: [UInt8], key: P256.Signing.PrivateKey, csr: String, provider: any EvidenceProvider,
        imageMeasurement: [UInt8]? = nil
    ) throws -> API.ActivationRequest {
        let evidence: Evidence
        do {
            evidence = try provider.evidence(
                reportData: ReportData.binding(Array(key.publicKey.derRepresentation), nonce: nonce, imageMeasurement: imageMeasurement))
        } catch {
            throw LaunchError.evidence("\(error)")
        }
        return API.ActivationRequest(service: service, nonce: Hex.encode(nonce), csr: csr, evidence: evidence)
    }
}

/// The ``RootfsDigest`` of a root filesystem, computed by the launcher itself on first use.
final class RootfsMeasurement: Sendable {
    let root: String
    let ownCode: RootfsDisk.OwnCode
    private let digestOnce = Mutex<[UInt8]?>(nil)

    init(root: String, ownCode: RootfsDisk.OwnCode) {
        self.root = root
        self.ownCode = ownCode
    }

    func digest() throws -> [UInt8] {
        try digestOnce.withLock { cached in
            if let cached { return cached }
            let digest = try RootfsDisk.measure(root: root, ownCode: ownCode)
            cached = digest
            return digest
        }
    }
}
