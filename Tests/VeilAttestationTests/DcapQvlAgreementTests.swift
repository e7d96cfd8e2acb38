import Foundation
import Testing
import VeilAttestation

/// Runs the reference verifier dcap-qvl 0.7.0 (PyPI; `.ci/run` installs it) on the same
/// inputs in the same test, so agreement is checked live rather than copied.
@Suite struct DcapQvlAgreementTests {
    struct Outcome: Decodable, Equatable {
        var status: String?
        var advisory_ids: [String]?
        var error: String?
    }

    static let script = """
        import dcap_qvl, json, sys
        quote = open(sys.argv[1], 'rb').read()
        collateral = dcap_qvl.QuoteCollateralV3.from_json(open(sys.argv[2]).read())
        try:
            r = dcap_qvl.verify(quote, collateral, int(sys.argv[3]))
            print(json.dumps({"status": r.status, "advisory_ids": list(r.advisory_ids)}))
        except Exception as e:
            print(json.dumps({"error": str(e)}))
        """

    func dcapQvl(quote: [UInt8], collateralFile: String, at unix: Int) throws -> Outcome {
        let quotePath = FileManager.default.temporaryDirectory.appendingPathComponent("quote-\(UUID().uuidString)").path
        try Data(quote).write(to: URL(fileURLWithPath: quotePath))
        defer { try? FileManager.default.removeItem(atPath: quotePath) }
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", Self.script, quotePath, collateralFile, "\(unix)"]
        process.standardOutput = output
        try process.run()
        let data = output.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        try #require(process.terminationStatus == 0, "python3 with dcap-qvl==0.7.0 must be installed (pip install dcap-qvl==0.7.0)")
        return try JSONDecoder().decode(Outcome.self, from: data)
    }

    func veil(quote: [UInt8], collateral: DCAPCollateral, at unix: Int) -> Outcome {
        do {
            let result = try DCAPVerifier().verify(quote: quote, collateral: collateral, at: Date(timeIntervalSince1970: TimeInterval(unix)))
            return Outcome(status: result.verdict.status.rawValue, advisory_ids: result.verdict.advisoryIDs)
        } catch {
            return Outcome(error: "\(error)")
        }
    }

    @Test(arguments: ["sgx_quote", "tdx_quote", "tdx_quote_outdated"])
    func sameVerdictAsDcapQvl(name: String) throws {
        let vector = try Vectors.load(name)
        let collateralFile = Vectors.directory + "/" + vector.expected.collateral
        for offset in [0, 3600, 86400 * 3] {
            let unix = vector.expected.verify_at_unix + offset
            let reference = try dcapQvl(quote: vector.quote, collateralFile: collateralFile, at: unix)
            let ours = veil(quote: vector.quote, collateral: vector.collateral, at: unix)
            #expect((reference.error == nil) == (ours.error == nil), "at \(unix): dcap-qvl \(reference), veil \(ours)")
            #expect(reference.status == ours.status, "at \(unix)")
            #expect(Set(reference.advisory_ids ?? []) == Set(ours.advisory_ids ?? []), "at \(unix)")
            if let error = reference.error, error.contains("No matching TCB level") {
                #expect(ours.error?.contains("no matching TCB level") == true)
            }
        }
    }

    @Test func bothRejectATamperedQuote() throws {
        let vector = try Vectors.load("sgx_quote")
        var quote = vector.quote
        quote[440] ^= 1
        let reference = try dcapQvl(quote: quote, collateralFile: Vectors.directory + "/" + vector.expected.collateral, at: vector.expected.verify_at_unix)
        #expect(reference.error != nil)
        #expect(veil(quote: quote, collateral: vector.collateral, at: vector.expected.verify_at_unix).error != nil)
    }
}
