import ArgumentParser
import VeilCore

/// `veil version`: the same as `veil --version`, as a command (scripts, `veil help`).
struct VersionCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "version", abstract: "Print Veil's version (a coordinator's is in `veil status`).")

    func run() {
        print(VeilVersion.current)
    }
}
