import ArgumentParser
import Foundation
import VeilAPI
import VeilAttestation
import VeilCore
import VeilImage
import VeilLauncherCommands
import VeilRuntime

struct RunCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run",
        abstract: "Run an OCI image with runc on this machine (the embedded single-machine runtime).",
        discussion: helpText("""
            The image is unpacked once into the state directory (verified against its digests) and
            reused read-only by later runs; /run and /tmp are fresh memory filesystems per run. The
            container shares the host's network (loopback included). Its output and exit status are
            passed through, and the container is removed afterwards.

            A Veil image (from `veil image convert`) starts with its launcher, which must reach the
            coordinator's mesh API. In an SEV-SNP or TDX guest (--tee snp|tdx) the container gets
            the guest's configfs-tsm report directory (for the launcher alone: it detaches it before
            the application can reach it), and the launcher binds the image's measurement into the
            VM's evidence (packages pin it with ImageMeasurement). Elsewhere only --tee simulated
            runs: development only, no confidentiality.

            An image whose layers are ocicrypt-encrypted (skopeo copy --encryption-key, veil image
            convert --encrypt-layers-to) runs only as a Veil image: veil run attests as its service
            to the coordinator's key broker, which releases the keys the manifest gives that
            service (--decryption-key names the resource holding the private key; CoCo key
            packets name their own); the layers are decrypted and unpacked into a ramfs for this
            run alone (nothing decrypted is written to disk) and removed afterwards.

            Exit codes: the container's own; 64 usage; 125 Veil could not run it (the image, runc,
            or the launcher inside could not launch: activation refused, no evidence, …).
            """))

    @Argument(help: ArgumentHelp("Image: oci:DIR[:TAG].", valueName: "image"))
    var image: String

    @Option(help: ArgumentHelp("TEE for Veil images: snp or tdx (this machine is such a guest), or simulated (development only, no confidentiality). Env VEIL_TEE.", valueName: "tee"))
    var tee: String?

    @OptionGroup var coordinatorOptions: CoordinatorConnectionOptions

    @Option(help: ArgumentHelp("Where unpacked images and run bundles live.", valueName: "dir"))
    var stateDir = RunArguments.defaultStateDirectory

    @Option(name: .customLong("decryption-key"), help: ArgumentHelp(
        "For encrypted layers: the key-broker resource holding the private key (PEM) they are wrapped for, released after attestation. Repeatable.",
        valueName: "kbs:///repository/type/tag"))
    var decryptionKeys: [String] = []

    /// The parsed command as plain values.
    var values: RunArguments {
        RunArguments(image: image, tee: tee, coordinatorConnection: coordinatorOptions.values, stateDir: stateDir, decryptionKeys: decryptionKeys)
    }

    func run() async throws {
        throw ExitCode(try await values.run())
    }
}
