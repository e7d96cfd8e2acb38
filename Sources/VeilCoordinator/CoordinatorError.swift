import VeilAttestation
import VeilManifest

/// Why the coordinator refused a request. ``httpStatus`` and ``code`` are what the API returns.
public enum CoordinatorError: Error, Equatable, CustomStringConvertible {
    case invalidManifest(ManifestValidationError)
    /// `updatable`: some user of the set manifest may update it (UpdateManifest).
    case manifestAlreadySet(updatable: Bool)
    case noManifest
    case unknownService(String)
    case unknownNonce
    case badRequest(String)
    case evidenceRejected(AttestationError)
    case packageMismatch(service: String, package: String, reason: String)
    case activationLimitReached(service: String, limit: Int)
    case tcbStatusNotAccepted(service: String, package: String, refusal: TCBRefusal)
    case renderFailed(service: String, reason: String)
    case storage(String)
    case invalidSecretValue(name: String, reason: String)
    case unauthenticated(String)
    case forbidden(user: String, action: String, resource: String?)
    /// A transit request the manifest does not allow, or whose ciphertext does not open.
    case transitRefused(key: String, reason: String)
    /// A running service's certificate renewal the current manifest does not allow.
    case renewalRefused(service: String, reason: String)
    case unknownSecret(String)
    case invalidUpdate(String)
    case securityVersionLowered(package: String, current: UInt16, proposed: UInt16)
    case noPendingUpdate
    case updateMismatch(pending: String)
    case recoveryRejected(String)
    case protectedFileRejected(path: String, reason: String)
    case protectedFileRollback(path: String, recorded: UInt64, presented: UInt64)
    case protectedFileForked(path: String, version: UInt64)
    /// The state store cannot be reached; nothing was changed.
    case storeUnavailable(String)
    /// The stored state cannot be used by this replica (rolled back, deleted, another key).
    case stateUnavailable(String)
    /// The manifest changed while a request was being checked against it; retry.
    case manifestChanged

    public var httpStatus: Int {
        switch self {
        case .invalidManifest, .badRequest, .unknownNonce, .invalidSecretValue: return 400
        case .protectedFileRejected, .protectedFileRollback, .protectedFileForked, .forbidden, .transitRefused, .renewalRefused: return 403
        case .unauthenticated: return 401
        case .unknownSecret: return 404
        case .invalidUpdate, .securityVersionLowered: return 400
        case .noPendingUpdate, .updateMismatch: return 409
        case .recoveryRejected: return 403
        case .evidenceRejected, .packageMismatch, .tcbStatusNotAccepted: return 403
        case .unknownService: return 404
        case .manifestAlreadySet, .noManifest, .activationLimitReached, .renderFailed: return 409
        case .storage, .storeUnavailable, .stateUnavailable, .manifestChanged: return 503
        }
    }

    public var code: String {
        switch self {
        case .invalidManifest: return "invalidManifest"
        case .manifestAlreadySet: return "manifestAlreadySet"
        case .noManifest: return "noManifest"
        case .unknownService: return "unknownService"
        case .unknownNonce: return "unknownNonce"
        case .badRequest: return "badRequest"
        case .evidenceRejected(.simulationNotAllowed): return "simulationNotAllowed"
        case .evidenceRejected(.noSimulationKey): return "noSimulationKey"
        case .evidenceRejected(.reportDataMismatch): return "reportDataMismatch"
        case .evidenceRejected(.untrustedPlatformKey): return "untrustedPlatformKey"
        case .evidenceRejected: return "evidenceRejected"
        case .packageMismatch: return "packageMismatch"
        case .activationLimitReached: return "activationLimitReached"
        case .tcbStatusNotAccepted: return "tcbStatusNotAccepted"
        case .renderFailed: return "renderFailed"
        case .storage: return "storage"
        case .invalidSecretValue: return "invalidSecretValue"
        case .unauthenticated: return "unauthenticated"
        case .forbidden: return "forbidden"
        case .transitRefused: return "transitRefused"
        case .renewalRefused: return "renewalRefused"
        case .unknownSecret: return "unknownSecret"
        case .invalidUpdate: return "invalidUpdate"
        case .securityVersionLowered: return "securityVersionLowered"
        case .noPendingUpdate: return "noPendingUpdate"
        case .updateMismatch: return "updateMismatch"
        case .recoveryRejected: return "recoveryRejected"
        case .protectedFileRejected: return "protectedFileRejected"
        case .protectedFileRollback: return "protectedFileRollback"
        case .protectedFileForked: return "protectedFileForked"
        case .storeUnavailable: return "storeUnavailable"
        case .stateUnavailable: return "stateUnavailable"
        case .manifestChanged: return "manifestChanged"
        }
    }

