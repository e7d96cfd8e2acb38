import VeilAttestation
import VeilJOSE

/// Why a key-broker request was refused. Each case has the HTTP status the KBS protocol gives
/// (401 not authenticated, 403 authenticated but not allowed, 404 no such resource, 400
/// malformed) and a problem type name for the RFC 7807 document.
public enum KBSError: Error, Equatable, Sendable, CustomStringConvertible {
    case malformedRequest(String)
    case unsupportedVersion(String)
    case unsupportedTEE(String)
    case noCommonHashAlgorithm([String])
    case noManifest
    /// No `kbs-session-id` cookie and no bearer token.
    case notAuthenticated
    /// The cookie names no session, or one that expired.
    case sessionExpired
    /// The session's challenge was answered already (a second attestation needs a new `auth`).
    case challengeUsed
    case sessionNotAttested
    case nonceMismatch
    case malformedEvidence(String)
    case evidenceRejected(AttestationError)
    case noMatchingService(String)
    case initDataRejected(String)
    case teeKeyRefused(JOSEError)
    case tokenInvalid(String)
    case resourceNotAllowed(service: String, resource: String)
    case resourceNotFound(String)
    case releaseRefused(CoordinatorError)

    public var status: Int {
        switch self {
        case .malformedRequest, .malformedEvidence, .teeKeyRefused: return 400
        case .unsupportedVersion, .unsupportedTEE, .noCommonHashAlgorithm, .notAuthenticated, .sessionExpired, .challengeUsed, .sessionNotAttested, .nonceMismatch,
            .evidenceRejected, .noMatchingService, .initDataRejected, .tokenInvalid:
            return 401
        case .resourceNotAllowed: return 403
        case .resourceNotFound: return 404
        case .noManifest: return 503
        case .releaseRefused(let error): return error.httpStatus == 409 ? 403 : error.httpStatus
        }
    }

    /// The last path segment of the problem `type` URI.
    public var problemType: String {
        switch self {
        case .malformedRequest: return "MalformedRequest"
        case .unsupportedVersion: return "ProtocolVersion"
        case .unsupportedTEE: return "UnsupportedTee"
        case .noCommonHashAlgorithm: return "HashAlgorithm"
        case .noManifest: return "NoManifest"
        case .notAuthenticated: return "NotAuthenticated"
        case .sessionExpired: return "SessionExpired"
        case .challengeUsed: return "ChallengeUsed"
        case .sessionNotAttested: return "SessionNotAttested"
        case .nonceMismatch: return "NonceMismatch"
        case .malformedEvidence: return "MalformedEvidence"
        case .evidenceRejected(.reportDataMismatch): return "ReportDataMismatch"
        case .evidenceRejected: return "AttestationFailed"
        case .noMatchingService: return "NoMatchingService"
        case .initDataRejected: return "InitDataRejected"
        case .teeKeyRefused: return "TeeKeyRefused"
        case .tokenInvalid: return "TokenInvalid"
        case .resourceNotAllowed: return "PolicyDeny"
        case .resourceNotFound: return "ResourceNotFound"
        case .releaseRefused(.activationLimitReached): return "ReleaseLimitReached"
        case .releaseRefused: return "ReleaseRefused"
        }
    }

    public var description: String {
        switch self {
        case .malformedRequest(let why): return "malformed request: \(why)"
        case .unsupportedVersion(let version): return "KBS protocol version '\(version)' is not supported (0.4.0)"
        case .unsupportedTEE(let tee):
            return "TEE '\(tee)' is not supported: Veil verifies snp, tdx, sgx and (with AllowSimulation) \(TrusteeEvidence.simulatedTEE)"
        case .noCommonHashAlgorithm(let listed): return "none of the client's hash algorithms \(listed) is sha384, sha512 or sha256"
        case .noManifest: return "the coordinator has no manifest yet"
        case .notAuthenticated: return "no kbs-session-id cookie and no bearer token: authenticate with /kbs/v0/auth and /kbs/v0/attest first"
        case .sessionExpired: return "the session is unknown or expired: start again with /kbs/v0/auth"
        case .challengeUsed: return "this session's challenge was answered already: start again with /kbs/v0/auth"
        case .sessionNotAttested: return "this session has not attested: POST /kbs/v0/attest first"
        case .nonceMismatch: return "runtime-data nonce is not this session's challenge"
        case .malformedEvidence(let why): return "malformed evidence: \(why)"
        case .evidenceRejected(let error): return "evidence rejected: \(error)"
        case .noMatchingService(let why): return why
        case .initDataRejected(let why): return "init-data rejected: \(why)"
        case .teeKeyRefused(let error): return "tee-pubkey refused: \(error)"
        case .tokenInvalid(let why): return "attestation token refused: \(why)"
        case .resourceNotAllowed(let service, let resource): return "service '\(service)' may not read resource '\(resource)' (the manifest does not list it)"
        case .resourceNotFound(let resource): return "no resource '\(resource)' is listed for any service"
        case .releaseRefused(let error): return "release refused: \(error)"
        }
    }
}
