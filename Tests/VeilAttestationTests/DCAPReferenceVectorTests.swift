import Foundation
import Testing
@testable import VeilAttestation
import VeilCore

/// The real SGX/TDX quotes of dcap-rs, go-tdx-guest and trustee (../shared/testdata/attestation,
/// each directory's SOURCE.md names its origin, licence and the reference verdicts). Expected
/// verdicts are those of dcap-qvl 0.7.0 where it decides, and of Intel's TcbLevelCheck
/// algorithm (`tools/tcbref.py` in the shared data) where dcap-qvl cannot (TCB info v2, debug).
@Suite struct DCAPReferenceVectorTests {
    static let root = URL(fileURLWithPath: Vectors.directory).deletingLastPathComponent().path

    struct Case: Sendable, CustomTestStringConvertible {
        var quote: String
        var collateral: String
        var time: String
        /// Expected status, or nil when verification must fail with `error`.
        var status: TCBStatus?
        var advisories: [String] = []
        var error: String? = nil
        var debug = false
        var testDescription: String { quote }
    }

    static let cases: [Case] = [
        // TCB info v2 (no `id`, components named one by one): dcap-qvl cannot parse it; Intel's algorithm says OutOfDate.
        Case(quote: "dcap-rs/sgx_v3_quote.dat", collateral: "dcap-rs/sgx_v3_collateral.json", time: "2025-02-13T04:00:32Z", status: .outOfDate),
        Case(quote: "dcap-rs/tdx_00806f050000_quote.dat", collateral: "dcap-rs/tdx_00806f050000_collateral.json", time: "2025-02-13T04:00:32Z",
             status: .outOfDate, advisories: ["INTEL-SA-00960", "INTEL-SA-00982", "INTEL-SA-00986"]),
        Case(quote: "dcap-rs/sgx_v3_00a067110000_quote.dat", collateral: "dcap-rs/sgx_v3_00a067110000_collateral.json", time: "2024-08-27T00:00:00Z",
             status: .configurationAndSWHardeningNeeded, advisories: ["INTEL-SA-00289", "INTEL-SA-00615"], debug: true),
        // TEE_TCB_SVN 03 01 …: module major version 1, so bytes 0-1 are the module's, graded by TDX_01.
        Case(quote: "go-tdx-guest/cos113_quote.dat", collateral: "go-tdx-guest/cos113_collateral.json", time: "2025-02-20T00:00:00Z", status: .upToDate),
        Case(quote: "go-tdx-guest/v5_sample_quote.dat", collateral: "go-tdx-guest/v5_sample_collateral.json", time: "2026-02-25T00:00:00Z", status: .upToDate),
        Case(quote: "go-tdx-guest/spr_e4_trimmed_quote.dat", collateral: "go-tdx-guest/spr_e4_collateral.json", time: "2023-06-25T00:00:00Z",
             error: "no matching TCB level"),
        // Unsigned bytes after the signature data are refused (dcap-qvl ignores them; Veil is stricter).
        Case(quote: "go-tdx-guest/spr_e4_quote.dat", collateral: "go-tdx-guest/spr_e4_collateral.json", time: "2023-06-25T00:00:00Z",
             error: "39 unexpected trailing bytes"),
        Case(quote: "trustee/occlum_quote.dat", collateral: "trustee/occlum_collateral.json", time: "2025-02-20T00:00:00Z", status: .outOfDate, debug: true),
        Case(quote: "trustee/tdx_quote_4.dat", collateral: "trustee/tdx_quote_4_collateral.json", time: "2023-06-25T00:00:00Z", status: .upToDate, debug: true),
        Case(quote: "trustee/tdx_quote_5.dat", collateral: "trustee/tdx_quote_5_collateral.json", time: "2025-02-20T00:00:00Z",
             error: "no matching TCB level"),
    ]

