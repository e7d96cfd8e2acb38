import CVeilSys
import FoundationEssentials
import Glibc
import VeilManifest

/// What a launch on this host would refuse, found before it costs anything: the launcher
/// checks its service's provisioning targets before it activates (a refused write after
/// activation would have used one of the service's `MaxActivations`), and `veil manifest
/// validate --launch-host` checks every service's before the set-once commit.
///
/// The rules are those ``SafeWriter`` enforces when it writes: no existing component of a
/// target's path is a symlink (nothing is written through one), and, unless the service allows
/// disk files, the nearest existing directory (the writer creates the rest inside it, on the
/// same filesystem) is on tmpfs or ramfs.
public enum LaunchHostCheck {
    /// One problem of one target, in words that name the fix.
    public struct Problem: Equatable, Sendable, CustomStringConvertible {
        public var path: String
        public var reason: String
        public var description: String { "\(path): \(reason)" }
    }

    /// Problems of writing `paths` here; `allowDisk` as the service's `AllowDiskFiles`.
    public static func problems(paths: some Sequence<String>, allowDisk: Bool) -> [Problem] {
        paths.sorted().compactMap { path in
            if let link = firstSymlink(in: path) {
                return Problem(path: path, reason: "\(link) is a symlink here; provisioned files are never written through symlinks — provision under a real directory")
            }
            guard !allowDisk else { return nil }
            let directory = nearestExistingDirectory(of: path)
            guard let type = filesystemType(directory), type != SafeWriter.tmpfsMagic, type != SafeWriter.ramfsMagic else { return nil }
            return Problem(
                path: path,
                reason: "\(directory) is on a disk filesystem here (type 0x\(String(type, radix: 16))); the launcher refuses it — "
                    + "provision under a memory filesystem (/dev/shm, /run) or set AllowDiskFiles")
        }
    }

    /// One line per problem of every service in `manifest`, with the manifest path of the field.
    public static func problems(_ manifest: Manifest) -> [String] {
        manifest.services.sorted(by: { $0.key < $1.key }).flatMap { name, service in
            problems(paths: service.parameters.files.keys, allowDisk: service.allowDiskFiles).map {
                "$.Services.\(name).Parameters.Files[\"\($0.path)\"]: \($0.reason)"
            }
        }
    }

    static func nearestExistingDirectory(of path: String) -> String {
        var directory = path
        repeat {
            directory = directory.lastIndex(of: "/").map { $0 == directory.startIndex ? "/" : String(directory[..<$0]) } ?? "/"
            var info = stat()
            if stat(directory, &info) == 0, info.st_mode & S_IFMT == S_IFDIR { return directory }
        } while directory != "/"
        return "/"
    }

    /// The first existing component of `path` (the target included) that is a symlink.
    static func firstSymlink(in path: String) -> String? {
        var walked = ""
        for component in path.split(separator: "/") {
            walked += "/" + component
            var info = stat()
            guard lstat(walked, &info) == 0 else { return nil }
            if info.st_mode & S_IFMT == S_IFLNK { return walked }
        }
        return nil
    }

    static func filesystemType(_ directory: String) -> Int? {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let raw = veil_filesystem_type(fd)
        return raw == -1 ? nil : Int(raw) & 0xFFFF_FFFF
    }
}
