import Crypto

/// What a verifier trusts. Simulation is off unless a trusted simulation key is given *and*
/// `allowSimulation` is set.
public struct VerificationPolicy: Sendable {
    public var allowSimulation: Bool
    public var simulationKey: P256.Signing.PublicKey?
    /// Intel DCAP verification (SGX/TDX quotes); `nil` refuses them.
    public var dcap: DCAPEvidenceVerifier?
    /// Accept AMD SEV-SNP reports (the chain is in the evidence or comes from the product's KDS chain).
    public var allowSNP: Bool = false
    /// AMD CRLs (DER) per product; SNP evidence of a product with a CRL is checked against it.
    public var snpCRLs: [AMDProduct: [UInt8]] = [:]

    public init(
        allowSimulation: Bool = false, simulationKey: P256.Signing.PublicKey? = nil, dcap: DCAPEvidenceVerifier? = nil, allowSNP: Bool = false,
        snpCRLs: [AMDProduct: [UInt8]] = [:]
    ) {
        self.allowSimulation = allowSimulation
        self.simulationKey = simulationKey
        self.dcap = dcap
        self.allowSNP = allowSNP
        self.snpCRLs = snpCRLs
    }
}

/// Verifies evidence of any supported format and returns its claims.
public struct Verifier: Sendable {
    public var policy: VerificationPolicy

    public init(policy: VerificationPolicy) {
        self.policy = policy
    }

    /// Verifies `evidence` and that its report data equals `expectedReportData`.
    public func verify(_ evidence: Evidence, expectedReportData: [UInt8]) throws -> Claims {
        let claims = try verify(evidence)
        guard claims.reportData == expectedReportData else { throw AttestationError.reportDataMismatch }
        return claims
    }

    /// Verifies a launcher's `evidence`: its report data must bind `subject` and `nonce`, and
    /// may carry an image measurement only when it comes from a confidential VM (SNP, TDX).
    public func verify(_ evidence: Evidence, binding subject: [UInt8], nonce: [UInt8]) throws -> Claims {
        let claims = try verify(evidence)
        let expected = ReportData.binding(subject, nonce: nonce)
        guard ReportData.keyBinding(in: claims.reportData) == ReportData.keyBinding(in: expected) else { throw AttestationError.reportDataMismatch }
        if claims.imageMeasurement == nil, claims.reportData != expected { throw AttestationError.reportDataMismatch }
        return claims
    }

    public func verify(_ evidence: Evidence) throws -> Claims {
        switch evidence.format {
        case SimulatedReport.format:
            guard policy.allowSimulation else { throw AttestationError.simulationNotAllowed }
            guard let key = policy.simulationKey else { throw AttestationError.noSimulationKey }
            return try SimulatedReport.verify(evidence, trustedKey: key)
        case DCAPEvidence.format:
            guard let dcap = policy.dcap else { throw AttestationError.noCollateral }
            do {
                return try dcap.verify(evidence.data).claims
            } catch {
                throw AttestationError.dcap(error)
            }
        case SNPEvidence.format:
            guard policy.allowSNP else { throw AttestationError.unsupportedFormat(evidence.format) }
            do {
                return try SNPEvidence.verify(evidence, chains: [:], crls: policy.snpCRLs)
            } catch {
                throw AttestationError.snp(error)
            }
        default:
            throw AttestationError.unsupportedFormat(evidence.format)
        }
    }
}