    static func load(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/\(name)"))) }

    @Test(arguments: cases)
    func verdictMatchesTheReference(_ vector: Case) throws {
        let quote = try Self.load(vector.quote)
        let collateral = try DCAPCollateral.parseJSON(try Self.load(vector.collateral))
        let time = try Date(vector.time, strategy: .iso8601)
        if let status = vector.status {
            let result = try DCAPVerifier().verify(quote: quote, collateral: collateral, at: time)
            #expect(result.verdict.status == status)
            #expect(result.verdict.advisoryIDs.sorted() == vector.advisories.sorted())
            #expect(result.claims.debug == vector.debug)
        } else {
            #expect {
                try DCAPVerifier().verify(quote: quote, collateral: collateral, at: time)
            } throws: { error in
                "\(error)".contains(vector.error!)
            }
        }
    }

    /// Where dcap-qvl decides (no TCB info v2, no debug refusal), it is run live on the same bytes.
    @Test(arguments: cases.filter { $0.status == nil || (!$0.debug && !$0.collateral.contains("sgx_v3_collateral") && !$0.collateral.contains("occlum")) })
    func dcapQvlAgreesLive(_ vector: Case) throws {
        guard !vector.quote.hasSuffix("spr_e4_quote.dat") else { return }  // dcap-qvl ignores trailing bytes, by design not Veil
        let unix = Int(try Date(vector.time, strategy: .iso8601).timeIntervalSince1970)
        let quote = try Self.load(vector.quote)
        let reference = try DcapQvlAgreementTests().dcapQvl(quote: quote, collateralFile: "\(Self.root)/\(vector.collateral)", at: unix)
        let ours = DcapQvlAgreementTests().veil(quote: quote, collateral: try DCAPCollateral.parseJSON(try Self.load(vector.collateral)), at: unix)
        #expect(reference.status == ours.status, "dcap-qvl \(reference), veil \(ours)")
        #expect(Set(reference.advisory_ids ?? []) == Set(ours.advisory_ids ?? []))
        #expect((reference.error == nil) == (ours.error == nil))
    }

    @Test func tdxComponentsAreComparedFromByteTwoWhenTheModuleHasAMajorVersion() throws {
        let quote = try DCAPQuote(try Self.load("go-tdx-guest/cos113_quote.dat"))
        guard case .td(let report) = quote.body else { Issue.record("not TDX"); return }
        #expect(report.teeTCBSVN[1] > 0, "the vector exercises the module-version path")
        let info = try JSONDecoder().decode(TCBInfo.self, from: Data(try DCAPCollateral.parseJSON(try Self.load("go-tdx-guest/cos113_collateral.json")).tcbInfo))
        let upToDate = try #require(info.tcbLevels.first)
        // Byte 0 (module SVN) is below the first level's: a 16-byte comparison would skip it.
        #expect(Int(report.teeTCBSVN[0]) < upToDate.tcb.tdxtcbcomponents![0].svn)
    }

    @Test func tcbInfoVersionTwoDecodesNamedComponents() throws {
        let info = try JSONDecoder().decode(TCBInfo.self, from: Data(try DCAPCollateral.parseJSON(try Self.load("dcap-rs/sgx_v3_collateral.json")).tcbInfo))
        #expect(info.version == 2 && info.id == nil)
        #expect(info.tcbLevels.allSatisfy { $0.tcb.sgxtcbcomponents?.count == 16 })
        // A v2 TCB info cannot grade a TDX quote, even one for the same platform.
        let tdx = try DCAPQuote(try Self.load("go-tdx-guest/cos113_quote.dat"))
        let pck = try PCKExtensions(try #require(try DCAPVerifier.certificates(tdx.pckChainPEM, "PCK").first))
        var sameFMSPC = info
        sameFMSPC.fmspc = Hex.encode(pck.fmspc)
        sameFMSPC.pceId = Hex.encode(pck.pceID)
        #expect(throws: DCAPError.tcbInfoMismatch("TCB info version 2 has no TDX levels; a TDX quote needs version 3")) {
            try DCAPVerifier.matchPlatformTCB(tdx, pck, sameFMSPC)
        }
    }

