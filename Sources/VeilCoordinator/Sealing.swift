import CVeilSys
import Crypto
import Foundation
import VeilAttestation
import VeilCore

/// Where a replica's sealing key comes from: a key only this TEE, running this code, can derive.
/// It seals the state key and the highest state generation the replica has seen
/// (``StateVault``), so a restarted replica opens the state without peers or recovery — and a
/// modified coordinator, or another machine, cannot.
public protocol SealingKeyProvider: Sendable {
    /// What the key is bound to, for logs and errors.
    var binding: String { get }
    /// The key, or `nil` for a TEE without one (TDX): the state key then comes only from a
    /// peer replica (mutual attestation) or from recovery.
    func sealingKey() throws(SealingError) -> SymmetricKey?
    /// The replica's vault in `directory`, opened under this provider's key; `advancePin`
    /// asks a provider whose key is pinned to a firmware version (SEV-SNP) to move the pin to
    /// the current one.
    func openVault(in directory: String, advancePin: Bool) throws(SealingError) -> OpenedVault
}

/// A vault as a replica opened it, and the pin move that happened on the way (SEV-SNP).
public struct OpenedVault: Sendable {
    public let vault: StateVault
    public let pinMove: SealingPinMove?
}

extension SealingKeyProvider {
    public func openVault(in directory: String, advancePin: Bool) throws(SealingError) -> OpenedVault {
        guard !advancePin else { throw .unavailable("only an SEV-SNP replica's sealing key is pinned to a firmware version (\(binding))") }
        return OpenedVault(vault: StateVault(directory: directory, sealingKey: try sealingKey()), pinMove: nil)
    }
}

public enum SealingError: Error, Equatable, CustomStringConvertible {
    case unavailable(String)
    case firmware(String)
    case malformed(String)

    public var description: String {
        switch self {
        case .unavailable(let why): return "no sealing key: \(why)"
        case .firmware(let why): return "the TEE refused to derive a sealing key: \(why)"
        case .malformed(let why): return "malformed sealing key material: \(why)"
        }
    }
}

/// The simulated TEE: a random key in a file named so nobody mistakes it for hardware sealing.
/// Anyone who reads it opens the state — development only.
public struct SimulatedSealing: SealingKeyProvider {
    public static let fileName = "sealing-key.simulation-insecure"
    public let directory: String
    public var binding: String { "a file in \(directory) (simulated: no protection)" }

    public init(directory: String) { self.directory = directory }

    /// The key in the file, created (random, mode 0600) when missing.
    public func sealingKey() throws(SealingError) -> SymmetricKey? {
        let path = (directory as NSString).appendingPathComponent(Self.fileName)
        if let data = FileManager.default.contents(atPath: path) {
            guard let text = String(data: data, encoding: .utf8), let bytes = Hex.decode(text.trimmingCharacters(in: .whitespacesAndNewlines)),
                bytes.count == 32
            else { throw .malformed("\(path) does not hold a 32-byte hex sealing key") }
            return SymmetricKey(data: bytes)
        }
        let key = SymmetricKey(size: .bits256)
        do {
            try AtomicFile.write(Array((key.withUnsafeBytes { Hex.encode($0) } + "\n").utf8), to: path, mode: 0o600)
        } catch {
            throw .unavailable("cannot write \(path): \(error)")
        }
        return key
    }
}

/// TDX has no sealing key: every start takes the state key from a peer or from recovery.
public struct NoSealing: SealingKeyProvider {
    public var binding: String { "none (TDX has no sealing key: the state key comes from peers or recovery)" }
    public init() {}
    public func sealingKey() throws(SealingError) -> SymmetricKey? { nil }
}

