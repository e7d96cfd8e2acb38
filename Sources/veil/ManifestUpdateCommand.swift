import ArgumentParser
import Foundation
import VeilAPI
import VeilClient
import VeilCore
import VeilLauncherCommands
import VeilManifest

struct ManifestUpdateCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "update", abstract: "Update the manifest as a manifest user (client certificate required).",
        subcommands: [Apply.self, Acknowledge.self, Status.self], defaultSubcommand: Apply.self)

    struct Apply: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            commandName: "apply",
            abstract: "Raise package security versions at once, or propose a whole new manifest.",
            discussion: helpText("""
                A file {"Packages": {NAME: {"SecurityVersion": N}}} raises versions immediately (role with
                UpdatePackage on each package; versions never go down). Any other file is a complete new
                manifest: it is proposed (role with UpdateManifest) and applies only when the number of
                users the current manifest requires acknowledged it (`veil manifest update acknowledge`).
                """))
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: ArgumentHelp("Package update or complete manifest (JSON).", valueName: "file")) var file: String

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw CommandError("cannot read \(file)") }
            if Self.isPackageUpdate(Array(data)) {
                let response = try await connection.withPinnedClient {
                    try await $0.call(.POST, "\(API.prefix)/update/packages", body: Array(data), as: API.ManifestSetResponse.self)
                }
                print("packages updated; manifest is now sha256:\(response.digest)")
            } else {
                let status = try await connection.withPinnedClient {
                    try await $0.call(.POST, "\(API.prefix)/update/manifest", body: Array(data), as: API.UpdateStatus.self)
                }
                report(status)
            }
        }

        static func isPackageUpdate(_ bytes: [UInt8]) -> Bool {
            guard case .object(let root)? = try? JSONValue.parse(bytes), root.count == 1, case .object(let packages)? = root["Packages"] else { return false }
            return packages.values.allSatisfy { if case .object(let fields) = $0 { fields.keys.allSatisfy { $0 == "SecurityVersion" } } else { false } }
        }
    }

    struct Acknowledge: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Acknowledge the pending manifest update (give the same file).")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: ArgumentHelp("The proposed manifest.", valueName: "file")) var file: String

        func run() async throws {
            guard let data = FileManager.default.contents(atPath: file) else { throw CommandError("cannot read \(file)") }
            let status = try await connection.withPinnedClient {
                try await $0.call(.POST, "\(API.prefix)/update/acknowledge", body: Array(data), as: API.UpdateStatus.self)
            }
            report(status)
        }
    }

    struct Status: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Show the pending update and its acknowledgements.")
        @OptionGroup var connection: ConnectionOptions

        func run() async throws {
            report(try await connection.withPinnedClient { try await $0.call(.GET, "\(API.prefix)/update", as: API.UpdateStatus.self) })
        }
    }
}

private func report(_ status: API.UpdateStatus) {
    if status.applied {
        print("manifest updated (acknowledged by \(status.acknowledgedBy.joined(separator: ", ")))")
    } else if let pending = status.pending {
        print("update sha256:\(pending) pending: \(status.acknowledgedBy.count) of \(status.required) acknowledgements (\(status.acknowledgedBy.joined(separator: ", ")))")
    } else {
        print("no update pending")
    }
}
