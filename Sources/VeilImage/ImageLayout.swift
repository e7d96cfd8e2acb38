import Crypto
import FoundationEssentials
import Glibc
import VeilCore
import VeilImageFormat

/// Where an image is: `oci:DIR[:TAG]` (an OCI image layout) or `docker-archive:TAR`
/// (`docker save` output, legacy or OCI flavoured).
public enum ImageReference: Sendable, Equatable, CustomStringConvertible {
    case ociLayout(directory: String, tag: String?)
    case dockerArchive(path: String)

    public init(parsing text: String) throws {
        if text.hasPrefix("oci:") {
            let rest = String(text.dropFirst(4))
            if let colon = rest.lastIndex(of: ":"), !rest[rest.index(after: colon)...].contains("/") {
                let tag = String(rest[rest.index(after: colon)...])
                self = .ociLayout(directory: String(rest[..<colon]), tag: tag.isEmpty ? nil : tag)
            } else {
                self = .ociLayout(directory: rest, tag: nil)
            }
            if case .ociLayout(let directory, _) = self, directory.isEmpty {
                throw ImageError.notAnImageLayout(path: text, reason: "empty directory in oci:DIR[:TAG]")
            }
        } else if text.hasPrefix("docker-archive:") {
            self = .dockerArchive(path: String(text.dropFirst("docker-archive:".count)))
        } else if text.hasPrefix("oci-archive:") {
            // A tar of an OCI layout: read like an OCI-flavoured docker archive.
            self = .dockerArchive(path: String(text.dropFirst("oci-archive:".count)))
        } else {
            throw ImageError.notAnImageLayout(path: text, reason: "name images as oci:DIR[:TAG], docker-archive:FILE or oci-archive:FILE")
        }
    }

    public var description: String {
        switch self {
        case .ociLayout(let directory, let tag): return "oci:\(directory)" + (tag.map { ":\($0)" } ?? "")
        case .dockerArchive(let path): return "docker-archive:\(path)"
        }
    }
}

/// An image opened for reading: its manifest and config, and where each blob is.
///
/// Invariant: the manifest and config bytes were checked against their digests; layer blobs
/// are checked as they are streamed (``readLayer(_:tee:_:)``). Immutable after `init`, so
/// layers may be read from several threads at once.
public final class SourceImage: @unchecked Sendable {
    public let manifestDigest: BlobDigest
    let manifest: ImageManifest
    public let configBytes: [UInt8]
    public let config: ImageConfig
    public var layers: [Descriptor] { manifest.layers }
    /// The directory blobs are read from, never leaving it (``ConfinedFile``).
    private let blobRoot: String
    /// A blob's path relative to ``blobRoot``.
    private let blobPath: @Sendable (BlobDigest) -> String
    /// Removed when the image is closed (an unpacked docker archive).
    private let temporaryDirectory: String?

    init(manifestDigest: BlobDigest, manifest: ImageManifest, configBytes: [UInt8], blobRoot: String, blobPath: @escaping @Sendable (BlobDigest) -> String,
         temporaryDirectory: String?) throws {
        self.manifestDigest = manifestDigest
        self.manifest = manifest
        self.configBytes = configBytes
        self.config = try ImageConfig(parsing: configBytes)
        self.blobRoot = blobRoot
        self.blobPath = blobPath
        self.temporaryDirectory = temporaryDirectory
        guard config.diffIDs.count == manifest.layers.count else {
            throw ImageError.malformedJSON(what: "image config", reason: "\(config.diffIDs.count) diff_ids for \(manifest.layers.count) layers")
        }
    }

    deinit {
        if let temporaryDirectory { try? FileManager.default.removeItem(atPath: temporaryDirectory) }
    }

    /// Opens an image by reference.
    public static func open(_ reference: ImageReference) throws -> SourceImage {
        switch reference {
        case .ociLayout(let directory, let tag): return try OCILayout(directory: directory).image(tag: tag)
        case .dockerArchive(let path): return try DockerArchive.open(path)
        }
    }

    /// The blob's raw bytes, hashed as they are read.
    public func openBlob(_ descriptor: Descriptor) throws -> DigestingStream {
        let relative = blobPath(descriptor.digest)
        guard let fd = try ConfinedFile.openIfPresent(relative, under: blobRoot) else { throw ImageError.missingBlob(descriptor.digest.description) }
        return DigestingStream(FileStream(descriptor: fd, path: "\(blobRoot)/\(relative)"))
    }

