import Foundation
import Testing
import VeilAttestation
import VeilCore

/// `veil coordinator --tee sgx-gramine|tdx|snp|auto` against device doubles built from the
/// specifications and real captured evidence: Gramine's `/dev/attestation` (a real SGX quote
/// from dcap-qvl, an MRENCLAVE-bound key file), configfs-tsm holding a real TDX quote or
/// Veraison's real SNP report, a regular file where `/dev/sev-guest` would be. Not run on
/// hardware here (docs/coordinator-tee.md says how).
@Suite(.timeLimit(.minutes(5))) struct CoordinatorTEETests {
    static let testdata = repositoryRoot + "/../shared/testdata/attestation"

    /// A `veil coordinator` in a hardware TEE double, on its own data directory.
    final class Replica {
        let scratch: Scratch
        let arguments: [String]
        let environment: [String: String]
        let clientAddress = "127.0.0.1:\(freePort())"
        let meshAddress = "127.0.0.1:\(freePort())"
        var process: Spawned?

        init(scratch: Scratch, tee: String, environment: [String: String], arguments extra: [String] = []) async {
            self.scratch = scratch
            self.environment = environment
            arguments = ["coordinator", "--tee", tee, "--data-dir", scratch.path + "/data", "--client-addr", clientAddress,
                         "--mesh-addr", meshAddress] + extra
        }

        deinit { process?.kill9() }

        /// Starts the replica; its stderr when it exits instead of listening.
        @discardableResult
        func start() async throws -> String? {
            await process?.stop()
            let process = try Spawned(veilBinary, arguments, environment: environment, scratch: scratch)
            self.process = process
            let port = Int(clientAddress.split(separator: ":").last!)!
            let deadline = Date().addingTimeInterval(30)
            while !isListening(port: port) {
                if !process.isRunning { return process.stderr }
                guard Date() < deadline else { Issue.record("the coordinator did not start: \(process.stderr)"); return process.stderr }
                try? await Task.sleep(for: .milliseconds(50))
            }
            return nil
        }

        /// Sets `manifest`, pinning the root certificate the attestation response carries
        /// (the double's recorded evidence cannot vouch for it, so the test trusts it as given).
        func setManifest(_ manifest: String, rootFrom attestation: [String: Any]) async throws -> RunResult {
            let root = scratch.path + "/root.pem"
            try Data(try #require(attestation["rootCertificate"] as? String).utf8).write(to: URL(fileURLWithPath: root))
            return try await run(veilBinary, ["manifest", "set", try scratch.write(manifest, to: "manifest.json"), "--coordinator", clientAddress, "--root-ca", root],
                           environment: ["VEIL_CONFIG_DIR": scratch.path + "/config"], scratch: scratch)
        }

        /// The JSON object a GET returns (empty when there is none).
        func get(_ path: String) async -> [String: Any] {
            guard let result = try? await run(which("curl") ?? "/usr/bin/curl", ["-sk", "https://\(clientAddress)\(path)"], scratch: scratch) else { return [:] }
            return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
        }
    }

    /// Gramine's /dev/attestation: DCAP, a real SGX quote, and the MRENCLAVE-bound key.
    func gramine(_ scratch: Scratch, key: UInt8) throws -> [String: String] {
        let root = scratch.path + "/attestation"
        try FileManager.default.createDirectory(atPath: root + "/keys", withIntermediateDirectories: true)
        try Data("dcap".utf8).write(to: URL(fileURLWithPath: root + "/attestation_type"))
        try Data(contentsOf: URL(fileURLWithPath: "\(Self.testdata)/dcap-qvl/sgx_quote")).write(to: URL(fileURLWithPath: root + "/quote"))
        try Data(repeating: key, count: 16).write(to: URL(fileURLWithPath: root + "/keys/_sgx_mrenclave"))
        return ["VEIL_GRAMINE_ROOT": root, "VEIL_GRAMINE_KEYS": root + "/keys", "VEIL_TSM_ROOT": scratch.path + "/no-tsm"]
    }

    /// A configfs-tsm double (kernel-like, FUSE) serving a real report, and the environment
    /// that points the coordinator at it.
    func tsm(_ scratch: Scratch, provider: String, outblob: String, auxblob: String? = nil) async throws -> (TSMDouble, [String: String]) {
        try #require(TSMDouble.available, "install python3-fusepy (scripts/install-deps.sh test); /dev/fuse is needed")
        let double = try await TSMDouble(
            scratch: scratch, provider: provider, outblob: "\(Self.testdata)/\(outblob)", auxblob: auxblob.map { "\(Self.testdata)/\($0)" })
        return (double, ["VEIL_TSM_ROOT": double.root, "VEIL_GRAMINE_ROOT": scratch.path + "/no-gramine"])
    }

    @Test func aTDXCoordinatorHasNoSealingKeySoARestartNeedsPeersOrRecovery() async throws {
        let scratch = try Scratch()
        let (double, environment) = try await tsm(scratch, provider: "tdx_guest", outblob: "dcap-qvl/tdx_quote")
        let replica = await Replica(scratch: scratch, tee: "tdx", environment: environment)
        try #require(try await replica.start() == nil)
        let attestation = await replica.get("/api/v1/attestation?nonce=\(String(repeating: "cd", count: 32))")
        #expect((attestation["evidence"] as? [String: Any])?["format"] as? String == "intel-dcap-quote")
        let written = try #require(double.writes(to: "inblob").last)
        let inblob = try #require(Hex.decode(written))
        #expect(inblob.count == 64 && inblob.prefix(32).contains { $0 != 0 })
        #expect(double.entries.isEmpty, "the coordinator removes its report entries")
        let set = try await replica.setManifest(
            #"{"Packages": {"p": {"Kind": "tdx", "MRTD": "\#(String(repeating: "11", count: 48))"}}, "Services": {"s": {"Package": "p"}}}"#, rootFrom: attestation)
        #expect(set.status == 0, "\(set.stderr)")
        await #expect(replica.get("/api/v1/status")["state"] as? String == "accepting")
        // Nothing sealed locally: after a restart the state key must come from a peer or recovery.
        try #require(try await replica.start() == nil)
        await #expect(replica.get("/api/v1/status")["state"] as? String == "recovery")
    }

    @Test func anSNPCoordinatorDerivesItsSealingKeyFromTheGuestDevice() async throws {
        let scratch = try Scratch()
        // A regular file where /dev/sev-guest would be: the derived-key ioctl is refused, and start stops with that reason.
        let device = try scratch.write("", to: "sev-guest")
        var (double, environment) = try await tsm(scratch, provider: "sev_guest", outblob: "veraison/upstream/outblob.bin", auxblob: "veraison/upstream/auxblob.bin")
        environment["VEIL_SEV_GUEST"] = device
        let failure = try await Replica(scratch: scratch, tee: "snp", environment: environment).start()
        #expect(failure?.contains("SNP_GET_DERIVED_KEY on \(device)") == true, "\(failure ?? "it started")")
        #expect(failure?.contains("VMPL") == true || failure?.contains("derive a sealing key") == true, "\(failure ?? "")")
        #expect(double.writes(to: "inblob").count == 1 && double.entries.isEmpty)
    }

    /// Upstream KVM gives the guest no certificates (empty auxblob): the replica fetches its
    /// VCEK from AMD KDS (a stub serving the real VCEK of the captured Genoa chip) and gets as
    /// far as deriving its sealing key; without a KDS, or with an unreachable one, it stops
    /// and says why. (Deriving the key needs the sev-guest ioctl, which no double here serves.)
    @Test func anSNPCoordinatorWithoutHostCertificatesFetchesItsVCEK() async throws {
        let scratch = try Scratch()
        let device = try scratch.write("", to: "sev-guest")
        var (double, environment) = try await tsm(scratch, provider: "sev_guest", outblob: "veraison/upstream/outblob.bin")
        environment["VEIL_SEV_GUEST"] = device
        let veraison = Self.testdata + "/veraison/upstream"
        let kds = try await KDSStub(scratch: scratch, product: "Genoa", report: veraison + "/outblob.bin", vcek: veraison + "/vcek.der", chain: veraison + "/chain_ask_ark_genoa.pem")
        let fetched = try await Replica(scratch: scratch, tee: "snp", environment: environment, arguments: ["--kds", kds.url]).start()
        #expect(fetched?.contains("VCEK was fetched") == true && fetched?.contains("SNP_GET_DERIVED_KEY on \(device)") == true, "\(fetched ?? "it started")")
        #expect(kds.requests.contains { $0.hasPrefix("/vcek/v1/Genoa/") && $0.contains("blSPL=") } && kds.requests.contains("/vcek/v1/Genoa/cert_chain"), "\(kds.requests)")
        #expect(double.entries.isEmpty)

        let none = try await Replica(scratch: scratch, tee: "snp", environment: environment, arguments: ["--kds", "none", "--data-dir", scratch.path + "/d2"]).start()
        #expect(none?.contains("no VCEK source is configured") == true, "\(none ?? "it started")")
        let unreachable = try await Replica(
            scratch: scratch, tee: "snp", environment: environment, arguments: ["--kds", "http://127.0.0.1:\(freePort())", "--data-dir", scratch.path + "/d3"]).start()
        #expect(unreachable?.contains("VCEK could not be fetched") == true, "\(unreachable ?? "it started")")
    }

    @Test func anSGXCoordinatorUnderGramineGivesHardwareEvidenceAndSealsWithTheEnclaveKey() async throws {
        let scratch = try Scratch()
        let replica = await Replica(scratch: scratch, tee: "sgx-gramine", environment: try gramine(scratch, key: 1))
        try #require(try await replica.start() == nil)
        let log = replica.process?.stderr ?? ""
        #expect(!log.contains("NO confidentiality"), "a hardware coordinator is not simulated")
        #expect(log.contains("tee=sgx") && log.contains("MRENCLAVE"), "\(log)")

        // Its evidence is the TEE's (the double's real quote), over report data binding its root and the nonce.
        let nonce = String(repeating: "ab", count: 32)
        let attestation = await replica.get("/api/v1/attestation?nonce=\(nonce)")
        let evidence = try #require(attestation["evidence"] as? [String: Any])
        #expect(evidence["format"] as? String == "intel-dcap-quote")
        let quote = try Data(contentsOf: URL(fileURLWithPath: "\(Self.testdata)/dcap-qvl/sgx_quote"))
        #expect(evidence["data"] as? String == quote.base64EncodedString())
        #expect(attestation["simulated"] as? Bool == false)
        let reportData = try Data(contentsOf: URL(fileURLWithPath: scratch.path + "/attestation/user_report_data"))
        #expect(reportData.count == 64 && reportData.prefix(32).contains { $0 != 0 } && reportData.suffix(32).allSatisfy { $0 == 0 })
        // Clients must name what they expect of a hardware coordinator; then they verify it for real
        // (here the recorded quote binds another root and nonce, and its collateral is from 2025).
        let config = ["VEIL_CONFIG_DIR": scratch.path + "/config"]
        let blind = try await run(veilBinary, ["attest", "--coordinator", replica.clientAddress], environment: config, scratch: scratch)
        #expect(blind.status != 0 && blind.stderr.contains("--expect"), "\(blind.stderr)")
        let mrenclave = try #require(log.firstRange(of: "measurement=").map { String(log[$0.upperBound...].prefix(64)) })
        let noCollateral = try await run(veilBinary, ["attest", "--coordinator", replica.clientAddress, "--expect", mrenclave], environment: config, scratch: scratch)
        #expect(noCollateral.status != 0 && noCollateral.stderr.contains("--dcap-collateral"), "\(noCollateral.stderr)")
        let expecting = try await run(veilBinary, ["attest", "--coordinator", replica.clientAddress, "--expect", mrenclave,
                                             "--dcap-collateral", "\(Self.testdata)/dcap-qvl/sgx_quote_collateral.json"], environment: config, scratch: scratch)
        #expect(expecting.status != 0 && expecting.stderr.contains("coordinator evidence rejected"), "\(expecting.stderr)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/config"), "nothing was pinned")

        // The state key is sealed with the enclave-bound key: no simulation key file.
        let set = try await replica.setManifest(
            #"{"Packages": {"p": {"Kind": "sgx", "UniqueID": "\#(String(repeating: "11", count: 32))"}}, "Services": {"s": {"Package": "p"}}}"#, rootFrom: attestation)
        #expect(set.status == 0, "\(set.stderr)")
        #expect(!FileManager.default.fileExists(atPath: scratch.path + "/data/sealing-key.simulation-insecure"))
        await #expect(replica.get("/api/v1/status")["state"] as? String == "accepting")

        // Restarted in the same enclave: the state opens.
        try #require(try await replica.start() == nil)
        await #expect(replica.get("/api/v1/status")["state"] as? String == "accepting")
        await #expect(replica.get("/api/v1/status")["manifestDigest"] as? String != nil)
        // Another enclave (another MRENCLAVE: another key) cannot open it.
        try Data(repeating: 2, count: 16).write(to: URL(fileURLWithPath: scratch.path + "/attestation/keys/_sgx_mrenclave"))
        let other = try await replica.start()
        let status = await replica.get("/api/v1/status")
        #expect(other == nil && status["state"] as? String == "recovery", "another enclave must not open the state: \(status) \(other ?? "")")
        #expect(status["manifestDigest"] == nil)
    }

    /// A hardware coordinator whose manifest allows simulation still refuses simulated launchers
    /// unless it was started with --simulation-key: it trusts no simulation platform key otherwise.
    @Test func aHardwareCoordinatorRefusesSimulatedLaunchersWithoutASimulationKey() async throws {
        let scratch = try Scratch()
        let replica = await Replica(scratch: scratch, tee: "sgx-gramine", environment: try gramine(scratch, key: 1))
        try #require(try await replica.start() == nil)
        let attestation = await replica.get("/api/v1/attestation?nonce=\(String(repeating: "ab", count: 32))")
        let key = scratch.path + "/launcher-simulation-key.pem"
        let measured = try await run(veilBinary, ["measure", "--service", "s", "--", "/bin/true"], scratch: scratch)
        let measurement = measured.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let set = try await replica.setManifest(#"""
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurement)"}}, "Services": {"s": {"Package": "p"}},
             "Config": {"AllowSimulation": true}}
            """#, rootFrom: attestation)
        try #require(set.status == 0, "\(set.stderr)")
        // A simulation platform key of the launcher's own (the coordinator trusts none).
        let made = try await run(which("openssl") ?? "/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", key], scratch: scratch)
        try #require(made.status == 0, "\(made.stderr)")
        let launch = try await run(veilBinary, [
            "launch", "--coordinator", replica.meshAddress, "--service", "s", "--tee", "simulated", "--simulation-key", key,
            "--root-ca", scratch.path + "/root.pem", "--", "/bin/true",
        ], environment: ["VEIL_CONFIG_DIR": scratch.path + "/config"], scratch: scratch)
        #expect(launch.status != 0 && launch.stderr.contains("trusts no simulation platform key") && launch.stderr.contains("--simulation-key"),
                "\(launch.stderr)")
    }

    /// A coordinator started with `--collateral` (a PCCS with its own CA) fetches Intel's
    /// documents for its own quote and hands them out beside it: `veil attest` needs no
    /// collateral flag and verifies them against Intel's root (the real documents ran out in
    /// 2026, and the client says which one). What it hands out is exactly what the PCCS served:
    /// verified at the vectors' time it passes, and documents with a broken signature from the
    /// PCCS are refused although the coordinator handed them out.
    @Test func aCoordinatorWithCollateralServesItsOwnAndClientsVerifyIt() async throws {
        let scratch = try Scratch()
        let stub = try await PCCSStub(scratch: scratch)
        let fixture = "\(Self.testdata)/dcap-qvl/sgx_quote_collateral.json"
        func served(by replica: Replica) async throws -> String {
            let attestation = await replica.get("/api/v1/attestation?nonce=\(String(repeating: "ab", count: 32))")
            let collateral = try #require(attestation["collateral"] as? [String: Any], "\(attestation.keys.sorted())")
            return try scratch.write(String(decoding: try JSONSerialization.data(withJSONObject: collateral), as: UTF8.self), to: "served-\(UUID().uuidString).json")
        }
        func verify(_ collateral: String) async throws -> RunResult {
            try await run(veilBinary, ["verify", "\(Self.testdata)/dcap-qvl/sgx_quote", "--collateral", collateral, "--at", "2025-06-19T11:56:11Z"], scratch: scratch)
        }
        let (server, url) = try await stub.start(collateral: fixture, scratch: scratch)
        defer { server.kill9() }
        let replica = await Replica(scratch: scratch, tee: "sgx-gramine", environment: try gramine(scratch, key: 1), arguments: ["--collateral", url, "--collateral-ca", stub.ca])
        try #require(try await replica.start() == nil)
        let clean = try await verify(try await served(by: replica))
        #expect(clean.status == 0 && clean.stdout.contains("tcb status: ConfigurationAndSWHardeningNeeded"), "\(clean.stdout)\(clean.stderr)")

        let log = replica.process?.stderr ?? ""
        let mrenclave = try #require(log.firstRange(of: "measurement=").map { String(log[$0.upperBound...].prefix(64)) })
        let config = ["VEIL_CONFIG_DIR": scratch.path + "/config"]
        let attest = try await run(veilBinary, ["attest", "--coordinator", replica.clientAddress, "--expect", mrenclave], environment: config, scratch: scratch)
        #expect(attest.status != 0 && !attest.stderr.contains("--dcap-collateral") && attest.stderr.contains("expired at its nextUpdate"),
                "verified with the served documents: \(attest.stderr)")
        // On the documents' own day the served documents verify, with no collateral flag: what
        // stops the recorded quote then is only its report data, which binds another root and nonce.
        let clock = try FakedClock(scratch: scratch, at: "2025-06-19 11:56:11")
        let onTheDay = try await run(clock.veil, ["attest", "--coordinator", replica.clientAddress, "--expect", mrenclave], environment: config.merging(clock.environment) { $1 }, scratch: scratch)
        #expect(onTheDay.status != 0 && onTheDay.stderr.contains("report data") && !onTheDay.stderr.contains("collateral"), "\(onTheDay.stderr)")

        let (tampering, tamperedURL) = try await stub.start(collateral: fixture, tamper: true, scratch: scratch)
        defer { tampering.kill9() }
        let second = await Replica(scratch: scratch, tee: "sgx-gramine", environment: try gramine(scratch, key: 1),
                                   arguments: ["--collateral", tamperedURL, "--collateral-ca", stub.ca, "--data-dir", scratch.path + "/d2"])
        try #require(try await second.start() == nil)
        let tampered = try await verify(try await served(by: second))
        #expect(tampered.status != 0 && tampered.stderr.contains("TCB info signature does not verify"), "\(tampered.stderr)")
        let both = try await run(veilBinary, ["coordinator", "--tee", "simulated", "--collateral", url, "--dcap-collateral", fixture, "--data-dir", scratch.path + "/d3"], scratch: scratch)
        #expect(both.status != 0 && both.stderr.contains("give one source of Intel collateral"), "\(both.stderr)")
    }

    /// Only an SEV-SNP replica's sealing key is pinned to a firmware version: asking another
    /// to move the pin stops it with that reason instead of starting as if nothing was asked.
    @Test func movingTheSealingPinIsRefusedWhereThereIsNone() async throws {
        let scratch = try Scratch()
        let simulated = try await Replica(scratch: scratch, tee: "simulated", environment: [:], arguments: ["--advance-sealing-tcb"]).start()
        #expect(simulated?.contains("--advance-sealing-tcb: no sealing key: only an SEV-SNP replica's sealing key is pinned") == true, "\(simulated ?? "it started")")
        let (double, environment) = try await tsm(scratch, provider: "tdx_guest", outblob: "dcap-qvl/tdx_quote")
        defer { withExtendedLifetime(double) {} }
        let tdx = try await Replica(scratch: scratch, tee: "tdx", environment: environment, arguments: ["--advance-sealing-tcb", "--data-dir", scratch.path + "/d2"]).start()
        #expect(tdx?.contains("only an SEV-SNP replica's sealing key is pinned") == true, "\(tdx ?? "it started")")
    }

    @Test func hardwareSelectionNeverFallsBackToSimulation() async throws {
        let scratch = try Scratch()
        let none = ["VEIL_TSM_ROOT": scratch.path + "/no-tsm", "VEIL_GRAMINE_ROOT": scratch.path + "/no-gramine"]
        let auto = try await Replica(scratch: scratch, tee: "auto", environment: none).start()
        #expect(auto?.contains("found no TEE") == true && auto?.contains("--tee simulated") == true, "\(auto ?? "it started")")
        let snp = try await Replica(scratch: scratch, tee: "snp", environment: none).start()
        #expect(snp?.contains("not a SEV-SNP guest") == true, "\(snp ?? "it started")")
        let missing = try await run(veilBinary, ["coordinator", "--data-dir", scratch.path + "/d"], environment: ["VEIL_TEE": ""], scratch: scratch)
        #expect(missing.status != 0)
        let unknown = try await run(veilBinary, ["coordinator", "--tee", "sev", "--data-dir", scratch.path + "/d"], scratch: scratch)
        #expect(unknown.status != 0 && unknown.stderr.contains("is not one of"), "\(unknown.stderr)")
    }
}
