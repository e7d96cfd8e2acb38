import FoundationEssentials

/// Why a DCAP quote did not verify. Each case names the check that failed.
public enum DCAPError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedQuote(QuoteParseError)
    case malformedCollateral(String)
    case malformedCertificate(String)
    /// A chain (PCK, TCB info, QE identity, PCK CRL issuer) does not lead to the trusted root.
    case chainUntrusted(chain: String, reason: String)
    case certificateExpired(chain: String, subject: String)
    case certificateRevoked(chain: String, subject: String)
    case crlInvalid(String)
    case collateralNotYetValid(what: String, issueDate: Date)
    case collateralExpired(what: String, nextUpdate: Date)
    /// A cache holds no usable collateral and could not fetch it.
    case collateralUnavailable(String)
    case tcbInfoSignatureInvalid
    case qeIdentitySignatureInvalid
    case qeReportSignatureInvalid
    case qeReportDataMismatch
    case quoteSignatureInvalid
    case qeIdentityMismatch(String)
    /// The quote's QE vendor is not Intel.
    case qeVendorUnknown(String)
    /// The QE's ISVSVN is below every level of Intel's QE identity.
    case qeTCBNotSupported(isvsvn: UInt16)
    case pckExtensionInvalid(String)
    case fmspcMismatch(pck: String, tcbInfo: String)
    case tcbInfoMismatch(String)
    case noMatchingTCBLevel
    case tdxModuleIdentityMismatch(String)
    /// The platform's TCB level is revoked: no trust at all.
    case tcbRevoked(advisoryIDs: [String])

    public var description: String {
        switch self {
        case .malformedQuote(let error): return "malformed quote: \(error)"
        case .malformedCollateral(let why): return "malformed collateral: \(why)"
        case .malformedCertificate(let why): return "malformed certificate: \(why)"
        case .chainUntrusted(let chain, let reason): return "\(chain) certificate chain is not trusted: \(reason)"
        case .certificateExpired(let chain, let subject): return "\(chain) certificate '\(subject)' is outside its validity period at the verification time"
        case .certificateRevoked(let chain, let subject): return "\(chain) certificate '\(subject)' is revoked"
        case .crlInvalid(let why): return "CRL invalid: \(why)"
        case .collateralNotYetValid(let what, let date): return "\(what) is not valid before its issueDate \(date)"
        case .collateralExpired(let what, let date): return "\(what) expired at its nextUpdate \(date)"
        case .collateralUnavailable(let why): return "no usable collateral: \(why)"
        case .tcbInfoSignatureInvalid: return "TCB info signature does not verify"
        case .qeIdentitySignatureInvalid: return "QE identity signature does not verify"
        case .qeReportSignatureInvalid: return "QE report signature by the PCK key does not verify"
        case .qeReportDataMismatch: return "QE report data is not SHA-256(attestation key ‖ QE auth data)"
        case .quoteSignatureInvalid: return "quote signature by the attestation key does not verify"
        case .qeIdentityMismatch(let why): return "QE does not match Intel's QE identity: \(why)"
        case .qeVendorUnknown(let id): return "QE vendor ID \(id) is not Intel's (939a7233f79c4ca9940a0db3957f0607)"
        case .qeTCBNotSupported(let isvsvn): return "QE ISVSVN \(isvsvn) is below every level of Intel's QE identity (TCB not supported)"
        case .pckExtensionInvalid(let why): return "PCK certificate SGX extension: \(why)"
        case .fmspcMismatch(let pck, let tcbInfo): return "PCK FMSPC \(pck) does not match the TCB info's \(tcbInfo)"
        case .tcbInfoMismatch(let why): return "TCB info does not fit the quote: \(why)"
        case .noMatchingTCBLevel: return "no matching TCB level found: the platform's TCB is below every level Intel lists"
        case .tdxModuleIdentityMismatch(let why): return "TDX module identity: \(why)"
        case .tcbRevoked(let ids): return "TCB status is Revoked" + (ids.isEmpty ? "" : " (\(ids.joined(separator: ", ")))")
        }
    }
}
