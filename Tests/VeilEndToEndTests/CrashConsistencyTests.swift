import Foundation
import Glibc
import Testing

/// SIGKILL the coordinator at random moments of a write loop (secret sets, package updates —
/// manifest changes —, activations counted against a quota), restart it, and check: the state always opens, and
/// every acknowledged change is there (an unacknowledged one may or may not be).
@Suite struct CrashConsistencyTests {
    static let rounds = Int(ProcessInfo.processInfo.environment["VEIL_CRASH_ROUNDS"] ?? "") ?? 200

    /// On a thread of its own: the loop blocks for minutes, and the test process's few
    /// cooperative threads must stay free for the async tests beside it.
    @Test func acknowledgedChangesSurviveSIGKILL() async throws {
        try await withCheckedThrowingContinuation { (continuation: CheckedContinuation<Void, any Error>) in
            Thread.detachNewThread { continuation.resume(with: Result { try self.crashLoop() }) }
        }
    }

    func crashLoop() throws {
        let scratch = try Scratch()
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let openssl = which("openssl") ?? "/usr/bin/openssl"
        let (cert, key) = (scratch.path + "/writer.pem", scratch.path + "/writer.key")
        #expect(try run(openssl, ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2",
                                  "-subj", "/CN=writer"], scratch: scratch).status == 0)
        let pem = try String(contentsOfFile: cert, encoding: .utf8).replacingOccurrences(of: "\n", with: "\\n")
        let measurement = try coordinator.measure(service: "app", command: ["/bin/true"])
        #expect(try coordinator.setManifest("""
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(measurement)"},
                          "ver": {"Kind": "simulated", "Measurement": "\(measurement)", "SecurityVersion": 0}},
             "Services": {"app": {"Package": "app", "MaxActivations": 100000}, "versioned": {"Package": "ver"}},
             "Secrets": {"token": {"Type": "plain", "UserDefined": true}},
             "Users": {"writer": {"Certificate": "\(pem)", "Roles": ["secrets", "packages"]}},
             "Roles": {"secrets": {"ResourceType": "Secrets", "ResourceNames": ["token"], "Actions": ["ReadSecret", "WriteSecret"]},
                       "packages": {"ResourceType": "Packages", "ResourceNames": ["ver"], "Actions": ["UpdatePackage"]}},
             "Config": {"AllowSimulation": true}}
            """).status == 0)
        let launch = [veilBinary] + coordinator.launchArguments(service: "app", command: ["/bin/true"])
        let launchJSON = String(decoding: try JSONSerialization.data(withJSONObject: launch), as: UTF8.self)

        var acknowledged = (secret: String?.none, version: Int?.none, activations: 0)
        var lostWrites = 0
        var changes = 0
        var next = 1
        var lastStop = ""
        for round in 0..<Self.rounds {
            let writer = try Spawned(
                "/usr/bin/env", ["python3", repositoryRoot + "/Tests/Scripts/crash_writer.py", coordinator.clientAddress, coordinator.rootPath, cert, key,
                                 "\(next)", launchJSON],
                environment: coordinator.environment, scratch: scratch)
            usleep(UInt32.random(in: 100_000...700_000))
            coordinator.process?.kill9()
            let output = writer.wait(timeout: 60)
            guard let line = output.stdout.split(separator: "\n").last,
                let report = try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any]
            else {
                Issue.record("round \(round): no report from the writer: \(output.stdout) \(output.stderr)")
                break
            }
            // The state must open after every kill.
            try coordinator.start(attest: false)

            let secretAcked = report["secret"] as? String, secretInFlight = report["secret_in_flight"] as? String
            let versionAcked = report["version"] as? Int, versionInFlight = report["version_in_flight"] as? Int
            let activationsAcked = report["activations"] as? Int ?? 0, activationInFlight = report["activation_in_flight"] as? Int ?? 0
            changes += report["changes"] as? Int ?? 0
            lastStop = report["stopped_by"] as? String ?? ""
            if let secretAcked { acknowledged.secret = secretAcked }
            if let versionAcked { acknowledged.version = versionAcked }
            acknowledged.activations += activationsAcked

            let stored = try currentState(coordinator, cert: cert, key: key, scratch: scratch)
            let secretOK = stored.secret == acknowledged.secret || (secretInFlight != nil && stored.secret == secretInFlight)
            let versionOK = stored.version == (acknowledged.version ?? 0) || (versionInFlight != nil && stored.version == versionInFlight)
            let activationsOK = (acknowledged.activations...(acknowledged.activations + activationInFlight)).contains(stored.activations)
            if !(secretOK && versionOK && activationsOK) {
                lostWrites += 1
                Issue.record("round \(round): acknowledged \(acknowledged), in flight \(String(describing: secretInFlight)) \(String(describing: versionInFlight)) \(activationInFlight); stored \(stored)")
            }
            // What is stored now is the baseline (an in-flight change that landed counts).
            acknowledged = (stored.secret, stored.version, stored.activations)
            next += (report["changes"] as? Int ?? 0) + 1
        }
        print("crash consistency: last writer stopped by: \(lastStop)")
        print("crash consistency: \(Self.rounds) SIGKILLs, \(changes) acknowledged changes, \(lostWrites) lost")
        #expect(lostWrites == 0)
        #expect(changes >= Self.rounds, "the writer made too few changes to mean anything: \(changes)")
    }

    func currentState(_ coordinator: CoordinatorProcess, cert: String, key: String, scratch: Scratch) throws -> (secret: String?, version: Int, activations: Int) {
        let secret = try coordinator.veil(["secret", "get", "token", "--user-cert", cert, "--user-key", key])
        let secretObject = (try? JSONSerialization.jsonObject(with: Data(secret.stdout.utf8)) as? [String: [String: String]])?["token"]
        let value = secretObject?["value"].flatMap { Data(base64Encoded: $0) }.map { String(decoding: $0, as: UTF8.self) }
        let manifest = try JSONSerialization.jsonObject(with: Data(try coordinator.curl("GET", coordinator.clientAddress, "/api/v1/manifest").1.utf8)) as? [String: Any]
        let version = ((manifest?["Packages"] as? [String: Any])?["ver"] as? [String: Any])?["SecurityVersion"] as? Int ?? -1
        let status = try JSONSerialization.jsonObject(with: Data(try coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status").1.utf8)) as? [String: Any]
        let activations = (status?["activations"] as? [String: Int])?["app"] ?? 0
        return (value, version, activations)
    }
}
