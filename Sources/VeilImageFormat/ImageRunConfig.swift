import Crypto
import FoundationEssentials

/// `/veil/image.json` inside a converted image: what the launcher runs and unlocks.
///
/// It lives in the measured root filesystem, so the command, environment and working
/// directory are part of the image measurement: the host cannot change them by passing other
/// arguments or variables to the container.
public struct ImageRunConfig: Codable, Sendable, Equatable {
    public static let path = "/veil/image.json"

    public struct ProtectedEntry: Codable, Sendable, Equatable {
        /// The logical path the application opens (absolute), bound into the file's key.
        public var path: String
        /// Where the encrypted file is stored in the image (absolute).
        public var stored: String
        /// Where the launcher writes the plaintext (absolute, in the runtime's memory filesystem).
        public var plaintext: String
        public var mode: UInt32

        public init(path: String, stored: String, plaintext: String, mode: UInt32) {
            self.path = path
            self.stored = stored
            self.plaintext = plaintext
            self.mode = mode
        }
    }

    public var service: String
    public var command: [String]
    public var env: [String]
    public var workingDir: String
    public var protectedFiles: [ProtectedEntry]
    /// The image's original `User`: the converted image starts its launcher as root, which
    /// measures and provisions, hands the provisioned files to this user and becomes it.
    public var user: String?
    /// The content digests (``ContentDigest``, hex) of the launcher's own files — its binary,
    /// loader and libraries — by path relative to the root. The launcher takes a file's digest
    /// from here instead of hashing it only when that very file is mapped into the launcher's
    /// own process (``RootfsDisk/OwnCode``): code running in the measuring process could forge
    /// any result it computes, so hashing it proves nothing, while this record is itself
    /// measured. Absent in images converted before it existed: everything is hashed.
    public var launcherFiles: [String: String]?

    public init(
        service: String, command: [String], env: [String], workingDir: String, protectedFiles: [ProtectedEntry], user: String? = nil,
        launcherFiles: [String: String]? = nil
    ) {
        self.service = service
        self.command = command
        self.env = env
        self.workingDir = workingDir
        self.protectedFiles = protectedFiles
        self.user = user
        self.launcherFiles = launcherFiles
    }

    public static func load(at path: String) throws -> ImageRunConfig {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw ImageFormatError.unreadable(path: path, reason: "cannot read the image's launch configuration")
        }
        do {
            return try JSONDecoder().decode(ImageRunConfig.self, from: data)
        } catch {
            throw ImageFormatError.malformed(what: path, reason: decodingFailure(error))
        }
    }

    /// The environment as a dictionary (later entries win, as in `execve`).
    public var environment: [String: String] {
        var result: [String: String] = [:]
        for entry in env {
            guard let equals = entry.firstIndex(of: "=") else { continue }
            result[String(entry[..<equals])] = String(entry[entry.index(after: equals)...])
        }
        return result
    }
}

/// The measurement of a converted image, as the simulated TEE reports it:
/// `SHA-256("veil-image-measurement-v1\0" ‖ rootfs digest)`. The rootfs digest covers the
/// launcher, its libraries and ``ImageRunConfig`` (see ``RootfsDigest``).
public enum ImageMeasurement {
    public static func measurement(rootfsDigest: [UInt8]) -> [UInt8] {
        Array(SHA256.hash(data: Array("veil-image-measurement-v1\0".utf8) + rootfsDigest))
    }

    /// Where protected files' plaintext goes at runtime: a memory filesystem the runtime mounts.
    public static let plaintextRoot = "/run/veil/protected"
}
