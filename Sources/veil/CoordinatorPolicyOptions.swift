import ArgumentParser
import Foundation
import VeilClient
import VeilAttestation
import VeilLauncher
import VeilLauncherCommands

/// What a command requires of the coordinator's evidence: the same options and the same
/// builder (``CoordinatorPolicy/build(expect:policyFile:allowSimulation:simulationKey:acceptAnyMeasurement:dcapCollateral:)``)
/// for `attest` and `recover`.
struct CoordinatorPolicyOptions: ParsableArguments {
    @Option(help: ArgumentHelp(
        "Expected coordinator identity (repeatable; required for hardware coordinators): a measurement (hex, or sha256:hex as `veil measure --coordinator` prints it), or measurement=HEX,rtmr0=HEX,…,rtmr3=HEX,mrconfigid=HEX,hostdata=HEX as a hardware replica logs its identity at start. A TD needs its RTMRs or MRCONFIGID pinned.",
        valueName: "identity"))
    var expect: [String] = []

    @Option(help: ArgumentHelp(
        "Policy JSON: {\"Measurements\": [identities as --expect takes them], \"AllowSimulation\": bool, \"SimulationKey\": path, \"AllowDebug\": bool, \"AllowMRTDOnly\": bool}.",
        valueName: "file"))
    var policy: String?

    @Flag(help: "Accept a simulated coordinator (development only: NO confidentiality).")
    var allowSimulation = false

    @Option(help: ArgumentHelp("Trusted simulation platform key (env \(SimulationPlatformKey.environmentVariable)).", valueName: "file"))
    var simulationKey: String?

    @Flag(help: "DANGEROUS: trust a hardware coordinator of any measurement (an attacker's code in a genuine TEE would pass).")
    var insecureAnyCoordinator = false

    @Option(help: ArgumentHelp("Intel DCAP collateral (JSON file or directory) to verify an SGX/TDX coordinator's quote.", valueName: "file|dir"))
    var dcapCollateral: String?

    @Flag(help: "DANGEROUS: accept a coordinator in a debug TEE (the host can read its memory; development only).")
    var allowDebug = false

    @Flag(help: "DANGEROUS: accept a TD pinned by MRTD alone (MRTD covers only the TD firmware, not the kernel or the coordinator).")
    var allowMRTDOnly = false

    func build(environment: [String: String]) throws -> CoordinatorPolicy {
        let policy = try CoordinatorPolicy.build(
            expect: expect, policyFile: self.policy, allowSimulation: allowSimulation,
            simulationKey: simulationKey ?? environment[SimulationPlatformKey.environmentVariable], acceptAnyMeasurement: insecureAnyCoordinator,
            dcapCollateral: dcapCollateral, allowDebug: allowDebug, allowTDXFirmwareOnly: allowMRTDOnly)
        if allowDebug { warn("warning: --allow-debug: a coordinator in a debug TEE is accepted; it protects nothing from the host") }
        if insecureAnyCoordinator { warn("warning: --insecure-any-coordinator: any coordinator code running in a genuine TEE is trusted") }
        return policy
    }
}
