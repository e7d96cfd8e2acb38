import FoundationEssentials
import Glibc
import VeilAttestation
import VeilCore

/// Writes an image from an OCI layout as a `docker save` archive (`docker load`, `skopeo`
/// and Veil read it), streaming every blob; the archive appears atomically under its name.
public enum DockerArchiveWriter {
    struct ManifestEntry: Encodable {
        var Config: String
        var RepoTags: [String]?
        var Layers: [String]
    }

    /// - Parameter repoTag: `name:tag` recorded in the archive, if any.
    public static func write(layout: String, tag: String, repoTag: String?, to path: String) throws {
        let image = try OCILayout(directory: layout).image(tag: tag)
        let directory = URL(fileURLWithPath: path).deletingLastPathComponent().path
        var template = Array("\(directory)/.veil-archive-XXXXXX".utf8CString)
        let fd = mkstemp(&template)
        guard fd >= 0 else { throw ImageError.io(path: directory, reason: String(cString: strerror(errno))) }
        // mkstemp creates 0600; an image archive is no secret.
        fchmod(fd, 0o644)
        let temporary = template.withUnsafeBufferPointer { String(cString: $0.baseAddress!) }
        var committed = false
        defer {
            close(fd)
            if !committed { unlink(temporary) }
        }
        let writer = TarWriter { bytes in
            let failure = AtomicFile.writeAll(bytes, to: fd)
            guard failure == 0 else { throw ImageError.io(path: temporary, reason: String(cString: strerror(failure))) }
        }
        func copyBlob(_ descriptor: Descriptor, as name: String) throws {
            let entry = TarEntry(path: name, kind: .file, mode: 0o644, size: descriptor.size)
            try writer.writeHeader(entry)
            let stream = try image.openBlob(descriptor)
            var scratch = [UInt8](repeating: 0, count: 1 << 20)
            try stream.consume(descriptor.size, scratch: &scratch, orElse: .missingBlob(descriptor.digest.description)) { try writer.writeContent($0) }
            try stream.verify(descriptor)
            try writer.finishContent(size: descriptor.size)
        }
        let configName = "\(image.manifest.config.digest.hex).json"
        try copyBlob(image.manifest.config, as: configName)
        var layers: [String] = []
        for layer in image.layers {
            let name = "\(layer.digest.hex)/layer.tar"
            try writer.writeHeader(TarEntry(path: layer.digest.hex, kind: .directory, mode: 0o755))
            try copyBlob(layer, as: name)
            layers.append(name)
        }
        try writer.writeFile(
            TarEntry(path: "manifest.json", kind: .file, mode: 0o644),
            contents: canonicalJSON([ManifestEntry(Config: configName, RepoTags: repoTag.map { [$0] }, Layers: layers)]))
        try writer.finish()
        guard fsync(fd) == 0, rename(temporary, path) == 0 else { throw ImageError.io(path: path, reason: String(cString: strerror(errno))) }
        committed = true
    }
}

extension TarWriter {
    /// Writes the host file at `hostPath` as the regular file `path` (its size now), streaming its
    /// bytes through `observe` as they are written.
    public func writeFile(
        at path: String, fromHost hostPath: String, mode: UInt32, scratch: inout [UInt8], observe: (UnsafeRawBufferPointer) -> Void = { _ in }
    ) throws -> TarEntry {
        var info = stat()
        guard stat(hostPath, &info) == 0 else { throw ImageError.io(path: hostPath, reason: String(cString: strerror(errno))) }
        let entry = TarEntry(path: path, kind: .file, mode: mode, size: UInt64(info.st_size))
        try writeHeader(entry)
        let stream = try FileStream(path: hostPath)
        try stream.consume(entry.size, scratch: &scratch, orElse: .io(path: hostPath, reason: "file shrank while reading")) {
            observe($0)
            try writeContent($0)
        }
        try finishContent(size: entry.size)
        return entry
    }
}
