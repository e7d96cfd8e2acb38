import Crypto
import Foundation
import Testing
import VeilClient
import VeilAttestation
@testable import VeilCoordinator
import VeilLauncher
import VeilCore

/// A TD's identity is MRTD *and* its RTMRs (and MRCONFIGID): MRTD covers only the TD firmware,
/// so a TD booted from the same TDVF with another kernel or program has the coordinator's MRTD.
/// Run on dcap-qvl's real TDX quote, verified with its collateral at its own time; "another TD"
/// is that identity with one RTMR changed (no second signed quote exists).
@Suite struct TDXIdentityTests {
    static let quote = "dcap-qvl/tdx_quote"
    static let collateral = "dcap-qvl/tdx_quote_collateral.json"
    static let time = Date(timeIntervalSince1970: 1_750_331_763)

    static func verification() throws -> VerificationPolicy {
        let source = try FileDCAPCollateralSource(path: "\(CoordinatorPolicyTests.attestation)/\(collateral)")
        return VerificationPolicy(dcap: DCAPEvidenceVerifier(source: source, clock: { time }))
    }

    static func evidence() throws -> Evidence { Evidence(format: DCAPEvidence.format, data: try CoordinatorPolicyTests.bytes(quote)) }

    static func claims() throws -> Claims { try Verifier(policy: verification()).verify(evidence()) }

    static func otherRTMR(_ identity: TEEIdentity, index: Int) -> TEEIdentity {
        var rtmrs = identity.rtmrs ?? []
        rtmrs[index][0] ^= 1
        return TEEIdentity(tee: identity.tee, measurement: identity.measurement, rtmrs: rtmrs, mrConfigID: identity.mrConfigID)
    }

    /// The peer check (HA state-key handover): the replica's own identity includes its RTMRs,
    /// so a TD with the same MRTD and another RTMR is refused the state key.
    @Test func aPeerWithTheSameMRTDButAnotherRTMRIsRefusedTheStateKey() throws {
        let claims = try Self.claims()
        let own = TEEIdentity(claims)
        #expect(own.rtmrs?.count == 4)
        let reportData = claims.reportData
        let same = ReplicaPolicy(ownIdentity: own, verification: try Self.verification())
        #expect(try same.check(try Self.evidence(), binding: reportData, manifest: nil).measurement == claims.measurement)
        for index in 0..<4 {
            let other = ReplicaPolicy(ownIdentity: Self.otherRTMR(own, index: index), verification: try Self.verification())
            let error = try #require(throws: CoordinatorError.self) { try other.check(try Self.evidence(), binding: reportData, manifest: nil) }
            #expect("\(error)".contains("rtmr\(index)="), "\(error)")
        }
        // MRTD alone is not this replica's identity.
        let firmwareOnly = ReplicaPolicy(ownIdentity: TEEIdentity(tee: .tdx, measurement: claims.measurement), verification: try Self.verification())
        #expect(throws: CoordinatorError.self) { try firmwareOnly.check(try Self.evidence(), binding: reportData, manifest: nil) }
    }

    /// `veil attest --expect`: RTMRs pin the software; one that differs is named; MRTD alone is
    /// refused unless allowed, and then accepted with a warning.
    @Test func clientsPinTheRTMRsAndRefuseMRTDAlone() throws {
        let claims = try Self.claims()
        let identity = TEEIdentity(claims)
        let full = try IdentityExpectation(parsing: identity.description)
        #expect(full.rtmrs.count == 4 && full.pinsTDSoftware)
        #expect(try CoordinatorPolicy(expectations: [full], verification: .init()).check(claims).isEmpty)

        let wrong = try IdentityExpectation(parsing: Self.otherRTMR(identity, index: 2).description)
        let refused = try #require(throws: CoordinatorAttestationError.self) { try CoordinatorPolicy(expectations: [wrong], verification: .init()).check(claims) }
        #expect("\(refused)".contains("RTMR2 is \(Hex.encode(identity.rtmrs![2]))"), "\(refused)")

        let mrtdOnly = try IdentityExpectation(parsing: Hex.encode(claims.measurement))
        var policy = CoordinatorPolicy(expectations: [mrtdOnly], verification: .init())
        let firmware = try #require(throws: CoordinatorAttestationError.self) { try policy.check(claims) }
        #expect("\(firmware)".contains("MRTD alone") && "\(firmware)".contains("--allow-mrtd-only"), "\(firmware)")
        policy.allowTDXFirmwareOnly = true
        #expect(try policy.check(claims).first?.contains("MRTD alone") == true)
        // An RTMR alone (MRTD plus rtmr2, say) is software pinned.
        let partial = try IdentityExpectation(parsing: "mrtd=\(Hex.encode(claims.measurement)),rtmr2=\(Hex.encode(identity.rtmrs![2]))")
        #expect(try CoordinatorPolicy(expectations: [partial], verification: .init()).check(claims).isEmpty)
    }

    @Test func hostDataThatIsSetMustBePinned() throws {
        let measurement = [UInt8](repeating: 0x4d, count: 48), hostData = [UInt8](repeating: 0xab, count: 32)
        let guest = TEEIdentity(tee: .snp, measurement: measurement, hostData: hostData)
        #expect(IdentityExpectation(measurement: measurement).mismatch(guest)?.contains("HOST_DATA is set") == true)
        #expect(IdentityExpectation(measurement: measurement, hostData: hostData).mismatch(guest) == nil)
        #expect(IdentityExpectation(measurement: measurement, hostData: [UInt8](repeating: 1, count: 32)).mismatch(guest) != nil)
        // All-zero HOST_DATA is "not set": nothing to pin.
        #expect(IdentityExpectation(measurement: measurement).mismatch(TEEIdentity(tee: .snp, measurement: measurement, hostData: [UInt8](repeating: 0, count: 32))) == nil)
    }

    @Test func malformedExpectationsAreRefusedWithTheReason() {
        let mrtd = String(repeating: "11", count: 48)
        for (text, reason) in [
            ("rtmr0=\(mrtd)", "measurement=HEX"), ("measurement=\(mrtd),rtmr9=\(mrtd)", "unknown field"),
            ("measurement=\(mrtd),rtmr0=1234", "rtmr0 must be 48 bytes"), ("measurement=\(mrtd),hostdata=\(mrtd)", "hostdata must be 32"),
            ("zz", "a measurement must be"), ("measurement=\(mrtd),rtmr1", "is not NAME=HEX"),
        ] {
            #expect(throws: IdentityExpectation.ParseError.self, "\(text)") { try IdentityExpectation(parsing: text) }
            #expect(((try? IdentityExpectation(parsing: text)) == nil))
            do {
                _ = try IdentityExpectation(parsing: text)
            } catch {
                #expect(error.description.contains(reason), "\(text): \(error)")
            }
        }
    }
}
