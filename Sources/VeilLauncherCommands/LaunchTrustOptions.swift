import ArgumentParser

/// The command-line declaration of `LaunchTrust` (`veil launch`, `veil mesh`).
public struct LaunchTrustOptions: ParsableArguments {
    public init() {}

    @OptionGroup public var connection: CoordinatorConnectionOptions

    @Option(help: ArgumentHelp("Manifest service to activate as (env VEIL_SERVICE).", valueName: "name"))
    var service: String?

    @Option(help: ArgumentHelp(
        "TEE providing evidence (env VEIL_TEE): auto (default: configfs-tsm or Gramine, never simulation), snp, tdx, sgx-gramine, coco (a Confidential Containers pod: evidence from its guest API, env VEIL_GUEST_API, default http://127.0.0.1:8006), or simulated (development only, no confidentiality).",
        valueName: "tee"))
    var tee: String?


    @Option(help: ArgumentHelp(
        "Expected coordinator identity when attesting it (as veil attest --expect takes it, repeatable); required when the coordinator's evidence is hardware evidence.",
        valueName: "identity"))
    var coordinatorMeasurement: [String] = []

    @Option(help: ArgumentHelp("Coordinator policy JSON when attesting it (see veil attest --policy).", valueName: "file"))
    var coordinatorPolicy: String?

    @Flag(help: "DANGEROUS: when attesting the coordinator, trust hardware evidence of any measurement.")
    var insecureAnyCoordinator = false

    @Option(help: ArgumentHelp("Intel DCAP collateral (JSON file or directory) to verify an SGX/TDX coordinator's quote when attesting it.", valueName: "file|dir"))
    var coordinatorCollateral: String?

    @Flag(help: "DANGEROUS: when attesting the coordinator, accept one in a debug TEE (development only).")
    var allowDebugCoordinator = false

    @Flag(name: .customLong("allow-coordinator-mrtd-only"), help: "DANGEROUS: when attesting the coordinator, accept a TD pinned by MRTD alone.")
    var allowCoordinatorMRTDOnly = false

    /// The parsed options as plain values.
    var values: LaunchTrust {
        LaunchTrust(
            connection: connection.values, service: service, tee: tee,
            coordinatorMeasurement: coordinatorMeasurement, coordinatorPolicy: coordinatorPolicy, insecureAnyCoordinator: insecureAnyCoordinator,
            coordinatorCollateral: coordinatorCollateral, allowDebugCoordinator: allowDebugCoordinator, allowCoordinatorMRTDOnly: allowCoordinatorMRTDOnly)
    }
}
