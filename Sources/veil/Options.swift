import ArgumentParser
import Foundation
import VeilClient
import VeilCore
import VeilLauncher
import VeilLauncherCommands

/// Where the coordinator is and which root certificate to pin.
struct ConnectionOptions: ParsableArguments {
    @Option(name: .long, help: ArgumentHelp("Coordinator client API as HOST:PORT (env VEIL_COORDINATOR).", valueName: "host:port"))
    var coordinator: String?

    @Option(name: .long, help: ArgumentHelp(
        "Root certificate to pin (env VEIL_ROOT_CA). Default: the root `veil attest` saved for this coordinator.",
        valueName: "file"))
    var rootCA: String?

    @Option(name: .long, help: ArgumentHelp("Your user certificate (PEM) from the manifest's Users (env VEIL_USER_CERT).", valueName: "file"))
    var userCert: String?

    @Option(name: .long, help: ArgumentHelp("The private key of --user-cert (PEM; env VEIL_USER_KEY).", valueName: "file"))
    var userKey: String?

    var environment: [String: String] { ProcessInfo.processInfo.environment }

    /// The user's client credentials, when given.
    func identity() throws -> ClientIdentity? {
        let cert = userCert ?? environment[VeilEnvironment.userCertificate], key = userKey ?? environment[VeilEnvironment.userKey]
        guard let cert else {
            if key != nil { throw ValidationError("--user-key needs --user-cert") }
            return nil
        }
        guard let key else { throw ValidationError("--user-cert needs --user-key") }
        guard let certificate = FileManager.default.contents(atPath: cert) else { throw CommandError("cannot read user certificate \(cert)") }
        guard let privateKey = FileManager.default.contents(atPath: key) else { throw CommandError("cannot read user key \(key)") }
        return ClientIdentity(certificatePEM: String(decoding: certificate, as: UTF8.self), privateKeyPEM: String(decoding: privateKey, as: UTF8.self))
    }

    func address(default fallback: String = VeilDefaults.clientAddress) -> String {
        coordinator ?? environment[VeilEnvironment.coordinator] ?? fallback
    }

    /// Runs `body` with a client that only trusts the pinned root.
    func withPinnedClient<Result>(_ body: (CoordinatorClient) async throws -> Result) async throws -> Result {
        try await CoordinatorClient.with(address: address(), trust: .pinnedRoot(try pinnedRoot()), identity: try identity(), body)
    }

    /// The root certificate (PEM) this connection pins.
    func pinnedRoot() throws -> String {
        let address = address()
        let path = rootCA ?? environment[VeilEnvironment.rootCA]
        let pem: String
        if let path {
            guard let data = FileManager.default.contents(atPath: path), let text = String(data: data, encoding: .utf8) else {
                throw CommandError("cannot read root certificate \(path)")
            }
            pem = text
        } else if let saved = PinnedRoots.load(for: address, environment: environment) {
            pem = saved
        } else {
            throw CommandError(
                "no pinned root certificate for \(address): run `veil attest --coordinator \(address)` first, or pass --root-ca FILE")
        }
        return pem
    }
}

/// `--output` (`-o`) everywhere: a format, never a file.
enum OutputFormat: String, ExpressibleByArgument, CaseIterable {
    case text, json
}

/// Prints `text` with exactly one final newline. One convention for every command: `--output`
/// (`-o`) is a format (text, json); files are written by redirecting standard output.
func emit(_ text: String) {
    print(text, terminator: text.hasSuffix("\n") ? "" : "\n")
}

func printJSON(_ value: some Encodable) throws {
    let encoder = JSONEncoder()
    encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
    print(String(decoding: try encoder.encode(value), as: UTF8.self))
}

