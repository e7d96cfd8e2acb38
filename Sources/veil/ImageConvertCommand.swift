import ArgumentParser
import Crypto
import Foundation
import Glibc
import VeilAPI
import VeilAttestation
import VeilCore
import VeilHostTools
import VeilImage
import VeilImageFormat
import VeilJOSE
import VeilLauncherCommands

struct ImageConvertCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "convert",
        abstract: "Add the launcher to an image, wrap its entrypoint, encrypt paths, and print its measurement.",
        discussion: helpText("""
            The result runs unmodified under `veil run` (or any OCI runtime): the launcher measures the
            whole root filesystem, activates with the coordinator, unlocks protected files into /run,
            then executes the original Entrypoint+Cmd. Paths given with --encrypt are removed from the
            image's layers and stored as protected files under /veil/protected; the application sees
            them at their original paths (symlinks into /run/veil/protected).

            The output is deterministic: the same input, options and launcher give the same bytes
            and measurement. A manifest snippet for the image is printed on stdout.
            """))

    @Option(help: ArgumentHelp("Source image: oci:DIR[:TAG], docker-archive:FILE or oci-archive:FILE.", valueName: "image"))
    var from: String

    @Option(help: ArgumentHelp(
        "Destination: oci:DIR[:TAG] (TAG defaults to latest; other images in DIR are kept) or docker-archive:FILE (for docker load).",
        valueName: "image"))
    var to: String

    @Option(help: ArgumentHelp("Manifest service the image runs as.", valueName: "name"))
    var service: String

    @Option(help: ArgumentHelp("Absolute path of a file or directory in the image to encrypt (repeatable).", valueName: "path"))
    var encrypt: [String] = []

    @Option(help: ArgumentHelp(
        "Protected-file key (32 bytes); created with a random key (mode 0600) when missing. Give it to the coordinator with `veil manifest set --secret NAME=FILE`.",
        valueName: "file"))
    var key: String?

    @Option(help: ArgumentHelp("Version written into the protected files.", valueName: "n"))
    var protectedVersion: UInt64 = 1

    @Option(help: ArgumentHelp("Launcher executable to inject (default: veil-launcher beside this veil), with the libraries ldd lists.", valueName: "file"))
    var launcher: String?

    @Flag(help: "Ship the launcher with its symbol tables (by default it is stripped: smaller image, faster start).")
    var noStrip = false

    @Option(help: ArgumentHelp(
        "Encrypt every layer of the output with ocicrypt (skopeo/buildah/CoCo's format) for this recipient (repeatable): a public key in PEM (RSA ≥ 2048 bits: RSA-OAEP-256; P-256: ECDH-ES+A256KW) or a JWK file; coordinator:SECRET, the public key of a certificate secret the coordinator holds (--coordinator, --root-ca); or kbs:///REPOSITORY/TYPE/TAG=FILE, a CoCo key packet under the 32-byte key-encryption key in FILE that a key broker releases as that resource (at most one). The measurement stays that of the plaintext. Only with --to oci:.",
        valueName: "file|coordinator:secret|kbs:///…=file"))
    var encryptLayersTo: [String] = []

    @Flag(help: "Do not print progress on standard error.")
    var quiet = false

    @OptionGroup(title: "Coordinator (for --encrypt-layers-to coordinator:SECRET)") var connection: ConnectionOptions

    func validate() throws {
        if !encrypt.isEmpty && key == nil { throw ValidationError("--encrypt needs --key FILE") }
        if encrypt.isEmpty && key != nil { throw ValidationError("--key is only used with --encrypt") }
    }

    func run() async throws {
        let source = try SourceImage.open(ImageReference(parsing: from))
        // A docker archive is written from a temporary layout once conversion succeeded.
        var archive: String?
        let directory: String, tag: String?
        switch try ImageReference(parsing: to) {
        case .ociLayout(let path, let name):
            (directory, tag) = (path, name)
        case .dockerArchive(let path):
            guard to.hasPrefix("docker-archive:") else { throw ValidationError("--to takes oci:DIR[:TAG] or docker-archive:FILE") }
            archive = path
            directory = FileManager.default.temporaryDirectory.appendingPathComponent("veil-convert-\(UUID().uuidString.prefix(8))").path
            tag = "latest"
        }
        defer { if archive != nil { try? FileManager.default.removeItem(atPath: directory) } }
        if archive != nil && !encryptLayersTo.isEmpty { throw ValidationError("--encrypt-layers-to writes an OCI layout (--to oci:DIR[:TAG]): docker load cannot read encrypted layers") }
        let packets = try encryptLayersTo.filter { $0.hasPrefix("kbs:///") }.map(Self.packetRecipient)
        guard packets.count <= 1 else { throw ValidationError("--encrypt-layers-to kbs:///…: one key packet per layer (ocicrypt has one annotation for it)") }
        var recipients = try encryptLayersTo.filter { !$0.hasPrefix("kbs:///") && !$0.hasPrefix("coordinator:") }.map(Self.recipient)
        for argument in encryptLayersTo where argument.hasPrefix("coordinator:") {
            recipients.append(try await coordinatorRecipient(String(argument.dropFirst("coordinator:".count))))
        }
        var options = ImageConverter.Options(
            service: service, launcher: try LauncherFiles.resolve(executable: launcher ?? LauncherFiles.besideThisExecutable(), strip: !noStrip))
        options.encrypt = encrypt
        options.protectedVersion = protectedVersion
        if let key { options.key = try Self.loadOrCreateKey(key) }
        if !quiet {
            let progress = ProgressLine(label: "converting")
            options.progress = { done, total in progress.update(done, of: total) }
        }
        var result = try ImageConverter(options: options).convert(source, to: try LayoutWriter(directory: directory), tag: tag ?? "latest")
        if !quiet { ProgressLine.finish() }
        if !encryptLayersTo.isEmpty {
            result.manifest = try LayerEncryption.encryptLayers(in: directory, tag: tag ?? "latest", to: recipients, packet: packets.first)
            warn("layers encrypted for \(encryptLayersTo.count) recipient(s) (ocicrypt); the plaintext layers were removed from \(directory)")
        }
        if let archive {
            try DockerArchiveWriter.write(layout: directory, tag: "latest", repoTag: "veil/\(service):latest", to: archive)
        }
        let keyName = "\(service)-protected-files"
        var serviceEntry: [String: Any] = ["Package": service]
        var snippet: [String: Any] = [
            "Packages": [service: ["Kind": "simulated", "Measurement": Hex.encode(result.measurement)]],
        ]
        if !result.protectedFiles.isEmpty {
            serviceEntry["ProtectedFilesKey"] = keyName
            snippet["Secrets"] = [keyName: ["Type": "symmetric-key", "Size": 256, "UserDefined": true]]
        }
        snippet["Services"] = [service: serviceEntry]
        let json = try JSONSerialization.data(withJSONObject: snippet, options: [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes])
        print(String(decoding: json, as: UTF8.self))
        warn("wrote \(to) (manifest \(result.manifest.digest)); measurement \(Hex.encode(result.measurement))")
        if !result.protectedFiles.isEmpty {
            warn("\(result.protectedFiles.count) protected file(s); set the key with: veil manifest set MANIFEST --secret \(keyName)=\(key!)")
        }
        warn("the package above is for the simulated TEE (development only, no confidentiality); in an SEV-SNP or TDX guest use "
            + "{\"Kind\": \"snp\", \"Measurement\": VM, \"MinimumTCB\": {…}, \"ImageMeasurement\": \"\(Hex.encode(result.measurement))\"} "
            + "(TDX: MRTD instead of Measurement and MinimumTCB)")
    }

    /// A layer-encryption recipient: a PEM public key, or a JWK (a file starting with `{`).
    static func recipient(_ path: String) throws -> JWEPublicKey {
        guard let data = FileManager.default.contents(atPath: path) else { throw ValidationError("cannot read --encrypt-layers-to \(path)") }
        do {
            if data.first == UInt8(ascii: "{") { return try JWEPublicKey(jwk: try JSONValue.parse(Array(data))) }
            return try JWEPublicKey(pem: String(decoding: data, as: UTF8.self))
        } catch {
            throw ValidationError("--encrypt-layers-to \(path): \(error)")
        }
    }

    /// The public key of the coordinator's certificate secret `name`: the private key stays
    /// there, released only to attested services the manifest gives it to.
    func coordinatorRecipient(_ name: String) async throws -> JWEPublicKey {
        guard !name.isEmpty, !name.contains("/") else { throw ValidationError("--encrypt-layers-to coordinator:SECRET names a secret of the manifest") }
        let pem = try await connection.withPinnedClient { try await $0.call(.GET, "\(API.prefix)/public-keys/\(name)") }
        do {
            return try JWEPublicKey(pem: String(decoding: pem, as: UTF8.self))
        } catch {
            throw ValidationError("--encrypt-layers-to coordinator:\(name): \(error)")
        }
    }

    /// `kbs:///REPOSITORY/TYPE/TAG=FILE`: a CoCo key packet's key ID and its 32-byte key-encryption key.
    static func packetRecipient(_ argument: String) throws -> (keyID: String, kek: [UInt8]) {
        guard let equals = argument.firstIndex(of: "="), CoCoKeyPacket.resourcePath(of: String(argument[..<equals])) != nil else {
            throw ValidationError("--encrypt-layers-to \(argument): a key packet recipient is kbs:///REPOSITORY/TYPE/TAG=FILE")
        }
        let path = String(argument[argument.index(after: equals)...])
        guard let kek = FileManager.default.contents(atPath: path), kek.count == 32 else {
            throw ValidationError("--encrypt-layers-to \(argument): \(path) must hold the 32-byte key-encryption key")
        }
        return (String(argument[..<equals]), Array(kek))
    }

    static func loadOrCreateKey(_ path: String) throws -> SymmetricKey {
        if let data = FileManager.default.contents(atPath: path) {
            guard data.count == 32 else { throw CommandError("\(path) holds \(data.count) bytes; a protected-file key is 32 bytes") }
            return SymmetricKey(data: data)
        }
        let key = SymmetricKey(size: .bits256)
        try AtomicFile.write(key.withUnsafeBytes { Array($0) }, to: path, mode: 0o600)
        warn("created a new protected-file key in \(path)")
        return key
    }
}
