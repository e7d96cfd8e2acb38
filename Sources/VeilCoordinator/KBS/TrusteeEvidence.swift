import FoundationEssentials
import VeilAttestation
import VeilCore

/// The KBS `tee` names Veil verifies and their `primary_evidence`: Confidential Containers'
/// attester shapes for `snp`, `tdx` and `sgx` (``CoCoEvidence``), and Veil's simulated report
/// envelope `{"report", "signature"}` under `veil-simulated`.
///
/// `az-snp-vtpm` is verified apart (``Coordinator/verifyAzureEvidence``). Every other TEE (`az-tdx-vtpm`, `tpm`, `cca`, `se`, `csv`, `sample`) is refused
/// by name: Veil has no verifier for it.
enum TrusteeEvidence {
    /// Veil's simulated TEE under a name of its own: never `sample`, which Trustee accepts
    /// without any signature.
    static let simulatedTEE = "veil-simulated"
    /// Azure's paravisor SNP VMs: verified apart (``AzureVTPMEvidence``), the binding in a vTPM quote.
    static let azureSNPTEE = "az-snp-vtpm"
    /// Veil's own clients (`veil run` fetching image keys): Veil's evidence envelope
    /// `{"format", "data": BASE64}` as its providers make it, for any TEE Veil verifies.
    static let veilTEE = "veil"
    static let supportedTEEs: Set<String> = ["snp", "tdx", "sgx", azureSNPTEE, simulatedTEE, veilTEE]

    static func evidence(tee: String, primary: JSONValue) throws(KBSError) -> Evidence {
        if tee == veilTEE {
            guard let format = primary["format"]?.stringValue, let data = primary["data"]?.stringValue.flatMap({ Data(base64Encoded: $0) }).map(Array.init) else {
                throw .malformedEvidence("veil evidence is Veil's envelope {\"format\", \"data\": standard base64}")
            }
            return Evidence(format: format, data: data)
        }
        if tee == simulatedTEE {
            guard primary["report"]?.stringValue != nil, primary["signature"]?.stringValue != nil, let bytes = try? CanonicalJSON.encode(primary) else {
                throw .malformedEvidence("veil-simulated evidence is Veil's simulated report envelope {\"report\", \"signature\"}")
            }
            return Evidence(format: SimulatedReport.format, data: bytes)
        }
        guard let kind = CoCoEvidence.Kind(rawValue: tee) else { throw .unsupportedTEE(tee) }
        do {
            return try CoCoEvidence.evidence(primary, kind: kind)
        } catch {
            throw .malformedEvidence("\(error)")
        }
    }
}
