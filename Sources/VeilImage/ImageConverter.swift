import Crypto
import Dispatch
import FoundationEssentials
import Glibc
import Synchronization
import VeilCore
import VeilImageFormat

/// Turns an image into a Veil image: the launcher under `/veil/`, the entrypoint wrapped,
/// chosen paths encrypted as protected files, and the measurement computed.
///
/// Deterministic: the same input image, options and launcher give the same output bytes and
/// measurement (tar times are 0, JSON keys sorted, protected files use content-derived IDs).
/// The source is read once (plus once more for each layer that holds a path to encrypt,
/// which is rewritten without it); no layer is held in memory.
public struct ImageConverter {
    /// The config labels a converted image carries: its service, and its measurement (the
    /// plaintext root's, which `veil run` claims when it asks for an encrypted image's keys).
    public static let serviceLabel = "dev.veil.service"
    public static let measurementLabel = "dev.veil.measurement"

    public struct Options {
        public var service: String
        /// Absolute paths (files or directories) to encrypt.
        public var encrypt: [String] = []
        /// The protected-file secret (32 bytes); required when `encrypt` is not empty.
        public var key: SymmetricKey?
        /// Version written into every protected file.
        public var protectedVersion: UInt64 = 1
        public var launcher: LauncherFiles
        /// Called with (bytes done, bytes total) as layers are read, from any thread.
        public var progress: (@Sendable (UInt64, UInt64) -> Void)?

        public init(service: String, launcher: LauncherFiles) {
            self.service = service
            self.launcher = launcher
        }
    }

    public struct Result: Sendable {
        public var manifest: Descriptor
        public var measurement: [UInt8]
        public var rootfsDigest: [UInt8]
        public var protectedFiles: [ImageRunConfig.ProtectedEntry]
        /// The wrapped command the launcher runs.
        public var command: [String]
    }

    public let options: Options

    public init(options: Options) { self.options = options }

    /// Converts `source` and writes the result into the layout at `destination`, tagged `tag`:
    /// scan every layer (in parallel), merge them through the tree, seal the paths to encrypt,
    /// rewrite the layers that held them, then add the Veil layer, config and manifest.
    public func convert(_ source: SourceImage, to destination: LayoutWriter, tag: String) throws -> Result {
        guard !options.service.isEmpty else { throw ImageError.launcher("a service name is required") }
        let roots = try encryptionRoots()
        let isProtected: @Sendable (String) -> Bool = { path in roots.contains { path == $0 || path.hasPrefix($0 + "/") } }
        var merged = try Self.merge(try scanLayers(source, into: destination, isProtected: isProtected), source: source, isProtected: isProtected)
        let protectedFiles = try seal(roots, in: &merged)

        // Pass 2: rewrite the layers that held encrypted paths, without them.
        for index in merged.affected.sorted() {
            let (descriptor, diffID) = try filterLayer(source, index: index, into: destination) { entry in
                isProtected(entry.path) || Self.whiteoutTarget(entry).map(isProtected) == true
            }
            merged.layers[index] = descriptor
            merged.diffIDs[index] = diffID
        }
        return try finish(source, merged: &merged, protectedFiles: protectedFiles, roots: roots, into: destination, tag: tag)
    }

    /// The paths to encrypt, normalized; never the root, /veil or a runtime directory.
    private func encryptionRoots() throws -> [String] {
        let roots = try options.encrypt.map { path -> String in
            guard path.hasPrefix("/") else { throw ImageError.encryptPathNotFound(path) }
            let normalized = try TarEntry.normalize(String(path.dropFirst()))
            guard !normalized.isEmpty, !normalized.hasPrefix("veil/") && normalized != "veil",
                !RootfsDigest.isExcluded(normalized)
            else { throw ImageError.unsupportedEntry(path: path, reason: "cannot encrypt the root, /veil or a runtime directory") }
            return normalized
        }
        if !roots.isEmpty && options.key == nil { throw ImageError.launcher("--encrypt needs a key") }
        return roots
    }

