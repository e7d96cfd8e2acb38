import CVeilSys
import Foundation
import Glibc
import Synchronization
import Testing

/// A program these tests started, with its output captured to files, reaped by the test
/// process itself.
///
/// Spawned with `posix_spawn` and waited for with `waitpid`, not with Foundation's `Process`:
/// on Linux that notices a child's exit by a socket the child inherits, and a program another
/// test starts at the same moment can inherit that socket too, so an exited child looked alive
/// until the other program ended (swift-corelibs-foundation #4795; once seen here as a `curl`
/// "still unreaped after SIGKILL" beside a long-running coordinator). The child closes every
/// descriptor above stderr and starts with no blocked signals and default dispositions, so a
/// test thread's signal mask (which would make OpenSSL's s_server ignore SIGTERM) does not
/// reach it.
///
/// Invariant: `reaped` is set once, by the one `waitpid` that reaped `pid`; no other code in the
/// test process waits for arbitrary children, so the status cannot be lost.
final class Spawned: Sendable {
    /// The toolchain's backtracer for statically linked Swift programs: `swift` on PATH,
    /// symlinks resolved, then `../libexec/swift/linux/swift-backtrace-static`.
    static let staticBacktracer: String? = {
        let path = ProcessInfo.processInfo.environment["PATH"] ?? ""
        for directory in path.split(separator: ":") {
            let swift = URL(fileURLWithPath: "\(directory)/swift").resolvingSymlinksInPath()
            guard FileManager.default.isExecutableFile(atPath: swift.path) else { continue }
            let backtracer = swift.deletingLastPathComponent().deletingLastPathComponent().path + "/libexec/swift/linux/swift-backtrace-static"
            return FileManager.default.isExecutableFile(atPath: backtracer) ? backtracer : nil
        }
        return nil
    }()

    let pid: pid_t
    let executable: String
    let arguments: [String]
    let stdoutPath: String
    let stderrPath: String
    /// The raw `waitpid` status once reaped.
    private let reaped = Mutex<Int32?>(nil)

    struct SpawnFailed: Error, CustomStringConvertible {
        let executable: String
        let reason: String
        var description: String { "cannot start \(executable): \(reason)" }
    }

    init(_ executable: String, _ arguments: [String], environment: [String: String] = [:], scratch: Scratch) throws {
        let id = UUID().uuidString.prefix(8)
        stdoutPath = "\(scratch.path)/out-\(id)"
        stderrPath = "\(scratch.path)/err-\(id)"
        self.executable = executable
        self.arguments = arguments
        // The strict one-thread pool is for this test process (docs/testing.md); the programs
        // it starts run as they would anywhere.
        var inherited = ProcessInfo.processInfo.environment
        inherited["LIBDISPATCH_COOPERATIVE_POOL_STRICT"] = nil
        // A crashing child is reported with unsymbolicated frames: symbolicating a debug
        // binary on a busy 2-core runner once took 17 minutes, with the crashed process
        // suspended (its sockets accepting, never answering) the whole time.
        // `veil` and `veil-launcher` carry the Swift runtime: it finds no backtracer beside itself
        // (and says so on stderr) unless told where the toolchain's is.
        if inherited["SWIFT_BACKTRACE"] == nil {
            inherited["SWIFT_BACKTRACE"] = "enable=yes,symbolicate=off,interactive=no" + (Self.staticBacktracer.map { ",swift-backtrace=\($0)" } ?? "")
        }
        let variables = inherited.merging(environment) { $1 }.map { "\($0.key)=\($0.value)" }
        pid = try Self.spawn(executable, [executable] + arguments, environment: variables, stdout: stdoutPath, stderr: stderrPath)
    }

