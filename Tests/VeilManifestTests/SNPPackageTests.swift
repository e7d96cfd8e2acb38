import Testing
import VeilAttestation
@testable import VeilManifest

/// Secure defaults of snp packages: a stated MinimumTCB, VMPL 0.
@Suite struct SNPPackageTests {
    static let measurement = String(repeating: "ab", count: 48)

    func parse(_ package: String) throws(ManifestValidationError) -> Manifest {
        try Manifest.parse(Array(#"{"Packages": {"p": \#(package)}, "Services": {"s": {"Package": "p"}}}"#.utf8))
    }

    @Test func minimumTCBMustBeStatedAtItsJSONPath() throws {
        let missing = try #require(throws: ManifestValidationError.self) { try parse(#"{"Kind": "snp", "Measurement": "\#(Self.measurement)"}"#) }
        #expect(missing.problems.map(\.path) == ["$.Packages.p.MinimumTCB"], "\(missing)")
        #expect(missing.description.contains(#""any""#))
        let refused: [(String, String)] = [
            (#""latest""#, "$.Packages.p.MinimumTCB"),
            (#"{"Bootloader": 3, "TEE": 0, "SNP": 8}"#, "$.Packages.p.MinimumTCB.Microcode"),
            (#"{"Bootloader": 3, "TEE": 0, "SNP": 8, "Microcode": 300}"#, "$.Packages.p.MinimumTCB.Microcode"),
            (#"{"Bootloader": 3, "TEE": 0, "SNP": 8, "Microcode": 1, "Ucode": 1}"#, "$.Packages.p.MinimumTCB.Ucode"),
        ]
        for (value, path) in refused {
            let error = try #require(throws: ManifestValidationError.self) {
                try parse(#"{"Kind": "snp", "Measurement": "\#(Self.measurement)", "MinimumTCB": \#(value)}"#)
            }
            #expect(error.problems.map(\.path).contains(path), "\(value): \(error)")
        }
    }

    @Test func anyIsAcceptedAndWarnedAbout() throws {
        let manifest = try parse(#"{"Kind": "snp", "Measurement": "\#(Self.measurement)", "MinimumTCB": "any"}"#)
        #expect(manifest.packages["p"]?.snpRequirements?.minimumTCB == .any)
        #expect(manifest.coverageWarnings.contains { $0.contains("package 'p' (snp) accepts any firmware TCB") })
        let stated = try parse(#"{"Kind": "snp", "Measurement": "\#(Self.measurement)", "MinimumTCB": {"Bootloader": 1, "TEE": 2, "SNP": 3, "Microcode": 4, "FMC": 5}}"#)
        #expect(stated.packages["p"]?.snpRequirements?.minimumTCB == .atLeast(SNPReport.TCBVersion(bootloader: 1, tee: 2, snp: 3, microcode: 4, fmc: 5)))
        #expect(stated.coverageWarnings.isEmpty)
    }

    @Test func vmplDefaultsToZeroAndDebugFollowsThePackage() throws {
        let plain = try parse(#"{"Kind": "snp", "Measurement": "\#(Self.measurement)", "MinimumTCB": "any"}"#)
        #expect(plain.packages["p"]?.snpRequirements == SNPRequirements(minimumTCB: .any, vmpl: 0, allowDebug: false, allowMigrationAgent: false))
        let stated = try parse(#"{"Kind": "snp", "Measurement": "\#(Self.measurement)", "MinimumTCB": "any", "VMPL": 2, "Debug": true, "AllowMigrationAgent": true}"#)
        #expect(stated.packages["p"]?.snpRequirements == SNPRequirements(minimumTCB: .any, vmpl: 2, allowDebug: true, allowMigrationAgent: true))
    }
}

extension Package {
    /// The SNP rules of an snp package (nil for the other TEEs).
    var snpRequirements: SNPRequirements? {
        guard case .snp(let guest) = self else { return nil }
        return guest.requirements
    }

    /// The rules of an SGX or simulated package (nil for confidential VMs).
    var enclave: EnclaveIdentity? {
        switch self {
        case .simulated(let enclave), .sgx(let enclave): return enclave
        case .tdx, .snp: return nil
        }
    }
}
