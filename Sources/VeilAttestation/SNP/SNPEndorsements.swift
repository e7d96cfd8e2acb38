import FoundationEssentials

/// Where a VCEK and its ASK/ARK chain come from when the host hands the guest no certificates
/// (upstream KVM supplies none unless the VMM opts in): AMD KDS by chip ID and reported TCB,
/// in practice (``VeilCollateral/KDSClient``). What it returns needs no trust of its own:
/// verification checks it against the compiled-in ARK and the report.
public protocol SNPEndorsementSource: Sendable {
    func endorsement(for report: SNPReport) async throws -> (vcek: [UInt8], chain: String)
    /// The ASK and ARK (PEM) of the report's product, for evidence that carries its VCEK.
    func chain(for report: SNPReport) async throws -> String
}

extension SNPEndorsementSource {
    public func chain(for report: SNPReport) async throws -> String { try await endorsement(for: report).chain }
}

extension SNPEvidence {
    /// `evidence` as given, or — SNP evidence without a VCEK — with one from `source`.
    /// Without a source such evidence is returned unchanged, and verification says what is missing.
    public static func endorsed(_ evidence: Evidence, by source: (any SNPEndorsementSource)?) async throws -> Evidence {
        guard let source, let report = reportNeedingEndorsement(evidence) else { return evidence }
        let (vcek, chain) = try await source.endorsement(for: report)
        return try withEndorsement(evidence, vcek: vcek, chain: chain)
    }
}

/// A hardware provider whose SNP reports get the VCEK fetched once at start: every later report
/// must come from the same chip at the same reported TCB (else the endorsement would not match,
/// and the evidence is handed out without one rather than with a wrong one).
public struct EndorsingEvidenceProvider: EvidenceProvider {
    let inner: any EvidenceProvider
    let vcek: [UInt8]
    let chain: String
    let chipID: [UInt8]
    let reportedTCB: UInt64

    public var isSimulated: Bool { inner.isSimulated }
    public var isConfidentialVM: Bool { inner.isConfidentialVM }

    /// Wraps `inner` when `sample` (one of its reports) lacks an endorsement; nil when it has one.
    public static func make(_ inner: any EvidenceProvider, sample: Evidence, source: any SNPEndorsementSource) async throws -> EndorsingEvidenceProvider? {
        guard let report = SNPEvidence.reportNeedingEndorsement(sample) else { return nil }
        let (vcek, chain) = try await source.endorsement(for: report)
        return EndorsingEvidenceProvider(inner: inner, vcek: vcek, chain: chain, chipID: report.chipID, reportedTCB: report.reportedTCB)
    }

    public func evidence(reportData: [UInt8]) throws -> Evidence {
        let evidence = try inner.evidence(reportData: reportData)
        guard let report = SNPEvidence.reportNeedingEndorsement(evidence), report.chipID == chipID, report.reportedTCB == reportedTCB else {
            return evidence
        }
        return try SNPEvidence.withEndorsement(evidence, vcek: vcek, chain: chain)
    }
}
