import ArgumentParser
import Foundation
import VeilClient
import VeilAttestation
import VeilCore
import VeilLauncher
import VeilLauncherCommands

struct AttestCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "attest",
        abstract: "Verify the coordinator's evidence and pin its root certificate.",
        discussion: helpText("""
            Fetches the coordinator's evidence for a fresh random nonce, verifies it, checks that it
            binds the root certificate, the head of the coordinator's history and the nonce, checks
            the measurement against --expect or --policy (required for hardware coordinators),
            verifies the history (hash chain, root-key signatures, the attested head), refuses a
            history shorter than or forked from one seen before for this root (rollback), and saves
            the root so later commands pin it.
            """))

    @Option(help: ArgumentHelp("Coordinator client API as HOST:PORT[,HOST:PORT…] (env VEIL_COORDINATOR).", valueName: "host:port"))
    var coordinator: String?

    @OptionGroup var trust: CoordinatorPolicyOptions

    @Option(help: ArgumentHelp("Also write the verified root certificate (PEM) to this file.", valueName: "file"))
    var rootOutput: String?

    @Option(name: .shortAndLong, help: "Output format: text or json.") var output: OutputFormat = .text

    @Flag(help: "Replace the root pinned for this address when the coordinator presents a different one (after a reset); without it that is refused.")
    var replace = false

    func run() async throws {
        let environment = ProcessInfo.processInfo.environment
        let address = coordinator ?? environment[VeilEnvironment.coordinator] ?? VeilDefaults.clientAddress
        let policy = try trust.build(environment: environment)
        if policy.measurements.isEmpty && policy.verification.allowSimulation {
            warn("warning: no expected measurement given (--expect/--policy): any simulated coordinator signed by the simulation key is accepted")
        }
        let attested = try await CoordinatorAttestation.attest(address: address, policy: policy)
        for warning in attested.warnings { warn("warning: \(warning)") }
        // The history must verify up to the head bound into the evidence before the root is pinned.
        let log = try await attested.verifiedLog(address: address)
        // A shorter history than this client saw before means an old state was put back.
        try PinnedRoots.checkReplacement(attested.rootCertificatePEM, for: address, replace: replace, environment: environment)
        try HistoryMarks.check(log, root: attested.rootCertificatePEM, environment: environment)
        try PinnedRoots.save(attested.rootCertificatePEM, for: address, environment: environment)
        if let rootOutput { try Data(attested.rootCertificatePEM.utf8).write(to: URL(fileURLWithPath: rootOutput), options: .atomic) }
        let savedAt = PinnedRoots.path(for: address, environment: environment)
        switch output {
        case .json:
            struct Result: Encodable {
                var coordinator: String
                var verified: Bool
                var claims: Claims
                var rootCertificate: String
                var pinnedAt: String
                var logEntries: Int
                var logHead: String
                var warning: String?
            }
            try printJSON(Result(
                coordinator: address, verified: true, claims: attested.claims, rootCertificate: attested.rootCertificatePEM,
                pinnedAt: savedAt, logEntries: log.count, logHead: Hex.encode(attested.logHead),
                warning: attested.claims.simulated ? simulationWarning : nil))
        case .text:
            print("coordinator \(address): evidence verified")
            print("tee: \(attested.claims.tee.rawValue)")
            print("measurement: \(Hex.encode(attested.claims.measurement))")
            print("history: \(log.count) entries verified (chain, signatures, head \(Hex.encode(attested.logHead).prefix(16))… bound in the evidence)")
            print("root certificate pinned: \(savedAt)")
            if attested.claims.simulated { print("warning: \(simulationWarning)") }
        }
    }
}
