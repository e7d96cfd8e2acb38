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

        // `veil attest` on the vector's day, with no collateral flag: the served documents verify
        // the coordinator's quote (only the recorded report data, binding another root and nonce,
        // stops it), or give dcap-qvl's refusal.
        let clock = try FakedClock(scratch: scratch, at: expected.verify_at.replacingOccurrences(of: "T", with: " ").replacingOccurrences(of: "Z", with: ""))
        let attest = try await run(
            clock.veil, ["attest", "--coordinator", replica.clientAddress, "--insecure-any-coordinator"], environment: clock.environment.merging(["VEIL_CONFIG_DIR": scratch.path + "/config"]) { $1 },
            scratch: scratch)
        let reason = expected.status == nil ? "no matching TCB level" : "report data does not bind"
        #expect(attest.status != 0 && attest.stderr.contains(reason) && !attest.stderr.contains("--dcap-collateral"), "\(attest.stderr)")
    }

    static let faketime = FakedClock.library

    /// A simulated coordinator with `--collateral` on a PCCS stub verifies a launcher's real SGX
    /// quote (Gramine double) with the documents it fetched: the only refusal left is the
    /// recorded quote's report data, which binds no key of this launch. The stub stopped, it
    /// keeps verifying with what it holds until the documents' nextUpdate, then refuses naming
    /// the expiry and the failed fetch.
    @Test func heldCollateralOutlivesItsSourceUntilNextUpdateThenIsRefused() async throws {
        let scratch = try Scratch()
        let clock = try FakedClock(scratch: scratch, at: "2025-06-19 11:56:11")
        let stub = try await PCCSStub(scratch: scratch, since: "2025-06-01 00:00:00")
        let (server, url) = try await stub.start(collateral: "\(Self.vectors)/sgx_quote_collateral.json", scratch: scratch)
        defer { server.kill9() }
        // Only the coordinator runs on the faked clock; its TLS certificate outlives the gap to
        // the real clock of the CLI and the launcher.
        let coordinator = try await CoordinatorProcess(
            scratch: scratch, arguments: ["--collateral", url, "--collateral-ca", stub.ca, "--tls-validity", "\(3 * 365 * 86_400)"], binary: clock.veil,
            environment: clock.environment)
        let set = try await coordinator.setManifest(#"""
            {"Packages": {"enclave": {"Kind": "sgx", "UniqueID": "33d8736db756ed4997e04ba358d27833188f1932ff7b1d156904d3f560452fbb",
                                      "AcceptedTCBStatuses": ["UpToDate", "ConfigurationAndSWHardeningNeeded"]}},
             "Services": {"app": {"Package": "enclave"}}}
            """#)
        try #require(set.status == 0, "\(set.stderr)")
        let gramine = try CoordinatorTEETests().gramine(scratch, key: 1)
        func launch() async throws -> String {
            let marker = scratch.path + "/started"
            let result = try await run(
                veilBinary, ["launch", "--coordinator", coordinator.meshAddress, "--service", "app", "--tee", "sgx-gramine", "--root-ca", coordinator.rootPath, "--", "/usr/bin/touch", marker],
                environment: gramine, scratch: scratch)
            #expect(result.status == 125 && !FileManager.default.fileExists(atPath: marker), "\(result.stderr)")
            return result.stderr
        }
        let fetched = try await launch()
        #expect(fetched.contains("report data does not bind") && !fetched.contains("collateral"), "verified with the fetched documents: \(fetched)")

        server.kill9()
        try clock.set("2025-07-18 12:00:00")
        let held = try await launch()
        #expect(held.contains("report data does not bind"), "the stub is gone; the held documents still verify: \(held)")

        try clock.set("2025-07-19 11:00:00")
        let expired = try await launch()
        #expect(expired.contains("expired at its nextUpdate") && expired.contains(url) && expired.contains("failed"), "\(expired)")
    }
}

extension CollateralServingTests {
    /// `veil attest --collateral-url` of an SGX coordinator that serves no collateral (a Gramine
    /// double without `--collateral`): the documents come from the PCCS stub, on their day they
    /// verify the quote (only the recorded report data stops it); a stub serving a broken
    /// signature, an unreachable URL and a plain-HTTP URL are refused, each saying why.
    @Test func attestFetchesTheCoordinatorsCollateralFromACollateralURL() async throws {
        let scratch = try Scratch()
        let stub = try await PCCSStub(scratch: scratch, since: "2025-06-01 00:00:00")
        let fixture = "\(Self.vectors)/sgx_quote_collateral.json"
        let (server, url) = try await stub.start(collateral: fixture, scratch: scratch)
        defer { server.kill9() }
        let (tampering, tamperedURL) = try await stub.start(collateral: fixture, tamper: true, scratch: scratch)
        defer { tampering.kill9() }
        let replica = await CoordinatorTEETests.Replica(scratch: scratch, tee: "sgx-gramine", environment: try CoordinatorTEETests().gramine(scratch, key: 1))
        try #require(try await replica.start() == nil)
        let clock = try FakedClock(scratch: scratch, at: "2025-06-19 11:56:11")
        func attest(_ extra: [String], home: String) async throws -> RunResult {
            try FileManager.default.createDirectory(atPath: home, withIntermediateDirectories: true)
            return try await run(
                clock.veil, ["attest", "--coordinator", replica.clientAddress, "--insecure-any-coordinator"] + extra,
                environment: clock.environment.merging(["VEIL_CONFIG_DIR": scratch.path + "/config", "HOME": home]) { $1 }, scratch: scratch)
        }
        let none = try await attest([], home: scratch.path + "/h0")
        #expect(none.status != 0 && none.stderr.contains("no collateral"), "the coordinator serves none: \(none.stderr)")
        let fetched = try await attest(["--collateral-url", url, "--collateral-ca", stub.ca], home: scratch.path + "/h1")
        #expect(fetched.status != 0 && fetched.stderr.contains("report data does not bind"), "verified with the fetched documents: \(fetched.stderr)")
        let tampered = try await attest(["--collateral-url", tamperedURL, "--collateral-ca", stub.ca], home: scratch.path + "/h2")
        #expect(tampered.status != 0 && tampered.stderr.contains("TCB info signature does not verify"), "\(tampered.stderr)")
        let unreachable = try await attest(["--collateral-url", "https://127.0.0.1:\(freePort())", "--collateral-ca", stub.ca], home: scratch.path + "/h3")
        #expect(unreachable.status != 0 && unreachable.stderr.contains("cannot fetch the Intel collateral of the coordinator's quote from"), "\(unreachable.stderr)")
        let plain = try await attest(["--collateral-url", "http://127.0.0.1:1"], home: scratch.path + "/h4")
        #expect(plain.status != 0 && plain.stderr.contains("must be an https:// URL"), "\(plain.stderr)")
    }
}

/// `veil` on a faked wall clock (libfaketime, Debian `faketime`; the monotonic clock stays real):
/// the day recorded Intel documents were fetched, moved by ``set(_:)`` while the process runs.
/// Started through a shell: a Swift program exec'd directly with libfaketime preloaded loses its
/// arguments.
struct FakedClock {
    static let library = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1"
    let file: String
    /// A script that runs `veil` with its arguments.
    let veil: String

    init(scratch: Scratch, at time: String) throws {
        try #require(FileManager.default.fileExists(atPath: Self.library), "install faketime (scripts/install-deps.sh test)")
        file = try scratch.write(time + "\n", to: "faketime-\(UUID().uuidString.prefix(6))")
        veil = try scratch.write("#!/bin/sh\nexec \(veilBinary) \"$@\"\n", to: "veil-faked-\(UUID().uuidString.prefix(6))")
        chmod(veil, 0o755)
    }

    var environment: [String: String] {
        ["LD_PRELOAD": Self.library, "FAKETIME_TIMESTAMP_FILE": file, "FAKETIME_NO_CACHE": "1", "FAKETIME_DONT_FAKE_MONOTONIC": "1"]
    }

    func set(_ time: String) throws { try (time + "\n").write(toFile: file, atomically: true, encoding: .utf8) }
}
