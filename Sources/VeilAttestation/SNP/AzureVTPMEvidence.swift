import Crypto
import FoundationEssentials
import VeilCore
import _CryptoExtras

/// Azure's SEV-SNP confidential VMs with a paravisor (`az-snp-vtpm` in Confidential Containers):
/// the guest cannot ask the secure processor for a report with its own data; the paravisor's HCL
/// report carries an SNP report binding the paravisor's variable data (its vTPM attestation key
/// among it), and the guest's nonce goes into a vTPM quote signed by that key.
///
/// Evidence (guest-components' attester, versions 1 and 2): `{"version", "tpm_quote": {"signature":
/// HEX, "message": HEX TPMS_ATTEST, "pcrs": [HEX ×24]}, "hcl_report": B64URL, "vcek": B64URL DER}`.
///
/// Checks, every one before the binding so a refusal names the first that fails: the SNP report
/// (VCEK, chain, signature, VMPL 0), `SHA-256(variable data)` = the report's first 32 report-data
/// bytes, the quote's signature by the variable data's `HCLAkPub` key (RSASSA-PKCS1-v1_5,
/// SHA-256), the quote's PCR digest over the 24 PCRs given. The caller then compares ``Verified/nonce``
/// (the quote's qualifying data) — and, from version 2, the variable data's `user-data` — with
/// what it expects.
public enum AzureVTPMEvidence {
    public struct Verified: Sendable {
        public let claims: Claims
        /// The vTPM quote's `extraData`: what the guest asked to bind.
        public let nonce: [UInt8]
        /// Version 2: the `user-data` of the HCL variable data (hex-decoded); nil before.
        public let userData: [UInt8]?
    }

    static let hclHeaderSize = 0x20
    static let igvmHeaderSize = 20

    /// The SNP report inside the evidence's HCL report (unverified): selects the VCEK's chain.
    public static func snpReport(_ evidence: JSONValue) throws(AttestationError) -> SNPReport {
        let hcl = try hclReport(evidence)
        do {
            return try SNPReport(Array(hcl[hclHeaderSize..<hclHeaderSize + SNPReport.size]))
        } catch {
            throw .snp(.malformedReport(error))
        }
    }

    /// Verifies everything but the binding; `chain` is the product's ASK and ARK (PEM).
    public static func verify(_ evidence: JSONValue, chain: String, crls: [AMDProduct: [UInt8]] = [:], at time: Date = Date()) throws(AttestationError) -> Verified {
        guard let version = evidence["version"]?.numberValue, version == 1 || version == 2 else {
            throw .malformedEvidence("az-snp-vtpm evidence version must be 1 or 2")
        }
        let hcl = try hclReport(evidence)
        let report = Array(hcl[hclHeaderSize..<hclHeaderSize + SNPReport.size])
        guard let vcekText = evidence["vcek"]?.stringValue, let vcek = Base64URL.decode(vcekText.filter { $0 != "=" }) else {
            throw .malformedEvidence("az-snp-vtpm vcek must be base64url DER")
        }
        let snp = SNPEvidence.make(report: report, endorsementKey: vcek)
        let claims: Claims
        do {
            claims = try SNPEvidence.verify(try SNPEvidence.withEndorsement(snp, vcek: vcek, chain: chain), chains: [:], crls: crls, at: time)
        } catch let error as SNPError {
            throw .snp(error)
        } catch {
            throw .malformedEvidence("\(error)")
        }
        guard claims.snp?.vmpl == 0 else { throw .malformedEvidence("the HCL's SNP report is not from VMPL 0") }
        let variableData = try Self.variableData(hcl)
        guard Array(SHA256.hash(data: variableData)) == Array(claims.reportData.prefix(32)) else {
            throw .malformedEvidence("the HCL variable data is not what its SNP report binds")
        }
        guard let variable = try? JSONValue.parse(variableData) else { throw .malformedEvidence("HCL variable data is not JSON") }
        let quote = try TPMQuote(evidence["tpm_quote"])
        try quote.verifySignature(by: try attestationKey(variable))
        try quote.verifyPCRs()
        var userData: [UInt8]?
        if version >= 2 {
            guard let text = variable["user-data"]?.stringValue, let bytes = Hex.decode(text) else {
                throw .malformedEvidence("version 2 HCL variable data needs hex user-data")
            }
            userData = bytes
        }
        return Verified(claims: claims, nonce: quote.extraData, userData: userData)
    }

    static func hclReport(_ evidence: JSONValue) throws(AttestationError) -> [UInt8] {
        guard let text = evidence["hcl_report"]?.stringValue, let hcl = Base64URL.decode(text.filter { $0 != "=" }) else {
            throw .malformedEvidence("az-snp-vtpm hcl_report must be base64url")
        }
        guard hcl.count >= hclHeaderSize + SNPReport.size + igvmHeaderSize, hcl.starts(with: Array("HCLA".utf8)) else {
            throw .malformedEvidence("hcl_report is not an HCL attestation report")
        }
        return hcl
    }

