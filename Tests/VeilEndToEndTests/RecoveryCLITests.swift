import Foundation
import Testing

/// A coordinator whose sealing key changed starts in recovery; k of n holders restore it with `veil recover`.
@Suite(.timeLimit(.minutes(5))) struct RecoveryCLITests {
    func openssl(_ arguments: [String], scratch: Scratch) async throws {
        let result = try await run(which("openssl") ?? "/usr/bin/openssl", arguments, scratch: scratch)
        try #require(result.status == 0, "\(result.stderr)")
    }

    @Test func changedSealingKeyIsRecoveredWithTwoOfThreeKeys() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        var publicKeys: [String: String] = [:]
        for (name, algorithm) in [("rsa", ["-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"]),
                                  ("ec", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                                  ("spare", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"]),
                                  ("outsider", ["-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256"])] {
            try await openssl(["genpkey"] + algorithm + ["-out", "\(scratch.path)/\(name).pem"], scratch: scratch)
            try await openssl(["pkey", "-in", "\(scratch.path)/\(name).pem", "-pubout", "-out", "\(scratch.path)/\(name).pub"], scratch: scratch)
            publicKeys[name] = try String(contentsOfFile: "\(scratch.path)/\(name).pub", encoding: .utf8)
        }
        let manifest: [String: Any] = [
            "Packages": ["p": ["Kind": "simulated", "Measurement": String(repeating: "ab", count: 32)]],
            "Services": ["s": ["Package": "p"]],
            "RecoveryKeys": ["rsa": publicKeys["rsa"]!, "ec": publicKeys["ec"]!, "spare": publicKeys["spare"]!],
            "Config": ["AllowSimulation": true, "RecoveryThreshold": 2],
        ]
        #expect(try await coordinator.setManifest(String(decoding: try JSONSerialization.data(withJSONObject: manifest), as: UTF8.self)).status == 0)
        let before = try await coordinator.veil(["manifest", "get"]).stdout

        // The sealing key changes (new machine, lost key): the state no longer unseals.
        try Data((String(repeating: "5a", count: 32) + "\n").utf8).write(to: URL(fileURLWithPath: coordinator.dataDirectory + "/sealing-key.simulation-insecure"))
        try await coordinator.restart(attest: false)
        let (code, status) = try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status")
        #expect(code == 200 && status.contains("\"recovery\""), "\(status)")

        // Shares go only to the expected coordinator code: the measurement exactly as `veil measure --coordinator` prints it.
        let expected = try await coordinator.veil(["measure", "--coordinator"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(expected.hasPrefix("sha256:"))
        let recover = { (key: String) async throws -> RunResult in
            try await coordinator.veil([
                "recover", "--key", "\(scratch.path)/\(key).pem", "--allow-simulation", "--simulation-key", coordinator.simulationKey, "--expect", expected,
            ])
        }
        let wrongCode = try await coordinator.veil([
            "recover", "--key", "\(scratch.path)/rsa.pem", "--allow-simulation", "--simulation-key", coordinator.simulationKey, "--expect", "sha256:" + String(repeating: "00", count: 32),
        ])
        #expect(wrongCode.status != 0 && wrongCode.stderr.contains("not one the policy expects"), "\(wrongCode.stderr)")
        let outsider = try await recover("outsider")
        #expect(outsider.status != 0 && outsider.stderr.contains("not one of the coordinator's recovery keys"), "\(outsider.stderr)")
        let first = try await recover("rsa")
        #expect(first.status == 0 && first.stdout.contains("1 of 2"), "\(first.stdout)\(first.stderr)")
        #expect(try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status").1.contains("\"recovery\""), "one share is not enough")
        // Operators see the recovery in the metrics: in recovery, one of two shares in.
        let metrics = try await coordinator.curl("GET", coordinator.clientAddress, "/metrics")
        #expect(metrics.0 == 200)
        for (name, value) in [("veil_recovery_mode", 1.0), ("veil_recovery_shares_received", 1), ("veil_recovery_shares_required", 2), ("veil_simulated", 1)] {
            #expect(prometheusSample(metrics.1, name) == value, "\(name) in \(metrics.1)")
        }
        // A client holding a kept-alive connection while the last share arrives: the recovery
        // listener drains it on shutdown instead of tearing it down (which trapped the process).
        let holder = try Spawned("/usr/bin/python3", ["-c", Self.keepAliveClient, coordinator.clientAddress], scratch: scratch)
        defer { holder.stopInBackground() }
        #expect(await eventually(within: 10) { holder.stdout.contains("held") }, "\(holder.stderr)")
        let second = try await recover("ec")
        #expect(second.status == 0 && second.stdout.contains("recovered"), "\(second.stdout)\(second.stderr)")

        // It restarts normally with the same CA (the pinned root still works), manifest and history.
        let port = Int(coordinator.clientAddress.split(separator: ":").last!)!
        let recovered = await eventually(within: 10) {
            guard isListening(port: port) else { return false }
            return (try? await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status").1.contains("accepting")) == true
        }
        #expect(recovered)
        #expect(try await coordinator.veil(["manifest", "get"]).stdout == before)
        let attest = try await coordinator.veil(["attest", "--allow-simulation", "--simulation-key", coordinator.simulationKey])
        #expect(attest.status == 0 && attest.stdout.contains("history: 2 entries verified"), "\(attest.stdout)\(attest.stderr)")
        #expect(coordinator.process?.isRunning == true && !(coordinator.process?.stderr.contains("Fatal error") ?? true))
    }

    /// One request over TLS, then the connection held open (keep-alive) for 20 s.
    static let keepAliveClient = """
        import socket, ssl, sys, time
        host, port = sys.argv[1].rsplit(":", 1)
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        connection = context.wrap_socket(socket.create_connection((host, int(port))))
        connection.sendall(b"GET /api/v1/status HTTP/1.1\\r\\nHost: veil\\r\\n\\r\\n")
        connection.recv(65536)
        print("held", flush=True)
        time.sleep(20)
        """
}
