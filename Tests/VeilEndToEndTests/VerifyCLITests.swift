import Foundation
import Testing

/// `veil verify` on the shared Intel vectors: exit status 0 only when the quote verifies.
@Suite(.timeLimit(.minutes(5))) struct VerifyCLITests {
    let vectors = repositoryRoot + "/../shared/testdata/attestation/dcap-qvl"

    @Test func verifiesPrintsAndRejects() async throws {
        let scratch = try Scratch()
        let sgx = try await run(veilBinary, ["verify", "\(vectors)/sgx_quote", "--collateral", vectors, "--at", "2025-06-19T11:56:11Z"], scratch: scratch)
        #expect(sgx.status == 0, "\(sgx.stderr)")
        #expect(sgx.stdout.contains("tcb status: ConfigurationAndSWHardeningNeeded [INTEL-SA-00289, INTEL-SA-00615]"))
        #expect(sgx.stdout.contains("mrenclave: "))

        let tdx = try await run(veilBinary, ["verify", "\(vectors)/tdx_quote", "--collateral", "\(vectors)/tdx_quote_collateral.json",
                                       "--at", "2025-06-19T11:16:03Z", "--output", "json"], scratch: scratch)
        #expect(tdx.status == 0, "\(tdx.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(tdx.stdout.utf8)) as? [String: Any]
        #expect(object?["status"] as? String == "UpToDate")
        #expect((object?["fields"] as? [String: String])?["mrtd"]?.count == 96)

        let outdated = try await run(veilBinary, ["verify", "\(vectors)/tdx_quote_outdated", "--collateral", vectors, "--at", "2026-02-18T11:58:51Z"], scratch: scratch)
        #expect(outdated.status != 0)
        #expect(outdated.stderr.contains("no matching TCB level"))

        var tampered = try Data(contentsOf: URL(fileURLWithPath: "\(vectors)/sgx_quote"))
        tampered[100] ^= 1
        let tamperedPath = scratch.path + "/sgx_quote"
        try tampered.write(to: URL(fileURLWithPath: tamperedPath))
        let rejected = try await run(veilBinary, ["verify", tamperedPath, "--collateral", "\(vectors)/sgx_quote_collateral.json", "--at", "2025-06-19T11:56:11Z"], scratch: scratch)
        #expect(rejected.status != 0)
        #expect(rejected.stderr.contains("quote signature"))

        let expired = try await run(veilBinary, ["verify", "\(vectors)/sgx_quote", "--collateral", vectors], scratch: scratch)
        #expect(expired.status != 0, "the 2025 collateral has expired by now")
    }

    @Test func verifiesSNPReports() async throws {
        let scratch = try Scratch()
        let snp = repositoryRoot + "/../shared/testdata/attestation/go-sev-guest"
        let base = ["verify", "\(snp)/snp_report_milan.bin", "--vcek", "\(snp)/vcek_milan.der"]
        let refusedDebug = try await run(veilBinary, base + ["--chain", "\(snp)/ask_ark_milan.pem"], scratch: scratch)
        #expect(refusedDebug.status != 0)
        #expect(refusedDebug.stderr.contains("debug"))
        let ok = try await run(veilBinary, base + ["--chain", "\(snp)/ask_ark_milan.pem", "--allow-debug", "--output", "json"], scratch: scratch)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("b07af962"))
        let genoa = try await run(veilBinary, base + ["--chain", "\(snp)/ask_ark_genoa.pem", "--allow-debug"], scratch: scratch)
        #expect(genoa.status != 0)
        #expect(genoa.stderr.contains("ARK-Milan"))
    }

    /// One debug rule for every TEE: SGX debug enclaves and TDX debug TDs are refused like SNP
    /// debug guests unless --allow-debug.
    @Test func debugEvidenceOfAnyTEEIsRefusedUnlessAllowed() async throws {
        let scratch = try Scratch()
        let shared = repositoryRoot + "/../shared/testdata/attestation"
        for (quote, collateral, time) in [
            ("dcap-rs/sgx_v3_00a067110000_quote.dat", "dcap-rs/sgx_v3_00a067110000_collateral.json", "2024-08-27T00:00:00Z"),
            ("trustee/tdx_quote_4.dat", "trustee/tdx_quote_4_collateral.json", "2023-06-25T00:00:00Z"),
        ] {
            let base = ["verify", "\(shared)/\(quote)", "--collateral", "\(shared)/\(collateral)", "--at", time]
            let refused = try await run(veilBinary, base, scratch: scratch)
            #expect(refused.status != 0, "\(quote)")
            #expect(refused.stderr.contains("no confidentiality"), "\(refused.stderr)")
            let allowed = try await run(veilBinary, base + ["--allow-debug"], scratch: scratch)
            #expect(allowed.status == 0, "\(allowed.stderr)")
            #expect(allowed.stdout.contains("warning: DEBUG"))
        }
    }

    /// The product comes from the report (v3+); what was not checked is said in the output.
    @Test func snpProductFromTheReportAndNotesOnWhatWasNotChecked() async throws {
        let scratch = try Scratch()
        let veraison = repositoryRoot + "/../shared/testdata/attestation/veraison"
        let base = ["verify", "\(veraison)/genoa_report.bin", "--vcek", "\(veraison)/genoa_vcek.der", "--chain", "\(veraison)/genoa_chain.pem"]
        let ok = try await run(veilBinary, base, scratch: scratch)
        #expect(ok.status == 0, "\(ok.stderr)")
        #expect(ok.stdout.contains("Genoa, VCEK"))
        #expect(ok.stdout.contains("any firmware TCB was accepted"))
        #expect(ok.stdout.contains("AMD CRL not checked"))
        let contradiction = try await run(veilBinary, base + ["--product", "Milan"], scratch: scratch)
        #expect(contradiction.status != 0)
        #expect(contradiction.stderr.contains("Genoa chip"))
        let strict = try await run(veilBinary, base + ["--vmpl", "1"], scratch: scratch)
        #expect(strict.status != 0)
        #expect(strict.stderr.contains("VMPL 1 is required"))
        // VMPL 0 unless `any` is said; "any" is noted like every other unchecked rule.
        #expect(!ok.stdout.contains("--vmpl any"))
        let anyVMPL = try await run(veilBinary, base + ["--vmpl", "any"], scratch: scratch)
        #expect(anyVMPL.status == 0 && anyVMPL.stdout.contains("--vmpl any: a report from any VMPL was accepted"), "\(anyVMPL.stdout)")
        let badVMPL = try await run(veilBinary, base + ["--vmpl", "4"], scratch: scratch)
        #expect(badVMPL.status != 0 && badVMPL.stderr.contains("--vmpl must be 0-3 or any"), "\(badVMPL.stderr)")
        // The minimum TCB: above the report's is refused and named, at or below it passes.
        let above = try await run(veilBinary, base + ["--minimum-tcb", "255:0:0:0"], scratch: scratch)
        #expect(above.status != 0 && above.stderr.contains("is below the minimum"), "\(above.stderr)")
        let atZero = try await run(veilBinary, base + ["--minimum-tcb", "0:0:0:0"], scratch: scratch)
        #expect(atZero.status == 0 && !atZero.stdout.contains("any firmware TCB was accepted"), "\(atZero.stdout)\(atZero.stderr)")
    }

    /// A PCCS behind a certificate of its own CA (the usual installation): refused under the
    /// system's roots, reached with --collateral-ca; what it serves is still verified against
    /// Intel's roots, so a broken signature is refused although the server is trusted.
    @Test func aPCCSWithItsOwnCAIsTrustedOnlyWhenNamed() async throws {
        let scratch = try Scratch()
        let stub = try await PCCSStub(scratch: scratch)
        let ca = stub.ca
        func pccs(tamper: Bool) async throws -> (Spawned, String) {
            try await stub.start(collateral: "\(vectors)/tdx_quote_collateral.json", tamper: tamper, scratch: scratch)
        }
        let (server, url) = try await pccs(tamper: false)
        defer { server.kill9() }
        func verify(_ url: String, _ extra: [String], cache: String) async throws -> RunResult {
            try await run(veilBinary, ["verify", "\(vectors)/tdx_quote", "--collateral", url, "--at", "2025-06-19T11:16:03Z", "--cache-dir", scratch.path + "/" + cache] + extra, scratch: scratch)
        }
        let untrusted = try await verify(url, [], cache: "c1")
        #expect(untrusted.status != 0 && untrusted.stderr.contains("CERTIFICATE_VERIFY_FAILED") && untrusted.stderr.contains("pass --collateral-ca FILE"), "\(untrusted.stderr)")
        let trusted = try await verify(url, ["--collateral-ca", ca], cache: "c2")
        #expect(trusted.status == 0 && trusted.stdout.contains("tcb status: UpToDate"), "\(trusted.stdout)\(trusted.stderr)")

        let (tampering, tamperedURL) = try await pccs(tamper: true)
        defer { tampering.kill9() }
        let tampered = try await verify(tamperedURL, ["--collateral-ca", ca], cache: "c3")
        #expect(tampered.status != 0 && tampered.stderr.lowercased().contains("signature"), "\(tampered.stderr)")
        let notPEM = try await verify(url, ["--collateral-ca", try scratch.write("not a certificate", to: "bad.pem")], cache: "c4")
        #expect(notPEM.status != 0 && notPEM.stderr.contains("--collateral-ca"), "\(notPEM.stderr)")
    }
}
