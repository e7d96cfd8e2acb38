import Foundation
import Glibc
import Testing

/// `veil launch` against a real coordinator: what starts, what is refused, and that the app
/// becomes the process.
@Suite struct LaunchTests {
    func manifest(_ services: [(name: String, measurement: String, parameters: String)]) -> String {
        let packages = services.map { "\"\($0.name)\": {\"Kind\": \"simulated\", \"Measurement\": \"\($0.measurement)\"}" }
        let entries = services.map { "\"\($0.name)\": {\"Package\": \"\($0.name)\", \"Parameters\": \($0.parameters)}" }
        return """
            {"Packages": {\(packages.joined(separator: ","))}, "Services": {\(entries.joined(separator: ","))},
             "Secrets": {"greeting": {"Type": "plain", "Size": 8}}, "Config": {"AllowSimulation": true}}
            """
    }

    @Test func alteredBinaryIsRefusedAndNeverStarts() throws {
        let scratch = try Scratch()
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let redis = try #require(which("redis-server"), "redis-server must be installed")
        let copy = scratch.path + "/redis-server"
        // Debian's /usr/bin/redis-server is a symlink; copy the binary itself.
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: redis).resolvingSymlinksInPath().path, toPath: copy)
        let port = freePort()
        let command = [copy, "--port", "\(port)", "--save", "", "--appendonly", "no"]
        let measurement = try coordinator.measure(service: "cache", command: command)
        #expect(try coordinator.setManifest(manifest([("cache", measurement, "{}")])).status == 0)

        // One byte changed near the end of the binary.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: copy))
        bytes[bytes.count - 3] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: copy))
        let result = try coordinator.veil(coordinator.launchArguments(service: "cache", command: command))
        #expect(result.status == 1)
        #expect(result.stderr.contains("does not match package 'cache'"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one clear line: \(result.stderr)")
        #expect(!isListening(port: port))

        // The original bytes activate and run.
        bytes[bytes.count - 3] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: copy))
        let server = try Spawned(veilBinary, coordinator.launchArguments(service: "cache", command: command), environment: coordinator.environment, scratch: scratch)
        defer { server.stop() }
        let deadline = Date().addingTimeInterval(20)
        while !isListening(port: port) && Date() < deadline { usleep(50_000) }
        #expect(isListening(port: port), "\(server.stderr)")
    }

    @Test func appBecomesTheProcessWithItsExitCodeAndSignals() throws {
        let scratch = try Scratch()
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let exiting = ["/bin/sh", "-c", "exit 7"]
        let sleeping = ["/bin/sleep", "30"]
        #expect(try coordinator.setManifest(manifest([
            ("exiting", try coordinator.measure(service: "exiting", command: exiting), "{}"),
            ("sleeping", try coordinator.measure(service: "sleeping", command: sleeping), "{}"),
        ])).status == 0)

        let exited = try coordinator.veil(coordinator.launchArguments(service: "exiting", command: exiting))
        #expect(exited.status == 7, "\(exited.stderr)")

        let sleeper = try Spawned(veilBinary, coordinator.launchArguments(service: "sleeping", command: sleeping), scratch: scratch)
        // Same PID: once activated, /proc/PID/cmdline is sleep's.
        let deadline = Date().addingTimeInterval(20)
        var cmdline = ""
        while Date() < deadline {
            cmdline = ((try? String(contentsOfFile: "/proc/\(sleeper.pid)/cmdline", encoding: .utf8)) ?? "").replacingOccurrences(of: "\0", with: " ")
            if cmdline.hasPrefix("/bin/sleep 30") { break }
            usleep(20_000)
        }
        #expect(cmdline.hasPrefix("/bin/sleep 30"), "\(cmdline) \(sleeper.stderr)")
        kill(sleeper.pid, SIGTERM)
        let result = sleeper.wait(timeout: 10)
        #expect(result.signaled && result.status == SIGTERM, "sleep must die of the SIGTERM it was sent")
    }

    @Test func filesEnvAndArgvAreProvisioned() throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let command = ["/bin/sh", "-c", "original"]
        let parameters = """
            {"Files": {"\(scratch.path)/app/conf/greeting": "hello {{ hex .Secrets.greeting }}",
                       "\(scratch.path)/app/ca.pem": "{{ pem .Veil.RootCA.Cert }}"},
             "Env": {"GREETING": "{{ hex .Secrets.greeting }}"},
             "Argv": ["sh", "-c", "cat \(scratch.path)/app/conf/greeting; echo; echo env=$GREETING; echo key=${VEIL_SIMULATION_KEY:-unset}"]}
            """
        #expect(try coordinator.setManifest(manifest([("app", try coordinator.measure(service: "app", command: command), parameters)])).status == 0)
        let result = try coordinator.veil(
            coordinator.launchArguments(service: "app", command: command), environment: ["VEIL_SIMULATION_KEY": coordinator.simulationKey])
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n").map(String.init)
        #expect(lines.count == 3)
        let greeting = String(lines[0].dropFirst("hello ".count))
        #expect(greeting.count == 16)
        #expect(lines[1] == "env=\(greeting)")
        #expect(lines[2] == "key=unset", "the launcher's own variables are not passed on")
        let ca = try String(contentsOfFile: scratch.path + "/app/ca.pem", encoding: .utf8)
        #expect(ca == (try String(contentsOfFile: coordinator.rootPath, encoding: .utf8)))
        let mode = (try FileManager.default.attributesOfItem(atPath: scratch.path + "/app/ca.pem")[.posixPermissions] as! NSNumber).intValue
        #expect(mode == 0o600)
        #expect(result.stderr.contains("NO confidentiality"))
    }

    @Test func symlinkEscapeIsRefusedAndNothingIsWritten() throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let elsewhere = scratch.path + "/elsewhere"
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: scratch.path + "/link", withDestinationPath: elsewhere)
        let marker = scratch.path + "/started"
        let command = ["/usr/bin/touch", marker]
        let parameters = #"{"Files": {"\#(scratch.path)/link/secret": "{{ hex .Secrets.greeting }}"}}"#
        #expect(try coordinator.setManifest(manifest([("app", try coordinator.measure(service: "app", command: command), parameters)])).status == 0)
        let result = try coordinator.veil(coordinator.launchArguments(service: "app", command: command))
        #expect(result.status == 1)
        #expect(result.stderr.contains("symlink"), "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: marker), "the app must not start")
    }

    /// Secrets never land on a disk the host can read later, unless the manifest says so; and
    /// a hard link planted at the target is replaced, not written through.
    @Test func filesGoOnlyToMemoryFilesystemsAndNeverThroughHardLinks() throws {
        let disk = try Scratch()
        let memory = try Scratch(memory: true)
        let coordinator = try CoordinatorProcess(scratch: disk)
        let command = ["/bin/true"]
        let measurement = try coordinator.measure(service: "ondisk", command: command)
        let planted = memory.path + "/planted"
        try Data("host's file".utf8).write(to: URL(fileURLWithPath: planted))
        try FileManager.default.createDirectory(atPath: memory.path + "/app", withIntermediateDirectories: true)
        #expect(link(planted, memory.path + "/app/secret") == 0)
        let manifest = #"""
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurement)"},
                          "q": {"Kind": "simulated", "Measurement": "\#(try coordinator.measure(service: "inmemory", command: command))"},
                          "r": {"Kind": "simulated", "Measurement": "\#(try coordinator.measure(service: "allowed", command: command))"}},
             "Services": {"ondisk": {"Package": "p", "Parameters": {"Files": {"\#(disk.path)/app/secret": "{{ hex .Secrets.greeting }}"}}},
                          "inmemory": {"Package": "q", "Parameters": {"Files": {"\#(memory.path)/app/secret": "{{ hex .Secrets.greeting }}"}}},
                          "allowed": {"Package": "r", "AllowDiskFiles": true, "Parameters": {"Files": {"\#(disk.path)/allowed/secret": "{{ hex .Secrets.greeting }}"}}}},
             "Secrets": {"greeting": {"Type": "plain", "Size": 8}},
             "Config": {"AllowSimulation": true}}
            """#
        #expect(try coordinator.setManifest(manifest).status == 0)
        let refused = try coordinator.veil(coordinator.launchArguments(service: "ondisk", command: command))
        #expect(refused.status == 1)
        #expect(refused.stderr.contains("disk filesystem"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: disk.path + "/app/secret"))

        let written = try coordinator.veil(coordinator.launchArguments(service: "inmemory", command: command))
        #expect(written.status == 0, "\(written.stderr)")
        #expect(try String(contentsOfFile: planted, encoding: .utf8) == "host's file", "the hard link's other name still holds the old content")
        #expect(try String(contentsOfFile: memory.path + "/app/secret", encoding: .utf8).count == 16)

        let allowed = try coordinator.veil(coordinator.launchArguments(service: "allowed", command: command))
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(FileManager.default.fileExists(atPath: disk.path + "/allowed/secret"))
    }

    @Test func otherPlatformKeyAndUnknownServiceAreRefused() throws {
        let scratch = try Scratch()
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let marker = scratch.path + "/started"
        let command = ["/usr/bin/touch", marker]
        #expect(try coordinator.setManifest(manifest([("app", try coordinator.measure(service: "app", command: command), "{}")])).status == 0)

        let otherKey = scratch.path + "/other-key.pem"
        let keygen = try run(which("openssl") ?? "/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", otherKey], scratch: scratch)
        #expect(keygen.status == 0)
        let forged = try coordinator.veil(coordinator.launchArguments(service: "app", key: otherKey, command: command))
        #expect(forged.status == 1)
        #expect(forged.stderr.contains("not by the trusted simulation platform key"), "\(forged.stderr)")

        let unknown = try coordinator.veil(coordinator.launchArguments(service: "nope", command: command))
        #expect(unknown.status == 1)
        #expect(unknown.stderr.contains("unknown service 'nope'"))
        #expect(!FileManager.default.fileExists(atPath: marker))

        let noTEE = try coordinator.veil(["launch", "--coordinator", coordinator.meshAddress, "--service", "app", "--"] + command)
        #expect(noTEE.status != 0)
        #expect(noTEE.stderr.contains("--tee simulated"))
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test func launcherWithoutPinnedRootAttestsTheCoordinator() throws {
        let scratch = try Scratch()
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let command = ["/bin/true"]
        #expect(try coordinator.setManifest(manifest([("app", try coordinator.measure(service: "app", command: command), "{}")])).status == 0)
        var arguments = coordinator.launchArguments(service: "app", command: command)
        let index = arguments.firstIndex(of: "--root-ca")!
        arguments.removeSubrange(index...index + 1)
        let result = try coordinator.veil(arguments + [], environment: [:])
        #expect(result.status == 0, "\(result.stderr)")
        let wrong = try coordinator.veil(
            Array(arguments.prefix(while: { $0 != "--" })) + ["--coordinator-measurement", String(repeating: "00", count: 32), "--"] + command)
        #expect(wrong.status == 1)
        #expect(wrong.stderr.contains("not one the policy expects"), "\(wrong.stderr)")
    }
}
