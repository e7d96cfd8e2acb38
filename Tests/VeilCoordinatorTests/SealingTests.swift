import Crypto
import Foundation
import Testing
import VeilCoordinator

/// An SEV-SNP firmware double built from the firmware ABI specification's MSG_KEY_REQ and
/// MSG_KEY_RSP tables (not from Veil's encoder): it reads each field at its specified offset,
/// refuses what the firmware refuses with INVALID_PARAM (0x16), and derives a key from a chip
/// secret and exactly the guest fields the request selects. From ABI 1.55 bits 2:1 of the first
/// word are KEY_SEL (0: the VLEK if installed, else the VCEK; 1: VCEK; 2: VLEK); before, they
/// are reserved and must be zero. TCB_VERSION (bit 5 of GUEST_FIELD_SELECT) may name any
/// version up to the chip's CommittedTcb, component by component; unselected, the key follows
/// the committed TCB, as the VCEK does — so a firmware update changes it.
struct SpecSNPFirmware: SNPGuestDevice {
    var chipSecret = SymmetricKey(data: [UInt8](repeating: 0xc1, count: 32))
    /// A cloud provider's key, installed by the host (1.55+), which it can replace.
    var vlekSecret: SymmetricKey?
    var abiMinor: UInt8 = 55
    var guestVMPL: UInt32 = 0
    var policy: UInt64 = 0x30000
    var measurement = [UInt8](repeating: 0x4d, count: 48)
    var familyID = [UInt8](repeating: 0x0f, count: 16)
    /// Milan layout: bootloader 3, TEE 0, SNP 8, microcode 115.
    var committedTCB: UInt64 = 0x7308_0000_0000_0003
    static let invalidParam: UInt32 = 0x16

    func derivedKey(request: [UInt8]) throws(SealingError) -> [UInt8] {
        guard request.count == 0x20 else { return Self.response(status: Self.invalidParam, key: nil) }
        func u32(_ offset: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(request[offset + $1]) << (8 * $1) } }
        func u64(_ offset: Int) -> UInt64 { (0..<8).reduce(0) { $0 | UInt64(request[offset + $1]) << (8 * $1) } }
        let rootKeySelect = u32(0x00), reserved = u32(0x04), fieldSelect = u64(0x08), vmpl = u32(0x10)
        // ROOT_KEY_SELECT bit 0 (VCEK/VMRK), KEY_SEL bits 2:1 from 1.55; reserved must be zero;
        // GUEST_FIELD_SELECT bits 6–63 reserved; a guest may not ask for a key of a more
        // privileged VMPL than its own.
        let reservedKeyBits: UInt32 = abiMinor >= 55 ? ~0b111 : ~0b1
        guard rootKeySelect & reservedKeyBits == 0, reserved == 0, fieldSelect >> 6 == 0, vmpl >= guestVMPL, vmpl <= 3 else {
            return Self.response(status: Self.invalidParam, key: nil)
        }
        let keySelect = rootKeySelect >> 1 & 0b11
        let root: SymmetricKey
        switch keySelect {
        case 0: root = vlekSecret ?? chipSecret
        case 1: root = chipSecret
        case 2:
            guard let vlekSecret else { return Self.response(status: Self.invalidParam, key: nil) }
            root = vlekSecret
        default: return Self.response(status: Self.invalidParam, key: nil)
        }
        let requestedTCB = u64(0x18)
        let tcbSelected = fieldSelect & 1 << 5 != 0
        let components = { (tcb: UInt64) in (0..<8).map { UInt8(truncatingIfNeeded: tcb >> (8 * UInt64($0))) } }
        if tcbSelected, zip(components(requestedTCB), components(committedTCB)).contains(where: { $0 > $1 }) {
            return Self.response(status: Self.invalidParam, key: nil)
        }
        var mixed = Array("root-\(rootKeySelect & 1)-vmpl-\(vmpl)".utf8)
        if fieldSelect & 1 << 0 != 0 { mixed += withUnsafeBytes(of: policy.littleEndian, Array.init) }
        if fieldSelect & 1 << 2 != 0 { mixed += familyID }
        if fieldSelect & 1 << 3 != 0 { mixed += measurement }
        mixed += withUnsafeBytes(of: u32(0x14).littleEndian, Array.init)
        mixed += withUnsafeBytes(of: (tcbSelected ? requestedTCB : committedTCB).littleEndian, Array.init)
        return Self.response(status: 0, key: Array(HMAC<SHA256>.authenticationCode(for: mixed, using: root)))
    }

    /// MSG_KEY_RSP: STATUS at 0x00, reserved to 0x1F, DERIVED_KEY at 0x20.
    static func response(status: UInt32, key: [UInt8]?) -> [UInt8] {
        withUnsafeBytes(of: status.littleEndian, Array.init) + [UInt8](repeating: 0, count: 28) + (key ?? [UInt8](repeating: 0, count: 32))
    }
}