    /// Pass 1, in parallel: verify, copy and hash every layer, and the launcher layer, which
    /// depends on nothing in the image (so registries store it once for all images).
    private func scanLayers(_ source: SourceImage, into destination: LayoutWriter, isProtected: @escaping @Sendable (String) -> Bool) throws -> [LayerScan] {
        let progress = ProgressCounter(total: source.layers.reduce(0) { $0 + $1.size }, report: options.progress)
        let launcherFiles = options.launcher
        let jobs = source.layers.count + 1
        let results = ParallelResults<LayerScan>(count: jobs)
        DispatchQueue.concurrentPerform(iterations: jobs) { index in
            results.set(index) {
                index < source.layers.count
                    ? try Self.scan(source, layer: index, into: destination, isProtected: isProtected, progress: progress)
                    : try Self.writeLauncherLayer(launcherFiles, into: destination)
            }
        }
        return try results.values()
    }

    /// The layers merged so far, and what the later steps need of them.
    struct MergedLayers {
        var tree = RootfsTree()
        /// Contents of files under paths to encrypt (hard links included), by path.
        var plaintexts: [String: [UInt8]] = [:]
        /// Layers that hold a path to encrypt (rewritten in pass 2).
        var affected: Set<Int> = []
        var layers: [Descriptor] = []
        var diffIDs: [BlobDigest] = []
    }

    /// In order: every entry through the tree, which validates it and applies whiteouts.
    private static func merge(_ scans: [LayerScan], source: SourceImage, isProtected: (String) -> Bool) throws -> MergedLayers {
        var merged = MergedLayers()
        for (index, scan) in scans.enumerated() {
            var next = 0
            for item in scan.entries {
                try merged.tree.apply(item.entry, layer: index) { _ in
                    if item.entry.kind == .hardlink, isProtected(item.entry.path) {
                        guard let bytes = merged.plaintexts[item.entry.linkTarget] else {
                            throw ImageError.unsupportedEntry(path: item.entry.path, reason: "hard link from an encrypted path to '\(item.entry.linkTarget)' outside it")
                        }
                        merged.plaintexts[item.entry.path] = bytes
                    }
                    return item.content
                }
                if item.keptPlaintext {
                    merged.plaintexts[item.entry.path] = scan.plaintexts[next]
                    next += 1
                }
            }
            if scan.affected { merged.affected.insert(index) }
            merged.layers.append(scan.descriptor)
            merged.diffIDs.append(index < source.layers.count ? source.config.diffIDs[index] : scan.descriptor.digest)
        }
        return merged
    }

    /// Seals every regular file under `roots` and takes the roots out of the tree: the
    /// encrypted paths leave the original layers, and this is what replaces them.
    private func seal(_ roots: [String], in merged: inout MergedLayers) throws -> [(entry: ImageRunConfig.ProtectedEntry, sealed: [UInt8])] {
        var protectedFiles: [(entry: ImageRunConfig.ProtectedEntry, sealed: [UInt8])] = []
        for root in roots {
            guard let node = merged.tree.nodes[root], node.kind == .file || node.kind == .directory else {
                throw ImageError.encryptPathNotFound("/" + root)
            }
            for path in merged.tree.subtree(root) {
                let node = merged.tree.nodes[path]!
                switch node.kind {
                case .directory: continue
                case .file: break
                default: throw ImageError.unsupportedEntry(path: "/" + path, reason: "only regular files and directories can be encrypted")
                }
                guard let plaintext = merged.plaintexts[path], ContentDigest.of(plaintext) == node.contentDigest else {
                    throw ImageError.protectedFile(path: "/" + path, reason: "content changed while reading the image")
                }
                let logical = "/" + path
                let fileID = ProtectedFile.deterministicFileID(
                    secret: options.key!, path: logical, version: options.protectedVersion, plaintext: plaintext)
                let sealed = try ProtectedFile.seal(plaintext, path: logical, secret: options.key!, version: options.protectedVersion, fileID: fileID)
                protectedFiles.append((
                    ImageRunConfig.ProtectedEntry(
                        path: logical, stored: "/\(RootfsDigest.protectedDirectory)/\(path).vpf",
                        plaintext: ImageMeasurement.plaintextRoot + logical, mode: node.mode),
                    sealed))
            }
            merged.tree.remove(subtree: root)
        }
        merged.plaintexts = [:]
        return protectedFiles
    }

