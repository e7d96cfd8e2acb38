import ArgumentParser
import Foundation
import VeilAPI
import VeilClient
import VeilManifest

struct CertificateCommand: AsyncParsableCommand {
    enum Which: String, ExpressibleByArgument, CaseIterable { case root, chain }

    static let configuration = CommandConfiguration(
        commandName: "certificate", abstract: "Print the coordinator's root certificate or CA chain.",
        discussion: "Text output is PEM; to write a file, redirect: veil certificate root > root.pem")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "root or chain (intermediate then root).") var which: Which
    @Option(name: .shortAndLong, help: "Output format: text (PEM) or json ({\"certificates\": [PEM, …]}).") var output: OutputFormat = .text

    func run() async throws {
        let bytes = try await connection.withPinnedClient { try await $0.call(.GET, "\(API.prefix)/certificate/\(which.rawValue)") }
        let pem = String(decoding: bytes, as: UTF8.self)
        switch output {
        case .text: emit(pem)
        case .json:
            let blocks = pem.components(separatedBy: "-----END CERTIFICATE-----").filter { $0.contains("-----BEGIN CERTIFICATE-----") }
            try printJSON(["certificates": blocks.map { $0.trimmingCharacters(in: .whitespacesAndNewlines) + "\n-----END CERTIFICATE-----\n" }])
        }
    }
}
