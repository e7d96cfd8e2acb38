/// What a service may obtain over the Confidential Containers key-broker protocol (KBS).
///
/// A service with this block may attest over `/kbs/v0/*`: evidence that matches its package
/// gets a session and a token for it. Each resource it may read is listed with what its bytes
/// are — a template over the manifest's secrets, so a resource is a plain secret, a symmetric
/// key, a user-defined value or a certificate secret's part, in a chosen encoding. Unlisted
/// resources are refused (the default is none).
public struct KBSAccess: Sendable, Equatable {
    /// `REPOSITORY/TYPE/TAG` (the path after `/kbs/v0/resource/`) → the resource's bytes.
    public var resources: [String: Template]
    /// When set, the client must present init-data whose digest is this, and its evidence
    /// must bind that digest (SNP HOST_DATA, TDX MRCONFIGID).
    public var initDataDigest: [UInt8]?

    public init(resources: [String: Template], initDataDigest: [UInt8]? = nil) {
        self.resources = resources
        self.initDataDigest = initDataDigest
    }

    /// Why `path` cannot name a KBS resource, or nil: three non-empty segments of letters,
    /// digits, `.`, `_` and `-`, none of them `.` or `..`.
    public static func resourcePathProblem(_ path: String) -> String? {
        let segments = path.split(separator: "/", omittingEmptySubsequences: false)
        guard segments.count == 3 else { return "a resource is REPOSITORY/TYPE/TAG (three segments), not '\(path)'" }
        for segment in segments {
            if segment.isEmpty || segment == "." || segment == ".." {
                return "resource path segments must be non-empty and not '.' or '..'"
            }
            let allowed = segment.utf8.allSatisfy { byte in
                (UInt8(ascii: "a")...UInt8(ascii: "z")).contains(byte) || (UInt8(ascii: "A")...UInt8(ascii: "Z")).contains(byte)
                    || (UInt8(ascii: "0")...UInt8(ascii: "9")).contains(byte) || Array("._-".utf8).contains(byte)
            }
            if !allowed {
                return "resource path segments may hold only letters, digits, '.', '_' and '-'"
            }
        }
        return nil
    }
}