    /// Layer `index` as a tar stream (`raw` hashes the blob bytes; `uncompressed` the tar bytes
    /// of a gzip layer, whose digest is its diff_id), in a pipeline of threads: reading, hashing and copying
    /// (`tee`) the blob; inflating it (gzip layers); and the caller's reading of the tar stream.
    func openLayer(_ index: Int, tee: ((UnsafeRawBufferPointer) throws -> Void)? = nil, keys: LayerKeyring? = nil) throws -> OpenedLayer {
        let descriptor = manifest.layers[index]
        guard descriptor.isEncrypted else { return try openLayer(descriptor, raw: try openBlob(descriptor), tee: tee) }
        guard let keys else { throw ImageError.encryptedLayer(layer: index, reason: "it is encrypted and no key to open it was given") }
        // The HMAC covers the whole blob and must hold before any byte is decrypted.
        let blob = try openBlob(descriptor)
        let encrypted = try blob.readAll(limit: Int(descriptor.size))
        try blob.verify(descriptor)
        let plain: [UInt8]
        do {
            plain = try OCICrypt.decrypt(
                layer: encrypted, annotations: descriptor.annotations ?? [:], key: try keys.key(for: descriptor), diffID: config.diffIDs[index].description)
        } catch {
            throw ImageError.encryptedLayer(layer: index, reason: "\(error)")
        }
        var opened = try openLayer(descriptor, raw: DigestingStream(BytesStream(plain)), tee: tee)
        opened.verifiedBlob = true
        return opened
    }

    /// The reading pipeline over a layer's (plain) blob stream.
    private func openLayer(_ descriptor: Descriptor, raw: DigestingStream, tee: ((UnsafeRawBufferPointer) throws -> Void)?) throws -> OpenedLayer {
        let type = descriptor.isEncrypted ? String(descriptor.mediaType.dropLast(OCICrypt.encryptedMediaTypeSuffix.count)) : descriptor.mediaType
        let kind = try MediaType.layerKind(type)
        raw.tee = tee
        let read = try ReadAheadStream(raw)
        guard kind.gzip else {
            // An uncompressed layer's diff_id is its blob digest: no second hash of the same bytes.
            return OpenedLayer(raw: raw, stages: [read], uncompressed: nil, tar: TarReader(BufferedStream(read)))
        }
        let inflated = try ReadAheadStream(try GunzipStream(read))
        let uncompressed = DigestingStream(inflated)
        return OpenedLayer(raw: raw, stages: [inflated, read], uncompressed: uncompressed, tar: TarReader(BufferedStream(uncompressed)))
    }

    struct OpenedLayer {
        let raw: DigestingStream
        /// The blob was verified before decryption: `raw` streams its plaintext.
        var verifiedBlob = false
        /// The pipeline's threads, downstream first.
        let stages: [ReadAheadStream]
        let uncompressed: DigestingStream?
        let tar: TarReader

        /// Joins every stage: the blob stream is the caller's again (to drain and verify).
        func stop() { for stage in stages { stage.stop() } }
    }

    /// Streams layer `index` through `body` and verifies it afterwards. When `body` fails on a
    /// blob whose digest is wrong, the digest mismatch is reported: it is the root cause.
    /// - Parameter tee: receives the raw blob bytes as they are read (to copy the blob).
    /// - Parameter keys: what opens encrypted layers (an encrypted layer without them is refused).
    public func readLayer<T>(_ index: Int, tee: ((UnsafeRawBufferPointer) throws -> Void)? = nil, keys: LayerKeyring? = nil,
                             _ body: (TarReader) throws -> T) throws -> T {
        let layer = try openLayer(index, tee: tee, keys: keys)
        let result: T
        do {
            result = try body(layer.tar)
        } catch {
            layer.stop()
            layer.raw.tee = nil
            if !layer.verifiedBlob { try layer.raw.verify(manifest.layers[index]) }
            throw error
        }
        try verifyLayer(index, layer)
        return result
    }

    /// Checks a fully read layer against its descriptor and the config's diff_id.
    func verifyLayer(_ index: Int, _ layer: OpenedLayer) throws {
        // Reading the tar stream to its end ends the producer; the blob is then ours again.
        // The tar stream may end before the blob: read the rest through the pipeline.
        if let uncompressed = layer.uncompressed { try uncompressed.drain() } else { try layer.stages[0].drainToEnd() }
        layer.stop()
        if !layer.verifiedBlob { try layer.raw.verify(manifest.layers[index]) }
        let diffID = layer.uncompressed?.digest ?? layer.raw.digest
        guard diffID == config.diffIDs[index] else {
            throw ImageError.diffIDMismatch(layer: index, expected: config.diffIDs[index].description, actual: diffID.description)
        }
    }
}

/// The parts of an image config Veil reads; the rest is carried through untouched.
public struct ImageConfig: Sendable {
    public var entrypoint: [String]
    public var cmd: [String]
    public var env: [String]
    public var workingDir: String
    public var user: String
    public var labels: [String: String]
    public var diffIDs: [BlobDigest]

    /// The command the image runs: Entrypoint followed by Cmd.
    public var command: [String] { entrypoint + cmd }

