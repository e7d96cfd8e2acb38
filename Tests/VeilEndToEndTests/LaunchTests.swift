import Foundation
import Glibc
import Testing

/// `veil launch` against a real coordinator: what starts, what is refused, and that the app
/// becomes the process.
@Suite(.timeLimit(.minutes(5))) struct LaunchTests {
    func manifest(_ services: [(name: String, measurement: String, parameters: String)]) -> String {
        let packages = services.map { "\"\($0.name)\": {\"Kind\": \"simulated\", \"Measurement\": \"\($0.measurement)\"}" }
        let entries = services.map { "\"\($0.name)\": {\"Package\": \"\($0.name)\", \"Parameters\": \($0.parameters)}" }
        return """
            {"Packages": {\(packages.joined(separator: ","))}, "Services": {\(entries.joined(separator: ","))},
             "Secrets": {"greeting": {"Type": "plain", "Size": 8}}, "Config": {"AllowSimulation": true}}
            """
    }

    @Test func alteredBinaryIsRefusedAndNeverStarts() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let redis = try #require(which("redis-server"), "redis-server must be installed")
        let copy = scratch.path + "/redis-server"
        // Debian's /usr/bin/redis-server is a symlink; copy the binary itself.
        try FileManager.default.copyItem(atPath: URL(fileURLWithPath: redis).resolvingSymlinksInPath().path, toPath: copy)
        let port = freePort()
        let command = [copy, "--port", "\(port)", "--save", "", "--appendonly", "no"]
        let measurement = try await coordinator.measure(service: "cache", command: command)
        #expect(try await coordinator.setManifest(manifest([("cache", measurement, "{}")])).status == 0)

        // One byte changed near the end of the binary.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: copy))
        bytes[bytes.count - 3] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: copy))
        let result = try await coordinator.veil(coordinator.launchArguments(service: "cache", command: command))
        #expect(result.status == 125)
        #expect(result.stderr.contains("does not match package 'cache'"), "\(result.stderr)")
        #expect(result.stderr.split(separator: "\n").count == 1, "one clear line: \(result.stderr)")
        #expect(!isListening(port: port))

        // The original bytes activate and run.
        bytes[bytes.count - 3] ^= 0x01
        try bytes.write(to: URL(fileURLWithPath: copy))
        let server = try Spawned(veilBinary, coordinator.launchArguments(service: "cache", command: command), environment: coordinator.environment, scratch: scratch)
        defer { server.stopInBackground() }
        let deadline = Date().addingTimeInterval(20)
        while !isListening(port: port) && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        #expect(isListening(port: port), "\(server.stderr)")
    }

    @Test func appBecomesTheProcessWithItsExitCodeAndSignals() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let exiting = ["/bin/sh", "-c", "exit 7"]
        let sleeping = ["/bin/sleep", "30"]
        #expect(try await coordinator.setManifest(manifest([
            ("exiting", try await coordinator.measure(service: "exiting", command: exiting), "{}"),
            ("sleeping", try await coordinator.measure(service: "sleeping", command: sleeping), "{}"),
        ])).status == 0)

        let exited = try await coordinator.veil(coordinator.launchArguments(service: "exiting", command: exiting))
        #expect(exited.status == 7, "\(exited.stderr)")

        let sleeper = try Spawned(veilBinary, coordinator.launchArguments(service: "sleeping", command: sleeping), scratch: scratch)
        // Same PID: once activated, /proc/PID/cmdline is sleep's.
        let deadline = Date().addingTimeInterval(20)
        var cmdline = ""
        while Date() < deadline {
            cmdline = ((try? String(contentsOfFile: "/proc/\(sleeper.pid)/cmdline", encoding: .utf8)) ?? "").replacingOccurrences(of: "\0", with: " ")
            if cmdline.hasPrefix("/bin/sleep 30") { break }
            try? await Task.sleep(for: .milliseconds(20))
        }
        #expect(cmdline.hasPrefix("/bin/sleep 30"), "\(cmdline) \(sleeper.stderr)")
        kill(sleeper.pid, SIGTERM)
        let result = await sleeper.wait(timeout: 10)
        #expect(result.signaled && result.status == SIGTERM, "sleep must die of the SIGTERM it was sent")
    }

    @Test func filesEnvAndArgvAreProvisioned() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let command = ["/bin/sh", "-c", "original"]
        let parameters = """
            {"Files": {"\(scratch.path)/app/conf/greeting": "hello {{ hex .Secrets.greeting }}",
                       "\(scratch.path)/app/ca.pem": "{{ pem .Veil.RootCA.Cert }}"},
             "Env": {"GREETING": "{{ hex .Secrets.greeting }}"},
             "Argv": ["sh", "-c", "cat \(scratch.path)/app/conf/greeting; echo; echo env=$GREETING; echo key=${VEIL_SIMULATION_KEY:-unset}"]}
            """
        #expect(try await coordinator.setManifest(manifest([("app", try await coordinator.measure(service: "app", command: command), parameters)])).status == 0)
        let result = try await coordinator.veil(
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

    @Test func aProcessLaunchUnlocksProtectedFilesOnlyForItsServiceAndNewestVersion() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let key = scratch.path + "/data.key"
        try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: key))
        let plaintext = scratch.path + "/app/patients.csv"
        let rows = (0..<5000).map { "patient-\($0),ward-\($0 % 4),\($0 * 7 % 1000)\n" }.joined()
        let input = try scratch.write(rows, to: "patients-plain.csv")
        func seal(_ output: String, previous: String? = nil) async throws {
            let result = try await coordinator.veil(
                ["protect", "seal", "--key", key, "--path", plaintext] + (previous.map { ["--previous", $0] } ?? []) + [input, output])
            try #require(result.status == 0, "\(result.stderr)")
        }
        let version1 = scratch.path + "/patients-v1.vpf"
        try await seal(version1)
        let command = ["/usr/bin/wc", "-c", plaintext]
        let manifest = """
            {"Packages": {"job": {"Kind": "simulated", "Measurement": "\(try await coordinator.measure(service: "job", command: command))"},
                          "outsider": {"Kind": "simulated", "Measurement": "\(try await coordinator.measure(service: "outsider", command: command))"}},
             "Services": {"job": {"Package": "job", "ProtectedFilesKey": "data-key"}, "outsider": {"Package": "outsider"}},
             "Secrets": {"data-key": {"Type": "symmetric-key", "Size": 256, "UserDefined": true}}, "Config": {"AllowSimulation": true}}
            """
        let set = try await coordinator.veil(["manifest", "set", try scratch.write(manifest, to: "manifest.json"), "--root-ca", coordinator.rootPath, "--secret", "data-key=\(key)"])
        try #require(set.status == 0, "\(set.stderr)")
        func launch(_ service: String, _ stored: String) async throws -> RunResult {
            try await coordinator.veil(["launch", "--coordinator", coordinator.meshAddress, "--service", service, "--tee", "simulated", "--simulation-key",
                                  coordinator.simulationKey, "--root-ca", coordinator.rootPath, "--protected-file", "\(stored)=\(plaintext)", "--"] + command)
        }

        let unlocked = try await launch("job", version1)
        #expect(unlocked.status == 0, "\(unlocked.stderr)")
        #expect(unlocked.stdout.hasPrefix("\(rows.utf8.count) "), "the program read the whole plaintext: \(unlocked.stdout)")
        #expect(try String(contentsOfFile: plaintext, encoding: .utf8) == rows)
        try FileManager.default.removeItem(atPath: plaintext)

        // A service without the key gets nothing, even with the genuine file.
        let outsider = try await launch("outsider", version1)
        #expect(outsider.status == 125)
        #expect(outsider.stderr.contains("has no ProtectedFilesKey"), "\(outsider.stderr)")
        // One flipped byte of the ciphertext.
        var bytes = try Data(contentsOf: URL(fileURLWithPath: version1))
        bytes[bytes.count - 10] ^= 0x01
        let tampered = scratch.path + "/patients-tampered.vpf"
        try bytes.write(to: URL(fileURLWithPath: tampered))
        let refusedTampered = try await launch("job", tampered)
        #expect(refusedTampered.status == 125)
        #expect(refusedTampered.stderr.contains("protected file \(plaintext)"), "\(refusedTampered.stderr)")
        // Version 2 is accepted and recorded; version 1 put back is a rollback.
        let version2 = scratch.path + "/patients-v2.vpf"
        try await seal(version2, previous: version1)
        await #expect(try launch("job", version2).status == 0)
        let rollback = try await launch("job", version1)
        #expect(rollback.status == 125)
        #expect(rollback.stderr.lowercased().contains("version"), "\(rollback.stderr)")
        #expect(try !FileManager.default.fileExists(atPath: plaintext) || String(contentsOfFile: plaintext, encoding: .utf8) == rows)

        // Malformed arguments are refused before anything is contacted.
        for argument in ["no-equals", "=\(plaintext)", "\(version1)=relative/path", "\(version1)="] {
            let result = try await coordinator.veil(["launch", "--service", "job", "--tee", "simulated", "--simulation-key", coordinator.simulationKey,
                                               "--protected-file", argument, "--", "/bin/true"])
            #expect(result.status != 0)
            #expect(result.stderr.contains("--protected-file"), "\(argument): \(result.stderr)")
        }
    }

    @Test func symlinkEscapeIsRefusedAndNothingIsWritten() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let elsewhere = scratch.path + "/elsewhere"
        try FileManager.default.createDirectory(atPath: elsewhere, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: scratch.path + "/link", withDestinationPath: elsewhere)
        let marker = scratch.path + "/started"
        let command = ["/usr/bin/touch", marker]
        let parameters = #"{"Files": {"\#(scratch.path)/link/secret": "{{ hex .Secrets.greeting }}"}}"#
        #expect(try await coordinator.setManifest(manifest([("app", try await coordinator.measure(service: "app", command: command), parameters)])).status == 0)
        let result = try await coordinator.veil(coordinator.launchArguments(service: "app", command: command))
        #expect(result.status == 125)
        #expect(result.stderr.contains("symlink"), "\(result.stderr)")
        #expect(try FileManager.default.contentsOfDirectory(atPath: elsewhere).isEmpty)
        #expect(!FileManager.default.fileExists(atPath: marker), "the app must not start")
    }

    /// Secrets never land on a disk the host can read later, unless the manifest says so; and
    /// a hard link planted at the target is replaced, not written through.
    @Test func filesGoOnlyToMemoryFilesystemsAndNeverThroughHardLinks() async throws {
        let disk = try Scratch()
        let memory = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: disk)
        let command = ["/bin/true"]
        let measurement = try await coordinator.measure(service: "ondisk", command: command)
        let planted = memory.path + "/planted"
        try Data("host's file".utf8).write(to: URL(fileURLWithPath: planted))
        try FileManager.default.createDirectory(atPath: memory.path + "/app", withIntermediateDirectories: true)
        #expect(link(planted, memory.path + "/app/secret") == 0)
        let manifest = #"""
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurement)"},
                          "q": {"Kind": "simulated", "Measurement": "\#(try await coordinator.measure(service: "inmemory", command: command))"},
                          "r": {"Kind": "simulated", "Measurement": "\#(try await coordinator.measure(service: "allowed", command: command))"}},
             "Services": {"ondisk": {"Package": "p", "Parameters": {"Files": {"\#(disk.path)/app/secret": "{{ hex .Secrets.greeting }}"}}},
                          "inmemory": {"Package": "q", "Parameters": {"Files": {"\#(memory.path)/app/secret": "{{ hex .Secrets.greeting }}"}}},
                          "allowed": {"Package": "r", "AllowDiskFiles": true, "Parameters": {"Files": {"\#(disk.path)/allowed/secret": "{{ hex .Secrets.greeting }}"}}}},
             "Secrets": {"greeting": {"Type": "plain", "Size": 8}},
             "Config": {"AllowSimulation": true}}
            """#
        #expect(try await coordinator.setManifest(manifest).status == 0)
        let refused = try await coordinator.veil(coordinator.launchArguments(service: "ondisk", command: command))
        #expect(refused.status == 125)
        #expect(refused.stderr.contains("disk filesystem"), "\(refused.stderr)")
        #expect(!FileManager.default.fileExists(atPath: disk.path + "/app/secret"))

        let written = try await coordinator.veil(coordinator.launchArguments(service: "inmemory", command: command))
        #expect(written.status == 0, "\(written.stderr)")
        #expect(try String(contentsOfFile: planted, encoding: .utf8) == "host's file", "the hard link's other name still holds the old content")
        #expect(try String(contentsOfFile: memory.path + "/app/secret", encoding: .utf8).count == 16)

        let allowed = try await coordinator.veil(coordinator.launchArguments(service: "allowed", command: command))
        #expect(allowed.status == 0, "\(allowed.stderr)")
        #expect(FileManager.default.fileExists(atPath: disk.path + "/allowed/secret"))
    }

    @Test func otherPlatformKeyAndUnknownServiceAreRefused() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let marker = scratch.path + "/started"
        let command = ["/usr/bin/touch", marker]
        #expect(try await coordinator.setManifest(manifest([("app", try await coordinator.measure(service: "app", command: command), "{}")])).status == 0)

        let otherKey = scratch.path + "/other-key.pem"
        let keygen = try await run(which("openssl") ?? "/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", otherKey], scratch: scratch)
        #expect(keygen.status == 0)
        let forged = try await coordinator.veil(coordinator.launchArguments(service: "app", key: otherKey, command: command))
        #expect(forged.status == 125)
        #expect(forged.stderr.contains("not by the trusted simulation platform key"), "\(forged.stderr)")

        let unknown = try await coordinator.veil(coordinator.launchArguments(service: "nope", command: command))
        #expect(unknown.status == 125)
        #expect(unknown.stderr.contains("unknown service 'nope'"))
        #expect(!FileManager.default.fileExists(atPath: marker))

        let noTEE = try await coordinator.veil(["launch", "--coordinator", coordinator.meshAddress, "--service", "app", "--"] + command)
        #expect(noTEE.status != 0)
        #expect(noTEE.stderr.contains("--tee simulated"))
        #expect(!FileManager.default.fileExists(atPath: marker))
    }

    @Test func launcherWithoutPinnedRootAttestsTheCoordinator() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let command = ["/bin/true"]
        #expect(try await coordinator.setManifest(manifest([("app", try await coordinator.measure(service: "app", command: command), "{}")])).status == 0)
        var arguments = coordinator.launchArguments(service: "app", command: command)
        let index = arguments.firstIndex(of: "--root-ca")!
        arguments.removeSubrange(index...index + 1)
        let result = try await coordinator.veil(arguments + [], environment: [:])
        #expect(result.status == 0, "\(result.stderr)")
        let wrong = try await coordinator.veil(
            Array(arguments.prefix(while: { $0 != "--" })) + ["--coordinator-measurement", String(repeating: "00", count: 32), "--"] + command)
        #expect(wrong.status == 125)
        #expect(wrong.stderr.contains("not one the policy expects"), "\(wrong.stderr)")
    }
}