    /// The IGVM request data after the SNP report: sizes (little-endian u32s), then the variable data.
    static func variableData(_ hcl: [UInt8]) throws(AttestationError) -> [UInt8] {
        let start = hclHeaderSize + SNPReport.size
        let size = Int(UInt32(hcl[start + 16]) | UInt32(hcl[start + 17]) << 8 | UInt32(hcl[start + 18]) << 16 | UInt32(hcl[start + 19]) << 24)
        let dataStart = start + igvmHeaderSize
        guard size > 0, dataStart + size <= hcl.count else { throw .malformedEvidence("HCL variable data size \(size) exceeds the report") }
        return Array(hcl[dataStart..<dataStart + size])
    }

    static func attestationKey(_ variable: JSONValue) throws(AttestationError) -> _RSA.Signing.PublicKey {
        guard let key = variable["keys"]?.arrayValue?.first(where: { $0["kid"]?.stringValue == "HCLAkPub" }),
            key["kty"]?.stringValue == "RSA", let n = key["n"]?.stringValue.flatMap(Base64URL.decode), let e = key["e"]?.stringValue.flatMap(Base64URL.decode),
            let publicKey = try? _RSA.Signing.PublicKey(n: n, e: e)
        else { throw .malformedEvidence("HCL variable data has no RSA HCLAkPub key") }
        return publicKey
    }
}

/// A TPM 2.0 quote: the TPMS_ATTEST `message`, its signature and the PCR values it covers.
struct TPMQuote {
    let message: [UInt8]
    let signature: [UInt8]
    let pcrs: [[UInt8]]
    let extraData: [UInt8]
    let pcrDigest: [UInt8]

    init(_ value: JSONValue?) throws(AttestationError) {
        guard let value, let message = value["message"]?.stringValue.flatMap(Hex.decode), let signature = value["signature"]?.stringValue.flatMap(Hex.decode),
            let pcrTexts = value["pcrs"]?.stringArray
        else { throw .malformedEvidence("tpm_quote needs hex message, signature and pcrs") }
        let pcrs = pcrTexts.compactMap(Hex.decode)
        guard pcrs.count == pcrTexts.count, pcrs.allSatisfy({ $0.count == 32 }) else { throw .malformedEvidence("tpm_quote pcrs must be SHA-256 values") }
        self.message = message
        self.signature = signature
        self.pcrs = pcrs
        (extraData, pcrDigest) = try Self.parse(message)
    }

    /// TPMS_ATTEST (TPM 2.0 Part 2, 10.12.12) of type TPM_ST_ATTEST_QUOTE: its qualifying data
    /// and the quote's PCR digest.
    static func parse(_ bytes: [UInt8]) throws(AttestationError) -> ([UInt8], [UInt8]) {
        var offset = 0
        func take(_ count: Int) throws(AttestationError) -> ArraySlice<UInt8> {
            guard count >= 0, offset + count <= bytes.count else { throw .malformedEvidence("TPM quote message is truncated") }
            defer { offset += count }
            return bytes[offset..<offset + count]
        }
        func u16() throws(AttestationError) -> Int { Int(try take(2).reduce(0) { $0 << 8 | UInt32($1) }) }
        func u32() throws(AttestationError) -> Int { Int(try take(4).reduce(0) { $0 << 8 | UInt32($1) }) }
        guard try u32() == 0xFF54_4347 else { throw .malformedEvidence("TPM quote message lacks TPM_GENERATED_VALUE") }
        guard try u16() == 0x8018 else { throw .malformedEvidence("TPM attestation is not a quote (TPM_ST_ATTEST_QUOTE)") }
        _ = try take(try u16())  // qualifiedSigner
        let extraData = Array(try take(try u16()))
        _ = try take(17 + 8)  // clockInfo, firmwareVersion
        for _ in 0..<(try u32()) {
            _ = try u16()
            _ = try take(Int(try take(1).first!))
        }
        let digest = Array(try take(try u16()))
        guard offset == bytes.count else { throw .malformedEvidence("TPM quote message has trailing bytes") }
        return (extraData, digest)
    }

    func verifySignature(by key: _RSA.Signing.PublicKey) throws(AttestationError) {
        let signature = _RSA.Signing.RSASignature(rawRepresentation: signature)
        guard key.isValidSignature(signature, for: message, padding: .insecurePKCS1v1_5) else {
            throw .malformedEvidence("the vTPM quote is not signed by the HCL's attestation key")
        }
    }

    func verifyPCRs() throws(AttestationError) {
        var hasher = SHA256()
        for pcr in pcrs { hasher.update(data: pcr) }
        guard Array(hasher.finalize()) == pcrDigest else { throw .malformedEvidence("the PCR values do not match the quote's PCR digest") }
    }
}