    /// The image's own Veil layer (launch configuration, protected files, their symlinks),
    /// then the measurement, the config and the manifest, tagged.
    private func finish(
        _ source: SourceImage, merged: inout MergedLayers, protectedFiles: [(entry: ImageRunConfig.ProtectedEntry, sealed: [UInt8])],
        roots: [String], into destination: LayoutWriter, tag: String
    ) throws -> Result {
        let command = source.config.command
        guard !command.isEmpty else { throw ImageError.launcher("the image has no Entrypoint or Cmd to wrap") }
        let launcherFiles = Dictionary(uniqueKeysWithValues: options.launcher.files.compactMap { file in
            merged.tree.nodes[file.imagePath].map { (file.imagePath, Hex.encode($0.contentDigest)) }
        })
        let runConfig = ImageRunConfig(
            service: options.service, command: command, env: source.config.env, workingDir: source.config.workingDir,
            protectedFiles: protectedFiles.map(\.entry), user: source.config.user.isEmpty ? nil : source.config.user,
            launcherFiles: launcherFiles)
        let configLayer = try writeConfigLayer(
            runConfig, protected: protectedFiles, roots: roots, tree: &merged.tree, layer: merged.layers.count, into: destination)
        merged.layers.append(configLayer)
        merged.diffIDs.append(configLayer.digest)

        let rootfsDigest = merged.tree.digest()
        let measurement = ImageMeasurement.measurement(rootfsDigest: rootfsDigest)
        let wrapped = options.launcher.entrypoint + ["launch", "--image", ImageRunConfig.path]
        let configBytes = try rewriteConfig(source.configBytes, entrypoint: wrapped, diffIDs: merged.diffIDs, measurement: measurement)
        let config = try destination.put(configBytes, mediaType: MediaType.config)
        let manifest = ImageManifest(
            schemaVersion: 2, mediaType: MediaType.manifest, config: config, layers: merged.layers, annotations: source.manifest.annotations)
        let manifestDescriptor = try destination.put(canonicalJSON(manifest), mediaType: MediaType.manifest)
        try destination.tag(manifestDescriptor, as: tag)
        return Result(
            manifest: manifestDescriptor, measurement: measurement, rootfsDigest: rootfsDigest,
            protectedFiles: protectedFiles.map(\.entry), command: wrapped)
    }

    /// The path an OCI whiteout hides, if `entry` is one.
    static func whiteoutTarget(_ entry: TarEntry) -> String? {
        let name = entry.name
        guard name.hasPrefix(RootfsTree.whiteoutPrefix), name != RootfsTree.opaqueMarker else { return nil }
        let hidden = String(name.dropFirst(RootfsTree.whiteoutPrefix.count))
        return entry.parent.isEmpty ? hidden : entry.parent + "/" + hidden
    }

    /// Copies layer `index` as an uncompressed tar without the entries `drop` selects.
    private func filterLayer(_ source: SourceImage, index: Int, into destination: LayoutWriter,
                             drop: (TarEntry) -> Bool) throws -> (Descriptor, BlobDigest) {
        let blob = try destination.blob()
        let writer = TarWriter { try blob.write($0) }
        try source.readLayer(index) { reader in
            while let entry = try reader.next() {
                if entry.path.isEmpty || drop(entry) { continue }
                try writer.writeHeader(entry)
                if entry.kind == .file {
                    try reader.readContent { try writer.writeContent($0) }
                    try writer.finishContent(size: entry.size)
                }
            }
        }
        try writer.finish()
        let descriptor = try blob.commit(mediaType: MediaType.layer)
        return (descriptor, descriptor.digest)
    }

