import CVeilSys
import Crypto
import FoundationEssentials
import Glibc
import VeilAPI
import VeilCore
import VeilImageFormat
import VeilManifest
import VeilMesh

/// What the launcher does after a successful activation: write files, then `fexecve` the
/// measured program with the final environment and argv.
public struct ExecPlan {
    public struct File {
        public var path: String
        public var bytes: [UInt8]
        public var mode: mode_t = 0o600
    }

    public let program: OpenedProgram
    public internal(set) var files: [File]
    public let environment: [String: String]
    public let argv: [String]
    public let simulated: Bool
    /// Changed to before exec when set (an image's WorkingDir).
    public var workingDirectory: String?
    /// Owner of the provisioned files and identity the program runs as (an image's User).
    public var user: ImageUser?
    /// The manifest allows this service's files on disk filesystems.
    public let allowDiskFiles: Bool
    /// The process left beside the app (a mesh proxy, a renewing agent), when the manifest
    /// gives the service a `Mesh` or a `CertificateLifetime`.
    public let resident: ResidentConfiguration?

    /// The mesh proxy's part of ``resident`` (the `veil mesh` sidecar runs it itself).
    public var mesh: MeshConfiguration? {
        guard let resident, let policy = resident.policy else { return nil }
        return MeshConfiguration(credentials: resident.credentials, policy: policy)
    }

    init(response: API.ActivationResponse, options: LaunchOptions, program: OpenedProgram, privateKeyDER: [UInt8], coordinator: String) throws {
        self.program = program
        simulated = response.simulated
        allowDiskFiles = response.allowDiskFiles ?? false
        var files: [File] = []
        for (path, value) in response.files.sorted(by: { $0.key < $1.key }) {
            if let problem = FilePathRule.problem(path) { throw LaunchError.provisioning(path: path, reason: problem) }
            do {
                files.append(File(path: path, bytes: try value.assemble(servicePrivateKeyDER: privateKeyDER)))
            } catch {
                throw LaunchError.provisioning(path: path, reason: "cannot make its key store: \(error)")
            }
        }
        self.files = files
        user = options.image?.user
        resident = try Self.resident(response, service: options.service, privateKeyDER: privateKeyDER, coordinator: coordinator, files: files, owner: user)
        if let workingDir = options.image?.config.workingDir, !workingDir.isEmpty { workingDirectory = workingDir }
        var environment = options.environment
        for name in Launcher.ownVariables { environment[name] = nil }
        if let socket = response.renewal?.workloadAPISocket { environment[Self.workloadAPIVariable] = "unix://" + socket }
        for (name, value) in response.env {
            environment[name] = try Self.text(value.assemble(servicePrivateKeyDER: privateKeyDER), what: "environment variable \(name)")
        }
        self.environment = environment
        if let argv = response.argv {
            self.argv = try argv.enumerated().map { try Self.text($1.assemble(servicePrivateKeyDER: privateKeyDER), what: "argv[\($0)]") }
        } else {
            self.argv = options.command
        }
    }

    /// Where SPIFFE's clients look for the Workload API.
    public static let workloadAPIVariable = "SPIFFE_ENDPOINT_SOCKET"

    /// The resident process's configuration, when the service has a mesh or a renewal.
    private static func resident(
        _ response: API.ActivationResponse, service: String, privateKeyDER: [UInt8], coordinator: String, files: [File], owner: ImageUser?
    ) throws -> ResidentConfiguration? {
        guard response.mesh != nil || response.renewal != nil else { return nil }
        let key = try P256.Signing.PrivateKey(derRepresentation: privateKeyDER)
        let credentials = MeshCredentials(
            service: service, certificateChainPEM: response.certificateChain, privateKeyPEM: key.pemRepresentation, rootCertificatePEM: response.rootCertificate)
        let renewal = response.renewal.map { policy in
            RenewalPlan(
                coordinator: coordinator, lifetimeSeconds: policy.lifetimeSeconds, reload: policy.reload, ownerUID: owner?.uid, ownerGID: owner?.gid,
                allowDiskFiles: response.allowDiskFiles ?? false, workloadAPISocket: policy.workloadAPISocket,
                writtenDigests: Dictionary(uniqueKeysWithValues: files.map { ($0.path, Hex.encode(Array(SHA256.hash(data: $0.bytes)))) }))
        }
        return ResidentConfiguration(credentials: credentials, policy: response.mesh, renewal: renewal)
    }

    private static func text(_ bytes: [UInt8], what: String) throws -> String {
        guard !bytes.contains(0), let text = String(validating: bytes, as: UTF8.self) else {
            throw LaunchError.invalidValue("\(what) renders to bytes that are not NUL-free UTF-8 (use the hex or base64 filter)")
        }
        return text
    }

    /// Writes every file. Directories are created (0700) as needed; no symlink is followed
    /// anywhere on the path, so a planted link cannot redirect a secret outside the named path;
    /// files go only to memory filesystems unless the manifest allows disk.
    public func provision() throws {
        for file in files {
            try SafeWriter.write(file.bytes, to: file.path, mode: file.mode, owner: user, allowDisk: allowDiskFiles)
        }
    }

