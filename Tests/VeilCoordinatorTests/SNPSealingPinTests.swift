import Crypto
import Foundation
import Testing
@testable import VeilCoordinator

/// SEV-SNP sealing across firmware updates, against the firmware double built from the ABI's
/// MSG_KEY_REQ table (``SpecSNPFirmware``): a replica pins the TCB it first sealed at, so a
/// raised committed TCB keeps its state key; moving the pin is explicit, and afterwards the old
/// version's key opens nothing.
@Suite struct SNPSealingPinTests {
    /// Milan layout: bootloader 3, TEE 0, SNP 8, microcode 115 → after a TCB recovery, SNP 22,
    /// microcode 213.
    static let before: UInt64 = 0x7308_0000_0000_0003
    static let after: UInt64 = 0xd516_0000_0000_0003

    let directory = FileManager.default.temporaryDirectory.appendingPathComponent("snp-pin-\(UUID().uuidString)").path

    init() throws { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }

    func sealing(_ firmware: SpecSNPFirmware) -> PinnedSNPSealing {
        PinnedSNPSealing(device: firmware, vmpl: 0, keySelection: .vcek, committedTCB: firmware.committedTCB, turin: false)
    }

    func bytes(_ key: SymmetricKey?) -> [UInt8]? { key?.withUnsafeBytes { Array($0) } }

    /// A replica that sealed `stateKey` (generation 7) on firmware at `before`.
    func sealFirst(_ stateKey: SymmetricKey) throws -> SpecSNPFirmware {
        var firmware = SpecSNPFirmware()
        firmware.committedTCB = Self.before
        let opened = try sealing(firmware).openVault(in: directory, advancePin: false)
        #expect(opened.pinMove == nil && opened.vault.stateKey == nil, "a first start has nothing sealed and moves nothing")
        #expect(opened.vault.sealingContext == withUnsafeBytes(of: Self.before.bigEndian, Array.init), "pinned at the committed TCB")
        try opened.vault.adopt(stateKey: stateKey)
        try opened.vault.note(generation: 7)
        return firmware
    }

    @Test func aFirmwareUpdateKeepsTheStateKeyAndMovingThePinRetiresTheOldKey() throws {
        let stateKey = SymmetricKey(size: .bits256)
        var firmware = try sealFirst(stateKey)
        firmware.committedTCB = Self.after

        let reopened = try sealing(firmware).openVault(in: directory, advancePin: false)
        #expect(bytes(reopened.vault.stateKey) == bytes(stateKey), "the pinned TCB is still derivable after the update")
        #expect(reopened.vault.highestGeneration == 7)
        #expect(reopened.pinMove == nil, "no move without the explicit step")
        let unpinned = StateVault(directory: directory, sealingKey: try SNPDerivedKeySealing(device: firmware, vmpl: 0).sealingKey())
        #expect(unpinned.stateKey == nil, "the key of the current TCB (what an unpinned replica asks for) does not open it")

        let oldKey = try #require(try SNPDerivedKeySealing(device: firmware, vmpl: 0, tcbPin: Self.before).sealingKey())
        let moved = try sealing(firmware).openVault(in: directory, advancePin: true)
        #expect(moved.pinMove?.from == Self.before && moved.pinMove?.to == Self.after && moved.pinMove?.reason == .requested)
        #expect(bytes(moved.vault.stateKey) == bytes(stateKey) && moved.vault.highestGeneration == 7)
        #expect(StateVault.storedSealingContext(in: directory) == withUnsafeBytes(of: Self.after.bigEndian, Array.init))
        let withOldKey = StateVault(directory: directory, sealingKey: oldKey, sealingContext: withUnsafeBytes(of: Self.before.bigEndian, Array.init))
        #expect(withOldKey.stateKey == nil && withOldKey.highestGeneration == 0, "after the move the old TCB's key opens neither file")
        let again = try sealing(firmware).openVault(in: directory, advancePin: false)
        #expect(bytes(again.vault.stateKey) == bytes(stateKey) && again.pinMove == nil)
        let noOp = try sealing(firmware).openVault(in: directory, advancePin: true)
        #expect(noOp.pinMove == nil, "moving to the TCB it is already pinned at is no move")
    }

    @Test func aPinAboveTheCommittedTCBIsRefusedWithItsReason() throws {
        var firmware = try sealFirst(SymmetricKey(size: .bits256))
        // The firmware itself refuses a TCB_VERSION above CommittedTcb.
        let response = try firmware.derivedKey(request: SNPDerivedKeySealing(device: firmware, vmpl: 0, tcbPin: Self.after).request)
        #expect(response[0] == 0x16, "INVALID_PARAM")
        #expect(throws: SealingError.self) { try SNPDerivedKeySealing(device: firmware, vmpl: 0, tcbPin: Self.after).sealingKey() }
        // A replica whose chip committed less than its pin (another chip, rolled-back firmware)
        // says so before asking.
        firmware.committedTCB = 0x7307_0000_0000_0003
        let error = try #require(throws: SealingError.self) { try sealing(firmware).openVault(in: directory, advancePin: false) }
        #expect("\(error)".contains("above this chip's committed TCB"), "\(error)")
    }

