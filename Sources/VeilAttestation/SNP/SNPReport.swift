/// An AMD SEV-SNP attestation report (SEV-SNP ABI specification, table "ATTESTATION_REPORT"),
/// versions 2 to 5 (every version keeps the fields Veil reads at the same offsets): exactly 1184 bytes, little-endian.
public struct SNPReport: Sendable, Equatable {
    public static let size = 0x4A0
    /// The report signature covers bytes `0..<signedLength`.
    public static let signedLength = 0x2A0

    /// A TCB_VERSION: security patch levels of the firmware components.
    ///
    /// Versions are only partially ordered: one may be newer in the bootloader and older in
    /// the microcode. So the type is not `Comparable`; ``isAtLeast(_:)`` is the order, and
    /// two versions can each fail to reach the other.
    public struct TCBVersion: Sendable, Equatable, CustomStringConvertible {
        public var raw: UInt64
        public var bootloader: UInt8
        public var tee: UInt8
        public var snp: UInt8
        public var microcode: UInt8
        /// Turin and later only.
        public var fmc: UInt8?

        /// Milan/Genoa: byte 0 bootloader, 1 TEE, 6 SNP, 7 microcode. Turin: 0 FMC, 1 bootloader, 2 TEE, 3 SNP, 7 microcode.
        public init(raw: UInt64, turin: Bool = false) {
            self.raw = raw
            let b = (0..<8).map { UInt8(truncatingIfNeeded: raw >> (8 * UInt64($0))) }
            if turin {
                (fmc, bootloader, tee, snp, microcode) = (b[0], b[1], b[2], b[3], b[7])
            } else {
                (fmc, bootloader, tee, snp, microcode) = (nil, b[0], b[1], b[6], b[7])
            }
        }

        /// From components: with `fmc` in Turin's layout, without it in Milan/Genoa's — the
        /// one place the two byte layouts are packed.
        public init(bootloader: UInt8, tee: UInt8, snp: UInt8, microcode: UInt8, fmc: UInt8? = nil) {
            let raw: UInt64
            if let fmc {
                raw = UInt64(fmc) | UInt64(bootloader) << 8 | UInt64(tee) << 16 | UInt64(snp) << 24 | UInt64(microcode) << 56
            } else {
                raw = UInt64(bootloader) | UInt64(tee) << 8 | UInt64(snp) << 48 | UInt64(microcode) << 56
            }
            self.init(raw: raw, turin: fmc != nil)
        }

        /// Parses `BOOTLOADER:TEE:SNP:MICROCODE[:FMC]`, each 0-255; nil when it is not that.
        public init?(components text: String) {
            let parts = text.split(separator: ":", omittingEmptySubsequences: false).map { UInt8($0) }
            guard parts.count == 4 || parts.count == 5, parts.allSatisfy({ $0 != nil }) else { return nil }
            self.init(bootloader: parts[0]!, tee: parts[1]!, snp: parts[2]!, microcode: parts[3]!, fmc: parts.count == 5 ? parts[4] : nil)
        }

        /// Every component of `self` is at least the corresponding one of `other` (an FMC
        /// `other` does not name is not compared).
        public func isAtLeast(_ other: TCBVersion) -> Bool {
            bootloader >= other.bootloader && tee >= other.tee && snp >= other.snp && microcode >= other.microcode
                && (fmc ?? 0) >= (other.fmc ?? 0)
        }

        public var description: String {
            "bootloader \(bootloader), tee \(tee), snp \(snp), microcode \(microcode)" + (fmc.map { ", fmc \($0)" } ?? "")
        }
    }

    /// The guest policy the VM was launched with.
    public struct Policy: Sendable, Equatable {
        public var raw: UInt64
        public var abiMinor: UInt8 { UInt8(truncatingIfNeeded: raw) }
        public var abiMajor: UInt8 { UInt8(truncatingIfNeeded: raw >> 8) }
        public var smtAllowed: Bool { raw & (1 << 16) != 0 }
        public var migrationAgentAllowed: Bool { raw & (1 << 18) != 0 }
        public var debugAllowed: Bool { raw & (1 << 19) != 0 }
        public var singleSocket: Bool { raw & (1 << 20) != 0 }
        public var cxlAllowed: Bool { raw & (1 << 21) != 0 }
        public var memoryAES256XTS: Bool { raw & (1 << 22) != 0 }
        public var raplDisabled: Bool { raw & (1 << 23) != 0 }
        public var ciphertextHiding: Bool { raw & (1 << 24) != 0 }
        public var pageSwapDisabled: Bool { raw & (1 << 25) != 0 }
        /// Bit 17 is reserved and must be one; bits 63:26 are reserved and must be zero
        /// (SEV-SNP ABI 1.57, as go-sev-guest's ParseSnpPolicy).
        public var reservedBitsValid: Bool { raw & (1 << 17) != 0 && raw >> 26 == 0 }
    }

