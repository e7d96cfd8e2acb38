import ArgumentParser
import Foundation
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilLauncher
import VeilMesh

struct MeasureCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "measure",
        abstract: "Print the simulated TEE's measurement of a launch (for a manifest's Measurement).",
        discussion: "veil measure --service web -- nginx -g 'daemon off;'   or   veil measure --coordinator   or   veil measure --service db-mesh --mesh-sidecar")

    @Option(help: ArgumentHelp("Service the launch activates as.", valueName: "name")) var service: String?
    @Flag(help: "Measure this veil binary as a coordinator (for `veil attest --expect`).") var coordinator = false
    @Flag(help: "Measure this veil binary as the `veil mesh` sidecar of --service.") var meshSidecar = false
    @Option(name: .shortAndLong, help: "Output format: text (the measurement alone) or json.") var output: OutputFormat = .text
    @Argument(parsing: .postTerminator, help: "The program and its arguments, exactly as given to `veil launch`.")
    var command: [String] = []

    /// `{"measurement": "sha256:…", "of": "coordinator" | "service", "service": NAME}` in JSON.
    private func report(_ measurement: [UInt8], service: String?) throws {
        let text = "sha256:" + Hex.encode(measurement)
        switch output {
        case .text: print(text)
        case .json:
            struct Output: Encodable { var measurement: String; var of: String; var service: String? }
            try printJSON(Output(measurement: text, of: service == nil ? "coordinator" : meshSidecar ? "mesh-sidecar" : "service", service: service))
        }
    }

    func run() throws {
        if coordinator {
            try report(try CoordinatorServer.selfMeasurement(), service: nil)
            return
        }
        let command = meshSidecar ? MeshSidecar.command : self.command
        guard let service, let program = meshSidecar ? "/proc/self/exe" : command.first else {
            throw ValidationError("give --service NAME -- PROGRAM [ARGS…], --service NAME --mesh-sidecar, or --coordinator")
        }
        if meshSidecar && !self.command.isEmpty { throw ValidationError("--mesh-sidecar takes no command") }
        let opened = try OpenedProgram.open(program, path: ProcessInfo.processInfo.environment["PATH"])
        let measurement = try LaunchMeasurement.measure(
            programFD: opened.descriptor, config: .init(service: service, arguments: Array(command.dropFirst())))
        try report(measurement, service: service)
    }
}
