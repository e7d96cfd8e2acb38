import Crypto
import VeilImageFormat

/// Bounds on unpacking an image or archive, so a crafted one cannot fill the disk, memory
/// (the tree holds one node per entry) or produce paths the kernel refuses midway.
public struct UnpackLimits: Sendable, Equatable {
    /// Sum of the sizes of all regular files, as their tar headers declare them.
    public var totalBytes: UInt64
    /// Entries across all layers (whiteouts included).
    public var entries: Int
    /// Bytes in one path, and in one path component.
    public var pathLength: Int
    public var componentLength: Int

    /// 64 GiB, 2 million entries, PATH_MAX (4096) and NAME_MAX (255).
    public static let `default` = UnpackLimits(totalBytes: 64 << 30, entries: 2_000_000, pathLength: 4096, componentLength: 255)

    public init(totalBytes: UInt64, entries: Int, pathLength: Int, componentLength: Int) {
        self.totalBytes = totalBytes
        self.entries = entries
        self.pathLength = pathLength
        self.componentLength = componentLength
    }

    func check(_ entry: TarEntry, entriesBefore: Int, bytesBefore: UInt64) throws(ImageError) {
        guard entriesBefore < entries else { throw .limitExceeded(what: "the image's entry count", limit: "\(entries) entries") }
        guard entry.path.utf8.count <= pathLength else {
            throw .limitExceeded(what: "path '\(entry.path.prefix(64))…' (\(entry.path.utf8.count) bytes)", limit: "\(pathLength) bytes")
        }
        if let long = entry.path.split(separator: "/").first(where: { $0.utf8.count > componentLength }) {
            throw .limitExceeded(what: "path component '\(long.prefix(64))…' of '\(entry.path.prefix(64))'", limit: "\(componentLength) bytes")
        }
        if entry.kind == .file {
            let (total, overflow) = bytesBefore.addingReportingOverflow(entry.size)
            guard !overflow, total <= totalBytes else {
                throw .limitExceeded(what: "the image's files (\(entry.path.prefix(64)) brings them past the limit)", limit: "\(totalBytes) bytes")
            }
        }
    }
}

/// The merged root filesystem of an image, built by applying its layers in order (OCI
/// whiteouts included) without extracting anything. It is both the validator every layer
/// entry passes before anything is written and the source of the image measurement.
///
/// Invariant: every node's parent chain consists of directories: an entry that would be
/// written through a symlink or below a non-directory is refused, so no extraction guided by
/// this tree can leave the root.
public struct RootfsTree: Sendable {
    public private(set) var nodes: [String: RootfsNode] = [:]
    /// Bounds on what an image may hold; checked from tar headers before anything is written.
    public var limits: UnpackLimits
    public private(set) var entriesApplied = 0
    public private(set) var bytesDeclared: UInt64 = 0

    public init(limits: UnpackLimits = .default) {
        self.limits = limits
    }

    static let whiteoutPrefix = ".wh."
    static let opaqueMarker = ".wh..wh..opq"

    /// Applies one layer entry. `write` performs the matching filesystem change (if any): it
    /// gets the paths removed first (whiteouts, replaced subtrees) and returns a file's
    /// content digest and size. Nothing is recorded if validation or `write` fails.
    public mutating func apply(
        _ entry: TarEntry, layer: Int, write: (_ removed: [String]) throws -> (digest: [UInt8], size: UInt64)?
    ) throws {
        if entry.path.isEmpty { return }  // the root itself: its metadata is the runtime's
        try limits.check(entry, entriesBefore: entriesApplied, bytesBefore: bytesDeclared)
        entriesApplied += 1
        if entry.kind == .file { bytesDeclared += entry.size }
        try checkParents(of: entry.path)
        let name = entry.name
        if name == Self.opaqueMarker {
            let directory = entry.parent
            let prefix = directory.isEmpty ? "" : directory + "/"
            let lower = nodes.filter { $0.key.hasPrefix(prefix) && $0.key != directory && $0.value.layer < layer }.map(\.key)
            var roots: [String] = []
            for path in lower.sorted() where roots.last.map({ !path.hasPrefix($0 + "/") }) ?? true { roots.append(path) }
            _ = try write(roots)
            for path in lower { nodes[path] = nil }
            return
        }
        if name.hasPrefix(Self.whiteoutPrefix) {
            let hidden = String(name.dropFirst(Self.whiteoutPrefix.count))
            guard !hidden.isEmpty, hidden != "." && hidden != ".." else { throw ImageError.unsafeEntry(path: entry.path, reason: "bad whiteout") }
            let target = entry.parent.isEmpty ? hidden : entry.parent + "/" + hidden
            let removed = nodes[target] == nil ? [] : [target]
            _ = try write(removed)
            removeSubtree(target)
            return
        }
        var node = try Self.node(for: entry, existing: nodes)
        node.layer = layer
        var removed: [String] = []
        if let existing = nodes[entry.path], !(existing.kind == .directory && node.kind == .directory) {
            removed = [entry.path]
        }
        if let content = try write(removed) {
            node.contentDigest = content.digest
            node.size = content.size
        }
        if !removed.isEmpty { removeSubtree(entry.path) }
        nodes[entry.path] = node
    }