    /// Replaces this process with the program, after starting its resident process if it has
    /// one (the mesh proxy and renewing agent, which becomes the program's child and dies with it). Returns only by throwing.
    public func exec(signals: SignalDispositions) throws -> Never {
        // Same thread as the exec below: the proxy's parent-death signal follows this thread.
        if let resident { _ = try MeshHandover.spawn(resident) }
        let argvC = argv.map { strdup($0) } + [nil]
        let envC = environment.sorted(by: { $0.key < $1.key }).map { strdup("\($0.key)=\($0.value)") } + [nil]
        if let user, user.uid != getuid() || user.gid != getgid() {
            // Groups first: once the uid is dropped they can no longer change.
            let groups = user.groups.map { gid_t($0) }
            guard setgroups(groups.count, groups) == 0, setgid(user.gid) == 0, setuid(user.uid) == 0, getuid() == user.uid else {
                throw LaunchError.exec(program.path, reason: "cannot become user \(user.uid):\(user.gid) (\(String(cString: strerror(errno)))); start the launcher as root")
            }
        }
        if let workingDirectory, chdir(workingDirectory) != 0 {
            throw LaunchError.exec(program.path, reason: "cannot change to working directory \(workingDirectory): \(String(cString: strerror(errno)))")
        }
        fflush(nil)
        signals.restoreForExec()
        fexecve(program.descriptor, argvC, envC)
        throw LaunchError.exec(program.path, reason: String(cString: strerror(errno)))
    }
}

/// Writes files beneath `/` without following symlinks, creating missing directories.
///
/// Invariants: nothing is written through a symlink or into an existing file (each file is
/// written under a fresh name and renamed over the target, so a planted hard link to a file
/// elsewhere keeps its old content), and, unless `allowDisk`, only onto tmpfs or ramfs, so
/// secrets never reach a disk the host can read later.
enum SafeWriter {
    static let tmpfsMagic: Int = 0x0102_1994
    static let ramfsMagic: Int = 0x8584_58f6

    /// - Parameter owner: when set, the file and the directories created for it get this owner.
    static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600, owner: ImageUser? = nil, allowDisk: Bool = false) throws {
        let components = path.split(separator: "/").map(String.init)
        var dirFD = open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard dirFD >= 0 else { throw LaunchError.provisioning(path: path, reason: "cannot open /") }
        defer { close(dirFD) }
        var walked = ""
        for component in components.dropLast() {
            walked += "/" + component
            var next = openat(dirFD, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT {
                guard mkdirat(dirFD, component, 0o700) == 0 || errno == EEXIST else {
                    throw LaunchError.provisioning(path: path, reason: "cannot create directory \(walked): \(String(cString: strerror(errno)))")
                }
                if let owner, fchownat(dirFD, component, owner.uid, owner.gid, AT_SYMLINK_NOFOLLOW) != 0 {
                    throw LaunchError.provisioning(path: path, reason: "cannot hand \(walked) to \(owner.uid):\(owner.gid): \(String(cString: strerror(errno)))")
                }
                next = openat(dirFD, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            guard next >= 0 else {
                let reason = errno == ELOOP || errno == ENOTDIR
                    ? "\(walked) is a symlink or not a directory; provisioned files are never written through symlinks"
                    : "cannot open directory \(walked): \(String(cString: strerror(errno)))"
                throw LaunchError.provisioning(path: path, reason: reason)
            }
            close(dirFD)
            dirFD = next
        }
        if !allowDisk { try requireMemoryFilesystem(dirFD, path: path) }
        let name = components.last!
        var existing = stat()
        if fstatat(dirFD, name, &existing, AT_SYMLINK_NOFOLLOW) == 0, existing.st_mode & S_IFMT == S_IFLNK {
            throw LaunchError.provisioning(path: path, reason: "\(path) is a symlink; provisioned files are never written through symlinks")
        }
        // A fresh inode under a temporary name, then renamed over the target: an existing hard
        // link is replaced, never written through.
        let temporary = ".\(name).veil-\(UInt32.random(in: 0...UInt32.max))"
        let fd = openat(dirFD, temporary, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode)
        guard fd >= 0 else { throw LaunchError.provisioning(path: path, reason: String(cString: strerror(errno))) }
        var renamed = false
        defer {
            close(fd)
            if !renamed { unlinkat(dirFD, temporary, 0) }
        }
        if let owner, fchown(fd, owner.uid, owner.gid) != 0 {
            throw LaunchError.provisioning(path: path, reason: "cannot hand it to \(owner.uid):\(owner.gid): \(String(cString: strerror(errno)))")
        }
        guard fchmod(fd, mode) == 0 else { throw LaunchError.provisioning(path: path, reason: String(cString: strerror(errno))) }
        let failure = AtomicFile.writeAll(bytes, to: fd)
        guard failure == 0 else { throw LaunchError.provisioning(path: path, reason: String(cString: strerror(failure))) }
        guard renameat(dirFD, temporary, dirFD, name) == 0 else {
            throw LaunchError.provisioning(path: path, reason: "cannot replace \(path): \(String(cString: strerror(errno)))")
        }
        renamed = true
    }

    /// tmpfs or ramfs, or a clear refusal naming the filesystem type.
    static func requireMemoryFilesystem(_ dirFD: Int32, path: String) throws {
        let raw = veil_filesystem_type(dirFD)
        guard raw != -1 else { throw LaunchError.provisioning(path: path, reason: "cannot stat its filesystem: \(String(cString: strerror(errno)))") }
        let type = Int(raw) & 0xFFFF_FFFF
        guard type == tmpfsMagic || type == ramfsMagic else {
            throw LaunchError.provisioning(
                path: path,
                reason: "its directory is on a disk filesystem (type 0x\(String(type, radix: 16))); provisioned files go only to memory filesystems "
                    + "(tmpfs, ramfs: e.g. under /dev/shm or a tmpfs mount), unless the manifest sets \"AllowDiskFiles\": true for the service")
        }
    }
}
