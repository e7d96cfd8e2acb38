import Foundation
import Testing
import VeilAttestation
import VeilCore

/// `ConfigfsTSMProvider` against a configfs-tsm double that behaves like the kernel's
/// (``TSMDouble``), serving real captured reports: a Genoa guest's (Veraison) and a TD's
/// (dcap-qvl). Each test is a way the kernel differs from a plain directory.
@Suite(.timeLimit(.minutes(3))) struct ConfigfsTSMTests {
    static let testdata = repositoryRoot + "/../shared/testdata/attestation"
    static let genoaReport = testdata + "/veraison/upstream/outblob.bin"
    static let genoaTable = testdata + "/veraison/upstream/auxblob.bin"
    let reportData = ReportData.binding(Array("launcher key".utf8), nonce: [9, 9])

    func double(_ scratch: Scratch, provider: String = "sev_guest", outblob: String = ConfigfsTSMTests.genoaReport,
                auxblob: String? = ConfigfsTSMTests.genoaTable, options: [String] = []) async throws -> TSMDouble {
        try #require(TSMDouble.available, "install python3-fusepy (scripts/install-deps.sh test); /dev/fuse is needed")
        return try await TSMDouble(scratch: scratch, provider: provider, outblob: outblob, auxblob: auxblob, options: options)
    }

    /// Each request makes its own entry, writes inblob once, and removes the entry.
    @Test func anSNPReportComesFromAnEntryOfItsOwnThatIsRemovedAfterwards() async throws {
        let scratch = try Scratch()
        let tsm = try await double(scratch)
        let provider = ConfigfsTSMProvider(root: tsm.root, expectedProvider: "sev_guest")
        let evidence = try await offThread { try provider.evidence(reportData: reportData) }
        let claims = try Verifier(policy: VerificationPolicy(allowSNP: true)).verify(evidence)
        #expect(claims.tee == .snp)
        #expect(tsm.writes(to: "inblob") == [Hex.encode(reportData)], "the report data went to inblob, once")
        let made = tsm.events.filter { $0["op"] as? String == "mkdir" }.compactMap { $0["entry"] as? String }
        #expect(made.count == 1 && made[0].hasPrefix("veil-") && made[0].count == 21, "a random entry name: \(made)")
        #expect(tsm.events.contains { $0["op"] as? String == "rmdir" && $0["entry"] as? String == made.first }, "the entry is removed")
        #expect(tsm.entries.isEmpty, "nothing left behind: \(tsm.entries)")
        // Asking for TDX on an SNP guest is refused, not served SNP evidence; still nothing left behind.
        #expect(throws: ProviderError.self) { try ConfigfsTSMProvider(root: tsm.root, expectedProvider: "tdx_guest").evidence(reportData: reportData) }
        #expect(tsm.entries.isEmpty)
    }

    @Test func aTDXQuoteVerifiesWithItsCollateral() async throws {
        let scratch = try Scratch()
        let tsm = try await double(scratch, provider: "tdx_guest", outblob: Self.testdata + "/dcap-qvl/tdx_quote", auxblob: nil)
        let root = tsm.root
        let evidence = try await offThread { try TEESelection.tdx.hardwareProvider(tsmRoot: root).evidence(reportData: reportData) }
        #expect(evidence.format == DCAPEvidence.format)
        let source = try FileDCAPCollateralSource(path: Self.testdata + "/dcap-qvl/tdx_quote_collateral.json")
        let dcap = DCAPEvidenceVerifier(source: source, clock: { Date(timeIntervalSince1970: 1_750_331_763) })
        #expect(try Verifier(policy: VerificationPolicy(dcap: dcap)).verify(evidence).tee == .tdx)
        let unknown = try await TSMDouble(scratch: scratch, name: "tsm-unknown", provider: "quantum_guest", outblob: Self.genoaReport)
        #expect(throws: ProviderError.unexpectedProvider("quantum_guest")) { try ConfigfsTSMProvider(root: unknown.root).evidence(reportData: reportData) }
    }

    /// Launchers are PID 1 in their containers: two attesting at once through one guest's
    /// configfs must each get the report over their own data (the double copies each entry's
    /// inblob into its report and answers slowly, so the requests overlap).
    @Test func concurrentRequestsGetTheirOwnReports() async throws {
        let scratch = try Scratch()
        let tsm = try await double(scratch, options: ["--bind-report-data", "--read-delay-ms", "300"])
        let provider = ConfigfsTSMProvider(root: tsm.root)
        let first = [UInt8](repeating: 0x11, count: 64), second = [UInt8](repeating: 0x22, count: 64)
        async let a = offThread { try provider.evidence(reportData: first) }
        async let b = offThread { try provider.evidence(reportData: second) }
        let (evidenceA, evidenceB) = try await (a, b)
        #expect(try SNPEvidence.unverifiedReport(in: evidenceA).reportData == first)
        #expect(try SNPEvidence.unverifiedReport(in: evidenceB).reportData == second)
        #expect(Set(tsm.events.filter { $0["op"] as? String == "mkdir" }.compactMap { $0["entry"] as? String }).count == 2)
        let reads = tsm.events.filter { $0["op"] as? String == "read" }
        #expect(reads.count == 2, "both reads were in flight together: \(tsm.events)")
    }

    /// Another writer between our write and our read: the generation moved by more than our
    /// writes, so the report (over their data) is discarded.
    @Test func aForeignWriteIsDetectedByTheGeneration() async throws {
        let scratch = try Scratch()
        let tsm = try await double(scratch, options: ["--foreign-write"])
        let error = try #require(throws: ProviderError.self) { try ConfigfsTSMProvider(root: tsm.root).evidence(reportData: reportData) }
        guard case .concurrentUse(_, let expected, let found) = error else { Issue.record("\(error)"); return }
        #expect(expected == 1 && found == 2, "\(error)")
        #expect(tsm.entries.isEmpty)
    }

    /// A guest above VMPL 0 (under an SVSM) gets reports only at its own privilege level or
    /// above: the provider sets privlevel to privlevel_floor first (one more write it counts).
    @Test func privlevelIsSetToTheFloor() async throws {
        let scratch = try Scratch()
        let tsm = try await double(scratch, options: ["--privlevel-floor", "2"])
        let provider = ConfigfsTSMProvider(root: tsm.root)
        let evidence = try await offThread { try provider.evidence(reportData: reportData) }
        #expect(evidence.format == SNPEvidence.format)
        #expect(tsm.writes(to: "privlevel") == [Hex.encode(Array("2".utf8))], "\(tsm.events)")
        #expect(tsm.events.contains { $0["op"] as? String == "read" && $0["privlevel"] as? Int == 2 })
    }

    /// After a firmware error sev-guest wipes the VMPCK: that read fails with EIO, every later
    /// one with ENOTTY. Both keep their errno and say what it means.
    @Test func firmwareErrorsKeepTheirErrnoAndAreExplained() async throws {
        let scratch = try Scratch()
        let tsm = try await double(scratch, options: ["--fail-after", "1"])
        let provider = ConfigfsTSMProvider(root: tsm.root)
        _ = try await offThread { try provider.evidence(reportData: reportData) }
        let failed = try #require(throws: ProviderError.self) { try provider.evidence(reportData: reportData) }
        guard case .system("read", let failedPath, EIO) = failed else { Issue.record("\(failed)"); return }
        #expect(failedPath.hasSuffix("/outblob") && "\(failed)".contains("failed to produce the report"), "\(failed)")
        let wiped = try #require(throws: ProviderError.self) { try provider.evidence(reportData: reportData) }
        guard case .system(let operation, let path, let code) = wiped else { Issue.record("\(wiped)"); return }
        #expect(operation == "read" && path.hasSuffix("/outblob") && code == ENOTTY)
        #expect("\(wiped)".contains("VMPCK") && "\(wiped)".contains("reboot"), "\(wiped)")
        #expect(tsm.entries.isEmpty, "entries are removed on failure too")
    }

    /// An empty auxblob (no host certificates) gives evidence without a VCEK, not an error.
    @Test func anEmptyAuxblobStillGivesEvidence() async throws {
        let scratch = try Scratch()
        let tsm = try await double(scratch, auxblob: nil)
        let provider = ConfigfsTSMProvider(root: tsm.root)
        let evidence = try await offThread { try provider.evidence(reportData: reportData) }
        #expect(SNPEvidence.reportNeedingEndorsement(evidence) != nil)
        #expect(throws: AttestationError.snp(.endorsementMissing)) { try Verifier(policy: VerificationPolicy(allowSNP: true)).verify(evidence) }
    }
}

/// Runs blocking work (file I/O on a TEE interface) on a thread of its own, not the
/// cooperative pool.
func offThread<T: Sendable>(_ body: @escaping @Sendable () throws -> T) async throws -> T {
    try await withCheckedThrowingContinuation { continuation in
        Thread.detachNewThread { continuation.resume(with: Result { try body() }) }
    }
}
