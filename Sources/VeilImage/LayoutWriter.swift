import Crypto
import FoundationEssentials
import Glibc
import VeilCore

/// Writes blobs into an OCI image layout and tags images in its `index.json`.
///
/// Blobs are written to a temporary file beside their final place and renamed to their
/// digest once complete, so an interrupted write never leaves a blob under a wrong name.
public struct LayoutWriter: Sendable {
    public let directory: String
    var blobDirectory: String { "\(directory)/blobs/sha256" }

    public init(directory: String) throws {
        self.directory = directory
        do {
            try FileManager.default.createDirectory(atPath: "\(directory)/blobs/sha256", withIntermediateDirectories: true)
            if !FileManager.default.fileExists(atPath: "\(directory)/oci-layout") {
                try AtomicFile.write(Array(#"{"imageLayoutVersion":"1.0.0"}"#.utf8), to: "\(directory)/oci-layout", mode: 0o644)
            }
        } catch {
            throw ImageError.io(path: directory, reason: "\(error)")
        }
    }

    /// A blob being written.
    public final class Blob {
        let fd: Int32
        let temporaryPath: String
        let blobDirectory: String
        /// Nil for a copy of a blob whose digest its reader verifies (``LayoutWriter/blob(copying:)``).
        var hasher: SHA256?
        let copied: Descriptor?
        public private(set) var size: UInt64 = 0
        private var committed = false

        init(blobDirectory: String, copying copied: Descriptor? = nil) throws {
            self.blobDirectory = blobDirectory
            self.copied = copied
            hasher = copied == nil ? SHA256() : nil
            var template = Array("\(blobDirectory)/.partial-XXXXXX".utf8CString)
            fd = mkstemp(&template)
            guard fd >= 0 else { throw ImageError.io(path: blobDirectory, reason: String(cString: strerror(errno))) }
            temporaryPath = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
            fchmod(fd, 0o644)
        }

        deinit {
            close(fd)
            if !committed { unlink(temporaryPath) }
        }

        public func write(_ bytes: UnsafeRawBufferPointer) throws {
            hasher?.update(bufferPointer: bytes)
            size += UInt64(bytes.count)
            let failure = AtomicFile.writeAll(bytes, to: fd)
            guard failure == 0 else { throw ImageError.io(path: temporaryPath, reason: String(cString: strerror(failure))) }
        }

        /// Moves the blob to its digest's name and describes it.
        public func commit(mediaType: String) throws -> Descriptor {
            let digest: BlobDigest
            if let hasher {
                digest = BlobDigest(sha256: Array(hasher.finalize()))
            } else {
                guard let copied, size == copied.size else {
                    throw ImageError.sizeMismatch(digest: copied?.digest.description ?? "", expected: copied?.size ?? 0, actual: size)
                }
                digest = copied.digest
            }
            guard fsync(fd) == 0, rename(temporaryPath, "\(blobDirectory)/\(digest.hex)") == 0 else {
                throw ImageError.io(path: temporaryPath, reason: String(cString: strerror(errno)))
            }
            committed = true
            return Descriptor(mediaType: mediaType, digest: digest, size: size)
        }
    }

    public func blob() throws -> Blob { try Blob(blobDirectory: blobDirectory) }

    /// A copy of `source`'s bytes, written as they are read and verified elsewhere: not hashed
    /// again, and committed under `source`'s digest. Commit only after the reader verified them.
    public func blob(copying source: Descriptor) throws -> Blob { try Blob(blobDirectory: blobDirectory, copying: source) }

    /// Writes a small blob from memory.
    public func put(_ bytes: [UInt8], mediaType: String) throws -> Descriptor {
        let blob = try blob()
        try bytes.withUnsafeBytes { (raw) throws in try blob.write(raw) }
        return try blob.commit(mediaType: mediaType)
    }

    /// Points `tag` at `manifest` in `index.json`, replacing an image with the same tag.
    public func tag(_ manifest: Descriptor, as tag: String) throws {
        var index = (try? OCILayout(directory: directory).index()) ?? ImageIndex(schemaVersion: 2, mediaType: MediaType.index, manifests: [])
        index.manifests.removeAll { $0.refName == tag }
        var tagged = manifest
        tagged.annotations = [Descriptor.refNameAnnotation: tag]
        index.manifests.append(tagged)
        index.manifests.sort { ($0.refName ?? "") < ($1.refName ?? "") }
        index.mediaType = MediaType.index
        do {
            try AtomicFile.write(canonicalJSON(index), to: "\(directory)/index.json", mode: 0o644)
        } catch {
            throw ImageError.io(path: "\(directory)/index.json", reason: "\(error)")
        }
    }
}

/// JSON with sorted keys and unescaped slashes: the same value always gives the same bytes.
func canonicalJSON(_ value: some Encodable) -> [UInt8] {
    // Encoding the image model's strings, numbers and dictionaries cannot fail.
    try! CanonicalJSON.encode(value)
}
