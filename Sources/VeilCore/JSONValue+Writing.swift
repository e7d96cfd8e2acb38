extension JSONValue {
    /// UTF-8 JSON with keys sorted and slashes unescaped (integral numbers without a fraction):
    /// byte for byte what ``CanonicalJSON/encode(_:)`` writes for the same value
    /// (JSONValueWritingTests), but written directly. An `Encoder` asks the Swift runtime
    /// whether each new value type conforms to a handful of protocols, and in a fresh process
    /// every such question scans the binary's whole conformance table — on `veil run`'s path
    /// that cost milliseconds per start.
    ///
    /// Throws for a number that is not finite (JSON has none), as `JSONEncoder` does.
    public func serialized() throws -> [UInt8] {
        var output: [UInt8] = []
        try write(into: &output)
        return output
    }

    private func write(into output: inout [UInt8]) throws {
        switch self {
        case .null: output += "null".utf8
        case .bool(let value): output += (value ? "true" : "false").utf8
        case .number(let value):
            guard value.isFinite else {
                throw EncodingError.invalidValue(value, .init(codingPath: [], debugDescription: "\(value) is not a JSON number"))
            }
            // `JSONEncoder`'s spelling: the shortest round-trip form, without a trailing ".0".
            var text = value.description
            if text.hasSuffix(".0") { text.removeLast(2) }
            output += text.utf8
        case .string(let value): Self.writeString(value, into: &output)
        case .array(let items):
            output.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                try item.write(into: &output)
            }
            output.append(UInt8(ascii: "]"))
        case .object(let fields):
            output.append(UInt8(ascii: "{"))
            // Ordered by the keys' UTF-8 bytes, as `JSONEncoder`'s `.sortedKeys`.
            for (index, field) in fields.sorted(by: { $0.key.utf8.lexicographicallyPrecedes($1.key.utf8) }).enumerated() {
                if index > 0 { output.append(UInt8(ascii: ",")) }
                Self.writeString(field.key, into: &output)
                output.append(UInt8(ascii: ":"))
                try field.value.write(into: &output)
            }
            output.append(UInt8(ascii: "}"))
        }
    }

    private static let hexDigits = Array("0123456789abcdef".utf8)

    /// RFC 8259's required escapes only (`"`, `\` and control characters; `/` as it is).
    private static func writeString(_ text: String, into output: inout [UInt8]) {
        output.append(UInt8(ascii: "\""))
        for byte in text.utf8 {
            switch byte {
            case UInt8(ascii: "\""): output += #"\""#.utf8
            case UInt8(ascii: "\\"): output += #"\\"#.utf8
            case 0x08: output += #"\b"#.utf8
            case 0x09: output += #"\t"#.utf8
            case 0x0A: output += #"\n"#.utf8
            case 0x0C: output += #"\f"#.utf8
            case 0x0D: output += #"\r"#.utf8
            case 0..<0x20: output += [UInt8(ascii: "\\"), UInt8(ascii: "u"), UInt8(ascii: "0"), UInt8(ascii: "0"), hexDigits[Int(byte >> 4)], hexDigits[Int(byte & 0xF)]]
            default: output.append(byte)
            }
        }
        output.append(UInt8(ascii: "\""))
    }
}
