import CVeilSys
import FoundationEssentials
import Glibc
import Logging
import VeilManifest

/// What a launcher hands its mesh proxy: the service's credentials and mesh policy.
public struct MeshConfiguration: Codable, Sendable {
    public var credentials: MeshCredentials
    public var policy: MeshPolicy

    public init(credentials: MeshCredentials, policy: MeshPolicy) {
        self.credentials = credentials
        self.policy = policy
    }
}

/// Why a proxy could not be handed its configuration or did not come up.
public enum MeshHandoverError: Error, CustomStringConvertible {
    case system(String, errno: Int32)
    case proxyFailed(String)
    case notReady(seconds: Int)
    case configuration(String)
    case parentGone

    public var description: String {
        switch self {
        case .system(let call, let code): return "mesh proxy: \(call) failed: \(String(cString: strerror(code)))"
        case .proxyFailed(let message): return "mesh proxy did not start: \(message)"
        case .notReady(let seconds): return "mesh proxy did not report ready within \(seconds) s"
        case .configuration(let why): return "mesh proxy configuration: \(why)"
        case .parentGone: return "mesh proxy: the app it serves is gone"
        }
    }
}

/// The launcher's resident process (the mesh proxy and the certificate-renewing agent):
/// spawned just before the launcher execs the app, it becomes the app's child and dies with it.
///
/// Protocol: the configuration (which holds the private key) travels over a pipe inherited as
/// descriptor 3, never a file or argument; the child reports on descriptor 4 — `ready` once
/// every listener is bound, or the reason it could not start — and asks the kernel to kill it
/// when its parent exits. The launcher execs the app only after `ready`.
public enum MeshHandover {
    /// How the proxy notices that the process it serves is gone.
    public enum ParentLink: String, Sendable {
        /// The kernel kills the proxy when the spawning *thread* exits. Right for the launcher,
        /// whose spawning thread is the one that execs the app and lives on as it; wrong for a
        /// parent whose threads come and go (a pooled thread exiting would kill the proxy).
        case deathSignal = "death-signal"
        /// The proxy checks every second whether its parent is still there.
        case polling
    }

    static let configDescriptor: Int32 = 3
    static let readyDescriptor: Int32 = 4
    static let readyWord = "ready"

    /// Starts `executable mesh --inherited-config 3 --ready-fd 4 --parent PID` and waits for it
    /// to be ready. With ``ParentLink/deathSignal`` call it on the thread that then execs the
    /// app: the kernel's parent-death signal follows the spawning thread.
    public static func spawn(
        _ configuration: some Encodable, executable: String = "/proc/self/exe", link: ParentLink = .deathSignal, timeoutSeconds: Int = 15
    ) throws -> pid_t {
        let document = try JSONEncoder().encode(configuration)
        var configPipe: [Int32] = [-1, -1], readyPipe: [Int32] = [-1, -1]
        guard veil_pipe_cloexec(&configPipe) == 0 else { throw MeshHandoverError.system("pipe2", errno: errno) }
        defer { for fd in configPipe where fd >= 0 { close(fd) } }
        guard veil_pipe_cloexec(&readyPipe) == 0 else { throw MeshHandoverError.system("pipe2", errno: errno) }
        defer { for fd in readyPipe where fd >= 0 { close(fd) } }
        // A few kilobytes, which the pipe holds whole: writing before the child exists cannot block.
        guard document.count <= 65536 else { throw MeshHandoverError.configuration("\(document.count) bytes is more than a pipe holds") }
        try writeAll(Array(document), to: configPipe[1])
        close(configPipe[1])
        configPipe[1] = -1

        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_adddup2(&actions, configPipe[0], configDescriptor)
        posix_spawn_file_actions_adddup2(&actions, readyPipe[1], readyDescriptor)
        veil_spawn_close_from(&actions, readyDescriptor + 1)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // Whatever the launcher blocked or caught, the proxy starts with defaults.
        veil_spawnattr_default_signals(&attributes)

        let arguments = ["veil", "mesh", "--inherited-config", "\(configDescriptor)", "--ready-fd", "\(readyDescriptor)", "--parent", "\(getpid())",
                         "--parent-link", link.rawValue]
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        let environment: [UnsafeMutablePointer<CChar>?] = [strdup("PATH=/usr/sbin:/usr/bin:/sbin:/bin"), nil]
        defer { environment.forEach { free($0) } }
        var pid: pid_t = 0
        let status = posix_spawn(&pid, executable, &actions, &attributes, argv, environment)
        guard status == 0 else { throw MeshHandoverError.system("posix_spawn \(executable)", errno: status) }
        close(readyPipe[1])
        readyPipe[1] = -1

        let report = try readReport(readyPipe[0], timeoutSeconds: timeoutSeconds)
        guard report == readyWord else {
            var ignored: Int32 = 0
            kill(pid, SIGKILL)
            waitpid(pid, &ignored, 0)
            throw MeshHandoverError.proxyFailed(report.isEmpty ? "it exited without a word" : report)
        }
        return pid
    }

