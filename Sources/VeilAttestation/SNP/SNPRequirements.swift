import VeilCore
/// The firmware TCB an SEV-SNP guest's reported TCB must reach — or, stated explicitly, any.
///
/// There is no implicit default: whoever verifies for release (a manifest package, `veil
/// verify --minimum-tcb`) says which, so "any firmware" is never accepted silently.
public enum MinimumTCB: Sendable, Equatable, CustomStringConvertible {
    /// Every component at least this version's (``SNPReport/TCBVersion/isAtLeast(_:)``).
    case atLeast(SNPReport.TCBVersion)
    /// Any firmware TCB: stated on purpose, and reported as such (manifest warnings, notes).
    case any

    public var description: String {
        switch self {
        case .atLeast(let version): return "at least \(version)"
        case .any: return "any"
        }
    }
}

/// Why an SEV-SNP guest does not meet a verifier's requirements: one case per rule, naming
/// the report field involved.
public enum SNPPolicyViolation: Error, Equatable, Sendable, CustomStringConvertible {
    /// POLICY bit 17 (reserved, must be one) is clear, or a reserved bit 63:26 is set: not a
    /// policy the ABI defines, so none of its other bits can be read with confidence.
    case reservedPolicyBits(raw: UInt64)
    /// POLICY.DEBUG: the host can read and change the guest's memory.
    case debugAllowed
    /// POLICY.MIGRATE_MA: a migration agent may export the guest.
    case migrationAgentAllowed
    /// POLICY.SMT while the verifier requires SMT off (side channels between sibling threads).
    case smtAllowed
    /// VMPL: the report came from another privilege level (e.g. a guest below an SVSM).
    case vmpl(reported: UInt32?, required: UInt32)
    /// REPORTED_TCB below the minimum in some component.
    case tcbBelowMinimum(reported: SNPReport.TCBVersion, minimum: SNPReport.TCBVersion)
    /// HOST_DATA is not the required value.
    case hostData(reported: [UInt8], required: [UInt8])

    /// The report field the rule is about (as the ABI specification names it).
    public var field: String {
        switch self {
        case .reservedPolicyBits, .debugAllowed, .migrationAgentAllowed, .smtAllowed: return "POLICY"
        case .vmpl: return "VMPL"
        case .tcbBelowMinimum: return "REPORTED_TCB"
        case .hostData: return "HOST_DATA"
        }
    }

    public var description: String { description(requiredBy: nil) }

    /// The violation in words; `who` names the requirement's owner ("the package") where
    /// one exists, so an activation error reads as the manifest's rule.
    public func description(requiredBy who: String?) -> String {
        switch self {
        case .reservedPolicyBits(let raw):
            return "guest policy 0x\(String(raw, radix: 16)) is not a valid SEV-SNP policy: bit 17 must be set and bits 63:26 clear"
        case .debugAllowed: return "guest policy allows debugging (no confidentiality); \(who ?? "the verifier") does not allow debug"
        case .migrationAgentAllowed: return "guest policy allows a migration agent; \(who ?? "the verifier") does not"
        case .smtAllowed: return "guest policy allows SMT; \(who ?? "the verifier") requires it disabled"
        case .vmpl(let reported, let required):
            return "report is from VMPL \(reported.map(String.init) ?? "unknown"), "
                + (who.map { "\($0) requires VMPL \(required)" } ?? "VMPL \(required) is required")
        case .tcbBelowMinimum(let reported, let minimum):
            return "reported TCB (\(reported)) is below \(who.map { "\($0)'s" } ?? "the") minimum (\(minimum))"
        case .hostData(let reported, let required):
            return "HOST_DATA \(Hex.encode(reported)) is not \(who.map { "\($0)'s" } ?? "the required") \(Hex.encode(required))"
        }
    }
}

/// What a verifier requires of an SEV-SNP guest once its report's signature and chain
/// verified: the one policy validator `veil verify`, manifest packages (activation, the
/// coordinator's own HA peers) and every protocol share.
///
/// Defaults are the strict ones: no debug, no migration agent, VMPL 0. The minimum TCB has
/// no default (``MinimumTCB``).
public struct SNPRequirements: Sendable, Equatable {
    public var minimumTCB: MinimumTCB
    /// The VMPL the report must come from (0: the guest kernel itself, not code above an
    /// SVSM); nil accepts any, on purpose.
    public var vmpl: UInt32?
    public var allowDebug: Bool
    public var allowMigrationAgent: Bool
    /// `false` refuses guests whose policy lets the host schedule SMT siblings.
    public var allowSMT: Bool
    /// Required HOST_DATA, when set.
    public var hostData: [UInt8]?

    public init(
        minimumTCB: MinimumTCB, vmpl: UInt32? = 0, allowDebug: Bool = false, allowMigrationAgent: Bool = false,
        allowSMT: Bool = true, hostData: [UInt8]? = nil
    ) {
        self.minimumTCB = minimumTCB
        self.vmpl = vmpl
        self.allowDebug = allowDebug
        self.allowMigrationAgent = allowMigrationAgent
        self.allowSMT = allowSMT
        self.hostData = hostData
    }

    /// Only what makes a report well-formed (the policy's reserved bits): what the generic
    /// evidence verifier applies before a package's own requirements decide.
    public static let wellFormed = SNPRequirements(minimumTCB: .any, vmpl: nil, allowDebug: true, allowMigrationAgent: true)

    /// The rules in a fixed order, the policy's validity first: the first violation is thrown.
    public func check(_ guest: SNPClaims) throws(SNPPolicyViolation) {
        let policy = SNPReport.Policy(raw: guest.policy)
        guard policy.reservedBitsValid else { throw .reservedPolicyBits(raw: guest.policy) }
        if policy.debugAllowed && !allowDebug { throw .debugAllowed }
        if policy.migrationAgentAllowed && !allowMigrationAgent { throw .migrationAgentAllowed }
        if policy.smtAllowed && !allowSMT { throw .smtAllowed }
        if let vmpl, guest.vmpl != vmpl { throw .vmpl(reported: guest.vmpl, required: vmpl) }
        if case .atLeast(let minimum) = minimumTCB, !guest.tcb.isAtLeast(minimum) {
            throw .tcbBelowMinimum(reported: guest.tcb, minimum: minimum)
        }
        if let hostData, guest.hostData != hostData { throw .hostData(reported: guest.hostData, required: hostData) }
    }
}
