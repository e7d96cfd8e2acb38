import Crypto
import Foundation
import Glibc
import Testing

/// Coordinator replicas on a real 3-member etcd cluster (TLS with client certificates), all
/// started and killed by PID in the test.
@Suite(.serialized, .timeLimit(.minutes(10))) struct HighAvailabilityTests {
    /// A deployment: etcd, replicas sharing one simulation platform key, the manifest set.
    final class Deployment {
        let scratch: Scratch
        let etcd: EtcdCluster
        let prefix = "/veil/test-\(UUID().uuidString.prefix(8))"
        var replicas: [CoordinatorProcess] = []
        let simulationKey: String

        init(replicas count: Int) async throws {
            scratch = try Scratch()
            etcd = try await EtcdCluster(scratch: scratch)
            simulationKey = scratch.path + "/simulation-platform-key.pem"
            for index in 0..<count { try await addReplica(index) }
        }

        @discardableResult
        func addReplica(_ index: Int, binary: String? = nil) async throws -> CoordinatorProcess {
            let replica = try await CoordinatorProcess(
                scratch: scratch, arguments: etcd.storeArguments(prefix: prefix) + ["--log-level", "info"],
                dataDirectory: scratch.path + "/replica\(index)", simulationKey: simulationKey, attest: false, binary: binary)
            if index == 0 {
                // The first replica creates the state; everyone pins its root.
                let attest = try await replica.veil(["attest", "--allow-simulation", "--simulation-key", simulationKey, "--root-output", replica.rootPath])
                try #require(attest.status == 0, "\(attest.stderr)")
            }
            replicas.append(replica)
            return replica
        }

        var meshAddresses: String { replicas.map(\.meshAddress).joined(separator: ",") }

        /// `veil status --output json` of one replica.
        func status(_ replica: CoordinatorProcess) async throws -> [String: Any] {
            let result = try await replica.veil(["status", "--coordinator", replica.clientAddress, "--root-ca", replica.rootPath, "--output", "json"])
            return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? ["error": result.stderr]
        }

        /// Waits until `replica` serves the state (it obtained the key from a peer).
        func waitUntilServing(_ replica: CoordinatorProcess, timeout: TimeInterval = 30) async throws {
            let deadline = Date().addingTimeInterval(timeout)
            while Date() < deadline {
                let (code, body) = await (try? replica.curl("GET", replica.clientAddress, "/api/v1/status")) ?? (0, "")
                // Not "recovery", nor "recovered": a replica that just got the state key closes its
                // recovery listeners and reopens them as the coordinator a moment later.
                if code == 200 && (body.contains("\"awaitingManifest\"") || body.contains("\"accepting\"")) { return }
                try? await Task.sleep(for: .milliseconds(100))
            }
            Issue.record("replica \(replica.dataDirectory) not serving after \(timeout) s: \(replica.process?.stderr.suffix(2000) ?? "")")
        }

        /// `veil-bench load`: activations with failover over `addresses` (default: every replica).
        func load(service: String, measurement: String, count: Int, concurrency: Int, addresses: String? = nil, patience: Int = 90) throws -> Spawned {
            try Spawned(veilBenchBinary, [
                "load", "--coordinator", addresses ?? meshAddresses, "--root-ca", replicas[0].rootPath, "--simulation-key", simulationKey,
                "--service", service, "--measurement", measurement, "--count", "\(count)", "--concurrency", "\(concurrency)", "--output", "json",
                "--patience", "\(patience)",
            ], scratch: scratch)
        }
    }

    static let measurement = String(repeating: "ab", count: 32)
    static func manifest(quota: Int) -> String {
        #"""
        {"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurement)"}},
         "Services": {"free": {"Package": "p", "Parameters": {"Env": {"TOKEN": "{{ hex .Secrets.token }}"}}},
                      "quota": {"Package": "p", "MaxActivations": \#(quota)}},
         "Secrets": {"token": {"Type": "plain", "Size": 16}},
         "Config": {"AllowSimulation": true}}
        """#
    }

    struct LoadReport: Decodable {
        var succeeded: Int
        var refused: [String: Int]
        var failed: Int
        var failovers: Int
        var lastError: String?
        var lastFailure: String?
        var seconds: Double?
    }

    func report(_ load: Spawned, timeout: TimeInterval = 240) async throws -> LoadReport {
        let result = await load.wait(timeout: timeout)
        try #require(result.status == 0, "\(result.stderr)")
        return try JSONDecoder().decode(LoadReport.self, from: Data(result.stdout.utf8))
    }

    /// 2,000 activations from 8 clients over 3 replicas while a replica and then the etcd
    /// leader are killed: every activation of the unlimited service succeeds, the limited
    /// one gets exactly its quota, the history verifies and all replicas agree afterwards.
    @Test func activationsSurviveLosingAReplicaAndTheEtcdLeader() async throws {
        let deployment = try await Deployment(replicas: 3)
        for replica in deployment.replicas.dropFirst() { try await deployment.waitUntilServing(replica) }
        let set = try await deployment.replicas[1].setManifest(Self.manifest(quota: 500))
        try #require(set.status == 0, "\(set.stderr)")

        let free = try deployment.load(service: "free", measurement: Self.measurement, count: 1_400, concurrency: 6)
        let quota = try deployment.load(service: "quota", measurement: Self.measurement, count: 600, concurrency: 2)
        // Failures land mid-load: the loads run for several seconds.
        try? await Task.sleep(for: .milliseconds(1500))
        deployment.replicas[2].process?.kill9()
        try? await Task.sleep(for: .milliseconds(1500))
        let leader = try await #require(try deployment.etcd.leader())
        deployment.etcd.kill(leader)

        let freeReport = try await report(free)
        let quotaReport = try await report(quota)
        print("HA loads:", freeReport, quotaReport)
        #expect(freeReport.succeeded == 1_400 && freeReport.failed == 0, "\(freeReport)")
        #expect(freeReport.failovers > 0, "the killed replica made clients fail over")
        // Exactly 500 counted; at most 500 seen by clients (a reply lost with a killed replica is counted, not repeated).
        #expect(quotaReport.succeeded <= 500 && quotaReport.succeeded >= 495, "\(quotaReport)")
        #expect(quotaReport.succeeded + quotaReport.refused["activationLimitReached", default: 0] + quotaReport.failed == 600, "\(quotaReport)")
        #expect(quotaReport.failed == 0, "\(quotaReport)")

        // Back to full strength: the killed replica and etcd member return.
        try deployment.etcd.start(leader)
        try await deployment.replicas[2].start(attest: false)
        try await deployment.waitUntilServing(deployment.replicas[2])
        var statuses: [[String: Any]] = []
        // Every replica reads the quota count from the shared state once it serves again.
        _ = await eventually(within: 10) {
            statuses = []
            for replica in deployment.replicas { statuses.append((try? await deployment.status(replica)) ?? [:]) }
            return statuses.allSatisfy { ($0["activations"] as? [String: Int])?["quota"] == 500 }
        }
        for status in statuses {
            #expect((status["activations"] as? [String: Int])?["quota"] == 500, "\(status)")
        }
        #expect(Set(statuses.compactMap { $0["generation"] as? Int }).count == 1, "same generation everywhere: \(statuses)")
        #expect(Set(statuses.compactMap { $0["manifestDigest"] as? String }).count == 1)
        let attest = try await deployment.replicas[0].veil([
            "attest", "--coordinator", deployment.replicas.map(\.clientAddress).joined(separator: ","), "--allow-simulation", "--simulation-key",
            deployment.simulationKey,
        ])
        #expect(attest.status == 0 && attest.stdout.contains("entries verified"), "\(attest.stderr)")
    }

    /// A change through one replica is seen through another within a second; all replicas
    /// restarted keep the same root, manifest, secrets and history.
    @Test func changesPropagateAndSurviveRestartingEveryReplica() async throws {
        let deployment = try await Deployment(replicas: 2)
        try await deployment.waitUntilServing(deployment.replicas[1])
        let alice = try await UserCLITests().makeUser("alice", in: deployment.scratch)
        let manifest: [String: Any] = [
            "Packages": ["p": ["Kind": "simulated", "Measurement": Self.measurement]],
            "Services": ["free": ["Package": "p"]],
            "Secrets": ["apiKey": ["Type": "plain", "UserDefined": true]],
            "Users": ["alice": ["Certificate": try String(contentsOfFile: alice.cert, encoding: .utf8), "Roles": ["keys"]]],
            "Roles": ["keys": ["ResourceType": "Secrets", "ResourceNames": ["apiKey"], "Actions": ["ReadSecret", "WriteSecret"]]],
            "Config": ["AllowSimulation": true],
        ]
        let (first, second) = (deployment.replicas[0], deployment.replicas[1])
        #expect(try await first.setManifest(String(decoding: try JSONSerialization.data(withJSONObject: manifest), as: UTF8.self)).status == 0)
        let asAlice = ["VEIL_USER_CERT": alice.cert, "VEIL_USER_KEY": alice.key]
        let set = try await first.veil(["secret", "set", "apiKey", "--from-literal", "v1", "--coordinator", first.clientAddress, "--root-ca", first.rootPath], environment: asAlice)
        #expect(set.status == 0, "\(set.stderr)")
        // Visible through the other replica within 1 s of the write (a read started by then sees it;
        // the CLI's own start-up time is not the replica's).
        let written = Date()
        var seenBy: TimeInterval?
        while seenBy == nil && Date().timeIntervalSince(written) < 10 {
            let asked = Date().timeIntervalSince(written)
            let read = try await second.veil(["secret", "get", "apiKey", "--coordinator", second.clientAddress, "--root-ca", second.rootPath], environment: asAlice)
            if read.status == 0 && read.stdout.contains(Data("v1".utf8).base64EncodedString()) { seenBy = asked }
        }
        #expect((seenBy ?? 99) < 1, "the secret set through one replica is read through the other within 1 s (read started at \(seenBy ?? -1) s)")

        let before = try await first.veil(["manifest", "log", "--coordinator", first.clientAddress, "--root-ca", first.rootPath]).stdout
        let root = try String(contentsOfFile: first.rootPath, encoding: .utf8)
        for replica in deployment.replicas { await replica.process?.stop() }
        for replica in deployment.replicas { try await replica.start(attest: false) }
        for replica in deployment.replicas { try await deployment.waitUntilServing(replica) }
        let after = try await second.veil(["manifest", "log", "--coordinator", second.clientAddress, "--root-ca", second.rootPath])
        #expect(after.status == 0 && after.stdout == before, "same verified history after restarting every replica")
        #expect(try await second.veil(["certificate", "root", "--coordinator", second.clientAddress, "--root-ca", second.rootPath]).stdout == root)
        let read = try await second.veil(["secret", "get", "apiKey", "--coordinator", second.clientAddress, "--root-ca", second.rootPath], environment: asAlice)
        #expect(read.stdout.contains(Data("v1".utf8).base64EncodedString()))
    }

    /// A replica running other code (another measurement) is refused the state key and stays
    /// out; the serving replica says why.
    @Test func aReplicaWithAnotherMeasurementIsRefusedTheStateKey() async throws {
        let deployment = try await Deployment(replicas: 1)
        let modified = deployment.scratch.path + "/veil-modified"
        try FileManager.default.copyItem(atPath: veilBinary, toPath: modified)
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: modified))
        try handle.seekToEnd()
        try handle.write(contentsOf: Data("not the same code".utf8))
        try handle.close()
        let stranger = try await deployment.addReplica(1, binary: modified)
        // It stays without the key: long enough for its peer requests to have been answered.
        try? await Task.sleep(for: .seconds(4))
        let (code, body) = try await stranger.curl("GET", stranger.clientAddress, "/api/v1/status")
        #expect(code == 200 && body.contains("\"recovery\""), "the stranger has no state key: \(body)")
        let (activationCode, _) = try await stranger.curl("POST", stranger.meshAddress, "/api/v1/activation/nonce")
        #expect(activationCode == 503, "and serves nothing but recovery")
        #expect(deployment.replicas[0].process!.stderr.contains("state key refused to a peer"))
        #expect(stranger.process!.stderr.contains("peer could not provide the state key"))
    }

    /// etcd gone: writes answer 503 with the reason and nothing is acknowledged; when etcd
    /// returns, the same write succeeds.
    @Test func etcdUnreachableMeans503AndServiceResumes() async throws {
        let deployment = try await Deployment(replicas: 1)
        let replica = deployment.replicas[0]
        #expect(try await replica.setManifest(Self.manifest(quota: 5)).status == 0)
        for member in 0..<3 { deployment.etcd.kill(member) }
        let refused = try await report(try deployment.load(service: "quota", measurement: Self.measurement, count: 1, concurrency: 1, patience: 2))
        #expect(refused.succeeded == 0 && refused.failed == 1, "\(refused)")
        #expect(refused.lastError?.contains("state store is unavailable, nothing was changed") == true, "\(refused)")
        for member in 0..<3 { try deployment.etcd.start(member) }
        try await deployment.etcd.waitUntilHealthy()
        let resumed = try await report(try deployment.load(service: "quota", measurement: Self.measurement, count: 1, concurrency: 1))
        #expect(resumed.succeeded == 1, "\(resumed)")
        let status = try await deployment.status(replica)
        #expect((status["activations"] as? [String: Int])?["quota"] == 1, "the refused write was never counted: \(status)")
    }

    /// An old value put back into etcd is refused by the replicas that saw newer ones.
    @Test func anOldEtcdValuePutBackIsRefused() async throws {
        let deployment = try await Deployment(replicas: 1)
        let replica = deployment.replicas[0]
        let key = deployment.prefix + "/state"
        let old = try await #require(try deployment.etcd.value(key))
        #expect(try await replica.setManifest(Self.manifest(quota: 5)).status == 0)
        try await deployment.etcd.put(key, base64Value: old)
        try? await Task.sleep(for: .milliseconds(500))
        // A write now has to read the store: it finds the rollback and refuses.
        let refused = try await report(try deployment.load(service: "quota", measurement: Self.measurement, count: 1, concurrency: 1, patience: 2))
        #expect(refused.succeeded == 0, "\(refused)")
        #expect(replica.process!.stderr.contains("rollback refused"), "\(replica.process!.stderr.suffix(1500))")
        // Restarted, it refuses to start on the old value.
        await replica.process?.stop()
        let restart = try Spawned(veilBinary, ["coordinator", "--tee", "simulated", "--data-dir", replica.dataDirectory, "--simulation-key", deployment.simulationKey,
                                               "--client-addr", "127.0.0.1:\(freePort())", "--mesh-addr", "127.0.0.1:\(freePort())"] + deployment.etcd.storeArguments(prefix: deployment.prefix),
                                  scratch: deployment.scratch)
        let result = await restart.wait(timeout: 30)
        #expect(result.status != 0 && result.stderr.contains("rollback refused"), "\(result.stderr.suffix(1000))")
    }
}