    /// The child's half: reads the configuration from `configFD`, ties the process's life to
    /// `parent`, and returns the configuration. Report with ``reportReady(_:)`` or
    /// ``reportFailure(_:to:)``.
    public static func receive<Configuration: Decodable>(_ type: Configuration.Type, configFD: Int32, parent: pid_t, link: ParentLink) throws -> Configuration {
        if link == .deathSignal, veil_die_with_parent() != 0 { throw MeshHandoverError.system("prctl(PR_SET_PDEATHSIG)", errno: errno) }
        // The parent may have died before the request above took effect.
        guard getppid() == parent else { throw MeshHandoverError.parentGone }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 16384)
        while true {
            let count = read(configFD, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { throw MeshHandoverError.system("read", errno: errno) }
            if count == 0 { break }
            bytes += chunk[..<count]
        }
        close(configFD)
        defer { for index in bytes.indices { bytes[index] = 0 } }
        do {
            return try JSONDecoder().decode(Configuration.self, from: Data(bytes))
        } catch {
            throw MeshHandoverError.configuration("\(error)")
        }
    }

    public static func reportReady(_ fd: Int32) {
        try? writeAll(Array(readyWord.utf8), to: fd)
        close(fd)
    }

    public static func reportFailure(_ message: String, to fd: Int32) {
        try? writeAll(Array(message.utf8), to: fd)
        close(fd)
    }

    /// Whether the process that started this proxy is still its parent (a fallback to the
    /// kernel's parent-death signal, checked periodically).
    public static func parentAlive(_ parent: pid_t) -> Bool { getppid() == parent }

    private static func writeAll(_ bytes: [UInt8], to fd: Int32) throws {
        var offset = 0
        while offset < bytes.count {
            let written = bytes[offset...].withUnsafeBytes { write(fd, $0.baseAddress, $0.count) }
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { throw MeshHandoverError.system("write", errno: errno) }
            offset += written
        }
    }

    private static func readReport(_ fd: Int32, timeoutSeconds: Int) throws -> String {
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 4096)
        let deadline = Date().addingTimeInterval(TimeInterval(timeoutSeconds))
        while bytes.count < 65536 {
            let remaining = Int32(max(0, deadline.timeIntervalSinceNow * 1000))
            var poller = pollfd(fd: fd, events: Int16(POLLIN), revents: 0)
            let ready = poll(&poller, 1, remaining)
            if ready < 0 && errno == EINTR { continue }
            guard ready > 0 else { throw MeshHandoverError.notReady(seconds: timeoutSeconds) }
            let count = read(fd, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            bytes += chunk[..<count]
            if bytes == Array(readyWord.utf8) { break }
        }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// The mesh proxy run as its own sidecar (`veil mesh`).
public enum MeshSidecar {
    /// The command a sidecar is measured as: this binary with the single argument `mesh`.
    public static let command = ["veil", "mesh"]
}