    private static func spawn(_ path: String, _ argv: [String], environment: [String], stdout: String, stderr: String) throws -> pid_t {
        let descriptors = [open("/dev/null", O_RDONLY | O_CLOEXEC), open(stdout, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644),
                           open(stderr, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0o644)]
        defer { for fd in descriptors where fd >= 0 { close(fd) } }
        guard descriptors.allSatisfy({ $0 >= 0 }) else { throw SpawnFailed(executable: path, reason: "cannot open its output files: \(String(cString: strerror(errno)))") }
        var actions = posix_spawn_file_actions_t()
        var attributes = posix_spawnattr_t()
        posix_spawn_file_actions_init(&actions)
        posix_spawnattr_init(&attributes)
        defer {
            posix_spawn_file_actions_destroy(&actions)
            posix_spawnattr_destroy(&attributes)
        }
        for (target, fd) in descriptors.enumerated() { posix_spawn_file_actions_adddup2(&actions, fd, Int32(target)) }
        guard veil_spawn_close_from(&actions, 3) == 0, veil_spawnattr_default_signals(&attributes) == 0 else {
            throw SpawnFailed(executable: path, reason: "cannot set up the child's descriptors and signals")
        }
        let cArguments = argv.map { strdup($0) } + [nil]
        let cEnvironment = environment.map { strdup($0) } + [nil]
        defer { for pointer in cArguments + cEnvironment { free(pointer) } }
        var pid: pid_t = 0
        var status = posix_spawn(&pid, path, &actions, &attributes, cArguments, cEnvironment)
        // A test that has just written the program (a script in its scratch directory) can
        // meet ETXTBSY: a child another test is spawning at that moment holds a copy of the
        // writer's descriptor until it closes its descriptors and execs, microseconds later.
        var retries = 0
        while status == ETXTBSY && retries < 100 {
            retries += 1
            usleep(2_000)
            status = posix_spawn(&pid, path, &actions, &attributes, cArguments, cEnvironment)
        }
        guard status == 0 else { throw SpawnFailed(executable: path, reason: String(cString: strerror(status))) }
        return pid
    }

    var stdout: String { (try? String(contentsOfFile: stdoutPath, encoding: .utf8)) ?? "" }
    var stderr: String { (try? String(contentsOfFile: stderrPath, encoding: .utf8)) ?? "" }

    /// False once the program exited (it is reaped then). Never blocks.
    var isRunning: Bool { reap(blocking: false) == nil }

    /// The raw wait status if the program has exited, reaping it; with `blocking`, waits for
    /// the exit (only after SIGKILL, which the kernel completes on its own).
    private func reap(blocking: Bool) -> Int32? {
        reaped.withLock { reaped in
            if let reaped { return reaped }
            var status: Int32 = 0
            var waited: pid_t
            repeat { waited = waitpid(pid, &status, blocking ? 0 : WNOHANG) } while waited == -1 && errno == EINTR
            guard waited == pid else { return nil }
            reaped = status
            return status
        }
    }

    /// Waits for exit without blocking a thread (polls with `Task.sleep`); after `timeout`
    /// seconds records an issue and stops the process (``stop()``), so no wait can hang.
    func wait(timeout: TimeInterval = 60) async -> RunResult {
        if !(await waitForExit(upTo: timeout)) {
            Issue.record("process \(executable) \(arguments) timed out after \(Int(timeout)) s")
            await stop()
        }
        guard let status = reap(blocking: false) else {
            Issue.record("process \(pid) still running after SIGKILL")
            return RunResult(status: -1, signaled: true, stdout: stdout, stderr: stderr)
        }
        let signaled = status & 0x7f != 0
        return RunResult(status: signaled ? status & 0x7f : (status >> 8) & 0xff, signaled: signaled, stdout: stdout, stderr: stderr)
    }

    /// True once the process exited, false if it still runs after `seconds`.
    func waitForExit(upTo seconds: TimeInterval) async -> Bool {
        let deadline = Date().addingTimeInterval(seconds)
        while isRunning {
            guard Date() < deadline else { return false }
            try? await Task.sleep(for: .milliseconds(10))
        }
        return true
    }

    /// SIGTERM, then SIGKILL after 3 s if still running.
    func stop() async {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        if await waitForExit(upTo: 3) { return }
        kill(pid, SIGKILL)
        _ = await waitForExit(upTo: 30)
    }

    /// SIGTERM now, SIGKILL 3 s later if still running, without waiting: for `defer` blocks,
    /// which cannot await. A thread of its own waits, not the caller.
    func stopInBackground() {
        guard isRunning else { return }
        kill(pid, SIGTERM)
        Thread.detachNewThread { [self] in
            let deadline = Date().addingTimeInterval(3)
            while isRunning && Date() < deadline { usleep(20_000) }
            if isRunning { kill(pid, SIGKILL) }
            _ = reap(blocking: true)
        }
    }

    /// Kills the process at once (SIGKILL), as a crash or a lost machine would. Synchronous,
    /// for `deinit`: SIGKILL cannot be ignored, so the wait is for the kernel alone.
    func kill9() {
        guard isRunning else { return }
        kill(pid, SIGKILL)
        _ = reap(blocking: true)
    }
}
