import Crypto
import Dispatch
import FoundationEssentials
import Glibc
import VeilCore
import VeilImageFormat

/// Applies layers to a directory exactly as ``RootfsTree`` applies them in memory: each
/// entry is validated by the tree first, so nothing is ever written outside the root.
public final class RootfsUnpacker {
    public private(set) var tree: RootfsTree
    let rootFD: Int32
    let root: String
    private var scratch = [UInt8](repeating: 0, count: 1 << 20)
    /// Whether ``tree`` gets each file's content digest (what a measurement of the tree needs).
    /// Unpacking to run needs none: the launcher measures the files on disk.
    let hashesContent: Bool

    /// `root` must exist and should be empty.
    public init(root: String, limits: UnpackLimits = .default, hashingContent: Bool = true) throws {
        self.root = root
        hashesContent = hashingContent
        tree = RootfsTree(limits: limits)
        rootFD = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw ImageError.io(path: root, reason: String(cString: strerror(errno))) }
    }

    deinit { close(rootFD) }

    /// Unpacks one layer tar stream as layer number `layer`.
    public func apply(layer: Int, tar reader: TarReader) throws {
        while let entry = try reader.next() {
            try tree.apply(entry, layer: layer) { (removed) throws -> (digest: [UInt8], size: UInt64)? in
                for path in removed { try removeAll(path) }
                if entry.name.hasPrefix(RootfsTree.whiteoutPrefix) { return nil }
                return try create(entry, reader: reader)
            }
        }
    }

    private func fail(_ path: String) -> ImageError { .io(path: root + "/" + path, reason: String(cString: strerror(errno))) }

    /// Opens the parent directory of `path`, creating missing directories (0755 root) as the tree did.
    private func openParent(_ path: String) throws -> Int32 {
        var fd = dup(rootFD)
        var walked = ""
        for component in path.split(separator: "/").dropLast().map(String.init) {
            walked = walked.isEmpty ? component : walked + "/" + component
            var next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            if next < 0 && errno == ENOENT {
                guard mkdirat(fd, component, 0o755) == 0, fchmodat(fd, component, 0o755, 0) == 0 else { close(fd); throw fail(walked) }
                next = openat(fd, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            }
            close(fd)
            guard next >= 0 else { throw fail(walked) }
            fd = next
        }
        return fd
    }

    private func create(_ entry: TarEntry, reader: TarReader) throws -> (digest: [UInt8], size: UInt64)? {
        let parent = try openParent(entry.path)
        defer { close(parent) }
        let name = String(entry.name)
        switch entry.kind {
        case .directory:
            if mkdirat(parent, name, 0o700) != 0 && errno != EEXIST { throw fail(entry.path) }
            let fd = openat(parent, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            guard fd >= 0 else { throw fail(entry.path) }
            defer { close(fd) }
            guard fchown(fd, entry.uid, entry.gid) == 0, fchmod(fd, entry.mode) == 0 else { throw fail(entry.path) }
            return nil
        case .file:
            let fd = openat(parent, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0o600)
            guard fd >= 0 else { throw fail(entry.path) }
            defer { close(fd) }
            var hasher = ContentDigest()
            var size: UInt64 = 0
            let hashesContent = hashesContent
            try reader.readContent { (piece) throws in
                if hashesContent { hasher.update(piece) }
                size += UInt64(piece.count)
                let failure = AtomicFile.writeAll(piece, to: fd)
                guard failure == 0 else { throw ImageError.io(path: root + "/" + entry.path, reason: String(cString: strerror(failure))) }
            }
            // chown clears set-id bits, so the mode comes last.
            guard fchown(fd, entry.uid, entry.gid) == 0, fchmod(fd, entry.mode) == 0 else { throw fail(entry.path) }
            return (hasher.finalize(), size)
        case .symlink:
            guard symlinkat(entry.linkTarget, parent, name) == 0 else { throw fail(entry.path) }
            guard fchownat(parent, name, entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW) == 0 else { throw fail(entry.path) }
            return nil
        case .hardlink:
            let targetParent = try openParent(entry.linkTarget)
            defer { close(targetParent) }
            let targetName = String(entry.linkTarget.split(separator: "/").last ?? "")
            guard linkat(targetParent, targetName, parent, name, 0) == 0 else { throw fail(entry.path) }
            return nil
        case .fifo, .characterDevice, .blockDevice:
            let type: mode_t = entry.kind == .fifo ? S_IFIFO : entry.kind == .characterDevice ? S_IFCHR : S_IFBLK
            let device = dev_t(entry.deviceMajor & 0xfff) << 8 | dev_t(entry.deviceMinor & 0xff)
                | dev_t(entry.deviceMinor & ~0xff) << 12 | dev_t(entry.deviceMajor & ~0xfff) << 32
            guard mknodat(parent, name, type | entry.mode, device) == 0 else { throw fail(entry.path) }
            guard fchownat(parent, name, entry.uid, entry.gid, AT_SYMLINK_NOFOLLOW) == 0,
                fchmodat(parent, name, entry.mode, 0) == 0
            else { throw fail(entry.path) }
            return nil
        }
    }

    /// Removes `path` and everything below it, never following symlinks.
    private func removeAll(_ path: String) throws {
        let parent = try openParent(path)
        defer { close(parent) }
        try Self.remove(String(path.split(separator: "/").last ?? ""), in: parent, display: root + "/" + path)
    }

    static func remove(_ name: String, in dirFD: Int32, display: String) throws {
        if unlinkat(dirFD, name, 0) == 0 || errno == ENOENT { return }
        guard errno == EISDIR else { throw ImageError.io(path: display, reason: String(cString: strerror(errno))) }
        let fd = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
        guard fd >= 0 else { throw ImageError.io(path: display, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        for child in try RootfsDisk.listDirectory(fd, display: display) {
            try remove(child, in: fd, display: display + "/" + child)
        }
        guard unlinkat(dirFD, name, AT_REMOVEDIR) == 0 else { throw ImageError.io(path: display, reason: String(cString: strerror(errno))) }
    }
}
