import ArgumentParser
import VeilLauncherCommands

/// What converted images carry: only launching (attest, activate, provision, exec) and the
/// mesh proxy the launcher starts. No server, converter or benchmarks, so what every start
/// measures stays small.
@main
struct VeilLauncherTool: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "veil-launcher",
        abstract: "Veil's launcher: attest, activate as a service, provision, exec (and the service's mesh proxy).",
        subcommands: [LaunchCommand.self, MeshCommand.self, InstallCommand.self])
}
