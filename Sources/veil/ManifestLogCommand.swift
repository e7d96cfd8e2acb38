import ArgumentParser
import Crypto
import Foundation
import VeilAPI
import VeilClient
import VeilCore
import VeilLauncherCommands
import VeilManifest
import X509

struct ManifestLogCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "log", abstract: "Print the coordinator's signed, hash-chained history after verifying it.",
        discussion: "Verifies the chain and the root-key signature of every entry against the pinned root; `veil attest` also checks the head bound into the evidence.")
    @OptionGroup var connection: ConnectionOptions
    @Option(name: .shortAndLong, help: "Output format: text or json.") var output: OutputFormat = .text

    func run() async throws {
        let rootPEM = try connection.pinnedRoot()
        let log = try await connection.withPinnedClient { try await $0.call(.GET, "\(API.prefix)/log", as: [LogEntry].self) }
        guard let key = P256.Signing.PublicKey(try Certificate(pemEncoded: rootPEM).publicKey) else {
            throw CommandError("the coordinator's root key is not P-256")
        }
        try AuditLog.verify(log, rootKey: key, head: AuditLog.head(log))
        switch output {
        case .json:
            try printJSON(log)
        case .text:
            print("INDEX\tTIME\tEVENT\tUSER\tDETAIL")
            for entry in log {
                let detail = entry.detail.sorted { $0.key < $1.key }.map { "\($0.key)=\($0.value)" }.joined(separator: " ")
                print("\(entry.index)\t\(entry.time)\t\(entry.event)\t\(entry.user ?? "-")\t\(detail)")
            }
            print("\(log.count) entries, chain and signatures verified; head \(Hex.encode(AuditLog.head(log)))")
        }
    }
}
