import ArgumentParser
import Foundation
import VeilAttestation
import VeilCore
import VeilLauncherCommands

/// `veil-bench load`: a given number of activations from concurrent clients, failing over
/// between replicas; prints what happened (JSON with --output json).
struct BenchLoadCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "load",
        abstract: "Run activations against coordinator replicas (simulated evidence) and report successes, refusals, failovers, rate.",
        discussion: "Development and testing only: the evidence is simulated (no confidentiality).")

    @Option(help: ArgumentHelp("Coordinator mesh API replicas, HOST:PORT[,HOST:PORT…].", valueName: "addresses")) var coordinator: String
    @Option(help: ArgumentHelp("Root certificate to pin.", valueName: "file")) var rootCA: String
    @Option(help: ArgumentHelp("Simulation platform key signing the evidence.", valueName: "file")) var simulationKey: String
    @Option(help: ArgumentHelp("Service to activate.", valueName: "name")) var service: String
    @Option(help: ArgumentHelp("Simulated measurement the service's package expects (hex).", valueName: "hex")) var measurement: String
    @Option(help: "Activations to run.") var count = 1000
    @Option(help: "Concurrent clients.") var concurrency = 8
    @Option(help: "Seconds an activation keeps failing over before it counts as failed.") var patience = 60.0
    @Option(help: "Output format: text or json.") var output: Format = .text

    enum Format: String, ExpressibleByArgument, CaseIterable {
        case text, json
    }

    func run() async throws {
        guard let measurementBytes = Hex.decode(measurement.hasPrefix("sha256:") ? String(measurement.dropFirst(7)) : measurement) else {
            throw ValidationError("--measurement must be hex")
        }
        guard let root = FileManager.default.contents(atPath: rootCA) else { throw CommandError("cannot read \(rootCA)") }
        let load = ActivationLoad(
            addresses: coordinator.split(separator: ",").map(String.init), rootPEM: String(decoding: root, as: UTF8.self),
            provider: SimulatedEvidenceProvider(key: try SimulationPlatformKey.load(at: simulationKey), measurement: measurementBytes),
            service: service, count: count, concurrency: concurrency, patience: .milliseconds(Int(patience * 1000)))
        let report = await load.run()
        switch output {
        case .json:
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            print(String(decoding: try encoder.encode(report), as: UTF8.self))
        case .text:
            print("\(report.succeeded) activated, \(report.refused.values.reduce(0, +)) refused \(report.refused), \(report.failed) failed, "
                + "\(report.failovers) failovers in \(String(format: "%.1f", report.seconds)) s (\(String(format: "%.0f", report.perSecond))/s); "
                + "longest gap between successes \(String(format: "%.0f", report.longestGapMilliseconds)) ms")
            if let lastError = report.lastError { print("last error: \(lastError)") }
        }
    }
}
