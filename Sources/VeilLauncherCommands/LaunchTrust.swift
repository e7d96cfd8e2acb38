import ArgumentParser
import FoundationEssentials
import VeilClient
import VeilAttestation
import VeilCore
import VeilLauncher

/// How a launcher (`veil launch`, `veil mesh`) reaches and trusts its coordinator and which
/// TEE vouches for it: plain values, from `LaunchTrustOptions` or `LaunchArguments`' lean
/// parser. Absent values fall back to their environment variables.
public struct LaunchTrust: Equatable, Sendable {
    var connection = CoordinatorConnection()
    var service: String?
    var tee: String?
    var coordinatorMeasurement: [String] = []
    var coordinatorPolicy: String?
    var insecureAnyCoordinator = false
    var coordinatorCollateral: String?
    var allowDebugCoordinator = false
    var allowCoordinatorMRTDOnly = false

    func address(_ environment: [String: String]) -> String { connection.address(environment) }

    func serviceName(_ environment: [String: String]) -> String? { service ?? environment[VeilEnvironment.service] }

    /// The TEE named by `--tee`/`VEIL_TEE`; simulation only when asked for, with its key.
    func teeChoice(_ environment: [String: String]) throws -> TEEChoice {
        let teeName = tee ?? environment[VeilEnvironment.tee] ?? TEESelection.auto.rawValue
        guard let selection = TEESelection(rawValue: teeName) else {
            throw ValidationError("--tee '\(teeName)' is not one of \(TEESelection.allCases.map(\.rawValue).joined(separator: ", "))")
        }
        guard selection == .simulated else {
            let provider = try selection.hardwareProvider(
                tsmRoot: environment[VeilEnvironment.tsmRoot] ?? ConfigfsTSMProvider.defaultRoot,
                gramineRoot: environment[VeilEnvironment.gramineRoot] ?? GramineProvider.defaultRoot,
                guestAPI: environment[VeilEnvironment.guestAPI] ?? GuestAPIProvider.defaultURL)
            // In `veil run`'s container the report directory was detached at start (TEEAccess).
            if let tsm = provider as? ConfigfsTSMProvider,
                let detached = try TEEAccess.detachedProvider(environment: environment, expectedProvider: tsm.expectedProvider) {
                return .hardware(detached)
            }
            return .hardware(provider)
        }
        guard let keyPath = connection.simulationKeyPath(environment) else {
            throw ValidationError("--tee simulated needs the simulation platform key: --simulation-key FILE or \(SimulationPlatformKey.environmentVariable)")
        }
        return .simulated(try SimulationPlatformKey.load(at: keyPath))
    }

    /// The coordinator's root: the pinned file, or the root of a coordinator attested under
    /// the given policy. A simulated launcher trusts simulated coordinator evidence under its
    /// own platform key and nothing else.
    func rootCertificatePEM(_ environment: [String: String], choice: TEEChoice) async throws -> String {
        if let path = connection.rootCAPath(environment) {
            guard let data = FileManager.default.contents(atPath: path) else { throw CommandError("cannot read root certificate \(path)") }
            return String(decoding: data, as: UTF8.self)
        }
        var policy = try CoordinatorPolicy.build(
            expect: coordinatorMeasurement, policyFile: coordinatorPolicy, allowSimulation: false, simulationKey: nil,
            acceptAnyMeasurement: insecureAnyCoordinator, dcapCollateral: coordinatorCollateral, allowDebug: allowDebugCoordinator,
            allowTDXFirmwareOnly: allowCoordinatorMRTDOnly)
        if allowDebugCoordinator { warn("warning: --allow-debug-coordinator: a coordinator in a debug TEE is accepted; it protects nothing from the host") }
        if case .simulated(let platformKey) = choice {
            policy.verification.allowSimulation = true
            policy.verification.simulationKey = platformKey.publicKey
        }
        let attested = try await CoordinatorAttestation.attest(address: address(environment), policy: policy)
        for warning in attested.warnings { warn("warning: \(warning)") }
        return attested.rootCertificatePEM
    }
}
