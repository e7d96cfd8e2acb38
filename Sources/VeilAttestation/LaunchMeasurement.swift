import Crypto
import FoundationEssentials
import Glibc
import VeilCore

/// The simulated TEE's measurement of a launch: what the program is and how it is launched.
///
/// `SHA-256("veil-launch-measurement-v1\0" ‖ u64be(program length) ‖ program bytes ‖
/// canonical JSON of the launch config)`. The program bytes are the exact bytes of the file
/// that will be executed (read through the same descriptor that is later `fexecve`d), so
/// changing one byte of the binary changes the measurement.
public enum LaunchMeasurement {
    /// What besides the program bytes defines a launch.
    public struct Config: Codable, Sendable, Equatable {
        /// The manifest service the launch activates as.
        public var service: String
        /// The arguments given after the program (argv[1...]).
        public var arguments: [String]

        public init(service: String, arguments: [String]) {
            self.service = service
            self.arguments = arguments
        }
    }

    public struct ReadError: Error, CustomStringConvertible {
        public let errno: Int32
        public init(errno: Int32) { self.errno = errno }
        public var description: String { "cannot read program: \(String(cString: strerror(errno)))" }
    }

    private static let domain = Array("veil-launch-measurement-v1\0".utf8)

    /// Measures the program open at `fd` (read from offset 0 with `pread`, so the descriptor's
    /// position is untouched).
    public static func measure(programFD fd: Int32, config: Config) throws -> [UInt8] {
        var stats = stat()
        guard fstat(fd, &stats) == 0 else { throw ReadError(errno: errno) }
        var hasher = SHA256()
        hasher.update(data: domain)
        hasher.update(data: bigEndianBytes(UInt64(stats.st_size)))
        // No larger than the program: a 1 MiB buffer costs more to fault in than /bin/true to hash.
        var buffer = [UInt8](repeating: 0, count: Int(min(max(stats.st_size, 4096), 1 << 20)))
        var offset: off_t = 0
        while offset < stats.st_size {
            let count = buffer.withUnsafeMutableBytes { pread(fd, $0.baseAddress, $0.count, offset) }
            if count < 0 {
                if errno == EINTR { continue }
                throw ReadError(errno: errno)
            }
            if count == 0 { break }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<count])) }
            offset += off_t(count)
        }
        guard offset == stats.st_size else { throw ReadError(errno: EIO) }
        hasher.update(data: canonical(config))
        return Array(hasher.finalize())
    }

    /// Opens and measures the program at `path`.
    public static func measure(programAt path: String, config: Config) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw ReadError(errno: errno) }
        defer { close(fd) }
        return try measure(programFD: fd, config: config)
    }

    /// Measures the program bytes given in memory (same result as ``measure(programFD:config:)``).
    public static func measure(program: [UInt8], config: Config) -> [UInt8] {
        var hasher = SHA256()
        hasher.update(data: domain)
        hasher.update(data: bigEndianBytes(UInt64(program.count)))
        hasher.update(data: program)
        hasher.update(data: canonical(config))
        return Array(hasher.finalize())
    }

    private static func canonical(_ config: Config) -> [UInt8] {
        // Encoding two strings and a string array cannot fail.
        try! CanonicalJSON.encode(config)
    }

    private static func bigEndianBytes(_ value: UInt64) -> [UInt8] {
        (0..<8).reversed().map { UInt8(truncatingIfNeeded: value >> (UInt64($0) * 8)) }
    }
}
