import Foundation
import Testing
import VeilAPI

/// Hostile input on every endpoint: a 4xx JSON error, and the server stays up.
@Suite(.timeLimit(.minutes(5))) struct APITests {
    func expectJSONError(_ response: (Int, String), status: Int, _ comment: Comment) {
        #expect(response.0 == status, comment)
        let object = try? JSONSerialization.jsonObject(with: Data(response.1.utf8)) as? [String: Any]
        let error = object?["error"] as? [String: Any]
        #expect(error?["message"] is String, "\(comment): body \(response.1)")
    }

    @Test func malformedAndOversizedBodiesGetJSONErrors() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let client = coordinator.clientAddress
        let mesh = coordinator.meshAddress
        let huge = String(repeating: "x", count: 3 << 20)

        expectJSONError(try await coordinator.curl("POST", client, "/api/v1/manifest", body: "{not json"), status: 400, "manifest: malformed")
        expectJSONError(try await coordinator.curl("POST", client, "/api/v1/manifest", body: huge), status: 413, "manifest: oversized")
        expectJSONError(try await coordinator.curl("POST", client, "/api/v1/manifest", body: "[1,2]"), status: 400, "manifest: wrong shape")
        expectJSONError(try await coordinator.curl("GET", client, "/api/v1/manifest"), status: 409, "manifest: none yet")
        expectJSONError(try await coordinator.curl("GET", client, "/api/v1/attestation?nonce=xyz"), status: 400, "attestation: bad nonce")
        expectJSONError(try await coordinator.curl("GET", client, "/api/v1/attestation"), status: 400, "attestation: no nonce")
        expectJSONError(try await coordinator.curl("GET", client, "/api/v1/attestation?nonce=" + String(repeating: "ab", count: 65)), status: 400, "attestation: long nonce")
        expectJSONError(try await coordinator.curl("GET", client, "/api/v1/nope"), status: 404, "unknown endpoint")
        expectJSONError(try await coordinator.curl("POST", mesh, "/api/v1/activation", body: "{not json"), status: 400, "activation: malformed")
        expectJSONError(try await coordinator.curl("POST", mesh, "/api/v1/activation", body: huge), status: 413, "activation: oversized")
        expectJSONError(
            try await coordinator.curl("POST", mesh, "/api/v1/activation", body: #"{"service": "x", "nonce": "00", "csr": "", "evidence": {"format": "f", "data": "%%"}}"#),
            status: 400, "activation: bad evidence encoding")
        expectJSONError(
            try await coordinator.curl("POST", mesh, "/api/v1/activation", body: #"{"service": "x", "nonce": "\#(String(repeating: "00", count: 32))", "csr": "", "evidence": {"format": "f", "data": ""}}"#),
            status: 409, "activation before a manifest")
        expectJSONError(try await coordinator.curl("POST", mesh, "/api/v1/activation/nonce", body: huge), status: 413, "nonce: oversized")
        // Launchers' mesh port does not serve the user API.
        expectJSONError(try await coordinator.curl("POST", mesh, "/api/v1/manifest", body: "{}"), status: 404, "mesh: no manifest endpoint")

        let (status, body) = try await coordinator.curl("GET", client, "/api/v1/status")
        #expect(status == 200)
        #expect(body.contains("awaitingManifest"))
        #expect(try await coordinator.curl("GET", mesh, "/healthz").0 == 200)
    }

    /// One operation of docs/openapi.yaml (which RouteTableTests proves equal to the routes served).
    struct Operation: CustomStringConvertible {
        var method: String
        var path: String
        var tags: Set<String>
        var takesBody: Bool
        var needsUser: Bool
        var description: String { "\(method) \(path)" }

        static func documented() async throws -> [Operation] {
            let script = """
                import sys, yaml
                for path, item in yaml.safe_load(open(sys.argv[1]))["paths"].items():
                    for method, op in item.items():
                        print(method.upper(), path, ",".join(op.get("tags", [])), int("requestBody" in op), int("security" in op))
                """
            let result = try await run("/usr/bin/python3", ["-c", script, OpenAPITests.document], scratch: try Scratch())
            return result.stdout.split(separator: "\n").map { line in
                let fields = line.split(separator: " ").map(String.init)
                return Operation(
                    method: fields[0], path: fields[1].replacingOccurrences(of: "{name}", with: "x"), tags: Set(fields[2].split(separator: ",").map(String.init)),
                    takesBody: fields[3] == "1", needsUser: fields[4] == "1")
            }
        }
    }

    /// The 2 MiB limit on every documented operation of both listeners, and in recovery: a
    /// body announced larger is refused with 413 before anything else (authentication too);
    /// one streamed in chunks is refused with 413 by every operation that takes a body (user
    /// operations refuse before reading it), and ignored by those that take none.
    @Test func everyEndpointRefusesABodyOverTheLimit() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let operations = try await Operation.documented()
        #expect(operations.count >= 20, "\(operations)")
        let huge = String(repeating: "x", count: 3 << 20)

        func check(_ operation: Operation, at address: String, _ listener: String) async throws {
            let announced = try await coordinator.curl(operation.method, address, operation.path, body: huge)
            expectJSONError(announced, status: 413, "\(listener) \(operation): announced")
            let streamed = try await coordinator.curl(operation.method, address, operation.path, body: huge, headers: ["Transfer-Encoding: chunked"])
            if operation.takesBody {
                // User operations refuse before reading: 401 without a certificate, 409 while no
                // manifest (so no user) exists.
                let refusedUnread = operation.needsUser && [401, 409].contains(streamed.0)
                #expect(streamed.0 == 413 || refusedUnread, "\(listener) \(operation): streamed got \(streamed.0) \(streamed.1.prefix(200))")
            } else {
                #expect((200..<500).contains(streamed.0) && streamed.0 != 413, "\(listener) \(operation): streamed got \(streamed.0)")
            }
        }
        var checked = 0
        for operation in operations where operation.path != "/api/v1/peer/state-key" {
            if operation.tags.contains("client") { try await check(operation, at: coordinator.clientAddress, "client"); checked += 1 }
            if operation.tags.contains("mesh") { try await check(operation, at: coordinator.meshAddress, "mesh"); checked += 1 }
        }
        // A replica whose sealing key changed serves only recovery.
        try Data((String(repeating: "5a", count: 32) + "\n").utf8).write(to: URL(fileURLWithPath: coordinator.dataDirectory + "/sealing-key.simulation-insecure"))
        try await coordinator.restart(attest: false)
        for operation in operations where operation.tags.contains("recovery") {
            try await check(operation, at: coordinator.clientAddress, "recovery")
            checked += 1
        }
        #expect(checked >= 25)
        #expect(coordinator.process?.isRunning == true, "the coordinator died")
        #expect(try await coordinator.curl("GET", coordinator.meshAddress, "/healthz").0 == 200)
    }

    @Test func invalidManifestReturnsEveryProblem() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let (status, body) = try await coordinator.curl(
            "POST", coordinator.clientAddress, "/api/v1/manifest",
            body: #"{"Packages": {"p": {"Kind": "simulated"}}, "Services": {"s": {"Package": "q"}}, "Extra": true}"#)
        #expect(status == 400)
        let object = try JSONSerialization.jsonObject(with: Data(body.utf8)) as? [String: [String: Any]]
        let problems = object?["error"]?["problems"] as? [String] ?? []
        #expect(problems.contains { $0.hasPrefix("$.Extra:") })
        #expect(problems.contains { $0.hasPrefix("$.Services.s.Package:") && $0.contains("unknown package 'q'") })
        #expect(problems.contains { $0.hasPrefix("$.Packages.p") })
    }
}
