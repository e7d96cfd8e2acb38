import Testing
@testable import VeilAttestation

/// The one SEV-SNP policy validator: one test per rule, and the TCB version's partial order.
@Suite struct SNPRequirementsTests {
    /// A guest every strict rule accepts: bit 17 (must be one), ABI 0.31, nothing else.
    static let validPolicy: UInt64 = 1 << 17 | 0x1F
    static let tcb = SNPReport.TCBVersion(bootloader: 3, tee: 0, snp: 8, microcode: 115)

    func guest(policy: UInt64 = validPolicy, vmpl: UInt32? = 0, tcb: SNPReport.TCBVersion = tcb, hostData: [UInt8] = .init(repeating: 0, count: 32)) -> SNPClaims {
        SNPClaims(hostData: hostData, idKeyDigest: [], reportedTCB: tcb.raw, turinTCBLayout: tcb.fmc != nil, policy: policy, vmpl: vmpl)
    }

    let strict = SNPRequirements(minimumTCB: .atLeast(tcb))

    @Test func aGuestMeetingEveryRulePasses() throws {
        try strict.check(guest())
        try SNPRequirements.wellFormed.check(guest(policy: Self.validPolicy | 1 << 19 | 1 << 18, vmpl: 3))
    }

    @Test func reservedPolicyBitsAreRefusedEvenByTheMostPermissiveRequirements() {
        let bit17Clear = Self.validPolicy & ~(1 << 17)
        #expect(throws: SNPPolicyViolation.reservedPolicyBits(raw: bit17Clear)) { try SNPRequirements.wellFormed.check(guest(policy: bit17Clear)) }
        for bit in [26, 40, 63] {
            let policy = Self.validPolicy | 1 << UInt64(bit)
            #expect(throws: SNPPolicyViolation.reservedPolicyBits(raw: policy)) { try SNPRequirements.wellFormed.check(guest(policy: policy)) }
        }
        // Bits the ABI defines (SMT 16 … page-swap-disable 25) are not reserved.
        for bit in [16, 20, 21, 22, 23, 24, 25] { #expect(throws: Never.self) { try SNPRequirements.wellFormed.check(guest(policy: Self.validPolicy | 1 << UInt64(bit))) } }
    }

    @Test func debugIsRefusedUnlessAllowed() throws {
        let debug = guest(policy: Self.validPolicy | 1 << 19)
        #expect(throws: SNPPolicyViolation.debugAllowed) { try strict.check(debug) }
        try SNPRequirements(minimumTCB: .any, allowDebug: true).check(debug)
    }

    @Test func aMigrationAgentIsRefusedUnlessAllowed() throws {
        let migratable = guest(policy: Self.validPolicy | 1 << 18)
        #expect(throws: SNPPolicyViolation.migrationAgentAllowed) { try strict.check(migratable) }
        try SNPRequirements(minimumTCB: .any, allowMigrationAgent: true).check(migratable)
    }

    @Test func smtIsRefusedWhenRequiredOff() throws {
        let smt = guest(policy: Self.validPolicy | 1 << 16)
        try strict.check(smt)
        #expect(throws: SNPPolicyViolation.smtAllowed) { try SNPRequirements(minimumTCB: .any, allowSMT: false).check(smt) }
    }

    @Test func vmplDefaultsToZeroAndAnyIsExplicit() throws {
        #expect(throws: SNPPolicyViolation.vmpl(reported: 1, required: 0)) { try strict.check(guest(vmpl: 1)) }
        #expect(throws: SNPPolicyViolation.vmpl(reported: nil, required: 0)) { try strict.check(guest(vmpl: nil)) }
        try SNPRequirements(minimumTCB: .any, vmpl: nil).check(guest(vmpl: 2))
    }

    @Test func aTCBBelowTheMinimumInAnyComponentIsRefused() throws {
        let older = SNPReport.TCBVersion(bootloader: 3, tee: 0, snp: 7, microcode: 200)
        #expect(throws: SNPPolicyViolation.tcbBelowMinimum(reported: older, minimum: Self.tcb)) { try strict.check(guest(tcb: older)) }
        try SNPRequirements(minimumTCB: .any).check(guest(tcb: older))
        let error = try #require(throws: SNPPolicyViolation.self) { try strict.check(guest(tcb: older)) }
        #expect(error.field == "REPORTED_TCB")
        #expect(error.description(requiredBy: "the package").contains("below the package's minimum"))
    }

    @Test func hostDataMustBeTheRequiredValue() throws {
        var requirements = strict
        requirements.hostData = .init(repeating: 0x11, count: 32)
        #expect(throws: SNPPolicyViolation.self) { try requirements.check(guest()) }
        try requirements.check(guest(hostData: .init(repeating: 0x11, count: 32)))
    }

    /// Component-wise: a newer bootloader with an older microcode reaches neither way.
    @Test func tcbVersionsArePartiallyOrdered() {
        let a = SNPReport.TCBVersion(bootloader: 4, tee: 0, snp: 8, microcode: 100)
        let b = SNPReport.TCBVersion(bootloader: 3, tee: 0, snp: 8, microcode: 115)
        #expect(!a.isAtLeast(b) && !b.isAtLeast(a))
        #expect(a.isAtLeast(a))
        let c = SNPReport.TCBVersion(bootloader: 4, tee: 1, snp: 9, microcode: 115)
        #expect(c.isAtLeast(a) && c.isAtLeast(b) && !a.isAtLeast(c))
        // Turin: the FMC is compared too.
        let turin = SNPReport.TCBVersion(bootloader: 1, tee: 1, snp: 1, microcode: 1, fmc: 2)
        #expect(!turin.isAtLeast(SNPReport.TCBVersion(bootloader: 1, tee: 1, snp: 1, microcode: 1, fmc: 3)))
    }

    /// The one place the two layouts are packed: Milan/Genoa bytes 0, 1, 6, 7; Turin 0 (FMC), 1, 2, 3, 7.
    @Test func componentsPackIntoEachProductsLayout() {
        let milan = SNPReport.TCBVersion(bootloader: 3, tee: 0, snp: 8, microcode: 115)
        #expect(milan.raw == 0x7308_0000_0000_0003)
        #expect(SNPReport.TCBVersion(raw: milan.raw) == milan)
        let turin = SNPReport.TCBVersion(bootloader: 1, tee: 2, snp: 3, microcode: 4, fmc: 5)
        #expect(turin.raw == 0x0400_0000_0302_0105)
        #expect(SNPReport.TCBVersion(raw: turin.raw, turin: true) == turin)
        #expect(SNPReport.TCBVersion(components: "3:0:8:115") == milan)
        #expect(SNPReport.TCBVersion(components: "1:2:3:4:5") == turin)
        for bad in ["", "3:0:8", "3:0:8:256", "3:0::115", "a:b:c:d", "1:2:3:4:5:6"] { #expect(SNPReport.TCBVersion(components: bad) == nil, "\(bad)") }
    }
}