    @Test func statusesConvergeAsIntelsLibraryDoes() {
        func converge(_ platform: TCBStatus, _ other: TCBStatus) -> TCBStatus {
            TCBVerdict(status: platform, advisoryIDs: ["A"]).converged(with: TCBVerdict(status: other, advisoryIDs: ["B", "A"])).status
        }
        #expect(converge(.upToDate, .outOfDate) == .outOfDate)
        #expect(converge(.swHardeningNeeded, .outOfDate) == .outOfDate)
        #expect(converge(.configurationNeeded, .outOfDate) == .outOfDateConfigurationNeeded)
        #expect(converge(.configurationAndSWHardeningNeeded, .outOfDate) == .outOfDateConfigurationNeeded)
        #expect(converge(.outOfDateConfigurationNeeded, .outOfDate) == .outOfDateConfigurationNeeded)
        #expect(converge(.configurationNeeded, .upToDate) == .configurationNeeded)
        #expect(converge(.upToDate, .revoked) == .revoked)
        #expect(TCBVerdict(status: .upToDate, advisoryIDs: ["A"]).converged(with: TCBVerdict(status: .outOfDate, advisoryIDs: ["B", "A"])).advisoryIDs == ["A", "B"])
    }

    @Test func aQuoteFromAnotherQEVendorIsRefused() throws {
        var quote = try Vectors.bytes("sgx_quote")
        quote[12] ^= 0xFF  // header.qe_vendor_id starts at byte 12
        let vector = try Vectors.load("sgx_quote")
        #expect { try DCAPVerifier().verify(quote: quote, collateral: vector.collateral, at: vector.time) } throws: { error in
            guard case DCAPError.qeVendorUnknown = error else { return false }
            return true
        }
    }

    @Test func aPCKCertificateWithUnusedSignatureBitsIsRefused() throws {
        let vector = try Vectors.load("sgx_quote")
        let quote = try DCAPQuote(vector.quote)
        let tampered = try Self.withUnusedBitsInFirstCertificate(vector.quote, chain: quote.pckChainPEM)
        #expect(tampered != vector.quote)
        #expect { try DCAPVerifier().verify(quote: tampered, collateral: vector.collateral, at: vector.time) } throws: { error in
            guard case DCAPError.malformedCertificate(let why) = error else { return false }
            return why.contains("unused bits")
        }
    }

    /// The quote with its PCK leaf's signature BIT STRING declaring one unused bit (a byte
    /// outside the signed TBS, so every signature still verifies); same length, same PEM layout.
    static func withUnusedBitsInFirstCertificate(_ quote: [UInt8], chain: [UInt8]) throws -> [UInt8] {
        let text = String(decoding: chain, as: UTF8.self)
        let begin = try #require(text.range(of: "-----BEGIN CERTIFICATE-----\n"))
        let end = try #require(text.range(of: "-----END CERTIFICATE-----", range: begin.upperBound..<text.endIndex))
        let body = String(text[begin.upperBound..<end.lowerBound])
        var der = Array(try #require(Data(base64Encoded: body.replacingOccurrences(of: "\n", with: ""))))
        // The signature is the last element, `03 LEN 00 …` (short-form length): find its unused-bits byte.
        var index = der.count - 1
        while index > 2 && !(der[index - 2] == 0x03 && Int(der[index - 1]) == der.count - index && der[index] == 0x00) { index -= 1 }
        #expect(index > 2, "found the signature BIT STRING")
        der[index] = 0x01
        var encoded = Data(der).base64EncodedString()
        var rebuilt = ""
        for line in body.split(separator: "\n", omittingEmptySubsequences: false) {
            rebuilt += String(encoded.prefix(line.count)) + "\n"
            encoded.removeFirst(min(line.count, encoded.count))
        }
        rebuilt.removeLast()
        let replaced = text.replacingCharacters(in: begin.upperBound..<end.lowerBound, with: rebuilt)
        let start = try #require(quote.firstRange(of: chain))
        var result = quote
        result.replaceSubrange(start, with: Array(replaced.utf8))
        return result
    }
}
