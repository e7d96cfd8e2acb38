import Foundation
import Testing

/// Users authenticate to the real coordinator with TLS client certificates made by OpenSSL.
@Suite(.timeLimit(.minutes(5))) struct UserCLITests {
    func makeUser(_ name: String, in scratch: Scratch) async throws -> (cert: String, key: String) {
        let cert = "\(scratch.path)/\(name).pem", key = "\(scratch.path)/\(name)-key.pem"
        let result = try await run(which("openssl") ?? "/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert,
            "-subj", "/CN=\(name)", "-days", "2",
        ], scratch: scratch)
        try #require(result.status == 0, "\(result.stderr)")
        return (cert, key)
    }

    @Test func secretsAreManagedOnlyByAuthorizedUsersOverMutualTLS() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let alice = try await makeUser("alice", in: scratch)
        let mallory = try await makeUser("mallory", in: scratch)
        let aliceCert = try String(contentsOfFile: alice.cert, encoding: .utf8)
        let manifest: [String: Any] = [
            "Packages": ["p": ["Kind": "simulated", "Measurement": String(repeating: "ab", count: 32)]],
            "Services": ["s": ["Package": "p"]],
            "Secrets": ["apiKey": ["Type": "plain", "UserDefined": true], "other": ["Type": "plain", "UserDefined": true]],
            "Users": ["alice": ["Certificate": aliceCert, "Roles": ["keys"]]],
            "Roles": ["keys": ["ResourceType": "Secrets", "ResourceNames": ["apiKey"], "Actions": ["ReadSecret", "WriteSecret"]]],
            "Config": ["AllowSimulation": true],
        ]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: manifest), as: UTF8.self)
        #expect(try await coordinator.setManifest(text).status == 0)

        let anonymous = try await coordinator.veil(["secret", "set", "apiKey", "--from-literal", "hunter2"])
        #expect(anonymous.status != 0 && anonymous.stderr.contains("(401)") && anonymous.stderr.contains("client certificate"), "\(anonymous.stderr)")
        let stranger = try await coordinator.veil(["secret", "set", "apiKey", "--from-literal", "hunter2", "--user-cert", mallory.cert, "--user-key", mallory.key])
        #expect(stranger.status != 0 && stranger.stderr.contains("belongs to no user"), "\(stranger.stderr)")
        let wrongSecret = try await coordinator.veil(["secret", "set", "other", "--from-literal", "hunter2", "--user-cert", alice.cert, "--user-key", alice.key])
        #expect(wrongSecret.status != 0 && wrongSecret.stderr.contains("(403)"), "\(wrongSecret.stderr)")
        #expect(!wrongSecret.stderr.contains("hunter2"), "values never appear in errors")

        let set = try await coordinator.veil(["secret", "set", "apiKey", "--from-literal", "hunter2", "--user-cert", alice.cert, "--user-key", alice.key])
        #expect(set.status == 0, "\(set.stderr)")
        let get = try await coordinator.veil(["secret", "get", "apiKey"], environment: ["VEIL_USER_CERT": alice.cert, "VEIL_USER_KEY": alice.key])
        #expect(get.status == 0 && get.stdout.contains(Data("hunter2".utf8).base64EncodedString()), "\(get.stderr)")
        let anonymousRead = try await coordinator.veil(["secret", "get", "apiKey"])
        #expect(anonymousRead.status != 0 && anonymousRead.stderr.contains("(401)"))
        // Every mutating endpoint refuses anonymous clients.
        for (method, path) in [("PUT", "/api/v1/secrets/apiKey"), ("POST", "/api/v1/update/packages"),
                               ("POST", "/api/v1/update/manifest"), ("POST", "/api/v1/update/acknowledge")] {
            let (code, body) = try await coordinator.curl(method, coordinator.clientAddress, path, body: #"{"value": "aGk="}"#)
            #expect(code == 401 && body.contains("unauthenticated"), "\(method) \(path): \(code) \(body)")
        }
        // Anonymous reads of public information still work.
        #expect(try await coordinator.veil(["manifest", "get"]).status == 0)
        #expect(!(try String(contentsOfFile: coordinator.process!.stderrPath, encoding: .utf8)).contains("hunter2"), "values never appear in logs")
    }

    @Test func updatesAndTheVerifiedHistoryThroughTheCLI() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let alice = try await makeUser("alice", in: scratch)
        let bob = try await makeUser("bob", in: scratch)
        func manifest(version: Int, comment: String = "") throws -> String {
            let object: [String: Any] = [
                "Packages": ["p": ["Kind": "simulated", "SignerID": String(repeating: "ab", count: 32), "ProductID": 1, "SecurityVersion": version]],
                "Services": ["s" + comment: ["Package": "p"]],
                "Users": ["alice": ["Certificate": try String(contentsOfFile: alice.cert, encoding: .utf8), "Roles": ["all", "pkg"]],
                          "bob": ["Certificate": try String(contentsOfFile: bob.cert, encoding: .utf8), "Roles": ["all"]]],
                "Roles": ["all": ["ResourceType": "Manifest", "Actions": ["UpdateManifest"]],
                          "pkg": ["ResourceType": "Packages", "ResourceNames": ["p"], "Actions": ["UpdatePackage"]]],
                "Config": ["AllowSimulation": true],
            ]
            return String(decoding: try JSONSerialization.data(withJSONObject: object, options: .sortedKeys), as: UTF8.self)
        }
        #expect(try await coordinator.setManifest(try manifest(version: 1)).status == 0)
        let asAlice = ["VEIL_USER_CERT": alice.cert, "VEIL_USER_KEY": alice.key]
        let asBob = ["VEIL_USER_CERT": bob.cert, "VEIL_USER_KEY": bob.key]

        let bump = try scratch.write(#"{"Packages": {"p": {"SecurityVersion": 2}}}"#, to: "bump.json")
        let bumped = try await coordinator.veil(["manifest", "update", bump], environment: asAlice)
        #expect(bumped.status == 0 && bumped.stdout.contains("packages updated"), "\(bumped.stderr)")
        let lower = try scratch.write(#"{"Packages": {"p": {"SecurityVersion": 1}}}"#, to: "lower.json")
        let lowered = try await coordinator.veil(["manifest", "update", lower], environment: asAlice)
        #expect(lowered.status != 0 && lowered.stderr.contains("lower than the current 2"), "\(lowered.stderr)")

        let next = try scratch.write(try manifest(version: 3, comment: "2"), to: "next.json")
        let proposed = try await coordinator.veil(["manifest", "update", next], environment: asAlice)
        #expect(proposed.status == 0 && proposed.stdout.contains("1 of 2 acknowledgements"), "\(proposed.stdout)\(proposed.stderr)")
        #expect(try await coordinator.veil(["manifest", "get"]).stdout.contains("\"s\""), "unchanged until acknowledged")
        let acknowledged = try await coordinator.veil(["manifest", "update", "acknowledge", next], environment: asBob)
        #expect(acknowledged.status == 0 && acknowledged.stdout.contains("manifest updated"), "\(acknowledged.stderr)")
        #expect(try await coordinator.veil(["manifest", "get"]).stdout.contains("\"s2\""))

        let log = try await coordinator.veil(["manifest", "log"])
        #expect(log.status == 0, "\(log.stderr)")
        #expect(log.stdout.hasPrefix("INDEX\tTIME\tEVENT\tUSER\tDETAIL\n"), "a header names the columns: \(log.stdout)")
        for event in ["manifestSet", "packageUpdated", "updateProposed", "updateAcknowledged", "manifestUpdated"] {
            #expect(log.stdout.contains(event), "\(event) in \(log.stdout)")
        }
        let attest = try await coordinator.veil(["attest", "--allow-simulation", "--simulation-key", coordinator.simulationKey])
        #expect(attest.status == 0 && attest.stdout.contains("history: 5 entries verified"), "\(attest.stdout)\(attest.stderr)")
    }
}
