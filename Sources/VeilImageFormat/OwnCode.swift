import FoundationEssentials
import Glibc
import VeilCore

extension RootfsDisk {
    /// The measuring process's own code: files mapped into it, with the content digests the
    /// measured launch configuration records for them (``ImageRunConfig/launcherFiles``).
    ///
    /// A launcher that hashes its own binary, loader and libraries proves nothing: code running
    /// in the measuring process could return any digest for any file, its own included. So a
    /// file whose digest is recorded *and* which is mapped into this process (same device and
    /// inode as a file-backed mapping in `/proc/self/maps`) takes the recorded digest; the
    /// record is part of the measured configuration, so the measurement still covers it, and it
    /// equals what `veil image convert` computed. Every other file — an application file the
    /// record names included — is hashed: the record can only spare the measurer's own code.
    public struct OwnCode: Sendable {
        /// A file as the kernel knows it: device numbers and inode.
        public struct FileIdentity: Hashable, Sendable {
            public var major: UInt32
            public var minor: UInt32
            public var inode: UInt64

            public init(major: UInt32, minor: UInt32, inode: UInt64) {
                (self.major, self.minor, self.inode) = (major, minor, inode)
            }

            /// The file `stat` describes by `st_dev` and `st_ino`.
            public init(device: dev_t, inode: ino_t) {
                let (major, minor) = Self.split(device)
                self.init(major: major, minor: minor, inode: UInt64(inode))
            }

            /// glibc's `dev_t` encoding, as `major(3)`/`minor(3)` split it.
            static func split(_ device: dev_t) -> (UInt32, UInt32) {
                (UInt32(truncatingIfNeeded: (device >> 8) & 0xfff | (device >> 32) & ~0xfff),
                 UInt32(truncatingIfNeeded: device & 0xff | (device >> 12) & ~0xff))
            }
        }

        /// Content digests by path relative to the root.
        public var recorded: [String: [UInt8]]
        /// The files mapped into the measuring process.
        public var mapped: Set<FileIdentity>

        public static let none = OwnCode(recorded: [:], mapped: [])

        public init(recorded: [String: [UInt8]], mapped: Set<FileIdentity>) {
            self.recorded = recorded
            self.mapped = mapped
        }

        /// The record of `launcherFiles` (hex digests), for the files this process maps.
        /// A malformed digest is refused: the record is measured, so a bad one is a bad image.
        public static func ofThisProcess(launcherFiles: [String: String]) throws -> OwnCode {
            var recorded: [String: [UInt8]] = [:]
            for (path, hex) in launcherFiles {
                guard let digest = Hex.decode(hex), digest.count == 32 else {
                    throw ImageFormatError.malformed(what: "launcherFiles[\(path)]", reason: "not a SHA-256 digest in hex")
                }
                recorded[path] = digest
            }
            let maps = FileManager.default.contents(atPath: "/proc/self/maps").map { String(decoding: $0, as: UTF8.self) } ?? ""
            return OwnCode(recorded: recorded, mapped: mappedFiles(maps))
        }

        /// The file-backed mappings of a `/proc/PID/maps` text:
        /// `address perms offset MAJOR:MINOR INODE path` (hex device numbers, decimal inode).
        static func mappedFiles(_ maps: String) -> Set<FileIdentity> {
            var files: Set<FileIdentity> = []
            for line in maps.split(separator: "\n") {
                let fields = line.split(separator: " ", omittingEmptySubsequences: true)
                guard fields.count >= 6, let inode = UInt64(fields[4]), inode != 0 else { continue }
                let device = fields[3].split(separator: ":")
                guard device.count == 2, let major = UInt32(device[0], radix: 16), let minor = UInt32(device[1], radix: 16) else { continue }
                files.insert(FileIdentity(major: major, minor: minor, inode: inode))
            }
            return files
        }

        /// The recorded digest of the file at `path`, if it is this process's own code.
        func recordedDigest(path: String, device: dev_t, inode: ino_t) -> [UInt8]? {
            guard let digest = recorded[path] else { return nil }
            return mapped.contains(FileIdentity(device: device, inode: inode)) ? digest : nil
        }
    }
}
