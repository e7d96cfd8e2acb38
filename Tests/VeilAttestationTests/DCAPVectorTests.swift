import Foundation
import Testing
import VeilAttestation

/// The shared public vectors (../shared/testdata/attestation/dcap-qvl, MIT, see SOURCE.md there).
enum Vectors {
    static let directory = URL(fileURLWithPath: #filePath)
        .deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().appendingPathComponent("shared/testdata/attestation/dcap-qvl").path

    struct Expected: Decodable {
        var collateral: String
        var verify_at_unix: Int
        var status: String?
        var advisory_ids: [String]?
        var error: String?
    }

    static func bytes(_ name: String) throws -> [UInt8] {
        Array(try Data(contentsOf: URL(fileURLWithPath: directory + "/" + name)))
    }

    static func expected() throws -> [String: Expected] {
        try JSONDecoder().decode([String: Expected].self, from: Data(try bytes("EXPECTED.json")))
    }

    static func load(_ name: String) throws -> (quote: [UInt8], collateral: DCAPCollateral, time: Date, expected: Expected) {
        let expected = try #require(try Self.expected()[name])
        return (try bytes(name), try DCAPCollateral.parseJSON(try bytes(expected.collateral)), Date(timeIntervalSince1970: TimeInterval(expected.verify_at_unix)), expected)
    }
}

@Suite struct DCAPVectorTests {
    @Test(arguments: ["sgx_quote", "tdx_quote", "tdx_quote_outdated"])
    func agreesWithDcapQvlExpectations(name: String) throws {
        let vector = try Vectors.load(name)
        let verifier = DCAPVerifier()
        if let status = vector.expected.status {
            let result = try verifier.verify(quote: vector.quote, collateral: vector.collateral, at: vector.time)
            #expect(result.verdict.status.rawValue == status)
            #expect(result.verdict.advisoryIDs.sorted() == (vector.expected.advisory_ids ?? []).sorted())
        } else {
            #expect(throws: DCAPError.noMatchingTCBLevel) {
                try verifier.verify(quote: vector.quote, collateral: vector.collateral, at: vector.time)
            }
            #expect(vector.expected.error?.contains("No matching TCB level") == true)
        }
    }
}