    public var version: UInt32
    public var guestSVN: UInt32
    public var policy: Policy
    public var familyID: [UInt8]
    public var imageID: [UInt8]
    public var vmpl: UInt32
    public var signatureAlgorithm: UInt32
    public var currentTCB: UInt64
    public var platformInfo: UInt64
    /// Bit 0 author key enabled, bit 1 MASK_CHIP_ID, bits 2–4 signing key (0 VCEK, 1 VLEK).
    public var flags: UInt32
    public var reportData: [UInt8]
    public var measurement: [UInt8]
    public var hostData: [UInt8]
    public var idKeyDigest: [UInt8]
    public var authorKeyDigest: [UInt8]
    public var reportID: [UInt8]
    public var reportIDMA: [UInt8]
    public var reportedTCB: UInt64
    /// Version 3+: CPUID family, model, stepping of the chip.
    public var cpuid: (family: UInt8, model: UInt8, stepping: UInt8)?
    public var chipID: [UInt8]
    public var committedTCB: UInt64
    /// The running firmware's version (CURRENT_MAJOR, CURRENT_MINOR, CURRENT_BUILD).
    public var currentFirmware: (major: UInt8, minor: UInt8, build: UInt8)
    public var launchTCB: UInt64
    /// ECDSA P-384 signature, big-endian r ‖ s (48 bytes each), converted from the report's
    /// little-endian 72-byte fields.
    public var signature: [UInt8]

    public var maskChipID: Bool { flags & 0x2 != 0 }
    /// 0 = VCEK, 1 = VLEK, 7 = none.
    public var signingKey: UInt32 { (flags >> 2) & 0x7 }

    /// The chip's product, from the CPUID a version 3+ report carries; nil for version 2 or
    /// an unknown family/model.
    public var product: AMDProduct? { cpuid.flatMap { AMDProduct(family: $0.family, model: $0.model) } }

    public static func == (lhs: SNPReport, rhs: SNPReport) -> Bool {
        lhs.signature == rhs.signature && lhs.reportData == rhs.reportData && lhs.measurement == rhs.measurement && lhs.chipID == rhs.chipID
    }

    public init(_ bytes: [UInt8]) throws(QuoteParseError) {
        guard bytes.count >= Self.size else {
            throw .truncated(field: "SNP report", offset: 0, needed: Self.size, available: bytes.count)
        }
        guard bytes.count == Self.size else { throw .trailingBytes(field: "SNP report", count: bytes.count - Self.size) }
        var reader = ByteReader(bytes)
        version = try reader.u32("version")
        guard (2...5).contains(version) else { throw .unsupportedVersion(UInt16(truncatingIfNeeded: version)) }
        guestSVN = try reader.u32("guest_svn")
        policy = Policy(raw: try reader.u64("policy"))
        familyID = try reader.read(16, "family_id")
        imageID = try reader.read(16, "image_id")
        vmpl = try reader.u32("vmpl")
        signatureAlgorithm = try reader.u32("signature_algo")
        currentTCB = try reader.u64("current_tcb")
        platformInfo = try reader.u64("platform_info")
        flags = try reader.u32("flags")
        _ = try reader.read(4, "reserved0")
        reportData = try reader.read(64, "report_data")
        measurement = try reader.read(48, "measurement")
        hostData = try reader.read(32, "host_data")
        idKeyDigest = try reader.read(48, "id_key_digest")
        authorKeyDigest = try reader.read(48, "author_key_digest")
        reportID = try reader.read(32, "report_id")
        reportIDMA = try reader.read(32, "report_id_ma")
        reportedTCB = try reader.u64("reported_tcb")
        let cpuidBytes = try reader.read(3, "cpuid")
        cpuid = version >= 3 ? (cpuidBytes[0], cpuidBytes[1], cpuidBytes[2]) : nil
        _ = try reader.read(0x1A0 - 0x18B, "reserved1")
        chipID = try reader.read(64, "chip_id")
        committedTCB = try reader.u64("committed_tcb")
        let versions = try reader.read(8, "current/committed version")
        currentFirmware = (versions[2], versions[1], versions[0])
        launchTCB = try reader.u64("launch_tcb")
        _ = try reader.read(Self.signedLength - 0x1F8, "reserved2")
        let r = try reader.read(72, "signature.r")
        let s = try reader.read(72, "signature.s")
        // The rest of the 512-byte signature structure is reserved: zero, as go-sev-guest requires.
        let reserved = try reader.read(Self.size - reader.offset, "signature.reserved")
        if let index = reserved.firstIndex(where: { $0 != 0 }) {
            throw .nonZeroReserved(field: "signature.reserved", offset: Self.size - reserved.count + index)
        }
        // Little-endian 72-byte fields holding 48-byte P-384 scalars: the top 24 bytes must be zero.
        guard r[48...].allSatisfy({ $0 == 0 }), s[48...].allSatisfy({ $0 == 0 }) else {
            throw .lengthMismatch(field: "signature component", declared: 72, actual: 48)
        }
        signature = Array(r[..<48].reversed()) + Array(s[..<48].reversed())
    }
}
