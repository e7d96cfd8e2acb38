import FoundationEssentials
import CVeilSys
import Glibc
import VeilImage

/// A root filesystem unpacked for one run into memory: a `ramfs` mounted for it alone, so
/// decrypted layers never reach a disk (ramfs pages are not swapped either, unlike tmpfs).
///
/// Invariant: ``rootfs`` exists only on the ramfs; ``remove()`` detaches the mount, which
/// frees its pages once the container is gone. A crash of `veil run` leaves the mount (in
/// memory, never on disk) until the next reboot or a manual `umount`.
public final class MemoryRootfs: Sendable {
    public let mountPoint: String
    public var rootfs: String { mountPoint + "/rootfs" }
    /// ramfs's `statfs` magic (linux/magic.h).
    static let ramfsMagic = 0x8584_58f6

    /// Mounts a fresh ramfs under `stateDirectory/memory` and unpacks `image` into it, opening
    /// encrypted layers with `keys` (each layer's HMAC checked before it is decrypted, its
    /// diff_id after).
    public static func unpack(_ image: SourceImage, keys: LayerKeyring, stateDirectory: String) throws -> MemoryRootfs {
        try FileManager.default.createDirectory(atPath: "\(stateDirectory)/memory", withIntermediateDirectories: true)
        var template = Array("\(stateDirectory)/memory/veil-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ImageError.io(path: stateDirectory, reason: String(cString: strerror(errno))) }
        let mountPoint = String(cString: made)
        guard mount("ramfs", mountPoint, "ramfs", UInt(MS_NOSUID | MS_NODEV), "mode=0700") == 0 else {
            let reason = String(cString: strerror(errno))
            rmdir(mountPoint)
            throw ImageError.io(path: mountPoint, reason: "cannot mount a ramfs for the decrypted layers: \(reason) (veil run needs root)")
        }
        let memory = MemoryRootfs(mountPoint: mountPoint)
        do {
            try memory.checkMemoryBacked()
            guard mkdir(memory.rootfs, 0o755) == 0, chmod(memory.rootfs, 0o755) == 0 else {
                throw ImageError.io(path: memory.rootfs, reason: String(cString: strerror(errno)))
            }
            let unpacker = try RootfsUnpacker(root: memory.rootfs, hashingContent: false)
            for index in image.layers.indices {
                try image.readLayer(index, keys: keys) { try unpacker.apply(layer: index, tar: $0) }
            }
            return memory
        } catch {
            memory.remove()
            throw error
        }
    }

    private init(mountPoint: String) { self.mountPoint = mountPoint }

    /// Refuses unless the mount point is a ramfs (a failed or shadowed mount would put the
    /// plaintext on the state directory's disk).
    func checkMemoryBacked() throws {
        let fd = open(mountPoint, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        defer { if fd >= 0 { close(fd) } }
        guard fd >= 0, veil_filesystem_type(fd) == Self.ramfsMagic else {
            throw ImageError.io(path: mountPoint, reason: "is not a ramfs: refusing to put decrypted layers on it")
        }
    }

    /// Detaches and removes the mount: the plaintext's pages are freed.
    public func remove() {
        umount2(mountPoint, Int32(MNT_DETACH))
        rmdir(mountPoint)
    }
}
