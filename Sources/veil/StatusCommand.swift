import ArgumentParser
import VeilAPI
import VeilClient
import VeilCore
import VeilManifest

struct StatusCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(commandName: "status", abstract: "Show the coordinator's state.")
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .shortAndLong, help: "Output format: text or json.") var output: OutputFormat = .text

    func run() async throws {
        let status = try await connection.withPinnedClient {
            try await $0.call(.GET, "\(API.prefix)/status", as: API.StatusResponse.self)
        }
        switch output {
        case .json: try printJSON(status)
        case .text:
            print("state: \(status.state)")
            if let version = status.version {
                print("version: \(version)" + (version == VeilVersion.current ? "" : " (this veil is \(VeilVersion.current))"))
            }
            if let identity = status.identity { print("identity: \(identity)") }
            print("manifest: \(status.manifestDigest.map { "sha256:\($0)" } ?? "none")")
            if let generation = status.generation { print("generation: \(generation) (history: \(status.historyLength ?? 0) entries)") }
            if let reason = status.reason { print("reason: \(reason)") }
            for (service, count) in status.activations.sorted(by: { $0.key < $1.key }) { print("activations \(service): \(count)") }
            if let warning = status.warning { print("warning: \(warning)") }
            for warning in status.tcbWarnings ?? [] { print("tcb warning: \(warning)") }
        }
    }
}