/// SEV-SNP: a key the AMD secure processor derives (MSG_KEY_REQ through `/dev/sev-guest`) from
/// the chip's VCEK and, as selected, the guest's launch measurement and policy — so a guest with
/// other firmware, kernel, initrd or policy derives another key — stretched with HKDF-SHA256
/// under a Veil label, so the raw firmware key (which any program in the guest asking the same
/// parameters gets) is never the sealing key itself.
///
/// It binds the coordinator only as far as the launch measurement covers it: the coordinator's
/// binary must be in a measured initrd, or in a root filesystem whose dm-verity root hash is on
/// the measured kernel command line. The replica says so at start (docs/coordinator-tee.md).
///
/// The request (SEV-SNP firmware ABI, MSG_KEY_REQ, 32 bytes, little-endian): `0x00` bit 0
/// ROOT_KEY_SELECT (0: the chip's key, not the VMRK) and, since ABI 1.55, bits 2:1 KEY_SEL
/// (0: the VLEK if one is installed — a key of the cloud provider's — else the VCEK; 1: the
/// VCEK; 2: the VLEK); `0x04` reserved; `0x08` GUEST_FIELD_SELECT (bit 0 guest policy, 1 image
/// ID, 2 family ID, 3 measurement, 4 guest SVN, 5 TCB version); `0x10` VMPL; `0x14` GUEST_SVN;
/// `0x18` TCB_VERSION. The response (MSG_KEY_RSP, 64 bytes): `0x00` STATUS, `0x20` the key.
///
/// With `tcbPin` the request also selects TCB_VERSION (bit 5) and names that version, which the
/// firmware accepts only up to the chip's committed TCB: the key then stays the same across
/// firmware updates until the pin is moved (``PinnedSNPSealing``). Without it the key follows
/// the chip's current TCB, so a firmware update changes it.
public struct SNPDerivedKeySealing: SealingKeyProvider {
    /// Guest policy and launch measurement (and, with a pin, bit 5: TCB version).
    public static let guestFieldSelect: UInt64 = 1 << 0 | 1 << 3
    public static let tcbVersionField: UInt64 = 1 << 5
    static let label = Array("veil-coordinator-sealing-v1 snp".utf8)

    /// How the request names the VCEK: explicitly (firmware ABI 1.55+, where 0 would mean "the
    /// VLEK if installed"), or as 0 on older firmware, which knows no VLEK and refuses KEY_SEL.
    public enum KeySelection: Sendable, Equatable {
        case vcek
        case beforeKeySelection

        /// For the firmware a report says is running.
        public init(firmwareMajor: UInt8, minor: UInt8) {
            self = (firmwareMajor, minor) >= (1, 55) ? .vcek : .beforeKeySelection
        }

        var word: UInt32 { self == .vcek ? 1 << 1 : 0 }
    }

    public let device: any SNPGuestDevice
    /// The VMPL to derive for: the replica's own (a lower one is refused by the firmware).
    public let vmpl: UInt32
    public let keySelection: KeySelection
    /// The raw TCB_VERSION the key is derived at, or `nil` for the chip's current TCB.
    public let tcbPin: UInt64?

    public var binding: String {
        "the SNP chip's VCEK" + (tcbPin.map { " at TCB 0x\(Hex.encode(withUnsafeBytes(of: $0.bigEndian, Array.init)))" } ?? "")
            + ", the guest's launch measurement and policy, VMPL \(vmpl) — the coordinator itself only if the measurement covers its binary"
    }

    public init(device: any SNPGuestDevice = SEVGuestDevice(), vmpl: UInt32, keySelection: KeySelection = .vcek, tcbPin: UInt64? = nil) {
        self.device = device
        self.vmpl = vmpl
        self.keySelection = keySelection
        self.tcbPin = tcbPin
    }

    /// The MSG_KEY_REQ this provider sends.
    public var request: [UInt8] {
        func le<T: FixedWidthInteger>(_ value: T) -> [UInt8] { withUnsafeBytes(of: value.littleEndian, Array.init) }
        let fields = Self.guestFieldSelect | (tcbPin == nil ? 0 : Self.tcbVersionField)
        return le(keySelection.word) + le(UInt32(0)) + le(fields) + le(vmpl) + le(UInt32(0)) + le(tcbPin ?? 0)
    }

