import Foundation
import Testing

/// The `veil` commands users type, against a real coordinator.
@Suite(.timeLimit(.minutes(5))) struct CLITests {
    let manifest = """
        {"Packages": {"p": {"Kind": "simulated", "Measurement": "\(String(repeating: "11", count: 32))"}},
         "Services": {"s": {"Package": "p"}}, "Secrets": {"k": {"Type": "symmetric-key", "Size": 256}},
         "Config": {"AllowSimulation": true}}
        """

    @Test func manifestSetGetStatusAndRefusals() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)

        let invalid = try await coordinator.setManifest(#"{"Packages": {}, "Services": {"s": {"Package": "q", "Colour": 1}}}"#)
        #expect(invalid.status != 0)
        #expect(invalid.stderr.contains("$.Services.s.Package") && invalid.stderr.contains("$.Services.s.Colour"), "\(invalid.stderr)")

        let set = try await coordinator.setManifest(manifest)
        #expect(set.status == 0, "\(set.stderr)")
        #expect(set.stdout.hasPrefix("manifest set: sha256:"))
        #expect(set.stderr.contains("NO confidentiality"))

        let different = try await coordinator.setManifest(manifest.replacingOccurrences(of: "\"s\"", with: "\"t\""))
        #expect(different.status != 0)
        #expect(different.stderr.contains("already set"))
        // This manifest has no users: `veil manifest update` cannot help, the way out is named.
        #expect(different.stderr.contains("veil coordinator --reset") && !different.stderr.contains("changes it with `veil manifest update`"), "\(different.stderr)")
        #expect(try await coordinator.veil(["manifest", "get"]).stdout == manifest + "\n")

        let status = try await coordinator.veil(["status", "--output", "json"])
        let object = try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any]
        #expect(object?["state"] as? String == "accepting")
        #expect(object?["simulated"] as? Bool == true)

        let root = try await coordinator.veil(["certificate", "root"])
        #expect(root.stdout == (try String(contentsOfFile: coordinator.rootPath, encoding: .utf8)))
        let chain = try await coordinator.veil(["certificate", "chain"])
        #expect(chain.status == 0 && chain.stdout.components(separatedBy: "BEGIN CERTIFICATE").count == 3)
        // --output is a format everywhere, never a file: JSON here, and a file name is refused, not written.
        let json = try await coordinator.veil(["certificate", "chain", "-o", "json"])
        let certificates = (try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: [String]])?["certificates"]
        #expect(certificates?.count == 2 && certificates?.allSatisfy { $0.hasPrefix("-----BEGIN CERTIFICATE-----") } == true, "\(json.stdout)")
        let file = try await coordinator.veil(["certificate", "root", "--output", scratch.path + "/root-copy.pem"])
        #expect(file.status != 0 && file.stderr.contains("--output"), "\(file.stderr)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/root-copy.pem"))
    }

    @Test func restartKeepsRootAndManifest() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        #expect(try await coordinator.setManifest(manifest).status == 0)
        let rootBefore = try String(contentsOfFile: coordinator.rootPath, encoding: .utf8)
        try await coordinator.restart()
        #expect(try String(contentsOfFile: coordinator.rootPath, encoding: .utf8) == rootBefore)
        #expect(try await coordinator.veil(["manifest", "get"]).stdout == manifest + "\n")
    }

    @Test func attestRefusesWhatItCannotVerify() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let fresh = ["VEIL_CONFIG_DIR": scratch.path + "/fresh-config"]

        let noSimulation = try await coordinator.veil(["attest"], environment: fresh)
        #expect(noSimulation.status != 0)
        // The fix is the client's flags, not the manifest's Config.AllowSimulation.
        #expect(noSimulation.stderr.contains("--allow-simulation --simulation-key") && !noSimulation.stderr.contains("in the manifest"), "\(noSimulation.stderr)")

        let wrongMeasurement = try await coordinator.veil(
            ["attest", "--allow-simulation", "--simulation-key", coordinator.simulationKey, "--expect", String(repeating: "00", count: 32)],
            environment: fresh)
        #expect(wrongMeasurement.status != 0)
        #expect(wrongMeasurement.stderr.contains("not one the policy expects"))

        let otherKey = scratch.path + "/other.pem"
        _ = try await run(which("openssl") ?? "/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", otherKey], scratch: scratch)
        let wrongKey = try await coordinator.veil(["attest", "--allow-simulation", "--simulation-key", otherKey], environment: fresh)
        #expect(wrongKey.status != 0)
        #expect(wrongKey.stderr.contains("not by the trusted simulation platform key"))

        // Nothing was pinned by the failed attempts.
        let status = try await coordinator.veil(["status"], environment: fresh)
        #expect(status.status != 0)
        #expect(status.stderr.contains("no pinned root certificate"))

        let expected = try await coordinator.veil(["measure", "--coordinator"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let good = try await coordinator.veil(
            ["attest", "--allow-simulation", "--simulation-key", coordinator.simulationKey, "--expect", expected, "--output", "json"],
            environment: fresh)
        #expect(good.status == 0, "\(good.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(good.stdout.utf8)) as? [String: Any]
        #expect(object?["verified"] as? Bool == true)
        #expect((object?["warning"] as? String)?.contains("NO confidentiality") == true)
        #expect(try await coordinator.veil(["status"], environment: fresh).status == 0)
    }

    /// `veil --version`, `veil version`, `veil-launcher --version` and the coordinator's status
    /// agree; the status also names the replica's identity (what `--expect` takes).
    @Test func versionsAgreeAndStatusNamesTheCoordinatorsIdentity() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let flag = try await coordinator.veil(["--version"])
        let command = try await coordinator.veil(["version"])
        let launcher = try await run(URL(fileURLWithPath: veilBinary).deletingLastPathComponent().path + "/veil-launcher", ["--version"], scratch: scratch)
        let version = flag.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(flag.status == 0 && version.split(separator: ".").count == 3, "\(flag.stdout) \(flag.stderr)")
        #expect(command.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == version)
        #expect(launcher.stdout.trimmingCharacters(in: .whitespacesAndNewlines) == version, "\(launcher.stderr)")
        let status = try await coordinator.veil(["status"])
        #expect(status.stdout.contains("version: \(version)\n"), "\(status.stdout)")
        let measured = try await coordinator.veil(["measure", "--coordinator"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let measurement = measured.hasPrefix("sha256:") ? String(measured.dropFirst("sha256:".count)) : measured
        #expect(status.stdout.contains("identity: measurement=\(measurement)"), "\(status.stdout) vs \(measurement)")
        let json = try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status").1
        #expect(json.contains("\"version\":\"\(version)\""), "\(json)")
    }

    /// The client and mesh APIs are two listeners: a request that reaches the wrong one is told
    /// which one it wanted, and an address where nothing listens says so in words.
    @Test func theWrongAPIOrANonListeningPortIsNamed() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let onMesh = try await coordinator.curl("GET", coordinator.meshAddress, "/api/v1/status")
        #expect(onMesh.0 == 404 && onMesh.1.contains("this is the coordinator's mesh API") && onMesh.1.contains("--client-addr"), "\(onMesh)")
        let launch = Array(coordinator.launchArguments(service: "app", command: ["/bin/true"]))
        let onClient = try await coordinator.veil(launch.map { $0 == coordinator.meshAddress ? coordinator.clientAddress : $0 })
        #expect(onClient.status != 0 && onClient.stderr.contains("this is the coordinator's client API") && onClient.stderr.contains("--mesh-addr"),
                "\(onClient.stderr)")
        let nowhere = try await coordinator.veil(["status", "--coordinator", "127.0.0.1:\(freePort())", "--root-ca", coordinator.rootPath])
        #expect(nowhere.status != 0 && nowhere.stderr.contains("connection refused: nothing listens there"), "\(nowhere.stderr)")
        #expect(!nowhere.stderr.contains("errno: 111"), "\(nowhere.stderr)")
        // A root that is not PEM is named as such, not as a malformed address.
        let notPEM = try await coordinator.veil(["status", "--root-ca", try scratch.write("not a certificate", to: "root.txt")])
        #expect(notPEM.status != 0 && notPEM.stderr.contains("is not one PEM certificate") && !notPEM.stderr.contains("HOST:PORT"), "\(notPEM.stderr)")
    }

    /// Usage mistakes: a program without `--` gets a one-line hint; a subcommand's own
    /// validation error shows that subcommand's usage, not the root's; both exit 64. A launch
    /// that fails exits 125, told apart from the program's own status.
    @Test func usageMistakesAndExitCodes() async throws {
        let scratch = try Scratch()
        let noTerminator = try await run(veilBinary, ["launch", "--service", "app", "--tee", "simulated", "/bin/echo", "hi"], scratch: scratch)
        #expect(noTerminator.status == 64, "\(noTerminator.stderr)")
        #expect(noTerminator.stderr.contains("put `--` before the program") && noTerminator.stderr.count < 300, "\(noTerminator.stderr)")
        let noTEE = try await run(veilBinary, ["coordinator", "--data-dir", scratch.path + "/d"], scratch: scratch)
        #expect(noTEE.status == 64 && noTEE.stderr.contains("--tee is required"), "\(noTEE.stderr)")
        #expect(noTEE.stderr.contains("veil coordinator") && !noTEE.stderr.contains("<subcommand>"), "the subcommand's usage: \(noTEE.stderr)")
        #expect(noTEE.stderr.contains("veil help coordinator"), "\(noTEE.stderr)")
        let refused = try await run(veilBinary, ["launch", "--service", "app", "--tee", "simulated", "--coordinator", "127.0.0.1:\(freePort())",
                                                 "--root-ca", "/nonexistent.pem", "--", "/bin/true"], scratch: scratch)
        #expect(refused.status == 125, "a launch that could not launch: \(refused.stderr)")
    }

    /// `veil manifest validate --launch-host` finds, before the set-once commit, a `Files` target
    /// the launcher would refuse on this host (a disk filesystem); memory paths and
    /// `AllowDiskFiles` services pass.
    @Test func launchHostCheckFindsDiskTargetsBeforeTheManifestIsSet() async throws {
        let scratch = try Scratch()
        let disk = repositoryRoot + "/.build/veil-launch-host-check/secret.txt"
        let measurement = String(repeating: "11", count: 32)
        let manifest = try scratch.write(#"""
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurement)"}},
             "Services": {"ondisk": {"Package": "p", "Parameters": {"Files": {"\#(disk)": "x", "/dev/shm/veil-check/ok.txt": "y"}}},
                          "allowed": {"Package": "p", "AllowDiskFiles": true, "Parameters": {"Files": {"\#(disk)": "x"}}}},
             "Config": {"AllowSimulation": true}}
            """#, to: "manifest.json")
        let plain = try await run(veilBinary, ["manifest", "validate", manifest], scratch: scratch)
        #expect(plain.status == 0, "\(plain.stderr)")
        let checked = try await run(veilBinary, ["manifest", "validate", manifest, "--launch-host"], scratch: scratch)
        #expect(checked.status != 0, "\(checked.stdout)")
        #expect(checked.stderr.contains("$.Services.ondisk.Parameters.Files[\"\(disk)\"]") && checked.stderr.contains("disk filesystem"), "\(checked.stderr)")
        #expect(checked.stderr.contains("1 problem") && !checked.stderr.contains("/dev/shm/veil-check") && !checked.stderr.contains("allowed"), "\(checked.stderr)")
    }

    /// `veil manifest validate` says, per SGX/TDX package, which TCB statuses and advisories it
    /// accepts, and warns about a package that accepts out-of-date platforms.
    @Test func validateExplainsEachPackagesTCBAcceptance() async throws {
        let scratch = try Scratch()
        let manifest = try scratch.write(#"""
            {"Packages": {"strict": {"Kind": "sgx", "UniqueID": "\#(String(repeating: "11", count: 32))"},
                          "lenient": {"Kind": "tdx", "MRTD": "\#(String(repeating: "22", count: 48))", "RTMR1": "\#(String(repeating: "33", count: 48))",
                                      "AcceptedTCBStatuses": ["UpToDate", "OutOfDate"], "AcceptedAdvisories": ["INTEL-SA-00615"]}},
             "Services": {}}
            """#, to: "manifest.json")
        let result = try await run(veilBinary, ["manifest", "validate", manifest], scratch: scratch)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("tcb: package 'strict' (sgx) accepts UpToDate (the platform is at Intel's latest TCB); any advisories"), "\(result.stdout)")
        #expect(result.stdout.contains("tcb: package 'lenient' (tdx) accepts UpToDate (") && result.stdout.contains("OutOfDate (microcode, firmware")
                && result.stdout.contains("only advisories INTEL-SA-00615"), "\(result.stdout)")
        #expect(result.stderr.contains("warning: package 'lenient' (tdx) accepts OutOfDate: platforms behind Intel's latest TCB recovery"), "\(result.stderr)")
        #expect(!result.stderr.contains("'strict'"), "\(result.stderr)")
    }

    /// The launcher checks its service's provisioning targets before it activates: a target on
    /// a disk filesystem or behind a symlink fails the launch (exit 125) naming the path, and
    /// the service's `MaxActivations` is untouched; the one good service still launches.
    @Test func theLauncherChecksItsTargetsBeforeActivating() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let disk = repositoryRoot + "/.build/veil-launch-preflight-\(UUID().uuidString.prefix(6))"
        let memory = "/dev/shm/veil-preflight-\(UUID().uuidString.prefix(6))"
        try FileManager.default.createDirectory(atPath: memory, withIntermediateDirectories: true)
        try FileManager.default.createSymbolicLink(atPath: memory + "/link", withDestinationPath: "/dev/shm")
        defer { try? FileManager.default.removeItem(atPath: memory) }
        let command = ["/bin/true"]
        var packages: [String] = [], services: [String] = []
        for (name, target) in [("ondisk", disk + "/secret.txt"), ("linked", memory + "/link/secret.txt"), ("good", memory + "/ok/secret.txt")] {
            let measurement = try await coordinator.measure(service: name, command: command)
            packages.append(#""\#(name)": {"Kind": "simulated", "Measurement": "\#(measurement)"}"#)
            services.append(#""\#(name)": {"Package": "\#(name)", "MaxActivations": 1, "Parameters": {"Files": {"\#(target)": "x"}}}"#)
        }
        let set = try await coordinator.setManifest("""
            {"Packages": {\(packages.joined(separator: ","))}, "Services": {\(services.joined(separator: ","))}, "Config": {"AllowSimulation": true}}
            """)
        #expect(set.status == 0, "\(set.stderr)")

        let ondisk = try await coordinator.veil(coordinator.launchArguments(service: "ondisk", command: command))
        #expect(ondisk.status == 125, "\(ondisk.stderr)")
        #expect(ondisk.stderr.contains(disk) && ondisk.stderr.contains("disk filesystem") && ondisk.stderr.contains("no activation was used"), "\(ondisk.stderr)")
        let linked = try await coordinator.veil(coordinator.launchArguments(service: "linked", command: command))
        #expect(linked.status == 125 && linked.stderr.contains("\(memory)/link is a symlink"), "\(linked.stderr)")
        #expect(!FileManager.default.fileExists(atPath: disk), "nothing was written")
        let good = try await coordinator.veil(coordinator.launchArguments(service: "good", command: command))
        #expect(good.status == 0, "\(good.stderr)")

        let status = try await coordinator.veil(["status", "--output", "json"])
        let activations = (try JSONSerialization.jsonObject(with: Data(status.stdout.utf8)) as? [String: Any])?["activations"] as? [String: Int]
        #expect(activations?["ondisk"] ?? 0 == 0 && activations?["linked"] ?? 0 == 0, "refused launches used no activation: \(status.stdout)")
        #expect(activations?["good"] == 1, "\(status.stdout) \(status.stderr)")
    }

    /// `veil completion bash|zsh|fish` prints a script naming the subcommands; bash accepts it.
    @Test func completionScriptsAreGenerated() async throws {
        let scratch = try Scratch()
        for shell in ["bash", "zsh", "fish"] {
            let script = try await run(veilBinary, ["completion", shell], scratch: scratch)
            #expect(script.status == 0 && script.stdout.contains("attest") && script.stdout.contains("coordinator"), "\(shell): \(script.stderr)")
        }
        let bash = try await run(veilBinary, ["completion", "bash"], scratch: scratch)
        let sourced = try await run("/bin/bash", ["-c", "source \(try scratch.write(bash.stdout, to: "veil.bash")) && complete -p veil"], scratch: scratch)
        #expect(sourced.status == 0 && sourced.stdout.contains("veil"), "\(sourced.stdout) \(sourced.stderr)")
    }

    /// `veil measure -o json` carries the same measurement as the text output, and says of what.
    @Test func measureHasJSONOutput() async throws {
        let scratch = try Scratch()
        let text = try await run(veilBinary, ["measure", "--service", "web", "--", "/bin/true"], scratch: scratch)
        let json = try await run(veilBinary, ["measure", "--service", "web", "-o", "json", "--", "/bin/true"], scratch: scratch)
        let object = try JSONSerialization.jsonObject(with: Data(json.stdout.utf8)) as? [String: Any]
        #expect(object?["measurement"] as? String == text.stdout.trimmingCharacters(in: .whitespacesAndNewlines), "\(json.stdout)")
        #expect(object?["of"] as? String == "service" && object?["service"] as? String == "web")
        let coordinator = try await run(veilBinary, ["measure", "--coordinator", "--output", "json"], scratch: scratch)
        #expect((try JSONSerialization.jsonObject(with: Data(coordinator.stdout.utf8)) as? [String: Any])?["of"] as? String == "coordinator")
    }

    /// Every command's help, nested ones included: paragraphs are wrapped by the parser
    /// alone, so no line inside a paragraph ends short (ragged source line breaks).
    @Test func helpTextsWrapCleanly() async throws {
        let scratch = try Scratch()
        var pending: [[String]] = [[]]
        var checked = 0
        while let path = pending.popLast() {
            let help = try await run(veilBinary, path + ["--help"], scratch: scratch)
            #expect(help.status == 0, "\(path): \(help.stderr)")
            checked += 1
            let lines = help.stdout.split(separator: "\n", omittingEmptySubsequences: false).map(String.init)
            // The prose before USAGE: a short line followed by more text of the same paragraph is ragged.
            let prose = lines.prefix { !$0.hasPrefix("USAGE:") }
            for (line, next) in zip(prose, prose.dropFirst()) where !line.isEmpty && line.count < 50 && !next.isEmpty && !next.hasPrefix("- ") && !next.hasPrefix(" ") {
                Issue.record("veil \(path.joined(separator: " ")) --help: ragged line '\(line)' before '\(next)'")
            }
            // Subcommands: "  name   description" lines after SUBCOMMANDS:.
            guard let start = lines.firstIndex(of: "SUBCOMMANDS:") else { continue }
            for line in lines[(start + 1)...] where line.hasPrefix("  ") && !line.hasPrefix("   ") {
                guard let name = line.split(separator: " ").first, name != "help", !name.hasPrefix("See") else { continue }
                pending.append(path + [String(name).replacingOccurrences(of: " (default)", with: "")])
            }
        }
        #expect(checked > 30, "\(checked) commands")
    }

    /// `--log-format json`: every line of the coordinator's log is one JSON object.
    @Test func jsonLogsAreOneObjectPerLine() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch, arguments: ["--log-format", "json"])
        let process = try #require(coordinator.process)
        _ = await eventually(within: 10) { process.stderr.contains("coordinator ready") }
        let log = process.stderr
        let lines = log.split(separator: "\n")
        let objects = lines.compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
        #expect(!lines.isEmpty && objects.count == lines.count, "every line is a JSON object: \(log)")
        let ready = try #require(objects.first { $0["message"] as? String == "coordinator ready" }, "\(log)")
        #expect(ready["level"] as? String == "info" && ready["label"] as? String == "veil.coordinator")
        #expect((ready["metadata"] as? [String: String])?["mesh"] == coordinator.meshAddress, "\(ready)")
    }

    /// A listener that cannot bind names its address and flag, and "ready" is never logged.
    @Test func aTakenPortIsNamedAndNothingClaimsReadiness() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let second = try await run(veilBinary, [
            "coordinator", "--tee", "simulated", "--data-dir", scratch.path + "/second", "--client-addr", "127.0.0.1:\(freePort())",
            "--mesh-addr", coordinator.meshAddress,
        ], scratch: scratch, timeout: 30)
        #expect(second.status != 0)
        #expect(second.stderr.contains("cannot listen on \(coordinator.meshAddress) for the mesh API: the address is already in use")
                && second.stderr.contains("--mesh-addr"), "\(second.stderr)")
        #expect(!second.stderr.contains("coordinator ready"), "\(second.stderr)")
    }

    /// A different root at an address pinned before is refused, with both fingerprints, until
    /// `--replace` (like SSH's changed host key); the pin is untouched by the refusal.
    @Test func reattestingAnAddressWithAnotherRootNeedsReplace() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let pinned = coordinator.environment["VEIL_CONFIG_DIR"]! + "/" + coordinator.clientAddress.replacingOccurrences(of: ":", with: "_") + ".pem"
        let before = try String(contentsOfFile: pinned, encoding: .utf8)
        // The same address, a fresh state: a new root.
        await coordinator.process?.stop()
        try FileManager.default.removeItem(atPath: coordinator.dataDirectory)
        try await coordinator.start(attest: false)
        let attest = ["attest", "--allow-simulation", "--simulation-key", coordinator.simulationKey]
        let refused = try await coordinator.veil(attest)
        #expect(refused.status != 0)
        let fingerprints = refused.stderr.matches(of: /sha256:[0-9a-f]{64}/).map { String($0.output) }
        #expect(Set(fingerprints).count == 2, "both fingerprints named: \(refused.stderr)")
        #expect(refused.stderr.contains("--replace"), "\(refused.stderr)")
        #expect(try String(contentsOfFile: pinned, encoding: .utf8) == before, "a refusal changes no pin")
        let replaced = try await coordinator.veil(attest + ["--replace"])
        #expect(replaced.status == 0, "\(replaced.stderr)")
        #expect(try String(contentsOfFile: pinned, encoding: .utf8) != before)
        // The same root again needs nothing.
        #expect(try await coordinator.veil(attest).status == 0)
    }

    @Test func pinnedRootFromAnotherCoordinatorIsRefused() async throws {
        let first = try await CoordinatorProcess(scratch: try Scratch())
        let second = try await CoordinatorProcess(scratch: try Scratch())
        let result = try await first.veil(["status", "--root-ca", second.rootPath])
        #expect(result.status != 0)
        #expect(result.stderr.contains("TLS") || result.stderr.contains("certificate"), "\(result.stderr)")
    }
}