    @Test func aHostWrittenLowPinIsNotUsedForNewSealing() throws {
        var firmware = SpecSNPFirmware()
        firmware.committedTCB = Self.after
        // A generation file alone under a low pin, no sealed key: a first sealing ignores it.
        let low = StateVault(
            directory: directory, sealingKey: try SNPDerivedKeySealing(device: firmware, vmpl: 0, tcbPin: Self.before).sealingKey(),
            sealingContext: withUnsafeBytes(of: Self.before.bigEndian, Array.init))
        try low.note(generation: 3)
        let opened = try sealing(firmware).openVault(in: directory, advancePin: false)
        #expect(opened.vault.sealingContext == withUnsafeBytes(of: Self.after.bigEndian, Array.init))
        #expect(opened.vault.highestGeneration == 0)
    }

    @Test func aStateKeySealedBeforePinningMovesToAPinOnce() throws {
        var firmware = SpecSNPFirmware()
        firmware.committedTCB = Self.before
        let stateKey = SymmetricKey(size: .bits256)
        let first = StateVault(directory: directory, sealingKey: try SNPDerivedKeySealing(device: firmware, vmpl: 0).sealingKey())
        try first.adopt(stateKey: stateKey)
        try first.note(generation: 4)
        #expect(StateVault.storedSealingContext(in: directory) == [], "the first format: no context")

        let migrated = try sealing(firmware).openVault(in: directory, advancePin: false)
        #expect(migrated.pinMove != nil && migrated.pinMove?.from == nil && migrated.pinMove?.to == Self.before && migrated.pinMove?.reason == .firstFormat)
        #expect(bytes(migrated.vault.stateKey) == bytes(stateKey) && migrated.vault.highestGeneration == 4)
        firmware.committedTCB = Self.after
        #expect(bytes(try sealing(firmware).openVault(in: directory, advancePin: false).vault.stateKey) == bytes(stateKey), "and survives the next update")
    }

    @Test func movingThePinNeedsASealedKeyThatOpensAndOnlySNPHasOne() throws {
        let firmware = SpecSNPFirmware()
        #expect(throws: SealingError.self, "nothing sealed yet") { try sealing(firmware).openVault(in: directory, advancePin: true) }
        _ = try sealFirst(SymmetricKey(size: .bits256))
        var otherMeasurement = firmware
        otherMeasurement.committedTCB = Self.after
        otherMeasurement.measurement[0] ^= 1
        let error = try #require(throws: SealingError.self) { try sealing(otherMeasurement).openVault(in: directory, advancePin: true) }
        #expect("\(error)".contains("does not open"), "\(error)")
        #expect(throws: SealingError.self) { try SimulatedSealing(directory: directory).openVault(in: directory, advancePin: true) }
        #expect(throws: SealingError.self) { try NoSealing().openVault(in: directory, advancePin: true) }
    }

    /// `--advance-sealing-tcb`'s move, once the state is open, is a signed history entry.
    @Test func aMovedPinIsRecordedInTheHistory() async throws {
        let coordinator = try await Fixture().coordinator()
        try await coordinator.record(SealingPinMove(from: Self.before, to: Self.after, reason: .requested), replica: "r1")
        let entry = try #require(coordinator.log.last)
        #expect(entry.event == "sealingTCBAdvanced")
        #expect(entry.detail == ["replica": "r1", "from": "7308000000000003", "to": "d516000000000003", "reason": "requested"])
        try await coordinator.record(SealingPinMove(from: nil, to: Self.before, reason: .firstFormat), replica: "r2")
        #expect(coordinator.log.last?.detail["from"] == "unpinned" && coordinator.log.last?.detail["reason"] == "firstFormat")
    }

    @Test func thePinnedRequestSelectsTheTCBVersionField() {
        let request = SNPDerivedKeySealing(device: SpecSNPFirmware(), vmpl: 0, tcbPin: Self.after).request
        #expect(Array(request[0x08..<0x10]) == [0x29, 0, 0, 0, 0, 0, 0, 0], "policy, measurement and TCB version (bit 5)")
        #expect(Array(request[0x18..<0x20]) == withUnsafeBytes(of: Self.after.littleEndian, Array.init), "TCB_VERSION little-endian")
    }
}
