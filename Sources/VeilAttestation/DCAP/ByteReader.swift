/// A bounds-checked little-endian reader. Every read either succeeds completely or throws
/// ``QuoteParseError/truncated(field:offset:needed:available:)``; it never traps.
struct ByteReader {
    let bytes: [UInt8]
    private(set) var offset: Int

    init(_ bytes: [UInt8], offset: Int = 0) {
        self.bytes = bytes
        self.offset = offset
    }

    var remaining: Int { bytes.count - offset }

    mutating func read(_ count: Int, _ field: String) throws(QuoteParseError) -> [UInt8] {
        guard count >= 0, count <= remaining else {
            throw .truncated(field: field, offset: offset, needed: count, available: max(remaining, 0))
        }
        defer { offset += count }
        return Array(bytes[offset..<offset + count])
    }

    mutating func u16(_ field: String) throws(QuoteParseError) -> UInt16 {
        let b = try read(2, field)
        return UInt16(b[0]) | UInt16(b[1]) << 8
    }

    mutating func u32(_ field: String) throws(QuoteParseError) -> UInt32 {
        let b = try read(4, field)
        return UInt32(b[0]) | UInt32(b[1]) << 8 | UInt32(b[2]) << 16 | UInt32(b[3]) << 24
    }

    mutating func u64(_ field: String) throws(QuoteParseError) -> UInt64 {
        let b = try read(8, field)
        return b.enumerated().reduce(0) { $0 | UInt64($1.element) << (8 * UInt64($1.offset)) }
    }
}

/// Why quote bytes are not a well-formed DCAP quote.
public enum QuoteParseError: Error, Equatable, Sendable, CustomStringConvertible {
    case truncated(field: String, offset: Int, needed: Int, available: Int)
    case unsupportedVersion(UInt16)
    case unsupportedTEEType(UInt32)
    case unsupportedAttestationKeyType(UInt16)
    case unsupportedBodyType(UInt16)
    case bodySizeMismatch(expected: Int, declared: UInt32)
    case unsupportedCertificationDataType(UInt16)
    case lengthMismatch(field: String, declared: Int, actual: Int)
    case trailingBytes(field: String, count: Int)
    case nonZeroReserved(field: String, offset: Int)

    public var description: String {
        switch self {
        case .truncated(let field, let offset, let needed, let available):
            return "quote truncated in \(field) at offset \(offset): needs \(needed) bytes, \(available) left"
        case .unsupportedVersion(let version): return "unsupported quote version \(version) (3, 4 and 5 are supported)"
        case .unsupportedTEEType(let type): return "unsupported TEE type 0x\(String(type, radix: 16)) (0x0 SGX, 0x81 TDX)"
        case .unsupportedAttestationKeyType(let type): return "unsupported attestation key type \(type) (2 = ECDSA P-256)"
        case .unsupportedBodyType(let type): return "unsupported quote v5 body type \(type)"
        case .bodySizeMismatch(let expected, let declared): return "quote body size \(declared) does not match its type (\(expected))"
        case .unsupportedCertificationDataType(let type): return "unsupported certification data type \(type)"
        case .lengthMismatch(let field, let declared, let actual): return "\(field) declares \(declared) bytes but holds \(actual)"
        case .trailingBytes(let field, let count): return "\(count) unexpected trailing bytes after \(field)"
        case .nonZeroReserved(let field, let offset): return "reserved field \(field) is not zero (byte at offset 0x\(String(offset, radix: 16)))"
        }
    }
}
