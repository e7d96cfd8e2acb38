import ArgumentParser
import FoundationEssentials
import Glibc
import VeilAttestation
import VeilCore
import VeilLauncher
import VeilLauncherCommands

/// What converted images carry: only launching (attest, activate, provision, exec) and the
/// mesh proxy the launcher starts. No server, converter or benchmarks, so what every start
/// measures stays small.
@main
struct VeilLauncherTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "veil-launcher",
        abstract: "Veil's launcher: attest, activate as a service, provision, exec (and the service's mesh proxy).",
        version: VeilVersion.current,
        subcommands: [LaunchCommand.self, MeshCommand.self, InstallCommand.self])

    /// In `veil run`'s container the TEE's report interface is detached before anything else,
    /// while this is the only thread (TEEAccess).
    static func main() async {
        do {
            try TEEAccess.detachIfAsked(environment: ProcessInfo.processInfo.environment)
        } catch {
            warn("veil-launcher: \(error)")
            Glibc.exit(1)
        }
        // Every container start runs `launch`: it skips the reflective parser when it can.
        if let launch = LaunchArguments.parse(Array(CommandLine.arguments.dropFirst())) { Glibc.exit(await launch.run()) }
        do {
            var command = try parseAsRoot()
            if var asyncCommand = command as? any AsyncParsableCommand {
                try await asyncCommand.run()
            } else {
                try command.run()
            }
        } catch {
            exit(withError: error)
        }
    }
}
