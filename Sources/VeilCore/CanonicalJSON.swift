import FoundationEssentials

/// The one canonical JSON encoding Veil writes where bytes are hashed, signed, compared or
/// kept: UTF-8, keys sorted, slashes unescaped, no whitespace. Equal values encode to equal
/// bytes, so measurements and digests over it are stable.
public enum CanonicalJSON {
    public static func encode(_ value: some Encodable) throws -> [UInt8] {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.sortedKeys, .withoutEscapingSlashes]
        return Array(try encoder.encode(value))
    }
}
