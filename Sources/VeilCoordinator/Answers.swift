import VeilAttestation

/// The coordinator's own evidence for a client's nonce, binding its root certificate and the
/// head of its history: report data `SHA-256(root DER ‖ log head ‖ nonce)`.
public struct CoordinatorEvidence: Sendable {
    public let evidence: Evidence
    /// DER of the root CA the evidence binds.
    public let rootCertificate: [UInt8]
    /// Hash of the newest history entry (the empty head when there is none, or in recovery).
    public let logHead: [UInt8]
    /// `true` when the evidence is simulated (no confidentiality).
    public let simulated: Bool
    /// Intel's collateral for the evidence, when the coordinator holds it (`--collateral`).
    public let collateral: DCAPCollateral?
}

/// What a replica reports about itself.
public struct CoordinatorStatus: Sendable {
    public enum Phase: String, Sendable {
        case awaitingManifest, accepting
        /// The state key is missing; shares or a peer can restore it.
        case recovery
        /// Recovery rebuilt the state key; the replica restarts normally.
        case recovered
    }

    public var phase: Phase
    public var manifestDigest: [UInt8]?
    public var simulated: Bool
    /// Exact counts of services with MaxActivations (shared by all replicas), this replica's
    /// counts of the others.
    public var activations: [String: Int] = [:]
    /// The state's generation (grows with every change; equal on replicas in sync).
    public var generation: UInt64?
    public var historyLength: Int?
    /// Why the replica is in recovery.
    public var reason: String?
    /// Veil's version on this replica.
    public var version: String?
    /// This replica's TEE identity as `--expect` takes it.
    public var identity: String?
    /// Activated services that new Intel collateral makes their package refuse on their
    /// platform (``TCBWatch``): each is refused at its next activation.
    public var tcbWarnings: [String]?
}

/// The pending manifest update and who acknowledged it.
public struct UpdateProgress: Sendable, Equatable {
    /// SHA-256 of the pending manifest, if any.
    public var pendingDigest: [UInt8]?
    public var acknowledgedBy: [String]
    /// Acknowledgements the current manifest requires.
    public var required: Int
    /// Whether this step applied the update.
    public var applied: Bool
}

/// The encrypted shares a recovering replica offers the recovery key holders.
public struct RecoveryOffer: Sendable {
    public var threshold: Int
    /// Names of the keys whose shares arrived.
    public var received: [String]
    public var shares: [RecoveryData.Share]
}

/// Shares received so far, and whether the state key was rebuilt.
public struct RecoveryProgress: Sendable, Equatable {
    public var received: Int
    public var threshold: Int
    public var recovered: Bool
}
