import Foundation
import Testing

/// docs/openapi.yaml against a live coordinator: schemathesis generates requests for every
/// documented operation (valid and invalid ones, unknown methods too) and checks each answer
/// against the document — status, content type, headers and body schema — and that none is a
/// 5xx. Run on the client listener with a manifest user's certificate, on the mesh listener, and
/// on a replica in recovery.
@Suite(.timeLimit(.minutes(10))) struct OpenAPITests {
    static let document = repositoryRoot + "/docs/openapi.yaml"

    /// Every check but `positive_data_acceptance`, which expects any schema-valid body to be
    /// accepted: a manifest's rules (packages that exist, names that do not collide) and
    /// base64 contents are more than a JSON schema states, and refusing them is the point.
    func schemathesis(
        _ base: String, tag: String, coordinator: CoordinatorProcess, root: String? = nil, certificate: (String, String)? = nil, excluding: [String] = [],
        only: String? = nil
    ) async throws -> RunResult {
        let st = try #require(which("st"), "schemathesis (pip install schemathesis) must be installed")
        var arguments = [
            "run", Self.document, "--url", "https://\(base)", "--include-tag", tag, "--tls-verify", root ?? coordinator.rootPath,
            "--checks", "all", "--exclude-checks", "positive_data_acceptance", "--phases", "coverage,fuzzing",
            "--max-examples", "25", "--workers", "2", "--request-timeout", "10", "--no-color",
        ]
        for path in excluding { arguments += ["--exclude-path", path] }
        if let only { arguments += ["--include-path", only] }
        if let (cert, key) = certificate { arguments += ["--request-cert", cert, "--request-cert-key", key] }
        // Hypothesis keeps its example database in the working directory: the scratch one.
        return try await run("/bin/sh", ["-c", "cd \"$0\" && exec \"$@\"", coordinator.scratch.path, st] + arguments, scratch: coordinator.scratch, timeout: 300)
    }

    func expectPassedAndUp(_ result: RunResult, _ coordinator: CoordinatorProcess, address: String, _ what: Comment) async throws {
        #expect(result.status == 0, "\(what): \(result.stdout.suffix(6000))\(result.stderr.suffix(2000))")
        #expect(result.stdout.contains(" passed"), "\(what): \(result.stdout.suffix(2000))")
        #expect(coordinator.process?.isRunning == true, "\(what): the coordinator died")
        #expect(try await coordinator.curl("GET", address, "/healthz").0 == 200, "\(what): no longer answering")
    }

    @Test func everyResponseConformsToTheDocument() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let openssl = which("openssl") ?? "/usr/bin/openssl"
        let (cert, key) = (scratch.path + "/admin.pem", scratch.path + "/admin.key")
        #expect(try await run(openssl, [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=admin",
        ], scratch: scratch).status == 0)
        let pem = try String(contentsOfFile: cert, encoding: .utf8).replacingOccurrences(of: "\n", with: "\\n")
        let set = try await coordinator.setManifest("""
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "sha256:\(String(repeating: "00", count: 32))"}},
             "Services": {"app": {"Package": "app", "MaxActivations": 3}},
             "Secrets": {"token": {"Type": "plain", "UserDefined": true},
                         "tls": {"Type": "cert-ecdsa", "Cert": {"Subject": {"CommonName": "app"}, "DNSNames": ["app"]}}},
             "Users": {"admin": {"Certificate": "\(pem)", "Roles": ["secrets", "updates"]}},
             "Roles": {"secrets": {"ResourceType": "Secrets", "ResourceNames": ["token", "tls"], "Actions": ["ReadSecret", "WriteSecret"]},
                       "updates": {"ResourceType": "Packages", "ResourceNames": ["app"], "Actions": ["UpdatePackage"]}},
             "Config": {"AllowSimulation": true}}
            """)
        #expect(set.status == 0, "\(set.stderr)")

        try await expectPassedAndUp(try schemathesis(coordinator.clientAddress, tag: "client", coordinator: coordinator, certificate: (cert, key)), coordinator, address: coordinator.clientAddress, "client API")
        // The peer endpoint exists only with the etcd store: thePeerEndpointConformsOnAnEtcdReplica.
        try await expectPassedAndUp(
            try schemathesis(coordinator.meshAddress, tag: "mesh", coordinator: coordinator, excluding: ["/api/v1/peer/state-key"]), coordinator,
            address: coordinator.meshAddress, "mesh API")

        // A replica whose sealing key changed serves only recovery.
        try Data((String(repeating: "5a", count: 32) + "\n").utf8).write(to: URL(fileURLWithPath: coordinator.dataDirectory + "/sealing-key.simulation-insecure"))
        try await coordinator.restart(attest: false)
        #expect(try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status").1.contains("\"recovery\""))
        // In recovery the replica serves under a temporary root (attested, not yet pinned).
        let temporaryRoot = try scratch.write(try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/certificate/root").1, to: "temporary-root.pem")
        try await expectPassedAndUp(
            try schemathesis(coordinator.clientAddress, tag: "recovery", coordinator: coordinator, root: temporaryRoot), coordinator,
            address: coordinator.clientAddress, "recovery")
    }

    /// The peer endpoint, served only by replicas on etcd: a single-member cluster (TLS with
    /// client certificates) behind one replica; schemathesis's requests carry no valid evidence,
    /// so every answer is a documented refusal, and the peer body limit holds.
    @Test func thePeerEndpointConformsOnAnEtcdReplica() async throws {
        let scratch = try Scratch()
        let etcd = try await EtcdCluster(scratch: scratch, size: 1)
        defer { etcd.stopAll() }
        let coordinator = try await CoordinatorProcess(scratch: scratch, arguments: etcd.storeArguments(prefix: "/veil/openapi"))
        let path = "/api/v1/peer/state-key"
        try await expectPassedAndUp(
            try schemathesis(coordinator.meshAddress, tag: "mesh", coordinator: coordinator, only: path), coordinator,
            address: coordinator.meshAddress, "peer endpoint")
        #expect(try await coordinator.curl("POST", coordinator.meshAddress, path, body: String(repeating: "x", count: 3 << 20)).0 == 413)
        let streamed = try await coordinator.curl(
            "POST", coordinator.meshAddress, path, body: String(repeating: "x", count: 3 << 20), headers: ["Transfer-Encoding: chunked"])
        #expect(streamed.0 == 413, "\(streamed)")
    }

    /// The 405 the document's unknown-method check relies on, and the control: an unknown path stays 404.
    @Test func knownPathWithAnotherMethodIs405WithAllow() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let headers = scratch.path + "/headers"
        let response = try await run(which("curl") ?? "/usr/bin/curl", ["-sk", "-D", headers, "-X", "DELETE", "https://\(coordinator.clientAddress)/api/v1/secrets/token"], scratch: scratch)
        let head = try String(contentsOfFile: headers, encoding: .utf8).lowercased()
        #expect(head.hasPrefix("http/1.1 405"), "\(head)")
        #expect(head.contains("allow: put"), "\(head)")
        #expect(response.stdout.contains("\"http405\""))
        #expect(try await coordinator.curl("GET", coordinator.meshAddress, "/api/v1/activation").0 == 405)
        #expect(try await coordinator.curl("DELETE", coordinator.clientAddress, "/api/v1/no-such-thing").0 == 404)
    }
}
