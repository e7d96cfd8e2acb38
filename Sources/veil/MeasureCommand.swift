import ArgumentParser
import Foundation
import VeilAttestation
import VeilCoordinator
import VeilLauncher

struct MeasureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "measure",
        abstract: "Print the simulated TEE's measurement of a launch (for a manifest's Measurement).",
        discussion: "veil measure --service web -- nginx -g 'daemon off;'   or   veil measure --coordinator")

    @Option(help: ArgumentHelp("Service the launch activates as.", valueName: "name")) var service: String?
    @Flag(help: "Measure this veil binary as a coordinator (for `veil attest --expect`).") var coordinator = false
    @Argument(parsing: .postTerminator, help: "The program and its arguments, exactly as given to `veil launch`.")
    var command: [String] = []

    func run() throws {
        if coordinator {
            print("sha256:" + Hex.encode(try CoordinatorServer.selfMeasurement()))
            return
        }
        guard let service, let program = command.first else {
            throw ValidationError("give --service NAME -- PROGRAM [ARGS…], or --coordinator")
        }
        let opened = try OpenedProgram.open(program, path: ProcessInfo.processInfo.environment["PATH"])
        let measurement = try LaunchMeasurement.measure(
            programFD: opened.descriptor, config: .init(service: service, arguments: Array(command.dropFirst())))
        print("sha256:" + Hex.encode(measurement))
    }
}
