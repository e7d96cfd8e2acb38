import Crypto
import Foundation
import Testing
import VeilAttestation
import VeilCore

@Suite struct SimulatedEvidenceTests {
    let key = SimulationPlatformKey(privateKey: P256.Signing.PrivateKey())
    let measurement = Array(SHA256.hash(data: Array("program".utf8)))
    let reportData = ReportData.binding(Array("public key".utf8), nonce: [1, 2, 3])

    var verifier: Verifier { Verifier(policy: VerificationPolicy(allowSimulation: true, simulationKey: key.publicKey)) }

    func evidence() throws -> Evidence {
        try SimulatedEvidenceProvider(key: key, measurement: measurement, productID: 3, securityVersion: 2)
            .evidence(reportData: reportData)
    }

    @Test func verifiesItsOwnEvidence() throws {
        let claims = try verifier.verify(try evidence(), expectedReportData: reportData)
        #expect(claims.measurement == measurement)
        #expect(claims.productID == 3)
        #expect(claims.securityVersion == 2)
        #expect(claims.simulated)
        #expect(claims.tee == .simulated)
    }

    @Test func refusedWhenSimulationNotAllowed() throws {
        let strict = Verifier(policy: VerificationPolicy(allowSimulation: false, simulationKey: key.publicKey))
        #expect(throws: AttestationError.simulationNotAllowed) { try strict.verify(try evidence()) }
        #expect(AttestationError.simulationNotAllowed.description.contains("AllowSimulation"))
        let noKey = Verifier(policy: VerificationPolicy(allowSimulation: true, simulationKey: nil))
        #expect(throws: AttestationError.noSimulationKey) { try noKey.verify(try evidence()) }
        #expect(AttestationError.noSimulationKey.description.contains("--simulation-key"))
    }

    @Test func refusedWhenSignedByAnotherPlatformKey() throws {
        let other = SimulationPlatformKey(privateKey: P256.Signing.PrivateKey())
        let forged = try SimulatedEvidenceProvider(key: other, measurement: measurement).evidence(reportData: reportData)
        #expect(throws: AttestationError.untrustedPlatformKey(presented: other.fingerprint, trusted: key.fingerprint)) {
            try verifier.verify(forged)
        }
    }

    @Test func refusedWhenReportDataDoesNotBind() throws {
        let other = ReportData.binding(Array("public key".utf8), nonce: [1, 2, 4])
        #expect(throws: AttestationError.reportDataMismatch) { try verifier.verify(try evidence(), expectedReportData: other) }
    }

    /// Rewrites one claim in the signed report: the signature must no longer verify.
    @Test(arguments: ["measurement", "productID", "reportData", "debug"])
    func refusedWhenAClaimIsAltered(field: String) throws {
        let original = try evidence()
        var envelope = try JSONSerialization.jsonObject(with: Data(original.data)) as! [String: String]
        var body = try JSONSerialization.jsonObject(with: Data(base64Encoded: envelope["report"]!)!) as! [String: Any]
        switch field {
        case "measurement": body[field] = Hex.encode([UInt8](repeating: 7, count: 32))
        case "productID": body[field] = 4
        case "reportData": body[field] = Hex.encode([UInt8](repeating: 0, count: 64))
        default: body[field] = true
        }
        envelope["report"] = try JSONSerialization.data(withJSONObject: body).base64EncodedString()
        let tampered = Evidence(format: original.format, data: Array(try JSONSerialization.data(withJSONObject: envelope)))
        #expect(throws: AttestationError.signatureInvalid) { try verifier.verify(tampered) }
    }

    @Test func refusedWhenSignatureBitFlipped() throws {
        let original = try evidence()
        var envelope = try JSONSerialization.jsonObject(with: Data(original.data)) as! [String: String]
        var signature = Array(Data(base64Encoded: envelope["signature"]!)!)
        signature[signature.count - 1] ^= 0x01
        envelope["signature"] = Data(signature).base64EncodedString()
        let tampered = Evidence(format: original.format, data: Array(try JSONSerialization.data(withJSONObject: envelope)))
        #expect(throws: AttestationError.self) { try verifier.verify(tampered) }
    }

    @Test func malformedEvidenceIsATypedErrorAtEveryTruncation() throws {
        let data = try evidence().data
        for length in stride(from: 0, to: data.count, by: 7) {
            let truncated = Evidence(format: SimulatedReport.format, data: Array(data.prefix(length)))
            #expect(throws: AttestationError.self) { try verifier.verify(truncated) }
        }
        #expect(throws: AttestationError.unsupportedFormat("sgx-quote-v9")) {
            try verifier.verify(Evidence(format: "sgx-quote-v9", data: data))
        }
    }

    @Test func platformKeyFilePersistsAndIsPrivate() throws {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        try FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let path = dir + "/key.pem"
        let created = try SimulationPlatformKey.loadOrCreate(at: path)
        let loaded = try SimulationPlatformKey.loadOrCreate(at: path)
        #expect(created.fingerprint == loaded.fingerprint)
        let mode = (try FileManager.default.attributesOfItem(atPath: path)[.posixPermissions] as! NSNumber).intValue
        #expect(mode == 0o600)
        #expect(SimulationPlatformKey.fingerprint(of: try SimulationPlatformKey.loadPublicKey(at: path)) == created.fingerprint)
        try Data("not a key".utf8).write(to: URL(fileURLWithPath: path))
        #expect(throws: AttestationError.self) { try SimulationPlatformKey.load(at: path) }
    }
}

@Suite struct LaunchMeasurementTests {
    @Test func oneChangedByteChangesTheMeasurement() throws {
        var program = [UInt8](repeating: 0x90, count: 3 << 20)
        let config = LaunchMeasurement.Config(service: "cache", arguments: ["--port", "1"])
        let original = LaunchMeasurement.measure(program: program, config: config)
        program[2 << 20] ^= 1
        #expect(LaunchMeasurement.measure(program: program, config: config) != original)
        program[2 << 20] ^= 1
        #expect(LaunchMeasurement.measure(program: program, config: config) == original)
        #expect(LaunchMeasurement.measure(program: program, config: .init(service: "other", arguments: ["--port", "1"])) != original)
        #expect(LaunchMeasurement.measure(program: program, config: .init(service: "cache", arguments: ["--port", "2"])) != original)
    }

    @Test func descriptorAndMemoryMeasurementsAgree() throws {
        let path = FileManager.default.temporaryDirectory.appendingPathComponent(UUID().uuidString).path
        let bytes = (0..<(1 << 21) + 13).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        defer { try? FileManager.default.removeItem(atPath: path) }
        let config = LaunchMeasurement.Config(service: "s", arguments: [])
        #expect(try LaunchMeasurement.measure(programAt: path, config: config) == LaunchMeasurement.measure(program: bytes, config: config))
    }
}

@Suite struct HexTests {
    @Test func roundTripsAndRejectsBadInput() {
        #expect(Hex.encode([0x00, 0xab, 0xff]) == "00abff")
        #expect(Hex.decode("00ABff") == [0x00, 0xab, 0xff])
        #expect(Hex.decode("abc") == nil)
        #expect(Hex.decode("zz") == nil)
        #expect(Hex.decode("") == [])
    }
}
