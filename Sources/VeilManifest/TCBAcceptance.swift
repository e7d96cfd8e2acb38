import VeilAttestation

/// Which Intel TCB verdicts (SGX, TDX) a package accepts: statuses, and optionally the only
/// advisories a verdict may carry. `Config` states the default; a package may replace either
/// part (`AcceptedTCBStatuses`, `AcceptedAdvisories`).
///
/// Invariant: `statuses` is never empty and never holds `Revoked` (the parser refuses both; a
/// revoked TCB is an error of the verifier, not a status to accept).
public struct TCBAcceptance: Sendable, Equatable {
    public internal(set) var statuses: Set<TCBStatus> = [.upToDate]
    /// `nil`: a verdict with an accepted status is accepted whatever advisories it names; a set:
    /// every advisory the verdict names must be in it.
    public internal(set) var advisories: Set<String>?

    public init() {}

    /// Why `verdict` is not accepted, or `nil` when it is.
    public func refusal(of verdict: TCBVerdict) -> TCBRefusal? {
        guard statuses.contains(verdict.status) else { return .status(verdict.status, accepted: statuses.sorted()) }
        if let advisories {
            let unlisted = verdict.advisoryIDs.filter { !advisories.contains($0) }
            if !unlisted.isEmpty { return .advisories(unlisted, status: verdict.status) }
        }
        return nil
    }

    /// What each accepted status admits and which advisories pass (`veil manifest validate`).
    public var explanation: String {
        let statusText = statuses.sorted().map { "\($0.rawValue) (\(Self.meaning($0)))" }.joined(separator: "; ")
        let advisoryText = advisories.map { $0.isEmpty ? "no advisory at all" : "only advisories " + $0.sorted().joined(separator: ", ") }
            ?? "any advisories the accepted statuses carry"
        return "accepts \(statusText); \(advisoryText)"
    }

    static func meaning(_ status: TCBStatus) -> String {
        switch status {
        case .upToDate: return "the platform is at Intel's latest TCB"
        case .swHardeningNeeded: return "the platform is current; the enclave or TD software must mitigate the listed advisories itself"
        case .configurationNeeded: return "the platform is current, but its BIOS/platform configuration leaves the listed advisories open"
        case .configurationAndSWHardeningNeeded: return "both: configuration and software mitigations needed"
        case .outOfDate: return "microcode, firmware, QE or TDX module behind Intel's latest TCB recovery: known vulnerabilities unpatched"
        case .outOfDateConfigurationNeeded: return "out of date and a configuration change needed"
        case .revoked: return "revoked: never accepted"
        }
    }
}

/// Why a TCB verdict is not accepted.
public enum TCBRefusal: Error, Sendable, Equatable, CustomStringConvertible {
    case status(TCBStatus, accepted: [TCBStatus])
    case advisories([String], status: TCBStatus)

    public var description: String {
        switch self {
        case .status(let status, let accepted):
            return "TCB status \(status.rawValue) is not accepted (AcceptedTCBStatuses: \(accepted.map(\.rawValue).joined(separator: ", ")))"
        case .advisories(let unlisted, let status):
            return "TCB status \(status.rawValue) names advisories not in AcceptedAdvisories: \(unlisted.joined(separator: ", "))"
        }
    }
}

extension Package {
    /// The acceptance an SGX/TDX package applies: its own fields over `defaults` (the
    /// manifest's `Config`). Other kinds carry no Intel verdict: `defaults` unchanged.
    public func tcbAcceptance(defaults: TCBAcceptance) -> TCBAcceptance {
        let own: TCBAcceptanceFields
        switch self {
        case .sgx(let enclave): own = enclave.tcb
        case .tdx(let td): own = td.tcb
        case .simulated, .snp: return defaults
        }
        var acceptance = defaults
        if let statuses = own.statuses { acceptance.statuses = statuses }
        if let advisories = own.advisories { acceptance.advisories = advisories }
        return acceptance
    }
}

/// A package's own `AcceptedTCBStatuses` / `AcceptedAdvisories`, each `nil` when not stated.
public struct TCBAcceptanceFields: Sendable, Equatable {
    public internal(set) var statuses: Set<TCBStatus>?
    public internal(set) var advisories: Set<String>?

    public init() {}
}

extension Manifest {
    /// The TCB acceptance for `claims` under package `name` (`nil` claims TCB: nothing to check).
    public func tcbRefusal(of claims: Claims, package name: String) -> TCBRefusal? {
        guard let verdict = claims.tcb, let package = packages[name] else { return nil }
        return package.tcbAcceptance(defaults: config.tcb).refusal(of: verdict)
    }

    /// One line per SGX/TDX package saying what it accepts.
    public var tcbExplanations: [String] {
        packages.sorted { $0.key < $1.key }.compactMap { name, package in
            guard package.kind == .sgx || package.kind == .tdx else { return nil }
            return "package '\(name)' (\(package.kind.rawValue)) \(package.tcbAcceptance(defaults: config.tcb).explanation)"
        }
    }
}
