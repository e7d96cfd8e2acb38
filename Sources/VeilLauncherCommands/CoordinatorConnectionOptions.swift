import ArgumentParser
import VeilCore

/// Where a launcher's coordinator is and how it is trusted, with their environment variables:
/// one declaration for `veil launch`, `veil mesh` and `veil run`, so the flags mean the same.
public struct CoordinatorConnectionOptions: ParsableArguments {
    public init() {}

    @Option(help: ArgumentHelp("Coordinator mesh API as HOST:PORT, or several replicas HOST:PORT,HOST:PORT (env VEIL_COORDINATOR).", valueName: "host:port"))
    public var coordinator: String?

    @Option(help: ArgumentHelp("Simulation platform key (env \(VeilEnvironment.simulationKey)).", valueName: "file"))
    public var simulationKey: String?

    @Option(help: ArgumentHelp(
        "Coordinator root certificate to pin (env VEIL_ROOT_CA). Without it the launcher attests the coordinator first.",
        valueName: "file"))
    public var rootCA: String?

    /// The parsed options as plain values.
    public var values: CoordinatorConnection { CoordinatorConnection(coordinator: coordinator, simulationKey: simulationKey, rootCA: rootCA) }
}

/// Where a launcher's coordinator is and how it is trusted, as plain values; an absent value
/// falls back to its environment variable.
public struct CoordinatorConnection: Equatable, Sendable {
    public var coordinator: String?
    public var simulationKey: String?
    public var rootCA: String?

    public init(coordinator: String? = nil, simulationKey: String? = nil, rootCA: String? = nil) {
        (self.coordinator, self.simulationKey, self.rootCA) = (coordinator, simulationKey, rootCA)
    }

    /// `--coordinator`, else `VEIL_COORDINATOR`, else the default mesh address.
    public func address(_ environment: [String: String]) -> String {
        coordinator ?? environment[VeilEnvironment.coordinator] ?? VeilDefaults.meshAddress
    }

    public func simulationKeyPath(_ environment: [String: String]) -> String? {
        simulationKey ?? environment[VeilEnvironment.simulationKey]
    }

    public func rootCAPath(_ environment: [String: String]) -> String? {
        rootCA ?? environment[VeilEnvironment.rootCA]
    }
}
