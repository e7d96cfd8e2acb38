/// A command line read without swift-argument-parser, for the commands on every start's path.
///
/// swift-argument-parser builds its model by reflection and dynamic casts, which in a
/// statically linked binary scan every protocol conformance of the binary: about a third of a
/// launch's CPU time (issue 26). This reader takes only the forms start scripts use — `--name
/// value`, `--name=value`, flags, up to a fixed number of positional words, and (where the
/// command has one) `--` followed by the program — and returns nil for anything else: help, a
/// version request, an unknown or repeated option, a missing or empty value, a short option. The
/// caller then hands the line to the argument parser, which answers with its usual errors and
/// help, so both paths accept the same lines and differ only in speed.
public struct LeanCommandLine: Sendable {
    /// What a command accepts.
    public struct Grammar: Sendable {
        public var values: Set<String>
        public var repeatable: Set<String> = []
        public var flags: Set<String> = []
        public var positionals = 0
        /// Whether `--` ends the options and the remaining words are the program.
        public var terminator = false

        public init(values: Set<String>, repeatable: Set<String> = [], flags: Set<String> = [], positionals: Int = 0, terminator: Bool = false) {
            (self.values, self.repeatable, self.flags, self.positionals, self.terminator) = (values, repeatable, flags, positionals, terminator)
        }
    }

    public private(set) var values: [String: [String]] = [:]
    public private(set) var flags: Set<String> = []
    public private(set) var positionals: [String] = []
    /// The words after `--` (empty when there was none).
    public private(set) var program: [String] = []

    /// The last value of `--name`, if given.
    public func value(_ name: String) -> String? { values[name]?.last }

    /// `arguments` after the command's own name; nil when the argument parser must read them.
    public static func read(_ arguments: ArraySlice<String>, _ grammar: Grammar) -> LeanCommandLine? {
        var line = LeanCommandLine()
        var index = arguments.startIndex
        while index < arguments.endIndex {
            let word = arguments[index]
            index += 1
            if word == "--" {
                guard grammar.terminator else { return nil }
                line.program = Array(arguments[index...])
                return line
            }
            guard word.hasPrefix("-") else {
                guard line.positionals.count < grammar.positionals else { return nil }
                line.positionals.append(word)
                continue
            }
            guard word.hasPrefix("--") else { return nil }
            var name = String(word.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if grammar.flags.contains(name) {
                guard inlineValue == nil, line.flags.insert(name).inserted else { return nil }
                continue
            }
            guard grammar.values.contains(name), grammar.repeatable.contains(name) || line.values[name] == nil else { return nil }
            let value: String
            if let inlineValue {
                value = inlineValue
            } else {
                // The argument parser takes a value that starts with "-" as the next option.
                guard index < arguments.endIndex, !arguments[index].hasPrefix("-") else { return nil }
                value = arguments[index]
                index += 1
            }
            guard !value.isEmpty else { return nil }
            line.values[name, default: []].append(value)
        }
        return line
    }
}