@Suite struct SealingTests {
    func key(_ firmware: SpecSNPFirmware, vmpl: UInt32 = 0, selection: SNPDerivedKeySealing.KeySelection = .vcek) throws -> [UInt8] {
        let key = try #require(try SNPDerivedKeySealing(device: firmware, vmpl: vmpl, keySelection: selection).sealingKey())
        return key.withUnsafeBytes { Array($0) }
    }

    @Test func snpSealingKeyIsBoundToTheGuestsMeasurementAndPolicy() throws {
        let firmware = SpecSNPFirmware()
        let first = try key(firmware)
        #expect(first.count == 32)
        #expect(try key(firmware) == first, "the same guest derives the same key every start")
        var otherMeasurement = firmware
        otherMeasurement.measurement[0] ^= 1
        #expect(try key(otherMeasurement) != first, "another launch measurement (a modified coordinator image) derives another key")
        var otherPolicy = firmware
        otherPolicy.policy |= 1 << 19
        #expect(try key(otherPolicy) != first, "another guest policy (e.g. debug) derives another key")
        var otherChip = firmware
        otherChip.chipSecret = SymmetricKey(size: .bits256)
        #expect(try key(otherChip) != first, "another machine derives another key")
        var otherFamily = firmware
        otherFamily.familyID[0] ^= 1
        #expect(try key(otherFamily) == first, "fields not selected do not change the key")
    }

    /// On a host with a VLEK installed, KEY_SEL 0 would root the key in the cloud provider's
    /// VLEK, which the host can replace: the request names the VCEK, and firmware from before
    /// KEY_SEL (which refuses the bits) gets the old request, meaning the VCEK there.
    @Test func snpSealingKeyIsRootedInTheVCEKEvenWithAVLEKInstalled() throws {
        let plain = SpecSNPFirmware()
        var withVLEK = plain
        withVLEK.vlekSecret = SymmetricKey(data: [UInt8](repeating: 0x71, count: 32))
        #expect(try key(withVLEK) == (try key(plain)), "the VCEK-rooted key, whether a VLEK is installed or not")
        #expect(try key(withVLEK, selection: .beforeKeySelection) != (try key(plain)), "KEY_SEL 0 on a VLEK host: the VLEK-rooted key this avoids")
        var old = plain
        old.abiMinor = 52
        #expect(throws: SealingError.self, "firmware before 1.55 refuses KEY_SEL") { try SNPDerivedKeySealing(device: old, vmpl: 0, keySelection: .vcek).sealingKey() }
        #expect(try key(old, selection: .beforeKeySelection) == (try key(plain)), "and derives the same VCEK-rooted key without it")
        #expect(SNPDerivedKeySealing.KeySelection(firmwareMajor: 1, minor: 55) == .vcek)
        #expect(SNPDerivedKeySealing.KeySelection(firmwareMajor: 1, minor: 54) == .beforeKeySelection)
        #expect(SNPDerivedKeySealing.KeySelection(firmwareMajor: 2, minor: 0) == .vcek)
    }

    /// The sealing key is the firmware key stretched under Veil's label, not the firmware key
    /// any program in the guest gets by asking with the same parameters.
    @Test func snpSealingKeyIsNotTheRawFirmwareKey() throws {
        let firmware = SpecSNPFirmware()
        let raw = Array(try firmware.derivedKey(request: SNPDerivedKeySealing(device: firmware, vmpl: 0).request)[32...])
        #expect(try key(firmware) != raw)
    }

