import ArgumentParser
import VeilAttestation
import VeilCore
import VeilLauncherCommands

@main
struct Veil: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "veil",
        abstract: "Run unmodified container applications as attested confidential services.",
        discussion: helpText("""
            A coordinator holds a manifest of which measured software may run and which secrets
            it gets; launchers prove what they run by remote attestation before they receive
            certificates and secrets. The simulated TEE (development only) gives no confidentiality.
            """),
        version: VeilVersion.current,
        subcommands: [
            CoordinatorCommand.self, ManifestCommand.self, StatusCommand.self, CertificateCommand.self,
            AttestCommand.self, VersionCommand.self, CompletionCommand.self, LaunchCommand.self, MeshCommand.self, MeasureCommand.self, VerifyCommand.self, ImageCommand.self, RunCommand.self,
            ProtectCommand.self, SecretCommand.self, RecoverCommand.self, InjectorCommand.self, KubernetesCommand.self,
        ])
}
