import Glibc

/// Prints one line to standard error.
public func warn(_ text: String) {
    let line = Array((text + "\n").utf8)
    var offset = 0
    while offset < line.count {
        let written = line[offset...].withUnsafeBytes { write(2, $0.baseAddress, $0.count) }
        if written < 0 && errno == EINTR { continue }
        guard written > 0 else { return }
        offset += written
    }
}

/// A runtime failure: printed as one line, without usage help.
public struct CommandError: Error, CustomStringConvertible {
    public let description: String
    public init(_ description: String) { self.description = description }
}

/// Help text written with source line breaks, as one line per paragraph: the argument
/// parser wraps to the terminal itself, and a break inside a paragraph would leave short,
/// ragged lines in `--help`. Paragraphs are separated by blank lines; a line that starts with
/// `- `, a digit and `. `, or spaces (lists, examples) starts a line of its own.
public func helpText(_ text: String) -> String {
    var lines: [String] = []
    for line in text.split(separator: "\n", omittingEmptySubsequences: false).map(String.init) {
        let startsOwnLine = line.isEmpty || line.hasPrefix("- ") || line.hasPrefix(" ") || line.first?.isNumber == true && line.contains(". ")
        if let last = lines.last, !last.isEmpty, !startsOwnLine {
            lines[lines.count - 1] = last + " " + line
        } else {
            lines.append(line)
        }
    }
    return lines.joined(separator: "\n")
}
