import ArgumentParser
import FoundationEssentials
import Glibc
import Logging
import Synchronization
import VeilCore

/// `--log-format` of the long-running commands (coordinator, injector, mesh): swift-log's text
/// lines, or one JSON object per line for log collectors.
public enum LogFormat: String, ExpressibleByArgument, CaseIterable, Sendable {
    case text, json

    /// A logger with `label` writing to standard error in this format.
    public func logger(label: String) -> Logger {
        switch self {
        case .text: return Logger(label: label) { StreamLogHandler.standardError(label: $0) }
        case .json: return Logger(label: label) { JSONLogHandler(label: $0) }
        }
    }
}

/// One JSON object per line on standard error: `{"time", "level", "label", "message",
/// "source", "metadata": {KEY: TEXT}}`; lines from several threads never interleave.
public struct JSONLogHandler: LogHandler {
    struct Line: Encodable {
        var time: String
        var level: String
        var label: String
        var message: String
        var source: String
        var metadata: [String: String]?
    }

    private static let output = Mutex(())
    public let label: String
    public var logLevel: Logger.Level = .info
    public var metadata: Logger.Metadata = [:]

    public init(label: String) { self.label = label }

    public subscript(metadataKey key: String) -> Logger.Metadata.Value? {
        get { metadata[key] }
        set { metadata[key] = newValue }
    }

    public func log(event: LogEvent) {
        let merged = metadata.merging(event.metadata ?? [:]) { $1 }
        let line = Line(
            time: Date().formatted(.iso8601), level: event.level.rawValue, label: label, message: "\(event.message)", source: event.source,
            metadata: merged.isEmpty ? nil : merged.mapValues { "\($0)" })
        guard var bytes = try? CanonicalJSON.encode(line) else { return }
        bytes.append(0x0A)
        Self.output.withLock { _ in
            _ = bytes.withUnsafeBytes { Glibc.write(2, $0.baseAddress, $0.count) }
        }
    }
}
