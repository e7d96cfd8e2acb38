import Glibc

/// Opens regular files below a directory without ever leaving it: every component is opened
/// with `O_NOFOLLOW` under its parent's descriptor, symlinks are resolved by hand (relative
/// targets only, `..` never above the directory, at most 40 of them), and the result must be
/// a regular file. What `openat2(RESOLVE_IN_ROOT)` would give, refusing instead of clamping.
///
/// Image inputs are untrusted: an archive member or a layout blob that is a symlink to a host
/// file must not pull that file into an image.
public enum ConfinedFile {
    static let maximumSymlinks = 40

    /// A read-only descriptor (caller closes) for `relative` below `root`.
    public static func open(_ relative: String, under root: String) throws -> Int32 {
        guard let fd = try openIfPresent(relative, under: root) else {
            throw ImageError.io(path: "\(root)/\(relative)", reason: String(cString: strerror(ENOENT)))
        }
        return fd
    }

    /// Like ``open(_:under:)``, but nil when a component does not exist.
    public static func openIfPresent(_ relative: String, under root: String) throws -> Int32? {
        let rootFD = Glibc.open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard rootFD >= 0 else { throw ImageError.io(path: root, reason: String(cString: strerror(errno))) }
        var stack = [rootFD]
        defer { stack.forEach { close($0) } }
        var pending = Array(relative.split(separator: "/", omittingEmptySubsequences: true).map(String.init).reversed())
        var symlinks = 0
        var walked = root
        func refuse(_ reason: String) -> ImageError { .unsafePath(path: "\(root)/\(relative)", reason: reason) }

        while let component = pending.popLast() {
            if component == "." { continue }
            if component == ".." {
                guard stack.count > 1 else { throw refuse("it leads above \(root)") }
                close(stack.removeLast())
                continue
            }
            let parent = stack.last!
            var status = stat()
            guard fstatat(parent, component, &status, AT_SYMLINK_NOFOLLOW) == 0 else {
                if errno == ENOENT { return nil }
                throw ImageError.io(path: "\(walked)/\(component)", reason: String(cString: strerror(errno)))
            }
            switch status.st_mode & S_IFMT {
            case S_IFLNK:
                symlinks += 1
                guard symlinks <= maximumSymlinks else { throw refuse("more than \(maximumSymlinks) symlinks") }
                var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
                let length = readlinkat(parent, component, &buffer, buffer.count - 1)
                guard length > 0 else { throw ImageError.io(path: "\(walked)/\(component)", reason: String(cString: strerror(errno))) }
                let target = String(decoding: buffer[..<length].map { UInt8(bitPattern: $0) }, as: UTF8.self)
                guard !target.hasPrefix("/") else { throw refuse("\(component) is a symlink to the absolute path \(target)") }
                pending += target.split(separator: "/", omittingEmptySubsequences: true).map(String.init).reversed()
            case S_IFDIR where !pending.isEmpty:
                let fd = openat(parent, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { throw ImageError.io(path: "\(walked)/\(component)", reason: String(cString: strerror(errno))) }
                stack.append(fd)
                walked += "/" + component
            case S_IFREG where pending.isEmpty:
                let fd = openat(parent, component, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
                guard fd >= 0 else { throw ImageError.io(path: "\(walked)/\(component)", reason: String(cString: strerror(errno))) }
                var opened = stat()
                guard fstat(fd, &opened) == 0, opened.st_ino == status.st_ino, opened.st_dev == status.st_dev else {
                    close(fd)
                    throw refuse("\(component) changed while it was opened")
                }
                return fd
            default:
                throw refuse(pending.isEmpty ? "not a regular file" : "\(component) is not a directory")
            }
        }
        throw refuse("names a directory, not a file")
    }

    /// Whether `relative` below `root` opens as a regular file under ``open(_:under:)``'s rules.
    public static func exists(_ relative: String, under root: String) -> Bool {
        guard let fd = (try? openIfPresent(relative, under: root)) ?? nil else { return false }
        close(fd)
        return true
    }

    /// The whole file, at most `limit` bytes.
    public static func read(_ relative: String, under root: String, limit: Int = 64 << 20) throws -> [UInt8] {
        try FileStream(descriptor: try open(relative, under: root), path: "\(root)/\(relative)").readAll(limit: limit)
    }
}

extension ByteStream {
    /// Everything left in the stream, refusing more than `limit` bytes.
    func readAll(limit: Int) throws -> [UInt8] {
        var bytes: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let n = try buffer.withUnsafeMutableBytes { (raw) throws -> Int in try read(into: raw) }
            if n == 0 { return bytes }
            bytes += buffer[..<n]
            guard bytes.count <= limit else { throw ImageError.limitExceeded(what: "a JSON document of the image", limit: "\(limit) bytes") }
        }
    }
}
