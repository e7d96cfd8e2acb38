import ArgumentParser
import Foundation
import Logging
import VeilAttestation
import VeilCoordinator

struct CoordinatorCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "coordinator", abstract: "Run the coordinator (client API and mesh API over TLS).")

    @Option(help: ArgumentHelp("Directory for the sealed state and keys.", valueName: "dir"))
    var dataDir: String

    @Option(help: ArgumentHelp("Client API address (users, `veil attest`).", valueName: "host:port"))
    var clientAddr = "127.0.0.1:4433"

    @Option(help: ArgumentHelp("Mesh API address (launchers' activations).", valueName: "host:port"))
    var meshAddr = "127.0.0.1:2001"

    @Option(help: ArgumentHelp("TEE to run in (env VEIL_TEE). Only 'simulated' exists yet; it must be chosen explicitly.", valueName: "tee"))
    var tee: String?

    @Option(help: ArgumentHelp(
        "Simulation platform key file (env \(SimulationPlatformKey.environmentVariable)); created if absent. Default: DIR/\(SimulationPlatformKey.defaultFileName).",
        valueName: "file"))
    var simulationKey: String?

    @Option(name: .customLong("dns-name"), help: "Extra DNS name for the coordinator's TLS certificate (repeatable).")
    var dnsNames: [String] = []

    @Option(help: ArgumentHelp("Intel DCAP collateral (JSON file or directory) for SGX/TDX activations.", valueName: "file|dir"))
    var dcapCollateral: String?

    @Option(name: .customLong("amd-crl"), help: ArgumentHelp("AMD CRL (DER, KDS /vcek/v1/PRODUCT/crl) checked for SEV-SNP activations (repeatable, one per product).", valueName: "file"))
    var amdCRLs: [String] = []

    @Option(help: "Log level (trace, debug, info, notice, warning, error).")
    var logLevel = "info"

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        guard (tee ?? environment["VEIL_TEE"]) == "simulated" else {
            throw ValidationError(
                "no hardware TEE support yet: pass --tee simulated (or VEIL_TEE=simulated) to run the development coordinator, which gives NO confidentiality")
        }
        var logger = Logger(label: "veil.coordinator")
        guard let level = Logger.Level(rawValue: logLevel) else { throw ValidationError("unknown log level '\(logLevel)'") }
        logger.logLevel = level
        var configuration = CoordinatorServer.Configuration(
            dataDirectory: dataDir, clientAddress: try parseAddress(clientAddr), meshAddress: try parseAddress(meshAddr),
            simulationKeyPath: simulationKey ?? environment[SimulationPlatformKey.environmentVariable], dnsNames: dnsNames)
        configuration.dcapCollateralPath = dcapCollateral
        configuration.amdCRLPaths = amdCRLs
        try await CoordinatorServer.run(configuration, logger: logger)
    }
}

func parseAddress(_ text: String) throws -> (host: String, port: Int) {
    guard let colon = text.lastIndex(of: ":"), let port = Int(text[text.index(after: colon)...]), (0...65535).contains(port) else {
        throw ValidationError("address '\(text)' must be HOST:PORT")
    }
    return (String(text[..<colon]), port)
}
