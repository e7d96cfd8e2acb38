import Foundation
import Glibc
import VeilCore
import VeilImage

/// Veil's own container image (`veil image self`): `veil` and `veil-launcher` with their
/// loader and libraries in one layer, no base image. The coordinator, the injector and the
/// injector's init container (`veil-launcher install`) run from it.
///
/// Invariant: the same executables give the same bytes, so the same image digest — every tar
/// header has mtime 0 and owner 0, entries are sorted, the config has no creation date, and the
/// executables are stripped the same way each time (binutils' `strip` is deterministic).
///
/// Layout:
/// - `/veil/bin/veil`, `/veil/bin/veil-launcher` and `/veil/lib/*` (the union of what `ldd`
///   lists for both), the layout `veil-launcher install` copies from;
/// - `/lib64/ld-linux-x86-64.so.2` → the shipped loader (the executables' ELF interpreter), and
///   `LD_LIBRARY_PATH=/veil/lib` in the config, so `/veil/bin/veil` starts as a command;
/// - `/tmp` (mode 1777) as a mount point for an `emptyDir`: Foundation writes temporary files;
/// - `/etc/nsswitch.conf` (`hosts: files dns`), `/etc/passwd` and `/etc/group` (root, nonroot
///   65532: the user the rendered pods run as).
public struct VeilSelfImage: Sendable {
    /// What a build wrote.
    public struct Result: Sendable {
        public var manifest: Descriptor
        /// The `veil` executable as packed (stripped): what the coordinator measures itself as.
        public var packedVeil: String
    }

    public var veil: String
    public var launcher: String
    public var strip: Bool

    public init(veil: String, launcher: String, strip: Bool = true) {
        self.veil = veil
        self.launcher = launcher
        self.strip = strip
    }

    static let loaderLink = "lib64/ld-linux-x86-64.so.2"

    static let etcFiles: [(String, String)] = [
        ("etc/group", "root:x:0:\nnonroot:x:65532:\n"),
        ("etc/nsswitch.conf", "hosts: files dns\n"),
        ("etc/passwd", "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"),
    ]

    /// Writes the image into `layout` under `tag`.
    public func build(into layout: LayoutWriter, tag: String) throws -> Result {
        let launcherFiles = try LauncherFiles.resolve(executable: launcher, strip: strip)
        let veilFiles = try LauncherFiles.resolve(executable: veil, strip: strip, name: "veil")
        // One library directory: the launcher's libraries are a subset of veil's, but both are
        // listed so a launcher linked differently still finds its own.
        var files: [String: String] = [:]
        for file in launcherFiles.files + veilFiles.files { files[file.imagePath] = file.hostPath }
        guard let packedVeil = files["veil/bin/veil"] else { throw ImageError.launcher("no executable resolved for \(veil)") }
        let layer = try writeLayer(files: files, hasLoader: files["veil/lib/ld-linux-x86-64.so.2"] != nil, into: layout)
        let config = ImageConfigDocument(
            architecture: "amd64", os: "linux",
            config: .init(
                Entrypoint: ["/veil/bin/veil"], Env: ["PATH=/veil/bin", "LD_LIBRARY_PATH=/veil/lib"], User: "65532:65532",
                Labels: ["org.opencontainers.image.title": "veil", "org.opencontainers.image.description": "Veil coordinator, injector and launcher"]),
            rootfs: .init(type: "layers", diff_ids: [layer.digest.description]))
        let configDescriptor = try layout.put(Self.json(config), mediaType: MediaType.config)
        let manifest = ManifestDocument(schemaVersion: 2, mediaType: MediaType.manifest, config: configDescriptor, layers: [layer])
        let manifestDescriptor = try layout.put(Self.json(manifest), mediaType: MediaType.manifest)
        try layout.tag(manifestDescriptor, as: tag)
        return Result(manifest: manifestDescriptor, packedVeil: packedVeil)
    }

    private func writeLayer(files: [String: String], hasLoader: Bool, into layout: LayoutWriter) throws -> Descriptor {
        let blob = try layout.blob()
        let writer = TarWriter { try blob.write($0) }
        var scratch = [UInt8](repeating: 0, count: 1 << 20)
        var directories: Set<String> = []
        func directory(_ path: String, mode: UInt32 = 0o755) throws {
            var prefix = ""
            for component in path.split(separator: "/") {
                prefix = prefix.isEmpty ? String(component) : prefix + "/" + component
                guard directories.insert(prefix).inserted else { continue }
                try writer.writeHeader(TarEntry(path: prefix, kind: .directory, mode: prefix == path ? mode : 0o755))
            }
        }
        if hasLoader {
            try directory("lib64")
            try writer.writeHeader(TarEntry(path: Self.loaderLink, kind: .symlink, mode: 0o777, linkTarget: "/veil/lib/ld-linux-x86-64.so.2"))
        }
        try directory("tmp", mode: 0o1777)
        // glibc without nsswitch.conf asks DNS alone for host names (not /etc/hosts, where
        // runtimes put hostAliases); users as distroless images name them.
        try directory("etc")
        for (path, text) in Self.etcFiles {
            try writer.writeFile(TarEntry(path: path, kind: .file, mode: 0o644), contents: Array(text.utf8))
        }
        for path in files.keys.sorted() {
            try directory(String(path.split(separator: "/").dropLast().joined(separator: "/")))
            _ = try writer.writeFile(at: path, fromHost: files[path]!, mode: 0o755, scratch: &scratch)
        }
        try writer.finish()
        return try blob.commit(mediaType: MediaType.layer)
    }

    static func json(_ value: some Encodable) throws -> [UInt8] {
        try CanonicalJSON.encode(value)
    }

    struct ImageConfigDocument: Encodable {
        struct Config: Encodable {
            var Entrypoint: [String]
            var Env: [String]
            var User: String
            var Labels: [String: String]
        }
        struct RootFS: Encodable {
            var type: String
            var diff_ids: [String]
        }
        var architecture: String
        var os: String
        var config: Config
        var rootfs: RootFS
    }

    struct ManifestDocument: Encodable {
        var schemaVersion: Int
        var mediaType: String
        var config: Descriptor
        var layers: [Descriptor]
    }
}
