import FoundationEssentials

extension DecodingError {
    /// The error as one line: the JSON path where decoding stopped, then what was wrong there.
    public var explanation: String {
        switch self {
        case .dataCorrupted(let context), .keyNotFound(_, let context), .typeMismatch(_, let context), .valueNotFound(_, let context):
            let path = context.codingPath.map(\.stringValue).joined(separator: ".")
            return (path.isEmpty ? "" : "\(path): ") + context.debugDescription
        @unknown default:
            return "\(self)"
        }
    }
}
