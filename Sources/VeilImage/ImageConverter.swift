import Crypto
import Foundation
import Glibc
import VeilAttestation

/// Turns an image into a Veil image: the launcher under `/veil/`, the entrypoint wrapped,
/// chosen paths encrypted as protected files, and the measurement computed.
///
/// Deterministic: the same input image, options and launcher give the same output bytes and
/// measurement (tar times are 0, JSON keys sorted, protected files use content-derived IDs).
/// The source is read once (plus once more for each layer that holds a path to encrypt,
/// which is rewritten without it); no layer is held in memory.
public struct ImageConverter {
    public struct Options {
        public var service: String
        /// Absolute paths (files or directories) to encrypt.
        public var encrypt: [String] = []
        /// The protected-file secret (32 bytes); required when `encrypt` is not empty.
        public var key: SymmetricKey?
        /// Version written into every protected file.
        public var protectedVersion: UInt64 = 1
        public var launcher: LauncherFiles
        /// Called with (bytes done, bytes total) as layers are read.
        public var progress: ((UInt64, UInt64) -> Void)?

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

    /// Converts `source` and writes the result into the layout at `destination`, tagged `tag`.
    public func convert(_ source: SourceImage, to destination: LayoutWriter, tag: String) throws -> Result {
        guard !options.service.isEmpty else { throw ImageError.launcher("a service name is required") }
        let roots = try options.encrypt.map { path -> String in
            guard path.hasPrefix("/") else { throw ImageError.encryptPathNotFound(path) }
            let normalized = try TarEntry.normalize(String(path.dropFirst()))
            guard !normalized.isEmpty, !normalized.hasPrefix("veil/") && normalized != "veil",
                !RootfsDigest.isExcluded(normalized)
            else { throw ImageError.unsupportedEntry(path: path, reason: "cannot encrypt the root, /veil or a runtime directory") }
            return normalized
        }
        if !roots.isEmpty && options.key == nil { throw ImageError.launcher("--encrypt needs a key") }
        func protectedRoot(_ path: String) -> String? { roots.first { path == $0 || path.hasPrefix($0 + "/") } }

        let total = source.layers.reduce(0) { $0 + $1.size }
        var done: UInt64 = 0
        var tree = RootfsTree()
        var plaintexts: [String: [UInt8]] = [:]
        var affected: Set<Int> = []
        var layers: [Descriptor] = []
        var diffIDs: [BlobDigest] = []

        // Pass 1: verify, copy and measure every layer; keep the plaintext of paths to encrypt.
        for index in source.layers.indices {
            let blob = try destination.blob()
            let reportedBase = done
            let tee = { (piece: UnsafeRawBufferPointer) throws in
                try blob.write(piece)
                options.progress?(reportedBase + blob.size, total)
            }
            try source.readLayer(index, tee: tee) { reader in
                while let entry = try reader.next() {
                    let target = Self.whiteoutTarget(entry)
                    if protectedRoot(entry.path) != nil || target.flatMap(protectedRoot) != nil { affected.insert(index) }
                    try tree.apply(entry, layer: index) { _ in
                        guard entry.kind == .file else {
                            if entry.kind == .hardlink, protectedRoot(entry.path) != nil {
                                guard let bytes = plaintexts[entry.linkTarget] else {
                                    throw ImageError.unsupportedEntry(path: entry.path, reason: "hard link from an encrypted path to '\(entry.linkTarget)' outside it")
                                }
                                plaintexts[entry.path] = bytes
                            }
                            return nil
                        }
                        var hasher = SHA256()
                        var kept: [UInt8]? = protectedRoot(entry.path) != nil ? [] : nil
                        try reader.readContent { piece in
                            hasher.update(bufferPointer: piece)
                            kept?.append(contentsOf: piece)
                        }
                        if let kept { plaintexts[entry.path] = kept }
                        return (Array(hasher.finalize()), entry.size)
                    }
                }
            }
            let kind = try MediaType.layerKind(source.layers[index].mediaType)
            // A layer holding a path to encrypt is rewritten below; its copy is discarded.
            layers.append(affected.contains(index) ? source.layers[index] : try blob.commit(mediaType: kind.oci))
            diffIDs.append(source.config.diffIDs[index])
            done += source.layers[index].size
            options.progress?(done, total)
        }

        // The encrypted paths leave the original layers; collect what replaces them.
        var protectedFiles: [(entry: ImageRunConfig.ProtectedEntry, sealed: [UInt8])] = []
        for root in roots {
            guard let node = tree.nodes[root], node.kind == .file || node.kind == .directory else {
                throw ImageError.encryptPathNotFound("/" + root)
            }
            for path in tree.subtree(root) {
                let node = tree.nodes[path]!
                switch node.kind {
                case .directory: continue
                case .file: break
                default: throw ImageError.unsupportedEntry(path: "/" + path, reason: "only regular files and directories can be encrypted")
                }
                guard let plaintext = plaintexts[path], Array(SHA256.hash(data: plaintext)) == node.contentDigest else {
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
            tree.remove(subtree: root)
        }
        plaintexts = [:]

        // Pass 2: rewrite the layers that held encrypted paths, without them.
        for index in affected.sorted() {
            let (descriptor, diffID) = try filterLayer(source, index: index, into: destination) { entry in
                protectedRoot(entry.path) != nil || Self.whiteoutTarget(entry).flatMap(protectedRoot) != nil
            }
            layers[index] = descriptor
            diffIDs[index] = diffID
        }

        // The launcher layer.
        let command = source.config.command
        guard !command.isEmpty else { throw ImageError.launcher("the image has no Entrypoint or Cmd to wrap") }
        let runConfig = ImageRunConfig(
            service: options.service, command: command, env: source.config.env, workingDir: source.config.workingDir,
            protectedFiles: protectedFiles.map(\.entry))
        let launcherLayer = try writeLauncherLayer(runConfig, protected: protectedFiles, roots: roots, tree: &tree, layer: layers.count, into: destination)
        layers.append(launcherLayer)
        diffIDs.append(launcherLayer.digest)

        let rootfsDigest = tree.digest()
        let measurement = ImageMeasurement.measurement(rootfsDigest: rootfsDigest)
        let wrapped = options.launcher.entrypoint + ["launch", "--image", ImageRunConfig.path]
        let configBytes = try rewriteConfig(source.configBytes, entrypoint: wrapped, diffIDs: diffIDs, measurement: measurement)
        let config = try destination.put(configBytes, mediaType: MediaType.config)
        let manifest = ImageManifest(
            schemaVersion: 2, mediaType: MediaType.manifest, config: config, layers: layers, annotations: source.manifest.annotations)
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

    private func writeLauncherLayer(
        _ runConfig: ImageRunConfig, protected: [(entry: ImageRunConfig.ProtectedEntry, sealed: [UInt8])], roots: [String],
        tree: inout RootfsTree, layer: Int, into destination: LayoutWriter
    ) throws -> Descriptor {
        let blob = try destination.blob()
        let writer = TarWriter { try blob.write($0) }
        var directories: Set<String> = []
        func addDirectories(for path: String) throws {
            var prefix = ""
            for component in path.split(separator: "/").dropLast() {
                prefix = prefix.isEmpty ? String(component) : prefix + "/" + component
                guard directories.insert(prefix).inserted else { continue }
                if let existing = tree.nodes[prefix], existing.kind == .directory, !prefix.hasPrefix("veil") { continue }
                let entry = TarEntry(path: prefix, kind: .directory, mode: 0o755)
                try tree.apply(entry, layer: layer) { _ in nil }
                try writer.writeHeader(entry)
            }
        }
        func addFile(_ path: String, mode: UInt32, bytes: [UInt8]) throws {
            try addDirectories(for: path)
            let entry = TarEntry(path: path, kind: .file, mode: mode, size: UInt64(bytes.count))
            try tree.apply(entry, layer: layer) { _ in (Array(SHA256.hash(data: bytes)), UInt64(bytes.count)) }
            try writer.writeFile(entry, contents: bytes)
        }

        for file in options.launcher.files {
            try addDirectories(for: file.imagePath)
            let stream = DigestingStream(try FileStream(path: file.hostPath))
            var info = stat()
            guard stat(file.hostPath, &info) == 0 else { throw ImageError.io(path: file.hostPath, reason: String(cString: strerror(errno))) }
            let entry = TarEntry(path: file.imagePath, kind: .file, mode: 0o755, size: UInt64(info.st_size))
            try tree.apply(entry, layer: layer) { _ in
                try writer.writeHeader(entry)
                var scratch = [UInt8](repeating: 0, count: 1 << 20)
                try stream.consume(entry.size, scratch: &scratch, orElse: .io(path: file.hostPath, reason: "file shrank while reading")) {
                    try writer.writeContent($0)
                }
                try writer.finishContent(size: entry.size)
                return (Array(stream.hasher.finalize()), entry.size)
            }
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
        guard var object = try JSONSerialization.jsonObject(with: Data(bytes)) as? [String: Any] else {
            throw ImageError.malformedJSON(what: "image config", reason: "not a JSON object")
        }
        var config = object["config"] as? [String: Any] ?? [:]
        config["Entrypoint"] = entrypoint
        config["Cmd"] = nil
        var labels = config["Labels"] as? [String: Any] ?? [:]
        labels["dev.veil.service"] = options.service
        labels["dev.veil.measurement"] = Hex.encode(measurement)
        config["Labels"] = labels
        object["config"] = config
        var rootfs = object["rootfs"] as? [String: Any] ?? [:]
        rootfs["type"] = "layers"
        rootfs["diff_ids"] = diffIDs.map(\.description)
        object["rootfs"] = rootfs
        if var history = object["history"] as? [Any] {
            history.append(["created_by": "veil image convert --service \(options.service)", "comment": "Veil launcher"])
            object["history"] = history
        }
        return Array(try JSONSerialization.data(withJSONObject: object, options: [.sortedKeys, .withoutEscapingSlashes]))
    }
}
