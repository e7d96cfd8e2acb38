import Foundation
import Testing
import VeilCore

@testable import VeilAttestation

/// Azure SNP vTPM evidence (Trustee's verifier fixtures, versions 1 and 2): the SNP report, the
/// variable-data binding, the vTPM quote's signature and PCR digest verify; each broken part is
/// refused with its reason.
@Suite struct AzureVTPMTests {
    static let fixtures = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
        + "/../shared/testdata"

    func evidence(_ version: Int) throws -> JSONValue {
        try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: Self.fixtures + "/kbs/evidence/az-snp-vtpm/evidence-v\(version).json"))))
    }

    /// KDS's cert_chain for Milan: the ASK then the ARK (the fixture file adds the ASVK).
    func milanChain() throws -> String {
        let pem = try String(contentsOfFile: Self.fixtures + "/attestation/trustee/upstream/milan_ask_ark_asvk.pem", encoding: .utf8)
        return pem.components(separatedBy: "-----END CERTIFICATE-----").prefix(2).map { $0 + "-----END CERTIFICATE-----\n" }.joined()
    }

    @Test(arguments: [1, 2]) func everythingButTheBindingVerifies(version: Int) throws {
        let verified = try AzureVTPMEvidence.verify(try evidence(version), chain: try milanChain())
        #expect(verified.claims.tee == .snp && verified.claims.snp?.vmpl == 0)
        #expect(!verified.nonce.isEmpty)
        #expect((verified.userData != nil) == (version == 2))
        #expect(try AzureVTPMEvidence.snpReport(try evidence(version)).measurement == verified.claims.measurement)
    }

    @Test func eachBrokenPartIsRefusedWithItsReason() throws {
        let chain = try milanChain()
        func refusal(_ change: (inout [String: JSONValue]) -> Void) throws -> String {
            var fields = try evidence(2).objectValue!
            change(&fields)
            do {
                _ = try AzureVTPMEvidence.verify(.object(fields), chain: chain)
                return "accepted"
            } catch {
                return "\(error)"
            }
        }
        func quote(_ fields: [String: JSONValue], _ key: String, _ edit: (inout String) -> Void) -> JSONValue {
            var quote = fields["tpm_quote"]!.objectValue!
            if key == "pcrs" {
                var pcrs = quote["pcrs"]!.stringArray!
                edit(&pcrs[0])
                quote["pcrs"] = .array(pcrs.map { .string($0) })
            } else {
                var text = quote[key]!.stringValue!
                edit(&text)
                quote[key] = .string(text)
            }
            return .object(quote)
        }
        func flipLastHex(_ text: inout String) { text = String(text.dropLast()) + (text.last == "0" ? "1" : "0") }
        #expect(try refusal { $0["tpm_quote"] = quote($0, "pcrs", flipLastHex) }.contains("PCR values do not match"))
        #expect(try refusal { $0["tpm_quote"] = quote($0, "signature", flipLastHex) }.contains("not signed by the HCL's attestation key"))
        #expect(try refusal { $0["tpm_quote"] = quote($0, "message", flipLastHex) }.contains("not signed by the HCL's attestation key"))
        #expect(try refusal { fields in
            var hcl = Base64URL.decode(fields["hcl_report"]!.stringValue!.filter { $0 != "=" })!
            hcl[0x20 + 0x4A0 + 20 + 10] ^= 1  // inside the variable data
            fields["hcl_report"] = .string(Base64URL.encode(hcl))
        }.contains("variable data is not what its SNP report binds"))
        #expect(try refusal { fields in
            var hcl = Base64URL.decode(fields["hcl_report"]!.stringValue!.filter { $0 != "=" })!
            hcl[0x20 + 0x90] ^= 1  // the SNP measurement
            fields["hcl_report"] = .string(Base64URL.encode(hcl))
        }.contains("signature"))
        #expect(try refusal { $0["version"] = .number(3) }.contains("version"))
    }
}