    public var description: String {
        switch self {
        case .invalidManifest(let error): return error.description
        case .manifestAlreadySet(let updatable):
            if updatable {
                return "a different manifest is already set (state unchanged); a user with the UpdateManifest action changes it with `veil manifest update`"
            }
            return "a different manifest is already set (state unchanged), and no user of it may update it (no user has the UpdateManifest action), "
                + "so it cannot be changed. To start over: `veil coordinator --reset` (a new root: every client attests again, every secret is lost); "
                + "next time add a user with an UpdateManifest role (docs/users-and-recovery.md)"
        case .noManifest: return "no manifest is set yet"
        case .unknownService(let name): return "unknown service '\(name)'"
        case .unknownNonce:
            return "activation nonce is unknown, expired or already used (replayed activation, or a nonce from another replica or before a restart: ask for a new one)"
        case .badRequest(let why): return why
        case .evidenceRejected(let error): return "evidence rejected: \(error)"
        case .packageMismatch(let service, let package, let reason):
            return "service '\(service)' refused: evidence does not match package '\(package)': \(reason)"
        case .activationLimitReached(let service, let limit):
            return "service '\(service)' reached its MaxActivations (\(limit))"
        case .tcbStatusNotAccepted(let service, let package, let refusal):
            return "service '\(service)' refused: \(refusal) for package '\(package)' (its own fields, else the manifest's Config)"
        case .renderFailed(let service, let reason): return "cannot render parameters of service '\(service)': \(reason)"
        case .storage(let why): return "state storage failed: \(why)"
        case .invalidSecretValue(let name, let reason): return "secret '\(name)': \(reason)"
        case .unauthenticated(let why): return "authentication required: \(why)"
        case .transitRefused(let key, let reason): return "transit key '\(key)': \(reason)"
        case .renewalRefused(let service, let reason): return "no renewal for service '\(service)': \(reason)"
        case .forbidden(let user, let action, let resource):
            return "user '\(user)' has no role allowing \(action)" + (resource.map { " on '\($0)'" } ?? "")
        case .unknownSecret(let name): return "the manifest has no secret '\(name)'"
        case .invalidUpdate(let why): return "update refused: \(why)"
        case .securityVersionLowered(let package, let current, let proposed):
            return "update refused: package '\(package)' SecurityVersion \(proposed) is lower than the current \(current)"
        case .noPendingUpdate: return "no manifest update is pending"
        case .updateMismatch(let pending): return "that is not the pending update (pending manifest sha256:\(pending))"
        case .recoveryRejected(let why): return "recovery refused: \(why)"
        case .protectedFileRejected(let path, let reason): return "protected file \(path) refused: \(reason)"
        case .protectedFileRollback(let path, let recorded, let presented):
            return "protected file \(path) is version \(presented), older than the recorded version \(recorded) (rollback refused)"
        case .protectedFileForked(let path, let version):
            return "protected file \(path) version \(version) differs from the version \(version) recorded (forked content refused)"
        case .storeUnavailable(let why): return "the coordinator's state store is unavailable, nothing was changed: \(why)"
        case .stateUnavailable(let why): return "the coordinator cannot use its stored state: \(why)"
        case .manifestChanged: return "the manifest changed while the request was being checked; retry"
        }
    }
}
