import Foundation
import Glibc
import Testing

/// SIGKILL the coordinator at random moments of a write loop (secret sets, package updates —
/// manifest changes —, activations counted against a quota, protected-file versions recorded at
/// activation), restart it, and check: the state always opens, and every acknowledged change
/// is there (an unacknowledged one may or may not be).
@Suite(.timeLimit(.minutes(30))) struct CrashConsistencyTests {
    static let rounds = Int(ProcessInfo.processInfo.environment["VEIL_CRASH_ROUNDS"] ?? "") ?? 200

    /// Per-round problems are recorded as they happen (they fail the run); the totals are
    /// checked here, in the test's own context.
    @Test func acknowledgedChangesSurviveSIGKILL() async throws {
        let totals = try await crashLoop()
        print("crash consistency: \(Self.rounds) SIGKILLs, \(totals.changes) acknowledged changes (protected-file versions recorded in \(totals.protectedFileRounds) rounds), \(totals.lostWrites) lost")
        #expect(totals.problems.isEmpty, "\(totals.problems.joined(separator: "\n"))")
        #expect(totals.lostWrites == 0)
        #expect(totals.changes >= Self.rounds, "the writer made too few changes to mean anything: \(totals.changes)")
        #expect(totals.protectedFileRounds >= Self.rounds / 10, "too few rounds recorded a protected-file version: \(totals.protectedFileRounds)")
    }

    struct Totals {
        var changes = 0
        var lostWrites = 0
        var protectedFileRounds = 0
        var problems: [String] = []
    }

    struct SetUpFailed: Error { let what: String }

    func crashLoop() async throws -> Totals {
        var totals = Totals()
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let openssl = which("openssl") ?? "/usr/bin/openssl"
        let (cert, key) = (scratch.path + "/writer.pem", scratch.path + "/writer.key")
        guard try await run(openssl, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                                "-subj", "/CN=writer"], scratch: scratch).status == 0
        else { throw SetUpFailed(what: "openssl req") }
        let pem = try String(contentsOfFile: cert, encoding: .utf8).replacingOccurrences(of: "\n", with: "\\n")
        let measurement = try await coordinator.measure(service: "app", command: ["/bin/true"])
        let pfMeasurement = try await coordinator.measure(service: "pf", command: ["/bin/true"])
        // Protected-file plaintext goes to memory; the coordinator's state stays on disk.
        let memory = "/dev/shm/veil-crash-\(UUID().uuidString.prefix(8))"
        try FileManager.default.createDirectory(atPath: memory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: memory) }
        let pfKey = scratch.path + "/pf.key", pfPath = memory + "/records"
        try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: pfKey))
        // Version 1 is older than every version the writer seals: presenting it makes the
        // coordinator say which version it has recorded, without changing it.
        let probe = scratch.path + "/pf-probe.vpf"
        guard try await coordinator.veil(["protect", "seal", "--key", pfKey, "--path", pfPath, "--version", "1", try scratch.write("base\n", to: "pf-base"), probe]).status == 0
        else { throw SetUpFailed(what: "veil protect seal") }
        let manifestFile = try scratch.write("""
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(measurement)"},
                          "ver": {"Kind": "simulated", "Measurement": "\(measurement)", "SecurityVersion": 0},
                          "pfpkg": {"Kind": "simulated", "Measurement": "\(pfMeasurement)"}},
             "Services": {"app": {"Package": "app", "MaxActivations": 100000}, "versioned": {"Package": "ver"},
                          "pf": {"Package": "pfpkg", "ProtectedFilesKey": "pfkey"}},
             "Secrets": {"token": {"Type": "plain", "UserDefined": true}, "pfkey": {"Type": "symmetric-key", "Size": 256, "UserDefined": true}},
             "Users": {"writer": {"Certificate": "\(pem)", "Roles": ["secrets", "packages"]}},
             "Roles": {"secrets": {"ResourceType": "Secrets", "ResourceNames": ["token"], "Actions": ["ReadSecret", "WriteSecret"]},
                       "packages": {"ResourceType": "Packages", "ResourceNames": ["ver"], "Actions": ["UpdatePackage"]}},
             "Config": {"AllowSimulation": true}}
            """, to: "manifest.json")
        let set = try await coordinator.veil(["manifest", "set", manifestFile, "--root-ca", coordinator.rootPath, "--secret", "pfkey=\(pfKey)"])
        guard set.status == 0 else { throw SetUpFailed(what: "manifest set: \(set.stderr)") }
        let launch = [veilBinary] + coordinator.launchArguments(service: "app", command: ["/bin/true"])
        let launchJSON = String(decoding: try JSONSerialization.data(withJSONObject: launch), as: UTF8.self)
        let pfLaunch = [veilBinary] + coordinator.launchArguments(service: "pf", command: []).dropLast()  // without "--"
        let pfLaunchJSON = String(decoding: try JSONSerialization.data(withJSONObject: Array(pfLaunch)), as: UTF8.self)
        func recordedVersion() async throws -> Int? {
            let result = try await coordinator.veil(Array(pfLaunch.dropFirst()) + ["--protected-file", "\(probe)=\(pfPath)", "--", "/bin/true"])
            if result.status == 0 { return 1 }
            guard let range = result.stderr.firstRange(of: "older than the recorded version "),
                let version = Int(result.stderr[range.upperBound...].prefix(while: \.isNumber))
            else {
                totals.problems.append("the probe was refused for another reason: \(result.stderr)")
                return nil
            }
            return version
        }

        var acknowledged = (secret: String?.none, version: Int?.none, activations: 0, pf: Int?.none)
        var lostWrites = 0
        var pfChanges = 0
        var changes = 0
        var next = 1
        var lastStop = ""
        for round in 0..<Self.rounds {
            let writer = try Spawned(
                "/usr/bin/env", ["python3", repositoryRoot + "/Tests/Scripts/crash_writer.py", coordinator.clientAddress, coordinator.rootPath, cert, key,
                                 "\(next)", launchJSON, pfKey, pfPath, pfLaunchJSON],
                environment: coordinator.environment, scratch: scratch)
            // Kill at a random moment after the first acknowledged change: how long Python and the
            // first TLS handshake take depends on the machine, the writes after them should not.
            guard await eventually(within: 60, { writer.stdout.contains("acknowledged") || !writer.isRunning }) else {
                totals.problems.append("round \(round): the writer made no change within 60 s: \(await writer.wait(timeout: 5).stderr)")
                break
            }
            try await Task.sleep(for: .milliseconds(Int.random(in: 0...600)))
            coordinator.process?.kill9()
            let output = await writer.wait(timeout: 60)
            guard let line = output.stdout.split(separator: "\n").last,
                let report = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            else {
                totals.problems.append("round \(round): no report from the writer: \(output.stdout) \(output.stderr)")
                break
            }
            // The state must open after every kill.
            try await coordinator.start(attest: false)

            let secretAcked = report["secret"] as? String, secretInFlight = report["secret_in_flight"] as? String
            let versionAcked = report["version"] as? Int, versionInFlight = report["version_in_flight"] as? Int
            let activationsAcked = report["activations"] as? Int ?? 0, activationInFlight = report["activation_in_flight"] as? Int ?? 0
            changes += report["changes"] as? Int ?? 0
            lastStop = report["stopped_by"] as? String ?? ""
            let pfAcked = report["pf_version"] as? Int, pfInFlight = report["pf_version_in_flight"] as? Int
            if let pfAcked { acknowledged.pf = pfAcked }
            if let secretAcked { acknowledged.secret = secretAcked }
            if let versionAcked { acknowledged.version = versionAcked }
            acknowledged.activations += activationsAcked

            let stored = try await currentState(coordinator, cert: cert, key: key, scratch: scratch)
            let secretOK = stored.secret == acknowledged.secret || (secretInFlight != nil && stored.secret == secretInFlight)
            let versionOK = stored.version == (acknowledged.version ?? 0) || (versionInFlight != nil && stored.version == versionInFlight)
            let activationsOK = (acknowledged.activations...(acknowledged.activations + activationInFlight)).contains(stored.activations)
            // The probe records version 1 only when nothing was recorded yet.
            let storedPF = try await recordedVersion()
            let pfOK = storedPF == (acknowledged.pf ?? 1) || (pfInFlight != nil && storedPF == pfInFlight)
            if !(secretOK && versionOK && activationsOK && pfOK) {
                lostWrites += 1
                totals.problems.append("""
                    round \(round): acknowledged \(acknowledged), in flight \(String(describing: secretInFlight)) \(String(describing: versionInFlight)) \
                    \(activationInFlight) \(String(describing: pfInFlight)); stored \(stored), protected-file version \(String(describing: storedPF))
                    """)
            }
            // What is stored now is the baseline (an in-flight change that landed counts).
            acknowledged = (stored.secret, stored.version, stored.activations, storedPF)
            pfChanges += pfAcked == nil ? 0 : 1
            next += (report["changes"] as? Int ?? 0) + 1
        }
        print("crash consistency: last writer stopped by: \(lastStop)")
        totals.changes = changes
        totals.lostWrites = lostWrites
        totals.protectedFileRounds = pfChanges
        return totals
    }

    func currentState(_ coordinator: CoordinatorProcess, cert: String, key: String, scratch: Scratch) async throws -> (secret: String?, version: Int, activations: Int) {
        let secret = try await coordinator.veil(["secret", "get", "token", "--user-cert", cert, "--user-key", key])
        let secretObject = (try? JSONSerialization.jsonObject(with: Data(secret.stdout.utf8)) as? [String: [String: String]])?["token"]
        let value = secretObject?["value"].flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }
        let manifest = try JSONSerialization.jsonObject(with: Data(try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/manifest").1.utf8)) as? [String: Any]
        let version = ((manifest?["Packages"] as? [String: Any])?["ver"] as? [String: Any])?["SecurityVersion"] as? Int ?? -1
        let status = try JSONSerialization.jsonObject(with: Data(try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status").1.utf8)) as? [String: Any]
        let activations = (status?["activations"] as? [String: Int])?["app"] ?? 0
        return (value, version, activations)
    }
}
