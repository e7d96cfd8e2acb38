/// A YAML document built in order (Kubernetes readers expect `apiVersion`, `kind` and
/// `metadata` first), emitted in block style with every ambiguous scalar quoted.
public indirect enum YAMLNode: Sendable, Equatable, ExpressibleByStringLiteral, ExpressibleByIntegerLiteral, ExpressibleByBooleanLiteral,
    ExpressibleByArrayLiteral
{
    case string(String)
    case integer(Int)
    case boolean(Bool)
    case map([(String, YAMLNode)])
    case list([YAMLNode])

    public init(stringLiteral value: String) { self = .string(value) }
    public init(integerLiteral value: Int) { self = .integer(value) }
    public init(booleanLiteral value: Bool) { self = .boolean(value) }
    public init(arrayLiteral elements: YAMLNode...) { self = .list(elements) }

    public static func == (lhs: YAMLNode, rhs: YAMLNode) -> Bool {
        switch (lhs, rhs) {
        case (.string(let a), .string(let b)): return a == b
        case (.integer(let a), .integer(let b)): return a == b
        case (.boolean(let a), .boolean(let b)): return a == b
        case (.list(let a), .list(let b)): return a == b
        case (.map(let a), .map(let b)): return a.count == b.count && zip(a, b).allSatisfy { $0.0 == $1.0 && $0.1 == $1.1 }
        default: return false
        }
    }

    /// Several documents, `---`-separated.
    public static func stream(_ documents: [YAMLNode]) -> String {
        documents.map { "---\n" + $0.emit(indent: 0) }.joined()
    }

    func emit(indent: Int) -> String {
        let pad = String(repeating: " ", count: indent)
        switch self {
        case .map(let fields):
            guard !fields.isEmpty else { return pad + "{}\n" }
            return fields.map { key, value in
                switch value {
                case .map(let inner) where !inner.isEmpty: return pad + Self.scalar(key) + ":\n" + value.emit(indent: indent + 2)
                case .list(let items) where !items.isEmpty: return pad + Self.scalar(key) + ":\n" + value.emit(indent: indent)
                default: return pad + Self.scalar(key) + ": " + value.inline + "\n"
                }
            }.joined()
        case .list(let items):
            guard !items.isEmpty else { return pad + "[]\n" }
            return items.map { item in
                switch item {
                case .map(let inner) where !inner.isEmpty:
                    // The first field shares the dash's line; the rest align under it.
                    let body = item.emit(indent: indent + 2)
                    return pad + "- " + body.dropFirst(indent + 2)
                case .list(let inner) where !inner.isEmpty:
                    return pad + "-\n" + item.emit(indent: indent + 2)
                default:
                    return pad + "- " + item.inline + "\n"
                }
            }.joined()
        default:
            return pad + inline + "\n"
        }
    }

    private var inline: String {
        switch self {
        case .string(let text): return Self.scalar(text)
        case .integer(let value): return String(value)
        case .boolean(let value): return value ? "true" : "false"
        case .map: return "{}"
        case .list: return "[]"
        }
    }

    /// Plain when unambiguous, else double-quoted with JSON escapes (valid YAML).
    static func scalar(_ text: String) -> String {
        let plain = !text.isEmpty && text.unicodeScalars.allSatisfy { scalar in
            switch scalar {
            case "a"..."z", "A"..."Z", "0"..."9", "-", "_", ".", "/": return true
            default: return false
            }
        }
        let reserved: Set<String> = ["true", "false", "yes", "no", "on", "off", "null", "y", "n", "~", "True", "False", "Yes", "No", "On", "Off", "Null", "NULL", "TRUE", "FALSE"]
        let numeric = Double(text) != nil || text.hasPrefix("0") || text.hasPrefix("-") || text.hasPrefix(".")
        if plain && !reserved.contains(text) && !numeric { return text }
        var quoted = "\""
        for scalar in text.unicodeScalars {
            switch scalar {
            case "\"": quoted += "\\\""
            case "\\": quoted += "\\\\"
            case "\n": quoted += "\\n"
            case "\t": quoted += "\\t"
            case "\r": quoted += "\\r"
            default:
                if scalar.value < 0x20 {
                    quoted += "\\u" + String(repeating: "0", count: 4 - String(scalar.value, radix: 16).count) + String(scalar.value, radix: 16)
                } else {
                    quoted.unicodeScalars.append(scalar)
                }
            }
        }
        return quoted + "\""
    }
}
