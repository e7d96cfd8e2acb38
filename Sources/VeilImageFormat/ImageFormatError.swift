import FoundationEssentials
import VeilCore

/// Why a file of a converted image that the launcher reads at start (the launch
/// configuration, the image's /etc/passwd and /etc/group) is unusable.
public enum ImageFormatError: Error, Equatable, Sendable, CustomStringConvertible {
    case unreadable(path: String, reason: String)
    case malformed(what: String, reason: String)
    /// The image's `User` does not resolve.
    case user(String)

    public var description: String {
        switch self {
        case .unreadable(let path, let reason): return "\(path): \(reason)"
        case .malformed(let what, let reason): return "\(what) is not valid: \(reason)"
        case .user(let why): return "the image's user: \(why)"
        }
    }
}

/// A decoding failure as one line (``DecodingError/explanation`` for decoding errors).
package func decodingFailure(_ error: any Error) -> String {
    (error as? DecodingError)?.explanation ?? "\(error)"
}