    public func sealingKey() throws(SealingError) -> SymmetricKey? {
        let response = try device.derivedKey(request: request)
        guard response.count == 64 else { throw .malformed("MSG_KEY_RSP is \(response.count) bytes, not 64") }
        let status = UInt32(response[0]) | UInt32(response[1]) << 8 | UInt32(response[2]) << 16 | UInt32(response[3]) << 24
        guard status == 0 else { throw .firmware("MSG_KEY_RSP status 0x\(String(status, radix: 16)) (0x16: invalid parameters, e.g. a VMPL below the guest's)") }
        let key = Array(response[32..<64])
        guard key.contains(where: { $0 != 0 }) else { throw .malformed("the derived key is all zero") }
        return HKDF<SHA256>.deriveKey(inputKeyMaterial: SymmetricKey(data: key), info: Self.label, outputByteCount: 32)
    }
}

/// Sends MSG_KEY_REQ to an SEV-SNP guest's firmware.
public protocol SNPGuestDevice: Sendable {
    /// The 64-byte MSG_KEY_RSP for a 32-byte MSG_KEY_REQ.
    func derivedKey(request: [UInt8]) throws(SealingError) -> [UInt8]
}

/// The Linux SEV guest driver (`/dev/sev-guest`, SNP_GET_DERIVED_KEY).
public struct SEVGuestDevice: SNPGuestDevice {
    public static let defaultPath = "/dev/sev-guest"
    public let path: String

    public init(path: String = SEVGuestDevice.defaultPath) { self.path = path }

    public func derivedKey(request: [UInt8]) throws(SealingError) -> [UInt8] {
        precondition(request.count == 32)
        let fd = open(path, O_RDWR | O_CLOEXEC)
        guard fd >= 0 else { throw .unavailable("cannot open \(path): \(String(cString: strerror(errno))) (not an SEV-SNP guest?)") }
        defer { close(fd) }
        var response = [UInt8](repeating: 0, count: 64)
        var exitInfo: UInt64 = 0
        let result = request.withUnsafeBufferPointer { requestBytes in
            response.withUnsafeMutableBufferPointer { responseBytes in
                veil_snp_derived_key(fd, requestBytes.baseAddress, responseBytes.baseAddress, &exitInfo)
            }
        }
        guard result == 0 else {
            throw .firmware("SNP_GET_DERIVED_KEY on \(path): \(String(cString: strerror(errno))), firmware error 0x\(String(exitInfo & 0xffff_ffff, radix: 16)), VMM error 0x\(String(exitInfo >> 32, radix: 16))")
        }
        return response
    }
}

/// SGX under Gramine: Gramine's MRENCLAVE-bound sealing key (`/dev/attestation/keys/_sgx_mrenclave`,
/// 16 bytes, derived by the CPU from the enclave measurement), stretched to 256 bits with HKDF.
public struct GramineSealing: SealingKeyProvider {
    public static let defaultRoot = "/dev/attestation/keys"
    public let root: String
    public var binding: String { "the SGX CPU and the enclave's MRENCLAVE (Gramine \(root)/_sgx_mrenclave)" }

    public init(root: String = GramineSealing.defaultRoot) { self.root = root }

    public func sealingKey() throws(SealingError) -> SymmetricKey? {
        let path = "\(root)/_sgx_mrenclave"
        guard let bytes = FileManager.default.contents(atPath: path).map(Array.init) else {
            throw .unavailable("cannot read \(path) (not running under Gramine, or its keys are not exposed)")
        }
        guard bytes.count == 16 else { throw .malformed("\(path) holds \(bytes.count) bytes, not 16") }
        return HKDF<SHA256>.deriveKey(
            inputKeyMaterial: SymmetricKey(data: bytes), info: Array("veil-coordinator-sealing-v1".utf8), outputByteCount: 32)
    }
}
