import ArgumentParser
import Foundation
import VeilAPI
import VeilClient
import VeilCore
import VeilLauncherCommands
import VeilManifest

struct SecretCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "secret", abstract: "Set and read secrets as a manifest user (client certificate required).",
        subcommands: [Set.self, Get.self])

    struct Set: AsyncParsableCommand {
        static let configuration = CommandConfiguration(
            abstract: "Set a UserDefined secret (role with WriteSecret on it). Services activated afterwards get the new value.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: ArgumentHelp("Secret name.", valueName: "name")) var name: String
        @Argument(help: ArgumentHelp("File holding the value.", valueName: "file")) var file: String?
        @Option(help: ArgumentHelp("The value itself (visible in the process list: prefer a file).", valueName: "text"))
        var fromLiteral: String?

        func validate() throws {
            if (file == nil) == (fromLiteral == nil) { throw ValidationError("give the value as FILE or --from-literal TEXT (one of them)") }
        }

        func run() async throws {
            let value: Data
            if let file {
                guard let data = FileManager.default.contents(atPath: file) else { throw CommandError("cannot read \(file)") }
                value = data
            } else {
                value = Data(fromLiteral!.utf8)
            }
            let body = Array(try JSONEncoder().encode(API.SecretSetRequest(value: Base64Bytes(value))))
            _ = try await connection.withPinnedClient { try await $0.call(.PUT, "\(API.prefix)/secrets/\(name)", body: body) }
            print("secret \(name) set")
        }
    }

    struct Get: AsyncParsableCommand {
        static let configuration = CommandConfiguration(abstract: "Read secrets (role with ReadSecret on each); prints JSON.")
        @OptionGroup var connection: ConnectionOptions
        @Argument(help: ArgumentHelp("Secret names.", valueName: "name")) var names: [String]

        func run() async throws {
            let query = names.map { "name=\($0.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? $0)" }.joined(separator: "&")
            let values = try await connection.withPinnedClient {
                try await $0.call(.GET, "\(API.prefix)/secrets?\(query)", as: [String: API.SecretContent].self)
            }
            try printJSON(values)
        }
    }
}