    @Test func snpRequestIsTheSpecifiedMessage() {
        let request = SNPDerivedKeySealing(device: SpecSNPFirmware(), vmpl: 2).request
        #expect(request.count == 32)
        #expect(Array(request[0x00..<0x08]) == [0b10, 0, 0, 0, 0, 0, 0, 0], "ROOT_KEY_SELECT 0, KEY_SEL 1 (VCEK), reserved zero")
        #expect(Array(SNPDerivedKeySealing(device: SpecSNPFirmware(), vmpl: 2, keySelection: .beforeKeySelection).request[0x00..<0x08]) == [0, 0, 0, 0, 0, 0, 0, 0])
        #expect(Array(request[0x08..<0x10]) == [0x09, 0, 0, 0, 0, 0, 0, 0], "guest policy (bit 0) and measurement (bit 3)")
        #expect(Array(request[0x10..<0x14]) == [2, 0, 0, 0], "VMPL")
        #expect(request[0x14...].allSatisfy { $0 == 0 }, "guest SVN and TCB version: zero (the current ones)")
    }

    @Test func snpFirmwareRefusalsAndBadResponsesAreErrors() throws {
        var guest = SpecSNPFirmware()
        guest.guestVMPL = 2
        #expect(throws: SealingError.self) { try SNPDerivedKeySealing(device: guest, vmpl: 0).sealingKey() }
        _ = try key(guest, vmpl: 2)

        struct Fixed: SNPGuestDevice {
            let response: [UInt8]
            func derivedKey(request: [UInt8]) throws(SealingError) -> [UInt8] { response }
        }
        let zeroKey = SpecSNPFirmware.response(status: 0, key: nil)
        #expect(throws: SealingError.malformed("the derived key is all zero")) { try SNPDerivedKeySealing(device: Fixed(response: zeroKey), vmpl: 0).sealingKey() }
        #expect(throws: SealingError.malformed("MSG_KEY_RSP is 32 bytes, not 64")) {
            try SNPDerivedKeySealing(device: Fixed(response: [UInt8](repeating: 1, count: 32)), vmpl: 0).sealingKey()
        }
    }

    @Test func theRealDeviceIsReachedThroughTheDriversIoctl() throws {
        // Not an SEV guest here: a regular file refuses the ioctl, and the error says which.
        let file = FileManager.default.temporaryDirectory.appendingPathComponent("sev-guest-\(UUID().uuidString)").path
        _ = FileManager.default.createFile(atPath: file, contents: Data())
        defer { try? FileManager.default.removeItem(atPath: file) }
        let error = try #require(throws: SealingError.self) { try SNPDerivedKeySealing(device: SEVGuestDevice(path: file), vmpl: 0).sealingKey() }
        #expect("\(error)".contains("SNP_GET_DERIVED_KEY on \(file)"))
        #expect(throws: SealingError.self) { try SNPDerivedKeySealing(device: SEVGuestDevice(path: file + ".missing"), vmpl: 0).sealingKey() }
    }

    @Test func gramineSealingKeyComesFromTheEnclaveBoundKeyFile() throws {
        let root = FileManager.default.temporaryDirectory.appendingPathComponent("gramine-keys-\(UUID().uuidString)").path
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: root) }
        let sealing = GramineSealing(root: root)
        #expect(throws: SealingError.self) { try sealing.sealingKey() }
        try Data(repeating: 7, count: 16).write(to: URL(fileURLWithPath: root + "/_sgx_mrenclave"))
        let first = try #require(try sealing.sealingKey()).withUnsafeBytes { Array($0) }
        #expect(first.count == 32)
        #expect(try #require(try sealing.sealingKey()).withUnsafeBytes { Array($0) } == first)
        try Data(repeating: 8, count: 16).write(to: URL(fileURLWithPath: root + "/_sgx_mrenclave"))
        #expect(try #require(try sealing.sealingKey()).withUnsafeBytes { Array($0) } != first, "another MRENCLAVE, another key")
        try Data(repeating: 8, count: 15).write(to: URL(fileURLWithPath: root + "/_sgx_mrenclave"))
        #expect(throws: SealingError.malformed("\(root)/_sgx_mrenclave holds 15 bytes, not 16")) { try sealing.sealingKey() }
        #expect(try NoSealing().sealingKey() == nil)
    }
}
