import ArgumentParser
import Foundation
import VeilLauncherCommands

extension Veil {
    /// ArgumentParser's `main`, with two differences: an error a subcommand's `run` throws is
    /// reported with *that* subcommand's usage (not the root's), and a program given to `launch`
    /// or `measure` without `--` before it gets a one-line hint instead of "Unexpected argument"
    /// followed by the whole usage.
    static func main() async {
        let arguments = Array(CommandLine.arguments.dropFirst())
        // `launch` and `run` are on every container start's path: they skip the reflective
        // parser when they can (LeanCommandLine).
        if let launch = LaunchArguments.parse(arguments) { Foundation.exit(await launch.run()) }
        if let run = RunArguments.parse(arguments) {
            do {
                Foundation.exit(try await run.run())
            } catch {
                reportUsageError(error, of: RunCommand.self)
            }
        }
        let command: any ParsableCommand
        do {
            command = try parseAsRoot(arguments)
        } catch {
            if let hint = terminatorHint(for: error, arguments: arguments) {
                warn("Error: \(hint)")
                Foundation.exit(ExitCode.validationFailure.rawValue)
            }
            exit(withError: error)
        }
        do {
            var runnable = command
            if var asyncCommand = runnable as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try runnable.run()
            }
        } catch let error as ValidationError {
            reportUsageError(error, of: type(of: command))
        } catch {
            exit(withError: error)
        }
    }

    /// A usage mistake found while running `subcommand`: its usage, and exit 64.
    static func reportUsageError(_ error: ValidationError, of subcommand: any ParsableCommand.Type) -> Never {
        warn("Error: \(error.message)\nUsage: \(usageString(for: subcommand))\n  See '\(helpCommand(for: subcommand))' for more.")
        Foundation.exit(ExitCode.validationFailure.rawValue)
    }

    /// "veil help launch" for LaunchCommand: the command path of `subcommand`.
    static func helpCommand(for subcommand: any ParsableCommand.Type) -> String {
        // The usage starts with the command path: "veil coordinator [<options>] …".
        let path = usageString(for: subcommand).split(separator: " ").prefix { !$0.hasPrefix("<") && !$0.hasPrefix("[") && !$0.hasPrefix("-") }
        return (["veil", "help"] + path.dropFirst().map(String.init)).joined(separator: " ")
    }

    /// The hint for a program passed to `launch`/`measure` without `--`.
    static func terminatorHint(for error: any Error, arguments: [String]) -> String? {
        guard !arguments.contains("--"), let subcommand = arguments.first(where: { ["launch", "measure"].contains($0) }),
            message(for: error).lowercased().contains("unexpected argument")
        else { return nil }
        return "\(message(for: error)): put `--` before the program and its arguments, e.g. "
            + "veil \(subcommand) --service NAME [options] -- PROGRAM [ARGS…]"
    }
}
