import FoundationEssentials

/// Bytes that travel as a base64 string in JSON. Decoding refuses anything that is not
/// base64 (a `DecodingError` naming the field, answered 400 at the HTTP edge), so code past
/// the decoder only ever sees bytes.
public struct Base64Bytes: Codable, Sendable, Hashable, ExpressibleByArrayLiteral {
    public var bytes: [UInt8]

    public init(_ bytes: some Sequence<UInt8>) { self.bytes = Array(bytes) }
    public init(arrayLiteral elements: UInt8...) { bytes = elements }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        guard let data = Data(base64Encoded: try container.decode(String.self)) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "not base64")
        }
        bytes = Array(data)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Data(bytes).base64EncodedString())
    }
}
