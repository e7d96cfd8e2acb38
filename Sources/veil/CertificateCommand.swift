import ArgumentParser
import VeilManifest

struct CertificateCommand: AsyncParsableCommand {
    enum Which: String, ExpressibleByArgument, CaseIterable { case root, chain }

    static let configuration = CommandConfiguration(
        commandName: "certificate", abstract: "Print the coordinator's root certificate or CA chain (PEM).")
    @OptionGroup var connection: ConnectionOptions
    @Argument(help: "root or chain (intermediate then root).") var which: Which
    @Option(name: .shortAndLong, help: ArgumentHelp("Write to this file instead of stdout.", valueName: "file")) var output: String?

    func run() async throws {
        let bytes = try await connection.withPinnedClient { try await $0.call(.GET, "\(API.prefix)/certificate/\(which.rawValue)") }
        try emit(String(decoding: bytes, as: UTF8.self), to: output)
    }
}
