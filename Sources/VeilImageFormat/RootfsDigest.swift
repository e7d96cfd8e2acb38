import Crypto

/// One filesystem object of a container root as Veil measures it.
public struct RootfsNode: Sendable, Equatable {
    public enum Kind: UInt8, Sendable { case directory = 1, file, symlink, fifo, characterDevice, blockDevice }
    public var kind: Kind
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64 = 0
    /// SHA-256 of a file's content.
    public var contentDigest: [UInt8] = []
    public var linkTarget: String = ""
    public var deviceMajor: UInt32 = 0
    public var deviceMinor: UInt32 = 0
    /// Index of the layer that wrote the node (not measured).
    package var layer: Int = -1

    package init(
        kind: Kind, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64 = 0, contentDigest: [UInt8] = [], linkTarget: String = "",
        deviceMajor: UInt32 = 0, deviceMinor: UInt32 = 0, layer: Int = -1
    ) {
        (self.kind, self.mode, self.uid, self.gid, self.size) = (kind, mode, uid, gid, size)
        (self.contentDigest, self.linkTarget, self.deviceMajor, self.deviceMinor, self.layer) = (contentDigest, linkTarget, deviceMajor, deviceMinor, layer)
    }

    package static func implicitDirectory(layer: Int) -> RootfsNode { RootfsNode(kind: .directory, mode: 0o755, uid: 0, gid: 0, layer: layer) }
}

/// The canonical digest of a container root filesystem.
///
/// `SHA-256("veil-rootfs-v1\0" ‖ records)`, one record per object in byte order of its path,
/// each `u32 len ‖ path ‖ u8 kind ‖ u32 mode ‖ u32 uid ‖ u32 gid` and then, for files,
/// `u64 size ‖ content digest` (``ContentDigest``: SHA-256 of the content, chunked beyond
/// 1 MiB); for symlinks `u32 len ‖ target`; for devices `u32 major ‖
/// u32 minor`. Timestamps are not measured. Runtime-owned trees (``isExcluded(_:)``) are left
/// out: the runtime mounts fresh filesystems there, and protected files carry their own
/// integrity (their versions are recorded by the coordinator).
public enum RootfsDigest {
    /// Top-level directories the runtime mounts over.
    public static let runtimeDirectories: Set<String> = ["proc", "sys", "dev", "run", "tmp"]
    /// Files every container runtime (runc under Docker or podman, the kubelet) bind-mounts
    /// over the image's own or create (podman also links /etc/mtab to /proc/mounts): name resolution and the hostname, which the host controls anyway
    /// (services authenticate each other by attested TLS, not by names or addresses).
    public static let runtimeFiles: Set<String> = ["etc/hosts", "etc/hostname", "etc/resolv.conf", "etc/mtab"]
    /// Where converted images keep protected (encrypted) files.
    public static let protectedDirectory = "veil/protected"

    public static func isExcluded(_ path: String) -> Bool {
        let top = path.split(separator: "/", maxSplits: 1).first.map(String.init) ?? path
        if runtimeDirectories.contains(top) || runtimeFiles.contains(path) { return true }
        return path == protectedDirectory || path.hasPrefix(protectedDirectory + "/")
    }

    package static func digest(_ records: [(String, RootfsNode)]) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: Array("veil-rootfs-v1\0".utf8))
        for (path, node) in records.filter({ !isExcluded($0.0) }).sorted(by: { $0.0.utf8.lexicographicallyPrecedes($1.0.utf8) }) {
            var record: [UInt8] = []
            append32(&record, UInt32(path.utf8.count))
            record += Array(path.utf8)
            record.append(node.kind.rawValue)
            append32(&record, node.kind == .symlink ? 0o777 : node.mode & 0o7777)
            append32(&record, node.uid)
            append32(&record, node.gid)
            switch node.kind {
            case .file:
                for shift in stride(from: 56, through: 0, by: -8) { record.append(UInt8(truncatingIfNeeded: node.size >> UInt64(shift))) }
                record += node.contentDigest
            case .symlink:
                append32(&record, UInt32(node.linkTarget.utf8.count))
                record += Array(node.linkTarget.utf8)
            case .characterDevice, .blockDevice:
                append32(&record, node.deviceMajor)
                append32(&record, node.deviceMinor)
            case .directory, .fifo:
                break
            }
            hasher.update(data: record)
        }
        return Array(hasher.finalize())
    }

    private static func append32(_ bytes: inout [UInt8], _ value: UInt32) {
        for shift in [24, 16, 8, 0] { bytes.append(UInt8(truncatingIfNeeded: value >> UInt32(shift))) }
    }
}
