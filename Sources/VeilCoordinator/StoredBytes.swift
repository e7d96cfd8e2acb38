import Foundation

/// Bytes in the sealed state (keys, certificates, the manifest), written as one base64 string.
///
/// Format 2 states wrote every byte as a JSON number, which made encoding the state the
/// largest cost of a quota'd activation's transaction and of every replica's adoption of a
/// change; a stored array of numbers still reads, so states written before format 3 open.
@propertyWrapper
public struct StoredBytes: Codable, Equatable, Sendable {
    public var wrappedValue: [UInt8]

    public init(wrappedValue: [UInt8]) { self.wrappedValue = wrappedValue }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        // An array of numbers is format 2's encoding of the same bytes.
        guard let text = try? container.decode(String.self) else {
            wrappedValue = try container.decode([UInt8].self)
            return
        }
        guard let data = Data(base64Encoded: text) else {
            throw DecodingError.dataCorruptedError(in: container, debugDescription: "stored bytes are neither base64 nor an array of bytes")
        }
        wrappedValue = Array(data)
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        try container.encode(Data(wrappedValue).base64EncodedString())
    }
}

/// ``StoredBytes`` that may be absent: a missing key or `null` reads as nil, and nil is not written.
@propertyWrapper
public struct OptionalStoredBytes: Codable, Equatable, Sendable {
    public var wrappedValue: [UInt8]?

    public init(wrappedValue: [UInt8]?) { self.wrappedValue = wrappedValue }

    public init(from decoder: any Decoder) throws {
        let container = try decoder.singleValueContainer()
        wrappedValue = container.decodeNil() ? nil : try StoredBytes(from: decoder).wrappedValue
    }

    public func encode(to encoder: any Encoder) throws {
        var container = encoder.singleValueContainer()
        if let wrappedValue { try container.encode(StoredBytes(wrappedValue: wrappedValue)) } else { try container.encodeNil() }
    }
}

extension KeyedDecodingContainer {
    /// Synthesized decoding calls this for an ``OptionalStoredBytes`` property: a missing key is nil.
    func decode(_ type: OptionalStoredBytes.Type, forKey key: Key) throws -> OptionalStoredBytes {
        OptionalStoredBytes(wrappedValue: try decodeIfPresent(StoredBytes.self, forKey: key)?.wrappedValue)
    }
}

extension KeyedEncodingContainer {
    /// Synthesized encoding calls this for an ``OptionalStoredBytes`` property: nil leaves the key out.
    mutating func encode(_ value: OptionalStoredBytes, forKey key: Key) throws {
        try encodeIfPresent(value.wrappedValue.map(StoredBytes.init(wrappedValue:)), forKey: key)
    }
}
