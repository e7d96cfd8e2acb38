import FoundationEssentials

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

/// A `DecodingError` as one line: the JSON path, then what was wrong there.
package func decodingFailure(_ error: any Error) -> String {
    guard let error = error as? DecodingError else { return "\(error)" }
    switch error {
    case .dataCorrupted(let context), .keyNotFound(_, let context), .typeMismatch(_, let context), .valueNotFound(_, let context):
        let path = context.codingPath.map(\.stringValue).joined(separator: ".")
        return (path.isEmpty ? "" : "\(path): ") + context.debugDescription
    @unknown default:
        return "\(error)"
    }
}
