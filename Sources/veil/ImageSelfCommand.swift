import ArgumentParser
import Foundation
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilHostTools
import VeilImage
import VeilLauncherCommands

/// `veil image self`: Veil's own image, the one `veil kubernetes render --image` runs.
struct ImageSelfCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "self",
        abstract: "Build Veil's own image (veil and veil-launcher with their loader and libraries; no base image).",
        discussion: helpText("""
            The coordinator, the injector and the injector's init container run from this image. The
            same executables always give the same image digest. Prints the image digest, the reference
            to give `veil kubernetes render --image` once the image is pushed (skopeo copy
            oci:DIR:TAG docker://REGISTRY/veil:TAG), and the measurement a simulated coordinator
            started from it reports (for `veil attest --expect` and Config.CoordinatorPackages).
            """))

    @Option(help: ArgumentHelp("Where to write the image: oci:DIR:TAG.", valueName: "image"))
    var to: String

    @Option(help: ArgumentHelp("Also write a docker-archive tar (docker load, podman load, skopeo).", valueName: "file"))
    var dockerArchive: String?

    @Option(help: ArgumentHelp("Repository name recorded in the docker archive and in the printed reference.", valueName: "name"))
    var name = "veil"

    @Option(help: ArgumentHelp("veil executable to pack (default: this one).", valueName: "file"))
    var veil: String?

    @Option(help: ArgumentHelp("veil-launcher executable to pack (default: the one beside this veil).", valueName: "file"))
    var launcher: String?

    @Flag(help: "Keep symbol tables (by default both executables are stripped).")
    var noStrip = false

    @Flag(help: "Print the result as JSON.")
    var json = false

    func run() throws {
        guard case .ociLayout(let directory, let tag) = try ImageReference(parsing: to), to.hasPrefix("oci:") else {
            throw ValidationError("--to takes oci:DIR:TAG (use --docker-archive FILE for a tar as well)")
        }
        let veil = try self.veil ?? FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let image = VeilSelfImage(veil: veil, launcher: try launcher ?? LauncherFiles.besideThisExecutable(), strip: !noStrip)
        let result = try image.build(into: try LayoutWriter(directory: directory), tag: tag ?? "latest")
        if let dockerArchive {
            try DockerArchiveWriter.write(layout: directory, tag: tag ?? "latest", repoTag: "\(name):\(tag ?? "latest")", to: dockerArchive)
        }
        let measurement = "sha256:" + Hex.encode(try CoordinatorServer.measurement(ofExecutableAt: result.packedVeil))
        let digest = result.manifest.digest.description
        if json {
            let object: [String: String] = ["digest": digest, "reference": "\(name)@\(digest)", "coordinatorMeasurement": measurement]
            let data = try JSONSerialization.data(withJSONObject: object, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
            print(String(decoding: data, as: UTF8.self))
        } else {
            print("digest: \(digest)")
            print("reference: \(name)@\(digest)")
            print("coordinator measurement: \(measurement)")
        }
        warn("wrote \(to)" + (dockerArchive.map { " and docker-archive:\($0)" } ?? "")
            + "; push with: skopeo copy \(to) docker://REGISTRY/\(name):\(tag ?? "latest"), then render with --image REGISTRY/\(name)@\(digest)")
    }
}
