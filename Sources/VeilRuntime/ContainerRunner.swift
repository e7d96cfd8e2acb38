import Foundation
import Glibc
import Synchronization
import VeilCore
import VeilImage

/// What one container run needs.
public struct ContainerSpec: Sendable {
    public var rootfs: String
    public var args: [String]
    public var env: [String]
    public var workingDir: String
    public var uid: UInt32 = 0
    public var gid: UInt32 = 0
    /// Host file → container path, read-only bind mounts (created under `/run`).
    public var readOnlyFiles: [(host: String, container: String)] = []
    /// In an SEV-SNP or TDX guest: what the launcher needs to produce evidence.
    public var confidentialVM: ConfidentialVMDevices?

    public init(rootfs: String, args: [String], env: [String], workingDir: String) {
        self.rootfs = rootfs
        self.args = args
        self.env = env
        self.workingDir = workingDir
    }

    /// The OCI runtime `config.json`: host network (loopback shared with the host), fresh
    /// PID/IPC/UTS/mount namespaces, a read-only root, and memory filesystems on `/run` and
    /// `/tmp` (where the launcher writes secrets and protected-file plaintext).
    public func runtimeConfig(hostname: String) -> [UInt8] {
        var capabilities = [
            "CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FSETID", "CAP_FOWNER", "CAP_MKNOD", "CAP_NET_RAW", "CAP_SETGID", "CAP_SETUID",
            "CAP_SETFCAP", "CAP_SETPCAP", "CAP_NET_BIND_SERVICE", "CAP_SYS_CHROOT", "CAP_KILL", "CAP_AUDIT_WRITE",
        ]
        var mounts: [JSONValue] = [
            Self.mount("/proc", type: "proc", source: "proc"),
            Self.mount("/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"]),
            Self.mount("/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]),
            Self.mount("/dev/shm", type: "tmpfs", source: "shm", options: ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]),
            Self.mount("/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"]),
            Self.mount("/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"]),
            Self.mount("/run", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=755"]),
            Self.mount("/tmp", type: "tmpfs", source: "tmpfs", options: ["nosuid", "nodev", "mode=1777"]),
        ]
        for file in readOnlyFiles {
            mounts.append(Self.mount(file.container, type: "bind", source: file.host, options: ["bind", "ro", "nosuid", "nodev"]))
        }
        let linux: JSONValue = .object([
            "namespaces": .array(["pid", "ipc", "uts", "mount"].map { .object(["type": .string($0)]) }),
            "maskedPaths": .strings(["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                                     "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"]),
            "readonlyPaths": .strings(["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]),
        ])
        if let guest = confidentialVM {
            mounts.append(Self.mount(ConfidentialVMDevices.containerTSMRoot, type: "bind", source: guest.tsmRoot, options: ["bind", "rw", "nosuid", "nodev", "noexec"]))
            // For the launcher to unmount it after its report; it drops the capability (bounding
            // set included) before the application starts.
            capabilities.append("CAP_SYS_ADMIN")
        }
        let config: JSONValue = .object([
            "ociVersion": .string("1.0.2"),
            "process": .object([
                "terminal": .bool(false),
                "user": .object(["uid": .number(Double(uid)), "gid": .number(Double(gid))]),
                "args": .strings(args),
                "env": .strings(env),
                "cwd": .string(workingDir.isEmpty ? "/" : workingDir),
                "capabilities": .object(["bounding": .strings(capabilities), "effective": .strings(capabilities), "permitted": .strings(capabilities)]),
                "rlimits": .array([.object(["type": .string("RLIMIT_NOFILE"), "hard": .number(1024), "soft": .number(1024)])]),
                "noNewPrivileges": .bool(true),
            ]),
            "root": .object(["path": .string(rootfs), "readonly": .bool(true)]),
            "hostname": .string(hostname),
            "mounts": .array(mounts),
            "linux": linux,
        ])
        // Strings, integers, booleans, arrays and objects: nothing here can fail to serialise.
        // Written directly (not by JSONSerialization): every `veil run` pays for this in a fresh process.
        return try! config.serialized()
    }

    private static func mount(_ destination: String, type: String, source: String, options: [String]? = nil) -> JSONValue {
        var fields: [String: JSONValue] = ["destination": .string(destination), "type": .string(type), "source": .string(source)]
        if let options { fields["options"] = .strings(options) }
        return .object(fields)
    }
}

/// Runs containers with `runc`: one bundle directory per run, removed afterwards together
/// with the container; the container's output goes straight to ours and its exit status
/// becomes the return value.
public struct ContainerRunner: Sendable {
    public var runc: String
    public var stateDirectory: String

    public init(runc: String = "runc", stateDirectory: String) {
        self.runc = runc
        self.stateDirectory = stateDirectory
    }

    /// Runs `spec` to completion. SIGINT, SIGTERM and SIGHUP sent to this process are passed
    /// on to the container.
    public func run(_ spec: ContainerSpec) throws -> Int32 {
        try FileManager.default.createDirectory(atPath: "\(stateDirectory)/bundles", withIntermediateDirectories: true)
        var template = Array("\(stateDirectory)/bundles/veil-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ImageError.io(path: stateDirectory, reason: String(cString: strerror(errno))) }
        let bundle = String(cString: made)
        let id = "veil-" + (bundle.split(separator: "-").last.map(String.init) ?? "run") + "-\(getpid())"
        defer {
            // `runc run` removes the container when it exits; delete only what it left (runc
            // itself killed, or a failed create) — another runc exec costs milliseconds per start.
            if geteuid() != 0 || access("/run/runc/\(id)", F_OK) == 0 {
                _ = try? Self.spawnAndWait(runc, ["delete", "--force", id], quiet: true)
            }
            try? FileManager.default.removeItem(atPath: bundle)
        }
        let config = spec.runtimeConfig(hostname: id)
        guard FileManager.default.createFile(atPath: "\(bundle)/config.json", contents: Data(config)) else {
            throw ImageError.io(path: "\(bundle)/config.json", reason: "cannot write")
        }
        return try Self.spawnAndWait(runc, ["run", "--bundle", bundle, id], quiet: false, forwardSignals: true)
    }

    /// Spawns `program` (PATH search) and returns its exit status (128+N when killed by signal N).
    static func spawnAndWait(_ program: String, _ arguments: [String], quiet: Bool, forwardSignals: Bool = false) throws -> Int32 {
        var actions: posix_spawn_file_actions_t = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        if quiet {
            posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0)
            posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0)
        }
        let argv = ([program] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawnp(&pid, program, &actions, nil, argv, environ)
        guard status == 0 else {
            throw ImageError.io(path: program, reason: "cannot start: \(String(cString: strerror(status)))\(status == ENOENT ? " (install runc)" : "")")
        }
        if forwardSignals { SignalForwarder.forward(to: pid) }
        defer { if forwardSignals { SignalForwarder.stop() } }
        var wstatus: Int32 = 0
        while waitpid(pid, &wstatus, 0) < 0 {
            guard errno == EINTR else { throw ImageError.io(path: program, reason: String(cString: strerror(errno))) }
        }
        let signal = wstatus & 0x7f
        return signal == 0 ? (wstatus >> 8) & 0xff : 128 + signal
    }
}

/// Passes terminating signals on to the running container's runtime process.
enum SignalForwarder {
    static let target = Atomic<Int32>(0)
    static let signals: [Int32] = [SIGINT, SIGTERM, SIGHUP]

    static func forward(to pid: pid_t) {
        target.store(pid, ordering: .sequentiallyConsistent)
        // A blocked mask is inherited across exec (test runners, some supervisors block these):
        // unblock them in this thread, the one waiting for runc, so they reach the handler.
        var set = sigset_t()
        sigemptyset(&set)
        for signal in signals { sigaddset(&set, signal) }
        pthread_sigmask(SIG_UNBLOCK, &set, nil)
        for signal in signals {
            Glibc.signal(signal) { received in
                let pid = SignalForwarder.target.load(ordering: .sequentiallyConsistent)
                if pid > 0 { kill(pid, received) }
            }
        }
    }

    static func stop() {
        target.store(0, ordering: .sequentiallyConsistent)
        for signal in signals { Glibc.signal(signal, SIG_DFL) }
    }
}
