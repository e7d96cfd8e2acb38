import Crypto
import Foundation
import VeilAttestation
import VeilCore

/// A move of an SEV-SNP replica's sealing pin: recorded in the history (`sealingTCBAdvanced`)
/// and logged, because after it the old firmware version's key opens nothing of this replica.
public struct SealingPinMove: Sendable, Equatable {
    public enum Reason: String, Sendable {
        /// `--advance-sealing-tcb`.
        case requested
        /// A state key sealed by a Veil version before pinning (the chip's current TCB, no pin)
        /// moved to a pin at the committed TCB, so the next firmware update keeps it.
        case firstFormat
    }

    /// The previous pin, `nil` for the first format's unpinned key.
    public let from: UInt64?
    public let to: UInt64
    public let reason: Reason

    /// A raw TCB version as 16 hex digits, most significant byte first.
    public static func hex(_ tcb: UInt64) -> String { Hex.encode(PinnedSNPSealing.context(tcb)) }
}

/// SEV-SNP sealing that survives firmware updates. The firmware derives a key at any TCB
/// version up to the chip's committed one (MSG_KEY_REQ with GUEST_FIELD_SELECT bit 5), so the
/// replica pins the version it sealed at — the committed TCB when it first seals — in the
/// sealed files' clear context (``StateVault``), and asks for that version on every start: a
/// firmware update raises the committed TCB and the pinned key stays derivable.
///
/// Moving the pin forward is explicit (`veil coordinator --advance-sealing-tcb`): the state key
/// is sealed again at the committed TCB, and keys of the older version — which firmware that a
/// TCB recovery replaced may have leaked — then open nothing. A pin is never taken from a file
/// for *new* sealing: with no sealed key the pin is the committed TCB, so a host that writes a
/// low pin cannot make a replica seal under an old version's key. docs/decisions.md
/// ("SNP sealing pins a TCB version") says why.
public struct PinnedSNPSealing: SealingKeyProvider {
    public let device: any SNPGuestDevice
    public let vmpl: UInt32
    public let keySelection: SNPDerivedKeySealing.KeySelection
    /// The chip's committed TCB, from the replica's own report (COMMITTED_TCB).
    public let committedTCB: UInt64
    /// Turin lays TCB versions out differently (``SNPReport/TCBVersion``).
    public let turin: Bool

    public init(device: any SNPGuestDevice, vmpl: UInt32, keySelection: SNPDerivedKeySealing.KeySelection, committedTCB: UInt64, turin: Bool) {
        self.device = device
        self.vmpl = vmpl
        self.keySelection = keySelection
        self.committedTCB = committedTCB
        self.turin = turin
    }

    public var binding: String { derivation(at: committedTCB).binding + ", pinned (a firmware update keeps it)" }

    /// The key at the committed TCB (what a first sealing uses).
    public func sealingKey() throws(SealingError) -> SymmetricKey? { try derivation(at: committedTCB).sealingKey() }

    public func openVault(in directory: String, advancePin: Bool) throws(SealingError) -> OpenedVault {
        switch StateVault.storedSealingContext(in: directory) {
        case nil:
            if advancePin { throw .unavailable("no sealed state key in \(directory): the pin is set when the replica first seals, at the committed TCB") }
            return try fresh(directory)
        case let context? where context.isEmpty:
            // The first format: sealed at the then-current TCB, no pin.
            let old = StateVault(directory: directory, sealingKey: try SNPDerivedKeySealing(device: device, vmpl: vmpl, keySelection: keySelection).sealingKey())
            guard old.stateKey != nil else {
                if advancePin { throw .unavailable("this replica's sealed state key does not open (sealed before a firmware update?): nothing to move") }
                return try fresh(directory)
            }
            return try move(old, from: nil, reason: .firstFormat)
        case let context?:
            guard context.count == 8 else { throw .malformed("the sealed state key names a \(context.count)-byte sealing context, not an 8-byte SNP TCB pin") }
            let pin = context.reduce(UInt64(0)) { $0 << 8 | UInt64($1) }
            let pinned = SNPReport.TCBVersion(raw: pin, turin: turin), committed = SNPReport.TCBVersion(raw: committedTCB, turin: turin)
            guard committed.isAtLeast(pinned) else {
                throw .firmware("the sealed state is pinned at TCB (\(pinned)), above this chip's committed TCB (\(committed)): another chip, or a rolled-back firmware")
            }
            let vault = StateVault(directory: directory, sealingKey: try derivation(at: pin).sealingKey(), sealingContext: context)
            guard advancePin, pin != committedTCB else { return OpenedVault(vault: vault, pinMove: nil) }
            guard vault.stateKey != nil else { throw .unavailable("this replica's sealed state key does not open at its pinned TCB (\(pinned)): nothing to move") }
            return try move(vault, from: pin, reason: .requested)
        }
    }

    /// The provider deriving at `tcb`.
    func derivation(at tcb: UInt64) -> SNPDerivedKeySealing {
        SNPDerivedKeySealing(device: device, vmpl: vmpl, keySelection: keySelection, tcbPin: tcb)
    }

    static func context(_ tcb: UInt64) -> [UInt8] { withUnsafeBytes(of: tcb.bigEndian, Array.init) }

    private func fresh(_ directory: String) throws(SealingError) -> OpenedVault {
        OpenedVault(vault: StateVault(directory: directory, sealingKey: try sealingKey(), sealingContext: Self.context(committedTCB)), pinMove: nil)
    }

    private func move(_ vault: StateVault, from: UInt64?, reason: SealingPinMove.Reason) throws(SealingError) -> OpenedVault {
        guard let key = try sealingKey() else { throw .unavailable("no SNP key at the committed TCB") }
        do {
            let moved = try vault.resealed(under: key, context: Self.context(committedTCB))
            return OpenedVault(vault: moved, pinMove: SealingPinMove(from: from, to: committedTCB, reason: reason))
        } catch {
            throw .unavailable("cannot seal the state key again at the committed TCB: \(error)")
        }
    }
}
