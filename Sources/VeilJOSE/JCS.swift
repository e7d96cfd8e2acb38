import FoundationEssentials
import VeilCore

/// The JSON Canonicalization Scheme (RFC 8785) of a parsed value: members sorted by their
/// UTF-16 code units, no whitespace, strings with only the escapes the RFC prescribes.
///
/// What KBS clients hash into their evidence (`runtime-data`), so the bytes must be the ones
/// every other JCS implementation produces. Numbers are written as ECMAScript does for
/// integers and for values whose shortest round-trip form has no exponent; a number that
/// would need ECMAScript's exponent form (|x| ≥ 1e21 or < 1e-6) or an integer beyond 9e18 is refused rather than
/// guessed, since runtime data carries strings only.
public enum JCS {
    public struct UnsupportedNumber: Error, Equatable, CustomStringConvertible {
        public let value: Double
        public var description: String { "the number \(value) has no canonical form here (only integers below 9e18 and decimals without exponent)" }
    }

    public static func encode(_ value: JSONValue) throws(UnsupportedNumber) -> [UInt8] {
        var out: [UInt8] = []
        try write(value, into: &out)
        return out
    }

    static func write(_ value: JSONValue, into out: inout [UInt8]) throws(UnsupportedNumber) {
        switch value {
        case .null: out += Array("null".utf8)
        case .bool(let flag): out += Array((flag ? "true" : "false").utf8)
        case .number(let number): out += Array(try format(number).utf8)
        case .string(let text): writeString(text, into: &out)
        case .array(let items):
            out.append(UInt8(ascii: "["))
            for (index, item) in items.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                try write(item, into: &out)
            }
            out.append(UInt8(ascii: "]"))
        case .object(let members):
            out.append(UInt8(ascii: "{"))
            let keys = members.keys.sorted { Array($0.utf16).lexicographicallyPrecedes(Array($1.utf16)) }
            for (index, key) in keys.enumerated() {
                if index > 0 { out.append(UInt8(ascii: ",")) }
                writeString(key, into: &out)
                out.append(UInt8(ascii: ":"))
                try write(members[key]!, into: &out)
            }
            out.append(UInt8(ascii: "}"))
        }
    }

    static func format(_ number: Double) throws(UnsupportedNumber) -> String {
        if number == 0 { return "0" }
        if number == number.rounded(), abs(number) < 9e18 {
            return String(Int64(number))
        }
        let text = "\(number)"
        guard abs(number) >= 1e-6, abs(number) < 1e21, !text.contains("e") else { throw UnsupportedNumber(value: number) }
        return text
    }

    static func writeString(_ text: String, into out: inout [UInt8]) {
        out.append(UInt8(ascii: "\""))
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": out += Array("\\\"".utf8)
            case "\\": out += Array("\\\\".utf8)
            case "\u{08}": out += Array("\\b".utf8)
            case "\u{0C}": out += Array("\\f".utf8)
            case "\n": out += Array("\\n".utf8)
            case "\r": out += Array("\\r".utf8)
            case "\t": out += Array("\\t".utf8)
            case _ where scalar.value < 0x20:
                let hex = Array("0123456789abcdef".utf8)
                out += Array("\\u00".utf8) + [hex[Int(scalar.value >> 4)], hex[Int(scalar.value & 0xF)]]
            default:
                out += Array(String(scalar).utf8)
            }
        }
        out.append(UInt8(ascii: "\""))
    }
}
