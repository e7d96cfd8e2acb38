import ArgumentParser
import Foundation
import VeilAPI
import VeilClient
import VeilAttestation
import VeilCore
import VeilLauncher
import VeilLauncherCommands
import VeilManifest

struct ManifestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "manifest", abstract: "Set or read the coordinator's manifest.",
        subcommands: [Set.self, Get.self, Validate.self, ManifestUpdateCommand.self, ManifestLogCommand.self])

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Set the manifest (once; identical bytes again is a no-op).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: ArgumentHelp("Manifest JSON file.", valueName: "file")) var file: String
        @Option(name: .customLong("secret"), help: ArgumentHelp(
            "Initial value of a UserDefined secret, read from a file (repeatable). Values are sent over the attested connection and never printed.",
            valueName: "name=file"))
        var secrets: [String] = []

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw CommandError("cannot read \(file)") }
            var values: [String: Base64Bytes] = [:]
            for assignment in secrets {
                guard let equals = assignment.firstIndex(of: "="), equals != assignment.startIndex else {
                    throw ValidationError("--secret '\(assignment)' is not NAME=FILE")
                }
                let path = String(assignment[assignment.index(after: equals)...])
                guard let value = FileManager.default.contents(atPath: path) else { throw CommandError("cannot read secret file \(path)") }
                values[String(assignment[..<equals])] = Base64Bytes(value)
            }
            let request = API.ManifestSetRequest(manifest: Base64Bytes(data), secrets: values)
            let response = try await connection.withPinnedClient { client in
                values.isEmpty
                    ? try await client.call(.POST, "\(API.prefix)/manifest", body: Array(data), as: API.ManifestSetResponse.self)
                    : try await client.call(.POST, "\(API.prefix)/manifest/with-secrets", json: request, as: API.ManifestSetResponse.self)
            }
            print("manifest set: sha256:\(response.digest)")
            if (try? Manifest.parse(Array(data)))?.config.allowSimulation == true {
                warn("warning: the manifest allows simulated evidence: \(simulationWarning)")
            }
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Print the manifest exactly as it was set.")
        @OptionGroup var connection: ConnectionOptions
        @Option(name: .shortAndLong, help: "Output format: the manifest is JSON either way (text and json are the same); to write a file, redirect.")
        var output: OutputFormat = .text

        func run() async throws {
            let bytes = try await connection.withPinnedClient { try await $0.call(.GET, "\(API.prefix)/manifest") }
            emit(String(decoding: bytes, as: UTF8.self))
        }
    }

    struct Validate: ParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Check a manifest file offline and list every problem.")
        @Argument(help: ArgumentHelp("Manifest JSON file.", valueName: "file")) var file: String
        @Flag(help: "Also check what a process launch on this host would refuse (Files targets on disk filesystems). Under veil run, /run and /tmp are memory filesystems in the container.")
        var launchHost = false

        func run() throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw CommandError("cannot read \(file)") }
            let manifest = try Manifest.parse(Array(data))
            for warning in manifest.coverageWarnings { warn("warning: \(warning)") }
            for line in manifest.tcbExplanations { print("tcb: \(line)") }
            if launchHost {
                let problems = LaunchHostCheck.problems(manifest)
                if !problems.isEmpty {
                    throw CommandError("a launch on this host would fail (\(problems.count) problem\(problems.count == 1 ? "" : "s")):\n  " + problems.joined(separator: "\n  "))
                }
            }
            print("valid: \(manifest.packages.count) packages, \(manifest.services.count) services, \(manifest.secrets.count) secrets; sha256:\(Hex.encode(manifest.digest))")
        }
    }
}
