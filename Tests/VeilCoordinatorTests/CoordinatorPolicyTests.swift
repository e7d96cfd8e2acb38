import Crypto
import Foundation
import Testing
import VeilAPI
import VeilClient
import VeilAttestation
import VeilCore
import VeilLauncher
import VeilManifest
import X509

/// What a client (`veil attest`, `veil recover`, a launcher attesting its coordinator) requires
/// of the coordinator's evidence: no debug TEE unless allowed, an expected measurement, then the
/// binding of root and nonce. Run on real SGX quotes with their collateral at their own time.
@Suite struct CoordinatorPolicyTests {
    static let attestation = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/testdata/attestation").path

    /// dcap-rs's SGX quote from an enclave with ATTRIBUTES.DEBUG set, and its collateral's time.
    static let debugQuote = "dcap-rs/sgx_v3_00a067110000_quote.dat"
    static let debugCollateral = "dcap-rs/sgx_v3_00a067110000_collateral.json"
    static let debugTime = Date(timeIntervalSince1970: 1_724_716_800)  // 2024-08-27
    /// dcap-qvl's production SGX quote.
    static let productionQuote = "dcap-qvl/sgx_quote"
    static let productionCollateral = "dcap-qvl/sgx_quote_collateral.json"
    static let productionTime = Date(timeIntervalSince1970: 1_750_334_171)

    static func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: "\(attestation)/\(name)"))) }

    /// An attestation response carrying `quote` (recorded: it binds another root and nonce).
    static func response(quote: String) throws -> API.AttestationResponse {
        let key = P256.Signing.PrivateKey()
        let name = try DistinguishedName { CommonName("some coordinator root") }
        let root = try Certificate(
            version: .v3, serialNumber: .init(), publicKey: .init(key.publicKey), notValidBefore: Date(), notValidAfter: Date() + 3600,
            issuer: name, subject: name, signatureAlgorithm: .ecdsaWithSHA256, extensions: Certificate.Extensions {}, issuerPrivateKey: .init(key))
        return API.AttestationResponse(
            evidence: Evidence(format: DCAPEvidence.format, data: try bytes(quote)), rootCertificate: try root.serializeAsPEM().pemString,
            logHead: String(repeating: "00", count: 32), simulated: false, warning: nil)
    }

    static func policy(collateral: String, time: Date, expect measurement: [UInt8]) throws -> CoordinatorPolicy {
        let source = try FileDCAPCollateralSource(path: "\(attestation)/\(collateral)")
        return CoordinatorPolicy(measurements: [measurement], verification: VerificationPolicy(dcap: DCAPEvidenceVerifier(source: source, clock: { time })))
    }

    static func mrenclave(_ quote: String, collateral: String, at time: Date) throws -> [UInt8] {
        try DCAPVerifier().verify(quote: try bytes(quote), collateral: try DCAPCollateral.parseJSON(try bytes(collateral)), at: time).claims.measurement
    }

    func refusal(_ body: () throws -> AttestedCoordinator) -> CoordinatorAttestationError? {
        do {
            _ = try body()
            return nil
        } catch {
            return error as? CoordinatorAttestationError
        }
    }

    @Test func aDebugEnclaveCoordinatorIsRefusedEvenWithTheExpectedMeasurement() throws {
        let measurement = try Self.mrenclave(Self.debugQuote, collateral: Self.debugCollateral, at: Self.debugTime)
        var policy = try Self.policy(collateral: Self.debugCollateral, time: Self.debugTime, expect: measurement)
        let response = try Self.response(quote: Self.debugQuote)
        let refused = refusal { try CoordinatorAttestation.verify(response, nonce: [UInt8](repeating: 1, count: 32), policy: policy) }
        guard case .debugCoordinator(.sgx) = refused else { Issue.record("expected the debug refusal, got \(String(describing: refused))"); return }
        #expect(refused?.description.contains("--allow-debug") == true)
        // Allowed explicitly, the same evidence gets as far as its binding: it was the debug bit
        // that refused it (this recorded quote binds another root and nonce).
        policy.allowDebug = true
        let allowed = refusal { try CoordinatorAttestation.verify(response, nonce: [UInt8](repeating: 1, count: 32), policy: policy) }
        guard case .evidence(.reportDataMismatch) = allowed else { Issue.record("expected the binding refusal, got \(String(describing: allowed))"); return }
    }

    @Test func aProductionEnclaveIsNotRefusedAsDebug() throws {
        let measurement = try Self.mrenclave(Self.productionQuote, collateral: Self.productionCollateral, at: Self.productionTime)
        let policy = try Self.policy(collateral: Self.productionCollateral, time: Self.productionTime, expect: measurement)
        let refused = refusal { try CoordinatorAttestation.verify(try Self.response(quote: Self.productionQuote), nonce: [UInt8](repeating: 1, count: 32), policy: policy) }
        guard case .evidence(.reportDataMismatch) = refused else { Issue.record("expected the binding refusal, got \(String(describing: refused))"); return }
    }

    @Test func anUnexpectedMeasurementNamesBothMeasurements() throws {
        let actual = try Self.mrenclave(Self.productionQuote, collateral: Self.productionCollateral, at: Self.productionTime)
        let expected = [UInt8](repeating: 0xab, count: 32)
        let policy = try Self.policy(collateral: Self.productionCollateral, time: Self.productionTime, expect: expected)
        let refused = refusal { try CoordinatorAttestation.verify(try Self.response(quote: Self.productionQuote), nonce: [UInt8](repeating: 1, count: 32), policy: policy) }
        guard case .measurementNotExpected = refused else { Issue.record("expected the measurement refusal, got \(String(describing: refused))"); return }
        #expect(refused?.description.contains(Hex.encode(actual)) == true && refused?.description.contains(Hex.encode(expected)) == true,
                "\(refused?.description ?? "")")
    }

    /// The one debug rule for every hardware TEE, and the policy file's `AllowDebug`.
    @Test(arguments: [TEEKind.sgx, .tdx, .snp])
    func debugClaimsOfEveryTEEAreRefusedUnlessAllowed(_ tee: TEEKind) throws {
        let measurement = [UInt8](repeating: 7, count: tee == .sgx ? 32 : 48)
        let claims = Claims(tee: tee, measurement: measurement, reportData: [], debug: true, simulated: false)
        // These claims carry no RTMRs: a TD is pinned by MRTD alone, allowed here (TDXIdentityTests covers that rule).
        var policy = CoordinatorPolicy(measurements: [measurement], verification: .init())
        policy.allowTDXFirmwareOnly = true
        #expect(throws: CoordinatorAttestationError.self) { try policy.check(claims) }
        policy.allowDebug = true
        try policy.check(claims)
        var production = claims
        production.debug = false
        var productionPolicy = CoordinatorPolicy(measurements: [measurement], verification: .init())
        productionPolicy.allowTDXFirmwareOnly = true
        try productionPolicy.check(production)

        let file = FileManager.default.temporaryDirectory.appendingPathComponent("policy-\(UUID().uuidString).json").path
        defer { try? FileManager.default.removeItem(atPath: file) }
        try Data(#"{"Measurements": ["\#(Hex.encode(measurement))"], "AllowDebug": true, "AllowMRTDOnly": true}"#.utf8).write(to: URL(fileURLWithPath: file))
        try CoordinatorPolicy.load(path: file).check(claims)
    }
}
