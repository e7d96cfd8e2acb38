import Foundation
import Testing

/// The collateral a coordinator fetched (`--collateral`, a PCCS stub with its own CA serving
/// each real dcap-qvl vector's documents) and hands out beside its quote gives, verified by the
/// client, dcap-qvl's recorded verdict for every vector: SGX under Gramine, TDX in configfs-tsm
/// (UpToDate, and the out-of-date platform that no TCB level matches).
@Suite(.timeLimit(.minutes(5))) struct CollateralServingTests {
    static let vectors = CoordinatorTEETests.testdata + "/dcap-qvl"

    struct Expected: Decodable {
        var collateral: String
        var verify_at: String
        var status: String?
        var advisory_ids: [String]?
        var error: String?
    }

    @Test(arguments: ["sgx_quote", "tdx_quote", "tdx_quote_outdated"])
    func collateralFromTheCoordinatorGivesDcapQvlsVerdicts(vector: String) async throws {
        let all = try JSONDecoder().decode([String: Expected].self, from: Data(contentsOf: URL(fileURLWithPath: "\(Self.vectors)/EXPECTED.json")))
        let expected = try #require(all[vector])
        let scratch = try Scratch()
        let stub = try await PCCSStub(scratch: scratch)
        let (server, url) = try await stub.start(collateral: "\(Self.vectors)/\(expected.collateral)", scratch: scratch)
        defer { server.kill9() }
        let doubles = CoordinatorTEETests()
        var tsm: TSMDouble?
        var environment: [String: String]
        if vector.hasPrefix("sgx") {
            environment = try doubles.gramine(scratch, key: 1)
        } else {
            let made = try await doubles.tsm(scratch, provider: "tdx_guest", outblob: "dcap-qvl/\(vector)")
            (tsm, environment) = (made.0, made.1)
        }
        defer { withExtendedLifetime(tsm) {} }
        let replica = await CoordinatorTEETests.Replica(
            scratch: scratch, tee: vector.hasPrefix("sgx") ? "sgx-gramine" : "tdx", environment: environment, arguments: ["--collateral", url, "--collateral-ca", stub.ca])
        try #require(try await replica.start() == nil)
        let attestation = await replica.get("/api/v1/attestation?nonce=\(String(repeating: "cd", count: 32))")
        let collateral = try #require(attestation["collateral"] as? [String: Any], "\(attestation.keys.sorted())")
        let served = try scratch.write(String(decoding: try JSONSerialization.data(withJSONObject: collateral), as: UTF8.self), to: "served.json")

        let verdict = try await run(veilBinary, ["verify", "\(Self.vectors)/\(vector)", "--collateral", served, "--at", expected.verify_at, "--output", "json"], scratch: scratch)
        if let status = expected.status {
            try #require(verdict.status == 0, "\(verdict.stderr)")
            let result = try #require(try JSONSerialization.jsonObject(with: Data(verdict.stdout.utf8)) as? [String: Any])
            #expect(result["status"] as? String == status)
            #expect(result["advisoryIDs"] as? [String] == expected.advisory_ids ?? [])
        } else {
            #expect(verdict.status != 0 && verdict.stderr.contains("no matching TCB level"), "dcap-qvl: \(expected.error ?? ""); Veil: \(verdict.stderr)")
        }
    }
}
