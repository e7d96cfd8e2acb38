import Crypto
import FoundationEssentials
import Glibc
import VeilCore

/// `docker save` archives: legacy (`manifest.json` + `<id>/layer.tar`) and the OCI-flavoured
/// archives Docker 25+ writes (an OCI layout inside the tar).
enum DockerArchive {
    struct Entry: Decodable {
        var Config: String
        var RepoTags: [String]?
        var Layers: [String]
    }

    /// Unpacks the archive into a private temporary directory (removed with the image) and
    /// opens the image in it. Every member passes the same path checks as image layers.
    static func open(_ path: String) throws -> SourceImage {
        guard access(path, R_OK) == 0 else { throw ImageError.io(path: path, reason: String(cString: strerror(errno))) }
        let temporary = FileManager.default.temporaryDirectory.path
        var template = Array("\(temporary)/veil-archive-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ImageError.io(path: temporary, reason: String(cString: strerror(errno))) }
        let directory = String(cString: made)
        do {
            let stream = try FileStream(path: path)
            let prefix = try peek(path)
            let unpacker = try RootfsUnpacker(root: directory)
            try unpacker.apply(layer: 0, tar: TarReader(looksGzipped(prefix) ? try GunzipStream(stream) : stream))
            if ConfinedFile.exists("oci-layout", under: directory) {
                return try OCILayout(directory: directory).image(tag: nil, temporaryDirectory: directory)
            }
            return try legacy(directory: directory, archive: path)
        } catch {
            try? FileManager.default.removeItem(atPath: directory)
            throw error
        }
    }

    private static func peek(_ path: String) throws -> [UInt8] {
        let stream = try FileStream(path: path)
        var bytes = [UInt8](repeating: 0, count: 2)
        let n = try bytes.withUnsafeMutableBytes { (raw) throws -> Int in try stream.read(into: raw) }
        return Array(bytes.prefix(n))
    }

    private static func legacy(directory: String, archive: String) throws -> SourceImage {
        guard ConfinedFile.exists("manifest.json", under: directory) else {
            throw ImageError.notAnImageLayout(path: archive, reason: "neither an OCI layout nor a docker archive (no manifest.json)")
        }
        let entries = try decode([Entry].self, from: try ConfinedFile.read("manifest.json", under: directory), what: "manifest.json of \(archive)")
        guard entries.count == 1, let entry = entries.first else {
            throw ImageError.ambiguousReference(available: entries.flatMap { $0.RepoTags ?? [] })
        }
        // Members are read only through ConfinedFile: a member that is a symlink out of the
        // archive (to a host file) is refused, not followed.
        var paths: [BlobDigest: String] = [:]
        func blob(_ member: String, mediaType: (Bool) -> String) throws -> Descriptor {
            let relative = try TarEntry.normalize(member)
            guard let fd = try ConfinedFile.openIfPresent(relative, under: directory) else { throw ImageError.missingBlob(member) }
            let stream = DigestingStream(FileStream(descriptor: fd, path: "\(archive):\(member)"))
            var first = [UInt8](repeating: 0, count: 2)
            let n = try first.withUnsafeMutableBytes { (raw) throws -> Int in try stream.read(into: raw) }
            try stream.drain()
            paths[stream.digest] = relative
            return Descriptor(mediaType: mediaType(looksGzipped(Array(first.prefix(n)))), digest: stream.digest, size: stream.count)
        }
        let config = try blob(entry.Config) { _ in MediaType.config }
        var layers: [Descriptor] = []
        for member in entry.Layers {
            layers.append(try blob(member) { $0 ? MediaType.layerGzip : MediaType.layer })
        }
        let manifest = ImageManifest(schemaVersion: 2, mediaType: MediaType.manifest, config: config, layers: layers, annotations: nil)
        let configData = try ConfinedFile.read(paths[config.digest]!, under: directory)
        let manifestBytes = (try? CanonicalJSON.encode(manifest)) ?? []
        let resolved = paths
        return try SourceImage(
            manifestDigest: BlobDigest(sha256: Array(SHA256.hash(data: manifestBytes))), manifest: manifest, configBytes: configData,
            blobRoot: directory, blobPath: { resolved[$0] ?? "missing/\($0.hex)" }, temporaryDirectory: directory)
    }
}
