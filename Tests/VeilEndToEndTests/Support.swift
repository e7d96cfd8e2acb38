import Foundation
import Glibc
import Synchronization
import Testing

/// The repository checkout these tests run from.
let repositoryRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path

/// The `veil` binary `swift build` produced (the test command builds it first).
let veilBinary: String = {
    let candidates = [ProcessInfo.processInfo.environment["VEIL"], repositoryRoot + "/.build/debug/veil"].compactMap { $0 }
    return candidates.first { FileManager.default.isExecutableFile(atPath: $0) } ?? candidates.last!
}()

/// The `veil-bench` binary beside ``veilBinary``.
let veilBenchBinary: String = URL(fileURLWithPath: veilBinary).deletingLastPathComponent().appendingPathComponent("veil-bench").path

struct RunResult {
    var status: Int32
    var signaled: Bool
    var stdout: String
    var stderr: String
}

/// A scratch directory removed when the value is dropped by the test.
final class Scratch {
    let path: String
    /// - Parameter memory: on a memory filesystem (/dev/shm), where the launcher provisions files.
    init(memory: Bool = false) throws {
        let base = memory ? URL(fileURLWithPath: "/dev/shm") : FileManager.default.temporaryDirectory
        path = base.appendingPathComponent("veil-e2e-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true)
    }
    deinit { try? FileManager.default.removeItem(atPath: path) }

    func write(_ text: String, to name: String) throws -> String {
        let file = path + "/" + name
        try Data(text.utf8).write(to: URL(fileURLWithPath: file))
        return file
    }

    /// The text of `name` in the directory, or nil when it cannot be read.
    func read(_ name: String) -> String? { try? String(contentsOfFile: path + "/" + name, encoding: .utf8) }
}

func run(_ executable: String, _ arguments: [String], environment: [String: String] = [:], scratch: Scratch, timeout: TimeInterval = 60) async throws -> RunResult {
    await (try Spawned(executable, arguments, environment: environment, scratch: scratch)).wait(timeout: timeout)
}

/// Polls `condition` every 20 ms (without blocking a thread) until it holds or `seconds` pass.
func eventually(within seconds: TimeInterval, _ condition: () async throws -> Bool) async rethrows -> Bool {
    let deadline = Date().addingTimeInterval(seconds)
    while true {
        if try await condition() { return true }
        guard Date() < deadline else { return false }
        try? await Task.sleep(for: .milliseconds(20))
    }
}

/// Ports this test process handed out: the kernel may return a just-closed port to the next
/// bind(0), so two tests starting servers at once could otherwise be given the same one.
private let handedOutPorts = Mutex<Set<Int>>([])

/// A loopback port no other caller in this process was given.
func freePort() -> Int {
    while true {
        let port = kernelFreePort()
        if handedOutPorts.withLock({ $0.insert(port).inserted }) { return port }
    }
}

private func kernelFreePort() -> Int {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = 0
    var length = socklen_t(MemoryLayout<sockaddr_in>.size)
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) } }
    _ = withUnsafeMutablePointer(to: &address) { $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { getsockname(fd, $0, &length) } }
    return Int(UInt16(bigEndian: address.sin_port))
}

func isListening(port: Int) -> Bool {
    let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
    defer { close(fd) }
    var address = sockaddr_in()
    address.sin_family = sa_family_t(AF_INET)
    address.sin_addr.s_addr = inet_addr("127.0.0.1")
    address.sin_port = in_port_t(UInt16(port).bigEndian)
    return withUnsafePointer(to: &address) {
        $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
    } == 0
}

/// `name` on PATH (pip's entry points live there, e.g. pyenv shims), else in the system directories.
func which(_ name: String) -> String? {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "").split(separator: ":").map(String.init)
    for dir in path + ["/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"]
    where !dir.isEmpty && FileManager.default.isExecutableFile(atPath: "\(dir)/\(name)") {
        return "\(dir)/\(name)"
    }
    return nil
}

/// A real `veil coordinator` process on free ports with its own data and config directories,
/// already attested (its root pinned in the config directory).
final class CoordinatorProcess {
    let scratch: Scratch
    let dataDirectory: String
    private(set) var clientAddress: String
    private(set) var meshAddress: String
    var process: Spawned?

    /// The simulation platform key: the data directory's own, or a shared one (replicas).
    var simulationKey: String { sharedSimulationKey ?? dataDirectory + "/simulation-platform-key.pem" }
    var sharedSimulationKey: String?
    var rootPath: String { scratch.path + "/root.pem" }
    var environment: [String: String] { ["VEIL_CONFIG_DIR": scratch.path + "/config", "VEIL_COORDINATOR": clientAddress] }
    /// Set for the coordinator process only (a faked clock).
    let processEnvironment: [String: String]

    /// Extra `veil coordinator` arguments (store, TLS validity, …).
    var extraArguments: [String]

    /// The `veil` executable the coordinator runs from (another build: another measurement).
    let binary: String

