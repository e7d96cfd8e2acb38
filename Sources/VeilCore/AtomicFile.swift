import FoundationEssentials

import Glibc

/// Crash-safe whole-file replacement: write a temporary file beside the target, fsync it,
/// rename it over the target, fsync the directory. Readers see the old or the new bytes,
/// never a mix.
public enum AtomicFile {
    /// The whole file at `path`, or the system's reason it could not be read.
    public static func read(_ path: String) -> Result<[UInt8], ReadError> {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { return .failure(ReadError(path: path, errno: errno)) }
        defer { close(fd) }
        var bytes: [UInt8] = []
        var chunk = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = Glibc.read(fd, &chunk, chunk.count)
            if count < 0 && errno == EINTR { continue }
            guard count >= 0 else { return .failure(ReadError(path: path, errno: errno)) }
            if count == 0 { return .success(bytes) }
            bytes += chunk[..<count]
        }
    }

    public struct ReadError: Error, CustomStringConvertible {
        public let path: String
        public let errno: Int32
        public var reason: String { String(cString: strerror(errno)) }
        public var description: String { "cannot read \(path): \(reason)" }
    }

    public struct WriteError: Error, CustomStringConvertible {
        public let path: String
        public let step: String
        public let errno: Int32
        public var description: String { "\(step) \(path): \(String(cString: strerror(errno)))" }
    }

    /// Writes all of `bytes` to `fd`, retrying short writes and EINTR. Returns 0 or the errno.
    public static func writeAll(_ bytes: [UInt8], to fd: Int32) -> Int32 {
        bytes.withUnsafeBytes { writeAll($0, to: fd) }
    }

    /// Writes all of `bytes` to `fd`, retrying short writes and EINTR. Returns 0 or the errno.
    public static func writeAll(_ bytes: UnsafeRawBufferPointer, to fd: Int32) -> Int32 {
        var offset = 0
        while offset < bytes.count {
            let written = Glibc.write(fd, bytes.baseAddress! + offset, bytes.count - offset)
            if written < 0 {
                if errno == EINTR { continue }
                return errno
            }
            offset += written
        }
        return 0
    }

    public static func write(_ bytes: [UInt8], to path: String, mode: mode_t = 0o600) throws {
        let directory = path.lastIndex(of: "/").map { $0 == path.startIndex ? "/" : String(path[..<$0]) } ?? "."
        let temporary = "\(path).tmp-\(getpid())-\(UInt64.random(in: 0...UInt64.max))"
        let fd = open(temporary, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
        guard fd >= 0 else { throw WriteError(path: temporary, step: "create", errno: errno) }
        var ok = false
        defer {
            if !ok { unlink(temporary) }
        }
        do {
            defer { close(fd) }
            let failure = writeAll(bytes, to: fd)
            guard failure == 0 else { throw WriteError(path: temporary, step: "write", errno: failure) }
            guard fsync(fd) == 0 else { throw WriteError(path: temporary, step: "fsync", errno: errno) }
        }
        guard rename(temporary, path) == 0 else { throw WriteError(path: path, step: "rename to", errno: errno) }
        ok = true
        let dirFD = open(directory.isEmpty ? "." : directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dirFD >= 0 {
            _ = fsync(dirFD)
            close(dirFD)
        }
    }
}
