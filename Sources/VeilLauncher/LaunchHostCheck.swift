import CVeilSys
import FoundationEssentials
import Glibc
import VeilManifest

/// What a launch on this host would refuse, checked before a manifest is set (`veil manifest
/// validate --launch-host`): a manifest is set once and every failed launch still counts as an
/// activation, so a provisioning target the launcher will refuse is better found now.
public enum LaunchHostCheck {
    /// One line per problem, with the manifest path of the field: `Files` targets whose
    /// directory (the nearest one that exists: the launcher creates the rest inside it) is on a
    /// disk filesystem, for services without `AllowDiskFiles`.
    public static func problems(_ manifest: Manifest) -> [String] {
        var problems: [String] = []
        for (name, service) in manifest.services.sorted(by: { $0.key < $1.key }) where !service.allowDiskFiles {
            for path in service.parameters.files.keys.sorted() {
                let directory = nearestExistingDirectory(of: path)
                guard let type = filesystemType(directory), type != SafeWriter.tmpfsMagic, type != SafeWriter.ramfsMagic else { continue }
                problems.append(
                    "$.Services.\(name).Parameters.Files[\"\(path)\"]: \(directory) is on a disk filesystem here (type 0x\(String(type, radix: 16))); "
                        + "the launcher refuses it — provision under a memory filesystem (/dev/shm, /run) or set AllowDiskFiles")
            }
        }
        return problems
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

    static func filesystemType(_ directory: String) -> Int? {
        let fd = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { return nil }
        defer { close(fd) }
        let raw = veil_filesystem_type(fd)
        return raw == -1 ? nil : Int(raw) & 0xFFFF_FFFF
    }
}