    init(
        scratch: Scratch, arguments: [String] = [], dataDirectory: String? = nil, simulationKey: String? = nil, attest: Bool = true, binary: String? = nil,
        environment: [String: String] = [:]
    ) async throws {
        self.scratch = scratch
        processEnvironment = environment
        self.binary = binary ?? veilBinary
        self.dataDirectory = dataDirectory ?? scratch.path + "/data"
        sharedSimulationKey = simulationKey
        clientAddress = "127.0.0.1:\(freePort())"
        meshAddress = "127.0.0.1:\(freePort())"
        extraArguments = arguments
        // A port from freePort() is free when chosen, not when bound: a server of a test running
        // beside this one can take it first. Then this coordinator cannot bind and exits (and
        // the other server may even answer the readiness check): new ports, up to three times.
        for attempt in 1...3 {
            do {
                try await start(attest: attest)
                return
            } catch {
                guard attempt < 3, await lostItsPort() else { throw error }
                clientAddress = "127.0.0.1:\(freePort())"
                meshAddress = "127.0.0.1:\(freePort())"
            }
        }
    }

    /// Whether the process exited (or exits within 2 s) because an address it was given was taken.
    private func lostItsPort() async -> Bool {
        guard let process, await process.waitForExit(upTo: 2) else { return false }
        let log = process.stderr
        return log.contains("already in use") || log.contains("bind(")
    }

    deinit { process?.kill9() }

    func start(attest: Bool = true) async throws {
        let process = try Spawned(
            binary,
            ["coordinator", "--tee", "simulated", "--data-dir", dataDirectory, "--client-addr", clientAddress, "--mesh-addr", meshAddress]
                + (sharedSimulationKey.map { ["--simulation-key", $0] } ?? []) + extraArguments,
            environment: processEnvironment, scratch: scratch)
        self.process = process
        let port = Int(clientAddress.split(separator: ":").last!)!
        // A listening port alone can be another test's server that took the port first (then
        // `veil attest` would talk to it): an attested start waits for this process's own
        // "ready", logged once both its listeners are bound. One in recovery logs no "ready".
        let listening = await eventually(within: 30) {
            !process.isRunning || (attest ? process.stderr.contains("coordinator ready") : isListening(port: port))
        }
        guard listening, process.isRunning else { throw CoordinatorStartError(log: process.stderr) }
        guard attest else { return }
        // --replace: a restarted test coordinator may hold a new root at the same address
        // (CLITests checks the refusal without it).
        let result = try await veil(["attest", "--allow-simulation", "--simulation-key", simulationKey, "--replace", "--root-output", rootPath])
        guard result.status == 0 else { throw CoordinatorStartError(log: result.stderr) }
    }

    /// Restarts the process; `attest: false` keeps the pinned root (a coordinator in recovery
    /// serves a temporary one).
    func restart(attest: Bool = true) async throws {
        await process?.stop()
        try await start(attest: attest)
    }

    struct CoordinatorStartError: Error { let log: String }

    func veil(_ arguments: [String], environment extra: [String: String] = [:], timeout: TimeInterval = 60) async throws -> RunResult {
        try await run(veilBinary, arguments, environment: environment.merging(extra) { $1 }, scratch: scratch, timeout: timeout)
    }

    /// `veil launch` for `service` with this coordinator's key and pinned root.
    func launchArguments(service: String, key: String? = nil, command: [String]) -> [String] {
        ["launch", "--coordinator", meshAddress, "--service", service, "--tee", "simulated", "--simulation-key", key ?? simulationKey,
         "--root-ca", rootPath, "--"] + command
    }

    func measure(service: String, command: [String]) async throws -> String {
        let result = try await veil(["measure", "--service", service, "--"] + command)
        return result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
    }

    func setManifest(_ text: String) async throws -> RunResult {
        let pinned = FileManager.default.fileExists(atPath: rootPath) ? ["--root-ca", rootPath] : []
        return try await veil(["manifest", "set", try scratch.write(text, to: "manifest-\(UUID().uuidString.prefix(6)).json")] + pinned)
    }

    /// `curl -k` against the coordinator: returns (HTTP status, body).
    /// `headers` as curl's `-H` takes them (`Transfer-Encoding: chunked` streams the body).
    func curl(_ method: String, _ address: String, _ path: String, body: String? = nil, headers: [String] = []) async throws -> (Int, String) {
        var arguments = ["-sk", "-o", "-", "-w", "\n%{http_code}", "-X", method, "https://\(address)\(path)"] + headers.flatMap { ["-H", $0] }
        if let body { arguments += ["--data-binary", "@" + (try scratch.write(body, to: "body-\(UUID().uuidString.prefix(6))"))] }
        let result = try await run(which("curl") ?? "/usr/bin/curl", arguments, scratch: scratch)
        let lines = result.stdout.split(separator: "\n", omittingEmptySubsequences: false)
        return (Int(lines.last ?? "") ?? -1, lines.dropLast().joined(separator: "\n"))
    }
}

/// The sample value of the series named `name` whose labels include all of `labels`.
func prometheusSample(_ text: String, _ name: String, _ labels: [String: String] = [:]) -> Double? {
    for line in text.split(separator: "\n") where !line.hasPrefix("#") {
        guard let space = line.lastIndex(of: " ") else { continue }
        let series = line[..<space]
        let seriesName = series.split(separator: "{", maxSplits: 1).first.map(String.init) ?? ""
        guard seriesName == name else { continue }
        guard labels.allSatisfy({ series.contains("\($0.key)=\"\($0.value)\"") }) else { continue }
        return Double(line[line.index(after: space)...])
    }
    return nil
}