    /// The node a (non-whiteout) entry adds; a hard link takes its target's node.
    private static func node(for entry: TarEntry, existing nodes: [String: RootfsNode]) throws -> RootfsNode {
        switch entry.kind {
        case .directory:
            return RootfsNode(kind: .directory, mode: entry.mode, uid: entry.uid, gid: entry.gid)
        case .file:
            return RootfsNode(kind: .file, mode: entry.mode, uid: entry.uid, gid: entry.gid, size: entry.size)
        case .symlink:
            guard !entry.linkTarget.isEmpty, !entry.linkTarget.contains("\0") else {
                throw ImageError.unsafeEntry(path: entry.path, reason: "empty symlink target")
            }
            if escapesRoot(link: entry.linkTarget, at: entry.path) {
                throw ImageError.unsafeEntry(path: entry.path, reason: "symlink target '\(entry.linkTarget)' climbs above the image root")
            }
            return RootfsNode(kind: .symlink, mode: 0o777, uid: entry.uid, gid: entry.gid, linkTarget: entry.linkTarget)
        case .hardlink:
            guard let target = nodes[entry.linkTarget], target.kind == .file else {
                throw ImageError.unsafeEntry(path: entry.path, reason: "hard link to '\(entry.linkTarget)', which is not a file in the image")
            }
            guard entry.linkTarget != entry.path else { throw ImageError.unsafeEntry(path: entry.path, reason: "hard link to itself") }
            return target
        case .fifo:
            return RootfsNode(kind: .fifo, mode: entry.mode, uid: entry.uid, gid: entry.gid)
        case .characterDevice, .blockDevice:
            return RootfsNode(kind: entry.kind == .characterDevice ? .characterDevice : .blockDevice, mode: entry.mode,
                              uid: entry.uid, gid: entry.gid, deviceMajor: entry.deviceMajor, deviceMinor: entry.deviceMinor)
        }
    }

    /// Every ancestor must be a directory (created implicitly, 0755 root, when missing).
    private mutating func checkParents(of path: String) throws {
        var prefix = ""
        var missing: [String] = []
        for component in path.split(separator: "/").dropLast() {
            prefix = prefix.isEmpty ? String(component) : prefix + "/" + component
            switch nodes[prefix]?.kind {
            case nil: missing.append(prefix)
            case .directory?: continue
            case .symlink?: throw ImageError.unsafeEntry(path: path, reason: "it would be written through the symlink '\(prefix)'")
            default: throw ImageError.unsafeEntry(path: path, reason: "'\(prefix)' is not a directory")
            }
        }
        for directory in missing { nodes[directory] = .implicitDirectory(layer: -1) }
    }

    mutating func removeSubtree(_ path: String) {
        nodes[path] = nil
        let prefix = path + "/"
        for key in nodes.keys where key.hasPrefix(prefix) { nodes[key] = nil }
    }

    /// Whether a relative symlink climbs above `/` when resolved lexically from its directory.
    /// Absolute targets resolve inside the container root and are allowed.
    static func escapesRoot(link: String, at path: String) -> Bool {
        if link.hasPrefix("/") { return false }
        var depth = path.split(separator: "/").count - 1
        for part in link.split(separator: "/") {
            if part == ".." {
                depth -= 1
                if depth < 0 { return true }
            } else if part != "." {
                depth += 1
            }
        }
        return false
    }

    /// The node at an absolute or relative path, without following symlinks.
    public func node(at path: String) -> RootfsNode? { nodes[(try? TarEntry.normalize(String(path.drop(while: { $0 == "/" })))) ?? path] }

    /// Paths at or below `path`.
    func subtree(_ path: String) -> [String] {
        let prefix = path + "/"
        return nodes.keys.filter { $0 == path || $0.hasPrefix(prefix) }.sorted()
    }

    mutating func remove(subtree path: String) { removeSubtree(path) }

    /// The rootfs digest (see ``RootfsDigest``).
    public func digest() -> [UInt8] { RootfsDigest.digest(nodes.map { ($0.key, $0.value) }) }
}
