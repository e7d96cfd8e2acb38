/// Why evidence was not accepted. Each case names exactly one failed check.
public enum AttestationError: Error, Equatable, Sendable, CustomStringConvertible {
    /// The evidence bytes are not a well-formed document of the format they claim.
    case malformedEvidence(String)
    /// The evidence's format is known but not accepted here.
    case unsupportedFormat(String)
    /// Simulated evidence was presented but simulation is not enabled.
    case simulationNotAllowed
    /// Simulation is allowed, but this verifier trusts no simulation platform key.
    case noSimulationKey
    /// The evidence was signed by a different simulation platform key than the trusted one.
    case untrustedPlatformKey(presented: String, trusted: String)
    /// The signature over the evidence does not verify.
    case signatureInvalid
    /// The report data does not bind the expected key and nonce.
    case reportDataMismatch
    /// A simulation platform key file could not be read or created.
    case platformKeyUnavailable(path: String, reason: String)
    /// An Intel DCAP quote did not verify.
    case dcap(DCAPError)
    /// Hardware evidence arrived but no collateral source is configured.
    case noCollateral
    /// An AMD SEV-SNP report did not verify.
    case snp(SNPError)
    /// SEV-SNP evidence came without a VCEK and fetching one (AMD KDS) failed.
    case endorsementUnavailable(String)
    /// The evidence comes from a debug enclave, TD or guest (its memory is readable by the host).
    case debugNotAllowed(TEEKind)

    public var description: String {
        switch self {
        case .malformedEvidence(let why): return "malformed evidence: \(why)"
        case .unsupportedFormat(let format): return "unsupported evidence format '\(format)'"
        case .simulationNotAllowed:
            return "simulated evidence refused: simulation is not enabled (set \"Config\": {\"AllowSimulation\": true} in the manifest to allow it for development; it gives no confidentiality)"
        case .noSimulationKey:
            return "simulated evidence refused: the manifest allows simulation, but this coordinator trusts no simulation platform key "
                + "(a hardware coordinator accepts simulated launchers only when started with --simulation-key FILE)"
        case .untrustedPlatformKey(let presented, let trusted):
            return "simulated evidence is signed by platform key \(presented), not by the trusted simulation platform key \(trusted)"
        case .signatureInvalid: return "evidence signature does not verify"
        case .reportDataMismatch: return "evidence report data does not bind this key and nonce (stale or replayed evidence)"
        case .platformKeyUnavailable(let path, let reason): return "simulation platform key \(path): \(reason)"
        case .dcap(let error): return "DCAP quote rejected: \(error)"
        case .snp(let error): return "SEV-SNP report rejected: \(error)"
        case .debugNotAllowed(let tee):
            let what = tee == .sgx ? "a debug enclave" : tee == .tdx ? "a debug TD" : tee == .snp ? "a guest whose policy allows debugging" : "debug"
            return "evidence from \(what) refused: the host can read its memory, so it gives no confidentiality (allow it explicitly for development)"
        case .endorsementUnavailable(let why): return "SEV-SNP report without a VCEK (the host supplied no certificates), and none could be fetched: \(why)"
        case .noCollateral: return "Intel DCAP quote refused: no collateral to verify it with (pass --dcap-collateral FILE|DIR or --collateral-url URL, or start the coordinator with --collateral URL so it serves its own)"
        }
    }
}
