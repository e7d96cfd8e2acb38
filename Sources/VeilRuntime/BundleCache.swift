import Foundation
import Glibc
import VeilImage

/// Unpacked root filesystems, one per image manifest digest, reused across runs.
///
/// Invariant: `<directory>/images/<manifest hex>/rootfs` exists only when completely
/// unpacked and verified: unpacking happens in a private directory renamed into place at the
/// end. Containers get these roots read-only, so a run cannot change the next one's input.
public struct BundleCache: Sendable {
    public let directory: String

    public init(directory: String) { self.directory = directory }

    public func rootfsPath(for image: SourceImage) -> String { "\(directory)/images/\(image.manifestDigest.hex)/rootfs" }

    /// The unpacked root of `image`, unpacking it first when not cached.
    /// - Parameter progress: called with the index of each layer as it is unpacked.
    public func rootfs(for image: SourceImage, progress: ((Int) -> Void)? = nil) throws -> (path: String, reused: Bool) {
        let final = "\(directory)/images/\(image.manifestDigest.hex)"
        if access("\(final)/rootfs", F_OK) == 0 { return ("\(final)/rootfs", true) }
        try FileManager.default.createDirectory(atPath: "\(directory)/images", withIntermediateDirectories: true)
        var template = Array("\(directory)/images/.unpack-XXXXXX".utf8CString)
        guard let made = mkdtemp(&template) else { throw ImageError.io(path: directory, reason: String(cString: strerror(errno))) }
        let partial = String(cString: made)
        do {
            guard mkdir("\(partial)/rootfs", 0o755) == 0, chmod("\(partial)/rootfs", 0o755) == 0 else {
                throw ImageError.io(path: partial, reason: String(cString: strerror(errno)))
            }
            let unpacker = try RootfsUnpacker(root: "\(partial)/rootfs", hashingContent: false)
            for index in image.layers.indices {
                progress?(index)
                try image.readLayer(index) { try unpacker.apply(layer: index, tar: $0) }
            }
            if rename(partial, final) != 0 {
                // Another run unpacked the same image first: use theirs.
                guard errno == ENOTEMPTY || errno == EEXIST else { throw ImageError.io(path: final, reason: String(cString: strerror(errno))) }
                try? FileManager.default.removeItem(atPath: partial)
            }
            return ("\(final)/rootfs", false)
        } catch {
            try? FileManager.default.removeItem(atPath: partial)
            throw error
        }
    }
}
