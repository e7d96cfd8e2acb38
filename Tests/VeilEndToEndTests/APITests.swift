import Foundation
import Testing

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
