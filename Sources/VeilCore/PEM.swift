import FoundationEssentials

/// PEM text encoding (RFC 7468), 64-column base64.
public enum PEM {
    public static func encode(_ der: [UInt8], label: String) -> String {
        let base64 = Data(der).base64EncodedString(options: [.lineLength64Characters, .endLineWithLineFeed])
        return "-----BEGIN \(label)-----\n\(base64)\n-----END \(label)-----\n"
    }

    /// The DER of every `label` block in `text`, in order; nil when a block is not base64.
    public static func decodeAll(_ text: String, label: String) -> [[UInt8]]? {
        var blocks: [[UInt8]] = []
        var body: String?
        for line in text.split(whereSeparator: \.isNewline) {
            if line == "-----BEGIN \(label)-----" {
                body = ""
            } else if line == "-----END \(label)-----", let base64 = body {
                guard let der = Data(base64Encoded: base64) else { return nil }
                blocks.append(Array(der))
                body = nil
            } else if body != nil {
                body! += line
            }
        }
        return blocks
    }
}
