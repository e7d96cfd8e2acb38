import ArgumentParser
import Foundation
import VeilClient
import VeilAttestation
import VeilCollateral
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

    @Option(help: ArgumentHelp(
        "Intel PCS or a PCCS base URL (https://…) to fetch an SGX/TDX coordinator quote's collateral from (default: the documents the coordinator serves beside its quote).",
        valueName: "url"))
    var collateralUrl: String?

    @Option(help: ArgumentHelp("CA certificate (PEM) to trust for the --collateral-url server besides the system's roots (a PCCS with its own CA).", valueName: "file"))
    var collateralCa: String?

    @Flag(help: "DANGEROUS: accept a coordinator in a debug TEE (the host can read its memory; development only).")
    var allowDebug = false

    @Flag(help: "DANGEROUS: accept a TD pinned by MRTD alone (MRTD covers only the TD firmware, not the kernel or the coordinator).")
    var allowMRTDOnly = false

    func build(environment: [String: String]) throws -> CoordinatorPolicy {
        var policy = try CoordinatorPolicy.build(
            expect: expect, policyFile: self.policy, allowSimulation: allowSimulation,
            simulationKey: simulationKey ?? environment[SimulationPlatformKey.environmentVariable], acceptAnyMeasurement: insecureAnyCoordinator,
            dcapCollateral: dcapCollateral, allowDebug: allowDebug, allowTDXFirmwareOnly: allowMRTDOnly)
        policy.collateralFetcher = try collateralFetcher(environment: environment)
        if allowDebug { warn("warning: --allow-debug: a coordinator in a debug TEE is accepted; it protects nothing from the host") }
        if insecureAnyCoordinator { warn("warning: --insecure-any-coordinator: any coordinator code running in a genuine TEE is trusted") }
        return policy
    }

    /// The `--collateral-url` fetcher, caching as `veil verify` does (`~/.cache/veil/pcs`).
    func collateralFetcher(environment: [String: String]) throws -> PCSCollateralFetcher? {
        guard let collateralUrl else {
            if collateralCa != nil { throw ValidationError("--collateral-ca applies to the --collateral-url server") }
            return nil
        }
        guard dcapCollateral == nil else { throw ValidationError("--collateral-url and --dcap-collateral: give one source of Intel collateral") }
        guard collateralUrl.hasPrefix("https://") else { throw ValidationError("--collateral-url must be an https:// URL (Intel PCS or a PCCS), not '\(collateralUrl)'") }
        let cache = environment["HOME"].map { "\($0)/.cache/veil/pcs" }
        return PCSCollateralFetcher(client: PCSClient(baseURL: collateralUrl, cacheDirectory: cache), http: try CollateralHTTP.longLived(trusting: collateralCa))
    }
}
