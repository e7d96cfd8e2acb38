/// How long a service's activation certificate lasts: a whole number of seconds, minutes,
/// hours or days (`"90s"`, `"30m"`, `"1h"`, `"7d"`), between 2 seconds and 366 days.
///
/// Invariant: ``seconds`` is within ``range``; only the parser makes one.
public struct CertificateLifetime: Sendable, Equatable, Codable {
    public static let range = 2...(366 * 86400)
    public let seconds: Int

    public init?(_ text: String) {
        guard let unit = text.last, let count = Int(text.dropLast()), count > 0, !text.dropLast().contains(where: { !$0.isASCII || !$0.isNumber }) else { return nil }
        let multiplier: Int
        switch unit {
        case "s": multiplier = 1
        case "m": multiplier = 60
        case "h": multiplier = 3600
        case "d": multiplier = 86400
        default: return nil
        }
        let (product, overflow) = count.multipliedReportingOverflow(by: multiplier)
        guard !overflow, Self.range.contains(product) else { return nil }
        seconds = product
    }

    /// Why `text` is not a lifetime.
    static func rule(_ text: String) -> String {
        "'\(text)' is not a lifetime: a whole number with s, m, h or d (\"30m\", \"1h\"), from 2s to 366d"
    }

    /// When the agent renews: at half-life.
    public var renewAfterSeconds: Double { Double(seconds) / 2 }
}

/// The signal a renewing agent sends the app after rewriting its files, for programs that
/// reread certificates on a signal (nginx and HAProxy on SIGHUP, others on SIGUSR1/2).
public enum ReloadSignal: String, Sendable, Equatable, Codable, CaseIterable {
    case hangup = "SIGHUP"
    case user1 = "SIGUSR1"
    case user2 = "SIGUSR2"

    /// The signal number on Linux.
    public var number: Int32 {
        switch self {
        case .hangup: return 1
        case .user1: return 10
        case .user2: return 12
        }
    }
}