    /// What pass 1 learned about one layer.
    struct LayerScan: Sendable {
        struct Item: Sendable {
            var entry: TarEntry
            var content: (digest: [UInt8], size: UInt64)?
            /// Whether the next of ``plaintexts`` is this entry's content.
            var keptPlaintext = false
        }
        var entries: [Item] = []
        var plaintexts: [[UInt8]] = []
        var affected = false
        var descriptor: Descriptor
    }

    /// Reads layer `index` once: copies the blob to `destination` (unless it holds a path to
    /// encrypt: then it is rewritten later), verifies its digests, hashes each file and keeps
    /// the plaintext of files to encrypt.
    static func scan(_ source: SourceImage, layer index: Int, into destination: LayoutWriter,
                     isProtected: (String) -> Bool, progress: ProgressCounter) throws -> LayerScan {
        // The copy is committed only after readLayer verified the source blob's digest and size.
        let blob = try destination.blob(copying: source.layers[index])
        var scan = LayerScan(descriptor: source.layers[index])
        var reported: UInt64 = 0
        try source.readLayer(index, tee: { piece in
            try blob.write(piece)
            reported += UInt64(piece.count)
            if reported >= 8 << 20 {
                progress.add(reported)
                reported = 0
            }
        }) { reader in
            while let entry = try reader.next() {
                var item = LayerScan.Item(entry: entry)
                if isProtected(entry.path) || whiteoutTarget(entry).map(isProtected) == true { scan.affected = true }
                if entry.kind == .file {
                    var hasher = ContentDigest()
                    var kept: [UInt8]? = isProtected(entry.path) ? [] : nil
                    try reader.readContent { piece in
                        hasher.update(piece)
                        kept?.append(contentsOf: piece)
                    }
                    item.content = (hasher.finalize(), entry.size)
                    if let kept {
                        scan.plaintexts.append(kept)
                        item.keptPlaintext = true
                    }
                }
                scan.entries.append(item)
            }
        }
        progress.add(reported)
        // A layer holding a path to encrypt is rewritten in pass 2; this copy is discarded.
        if !scan.affected { scan.descriptor = try blob.commit(mediaType: try MediaType.layerKind(source.layers[index].mediaType).oci) }
        return scan
    }

    /// The launcher, its loader and libraries under /veil: the same bytes for every image
    /// converted with the same launcher.
    static func writeLauncherLayer(_ launcher: LauncherFiles, into destination: LayoutWriter) throws -> LayerScan {
        let blob = try destination.blob()
        let writer = TarWriter { try blob.write($0) }
        var entries: [LayerScan.Item] = []
        var directories: Set<String> = []
        var scratch = [UInt8](repeating: 0, count: 1 << 20)
        for file in launcher.files {
            var prefix = ""
            for component in file.imagePath.split(separator: "/").dropLast() {
                prefix = prefix.isEmpty ? String(component) : prefix + "/" + component
                guard directories.insert(prefix).inserted else { continue }
                let directory = TarEntry(path: prefix, kind: .directory, mode: 0o755)
                try writer.writeHeader(directory)
                entries.append(.init(entry: directory))
            }
            var digest = ContentDigest()
            let entry = try writer.writeFile(at: file.imagePath, fromHost: file.hostPath, mode: 0o755, scratch: &scratch) { digest.update($0) }
            entries.append(.init(entry: entry, content: (digest.finalize(), entry.size)))
        }
        try writer.finish()
        return LayerScan(entries: entries, descriptor: try blob.commit(mediaType: MediaType.layer))
    }

