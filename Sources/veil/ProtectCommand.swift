import ArgumentParser
import Crypto
import Foundation
import VeilCore
import VeilImage
import VeilLauncherCommands
import VeilImageFormat

struct ProtectCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "protect", abstract: "Seal data as protected files and inspect them.",
        subcommands: [Seal.self, Inspect.self])

    struct KeyOptions: ParsableArguments {
        @Option(help: ArgumentHelp("Protected-file key (32 bytes).", valueName: "file")) var key: String
        @Option(help: ArgumentHelp("The file's logical path, as the application opens it.", valueName: "path")) var path: String

        func secret() throws -> SymmetricKey {
            guard let data = FileManager.default.contents(atPath: key) else { throw CommandError("cannot read key \(key)") }
            guard data.count == 32 else { throw CommandError("\(key) holds \(data.count) bytes; a protected-file key is 32 bytes") }
            return SymmetricKey(data: data)
        }
    }

    struct Seal: ParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Encrypt a file as a protected file (seal-back: --previous bumps the version of an existing one).",
            discussion: helpText("""
                The coordinator records the newest version it sees at activation; from then on older
                versions of the file are refused, so write updated data back with --previous.
                """))
        @OptionGroup var keyOptions: KeyOptions
        @Option(help: ArgumentHelp("The current protected file: its version + 1 is written (it must open with the key).", valueName: "file"))
        var previous: String?
        @Option(help: ArgumentHelp("Explicit version (default 1, or previous + 1).", valueName: "n")) var version: UInt64?
        @Argument(help: ArgumentHelp("Plaintext input.", valueName: "input")) var input: String
        @Argument(help: ArgumentHelp("Protected file to write (atomically).", valueName: "output")) var output: String

        func run() throws {
            let secret = try keyOptions.secret()
            var next = version ?? 1
            if let previous {
                let (header, _) = try ProtectedFile.open(fileAt: previous, path: keyOptions.path, secret: secret)
                if let version, version <= header.version {
                    throw ValidationError("--version \(version) is not newer than \(previous)'s version \(header.version)")
                }
                next = version ?? header.version + 1
            }
            guard let plaintext = FileManager.default.contents(atPath: input) else { throw CommandError("cannot read \(input)") }
            let sealed = try ProtectedFile.seal(Array(plaintext), path: keyOptions.path, secret: secret, version: next)
            try AtomicFile.write(sealed, to: output, mode: 0o644)
            print("sealed \(keyOptions.path) version \(next) into \(output)")
        }
    }

    struct Inspect: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Verify a protected file completely and print its header.")
        @OptionGroup var keyOptions: KeyOptions
        @Argument(help: ArgumentHelp("Protected file.", valueName: "file")) var file: String

        func run() throws {
            let (header, _) = try ProtectedFile.open(fileAt: file, path: keyOptions.path, secret: try keyOptions.secret())
            try printJSON([
                "path": keyOptions.path, "version": "\(header.version)", "size": "\(header.plaintextSize)",
                "chunkSize": "\(header.chunkSize)", "root": Hex.encode(header.root),
            ])
        }
    }
}
