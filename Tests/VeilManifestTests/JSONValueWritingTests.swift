import Foundation
import Testing
import VeilCore

/// `JSONValue.serialized()` writes JSON itself; these tests hold it to `CanonicalJSON`
/// (`JSONEncoder` with sorted keys and unescaped slashes) byte for byte, and to the strict parser.
@Suite struct JSONValueWritingTests {
    /// Every ASCII character (controls included), non-ASCII text, and keys whose byte order
    /// and Unicode order differ (a decomposed "é" before "f" by bytes, after it by scalars).
    static let strings: [String] = [
        String(decoding: (0..<0x80).map { UInt8($0) }, as: UTF8.self), "", "a/b", "é😀\u{2028}\u{2029}", "e\u{301}", "f", "ê", "Z", "_", "a10", "a2",
    ]
    static let numbers: [Double] = [0, -0.0, 1, -1, 0.5, 0.1, 3.14159, -2.5, 1e-7, 1e20, 1e21, 1e300, 123456789012345678, 9007199254740993, 65536, 4294967295]

    /// Many values mixing every case, nested, deterministic for a seed.
    static func values(count: Int, seed: UInt64) -> [JSONValue] {
        var generator = SplitMix(state: seed)
        func value(depth: Int) -> JSONValue {
            switch generator.next() % (depth > 3 ? 4 : 6) {
            case 0: return .null
            case 1: return .bool(generator.next() % 2 == 0)
            case 2: return .number(numbers[Int(generator.next() % UInt64(numbers.count))])
            case 3: return .string(strings[Int(generator.next() % UInt64(strings.count))])
            case 4: return .array((0..<Int(generator.next() % 4)).map { _ in value(depth: depth + 1) })
            default:
                var fields: [String: JSONValue] = [:]
                for _ in 0..<Int(generator.next() % 6) { fields[strings[Int(generator.next() % UInt64(strings.count))]] = value(depth: depth + 1) }
                return .object(fields)
            }
        }
        return (0..<count).map { _ in value(depth: 0) }
    }

    @Test func writesWhatJSONEncoderWrites() throws {
        for value in Self.values(count: 2_000, seed: 26) {
            let direct = try value.serialized()
            let encoded = try CanonicalJSON.encode(value)
            #expect(direct == encoded, "\(String(decoding: direct, as: UTF8.self)) vs \(String(decoding: encoded, as: UTF8.self))")
        }
        let allKeys = JSONValue.object(Dictionary(uniqueKeysWithValues: Self.strings.map { ($0, JSONValue.null) }))
        #expect(try allKeys.serialized() == CanonicalJSON.encode(allKeys))
    }

    @Test func readsBackAsTheSameValue() throws {
        for value in Self.values(count: 500, seed: 7) {
            #expect(try JSONValue.parse(value.serialized()) == value)
        }
    }

    @Test func refusesNumbersJSONCannotHold() {
        for number in [Double.infinity, -Double.infinity, Double.nan] {
            #expect(throws: EncodingError.self) { try JSONValue.array([.number(number)]).serialized() }
        }
    }
}

/// A small deterministic generator (SplitMix64), so a failure repeats.
struct SplitMix {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}