    package init(parsing bytes: [UInt8]) throws {
        let object: JSONValue
        do {
            object = try JSONValue.parse(bytes)
        } catch {
            throw ImageError.malformedJSON(what: "image config", reason: "\(error)")
        }
        guard object.objectValue != nil else { throw ImageError.malformedJSON(what: "image config", reason: "not a JSON object") }
        let config = object["config"]
        entrypoint = config?["Entrypoint"]?.stringArray ?? []
        cmd = config?["Cmd"]?.stringArray ?? []
        env = config?["Env"]?.stringArray ?? []
        workingDir = config?["WorkingDir"]?.stringValue ?? ""
        user = config?["User"]?.stringValue ?? ""
        labels = (config?["Labels"]?.objectValue ?? [:]).compactMapValues(\.stringValue)
        guard let ids = object["rootfs"]?["diff_ids"]?.stringArray else {
            throw ImageError.malformedJSON(what: "image config", reason: "rootfs.diff_ids missing")
        }
        var digests: [BlobDigest] = []
        for id in ids { digests.append(try BlobDigest(parsing: id)) }
        diffIDs = digests
    }
}

/// An OCI image layout directory.
public struct OCILayout {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    static func blobPath(_ digest: BlobDigest) -> String { "blobs/sha256/\(digest.hex)" }

    /// Reads a small JSON blob whole, checking its digest and size.
    func readBlob(_ descriptor: Descriptor, limit: UInt64 = 16 << 20) throws -> [UInt8] {
        guard descriptor.size <= limit else { throw ImageError.malformedJSON(what: descriptor.mediaType, reason: "\(descriptor.size) bytes is too large") }
        guard let fd = try ConfinedFile.openIfPresent(Self.blobPath(descriptor.digest), under: directory) else {
            throw ImageError.missingBlob(descriptor.digest.description)
        }
        let bytes = try FileStream(descriptor: fd, path: "\(directory)/\(Self.blobPath(descriptor.digest))").readAll(limit: Int(limit))
        let actual = BlobDigest(sha256: Array(SHA256.hash(data: bytes)))
        guard actual == descriptor.digest else {
            throw ImageError.digestMismatch(what: descriptor.mediaType, expected: descriptor.digest.description, actual: actual.description)
        }
        guard UInt64(bytes.count) == descriptor.size else {
            throw ImageError.sizeMismatch(digest: descriptor.digest.description, expected: descriptor.size, actual: UInt64(bytes.count))
        }
        return bytes
    }

    func index() throws -> ImageIndex {
        guard let layout = try? ConfinedFile.read("oci-layout", under: directory, limit: 1 << 16) else {
            throw ImageError.notAnImageLayout(path: directory, reason: "no oci-layout file")
        }
        guard let version = (try? JSONValue.parse(layout))?["imageLayoutVersion"]?.stringValue, version.hasPrefix("1.")
        else { throw ImageError.notAnImageLayout(path: directory, reason: "oci-layout does not declare imageLayoutVersion 1.x") }
        guard ConfinedFile.exists("index.json", under: directory) else {
            throw ImageError.notAnImageLayout(path: directory, reason: "no index.json")
        }
        return try decode(ImageIndex.self, from: try ConfinedFile.read("index.json", under: directory, limit: 16 << 20), what: "index.json")
    }

    /// The image tagged `tag`, or the only image when `tag` is nil.
    public func image(tag: String?, temporaryDirectory: String? = nil) throws -> SourceImage {
        let index = try index()
        let tags = index.manifests.compactMap(\.refName).sorted()
        var descriptor: Descriptor
        if let tag {
            guard let found = index.manifests.first(where: { $0.refName == tag }) else { throw ImageError.referenceNotFound(tag, available: tags) }
            descriptor = found
        } else {
            guard index.manifests.count == 1 else {
                if index.manifests.isEmpty { throw ImageError.notAnImageLayout(path: directory, reason: "index.json lists no images") }
                throw ImageError.ambiguousReference(available: tags)
            }
            descriptor = index.manifests[0]
        }
        // Nested index (multi-platform image): take linux/amd64, or the only entry.
        var depth = 0
        while MediaType.isIndex(descriptor.mediaType) {
            depth += 1
            guard depth < 4 else { throw ImageError.malformedJSON(what: "image index", reason: "indexes nested too deep") }
            let nested = try decode(ImageIndex.self, from: try readBlob(descriptor), what: "image index \(descriptor.digest)")
            let candidates = nested.manifests.filter { $0.platform.map { $0.os == "linux" && $0.architecture == "amd64" } ?? true }
            guard let first = candidates.first else { throw ImageError.malformedJSON(what: "image index", reason: "no linux/amd64 image") }
            descriptor = first
        }
        guard MediaType.isManifest(descriptor.mediaType) else { throw ImageError.unsupportedMediaType(descriptor.mediaType) }
        let manifest = try decode(ImageManifest.self, from: try readBlob(descriptor), what: "image manifest \(descriptor.digest)")
        let config = try readBlob(manifest.config)
        let directory = directory
        return try SourceImage(
            manifestDigest: descriptor.digest, manifest: manifest, configBytes: config,
            blobRoot: directory, blobPath: { OCILayout.blobPath($0) }, temporaryDirectory: temporaryDirectory)
    }
}

package func decode<T: Decodable>(_ type: T.Type, from bytes: [UInt8], what: String) throws -> T {
    do {
        return try JSONDecoder().decode(type, from: Data(bytes))
    } catch {
        throw ImageError.malformedJSON(what: what, reason: decodingFailure(error))
    }
}
