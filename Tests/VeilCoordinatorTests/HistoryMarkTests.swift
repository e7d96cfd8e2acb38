import Foundation
import Testing
import VeilClient
import VeilLauncher
import VeilManifest

/// What a client remembers of a coordinator's history (the longest one it verified) and what it
/// refuses later: a shorter history (an old state put back) and a forked one (another state
/// under the same root, with as many entries or more).
@Suite struct HistoryMarkTests {
    static func history(_ events: [String]) -> [LogEntry] {
        var entries: [LogEntry] = []
        for (index, event) in events.enumerated() {
            let previous = entries.last.map { $0.hash.map { String(format: "%02x", $0) }.joined() } ?? String(repeating: "0", count: 64)
            entries.append(LogEntry(index: index, time: "2026-12-06T12:00:0\(index)Z", event: event, user: nil, detail: [:], previous: previous))
        }
        return entries
    }

    @Test func aShorterOrForkedHistoryIsRefusedAndALongerOneAccepted() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("veil-marks-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let environment = ["VEIL_CONFIG_DIR": directory]
        let root = "-----BEGIN CERTIFICATE-----\nroot\n-----END CERTIFICATE-----\n"
        let seen = Self.history(["manifestSet", "secretSet", "packageUpdated"])
        try HistoryMarks.check(seen, root: root, environment: environment)

        let shorter = Array(seen.prefix(2))
        let rolledBack = try #require(throws: CoordinatorAttestationError.self) { try HistoryMarks.check(shorter, root: root, environment: environment) }
        #expect("\(rolledBack)".contains("rolled back") && "\(rolledBack)".contains("3 entries before and now 2"), "\(rolledBack)")

        // Same length, another last entry: a different state under the same root.
        let forked = Self.history(["manifestSet", "secretSet", "manifestUpdated"])
        let error = try #require(throws: CoordinatorAttestationError.self) { try HistoryMarks.check(forked, root: root, environment: environment) }
        #expect("\(error)".contains("forked") && "\(error)".contains("entry 2"), "\(error)")
        // Longer but forked below the mark: still refused.
        let forkedLonger = Self.history(["manifestSet", "secretSet", "manifestUpdated", "secretSet"])
        #expect(throws: CoordinatorAttestationError.self) { try HistoryMarks.check(forkedLonger, root: root, environment: environment) }

        // The same history extended is accepted and becomes the new mark.
        let extended = Self.history(["manifestSet", "secretSet", "packageUpdated", "secretSet"])
        try HistoryMarks.check(extended, root: root, environment: environment)
        #expect(throws: CoordinatorAttestationError.self) { try HistoryMarks.check(seen, root: root, environment: environment) }
    }
}