    /// `veil/image.json`, the protected files and the symlinks that replace encrypted paths.
    private func writeConfigLayer(
        _ runConfig: ImageRunConfig, protected: [(entry: ImageRunConfig.ProtectedEntry, sealed: [UInt8])], roots: [String],
        tree: inout RootfsTree, layer: Int, into destination: LayoutWriter
    ) throws -> Descriptor {
        let blob = try destination.blob()
        let writer = TarWriter { try blob.write($0) }
        var directories: Set<String> = []
        func addFile(_ path: String, mode: UInt32, bytes: [UInt8]) throws {
            var prefix = ""
            for component in path.split(separator: "/").dropLast() {
                prefix = prefix.isEmpty ? String(component) : prefix + "/" + component
                guard tree.nodes[prefix] == nil, directories.insert(prefix).inserted else { continue }
                let entry = TarEntry(path: prefix, kind: .directory, mode: 0o755)
                try tree.apply(entry, layer: layer) { _ in nil }
                try writer.writeHeader(entry)
            }
            let entry = TarEntry(path: path, kind: .file, mode: mode, size: UInt64(bytes.count))
            try tree.apply(entry, layer: layer) { _ in (ContentDigest.of(bytes), UInt64(bytes.count)) }
            try writer.writeFile(entry, contents: bytes)
        }
        try addFile("veil/image.json", mode: 0o644, bytes: canonicalJSON(runConfig))
        for file in protected {
            try addFile(String(file.entry.stored.dropFirst()), mode: 0o644, bytes: file.sealed)
        }
        for root in roots.sorted() {
            let link = TarEntry(path: root, kind: .symlink, mode: 0o777, linkTarget: ImageMeasurement.plaintextRoot + "/" + root)
            try tree.apply(link, layer: layer) { _ in nil }
            try writer.writeHeader(link)
        }
        try writer.finish()
        return try blob.commit(mediaType: MediaType.layer)
    }

    /// The source config with the wrapped entrypoint, no Cmd (the original is in
    /// /veil/image.json), the new diff_ids, Veil labels and one history entry more.
    private func rewriteConfig(_ bytes: [UInt8], entrypoint: [String], diffIDs: [BlobDigest], measurement: [UInt8]) throws -> [UInt8] {
        guard case .object(var object) = try JSONValue.parse(bytes) else {
            throw ImageError.malformedJSON(what: "image config", reason: "not a JSON object")
        }
        var config = object["config"]?.objectValue ?? [:]
        config["Entrypoint"] = .array(entrypoint.map { .string($0) })
        config["Cmd"] = nil
        // The launcher starts as root and becomes the image's user itself (see ImageRunConfig.user).
        config["User"] = nil
        var labels = config["Labels"]?.objectValue ?? [:]
        labels[Self.serviceLabel] = .string(options.service)
        labels[Self.measurementLabel] = .string(Hex.encode(measurement))
        config["Labels"] = .object(labels)
        object["config"] = .object(config)
        var rootfs = object["rootfs"]?.objectValue ?? [:]
        rootfs["type"] = .string("layers")
        rootfs["diff_ids"] = .array(diffIDs.map { .string($0.description) })
        object["rootfs"] = .object(rootfs)
        if case .array(var history) = object["history"] {
            history.append(.object(["created_by": .string("veil image convert --service \(options.service)"), "comment": .string("Veil launcher")]))
            object["history"] = .array(history)
        }
        return try JSONValue.object(object).serialized()
    }

}

/// Bytes done across parallel layer reads, reported to the progress callback.
final class ProgressCounter: Sendable {
    let total: UInt64
    let report: (@Sendable (UInt64, UInt64) -> Void)?
    private let done = Mutex<UInt64>(0)

    init(total: UInt64, report: (@Sendable (UInt64, UInt64) -> Void)?) {
        self.total = total
        self.report = report
    }

    func add(_ bytes: UInt64) {
        let now = done.withLock { value -> UInt64 in
            value += bytes
            return value
        }
        report?(min(now, total), total)
    }
}
