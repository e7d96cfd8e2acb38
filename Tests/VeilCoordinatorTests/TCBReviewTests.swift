import Crypto
import Foundation
import Logging
import Synchronization
import Testing
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilLauncher
import VeilAPI
import VeilManifest

/// A TCB recovery at Intel: new documents for a platform turn its status from UpToDate to
/// OutOfDate. The coordinator reports the services its packages would now refuse — status,
/// history, then the refusal at the next activation — and keeps serving a package that
/// accepts OutOfDate. Intel's chain is rebuilt with test keys (``TestIntelPKI``): the shared
/// vectors hold no two Intel-signed TCB infos that rate one quote differently.
@Suite struct TCBReviewTests {
    final class Fetcher: DCAPCollateralFetcher {
        let served: Mutex<DCAPCollateral>
        let fetches = Mutex(0)
        var origin: String { "https://pccs.test" }
        init(_ collateral: DCAPCollateral) { served = Mutex(collateral) }
        func collateral(for quote: DCAPQuote) async throws -> DCAPCollateral {
            fetches.withLock { $0 += 1 }
            return served.withLock { $0 }
        }
    }

    final class Clock: Sendable {
        let now: Mutex<Date>
        init(_ date: Date) { now = Mutex(date) }
        func read() -> Date { now.withLock { $0 } }
        func set(_ date: Date) { now.withLock { $0 = date } }
    }

    struct Setup {
        let coordinator: Coordinator
        let pki: TestIntelPKI
        let fetcher: Fetcher
        let clock: Clock
        let start: Date

        func activate(_ service: String) async throws -> API.ActivationResponse {
            let request = try Launcher.activationRequest(
                service: service, nonce: coordinator.issueNonce(), key: P256.Signing.PrivateKey(), provider: TestQuotingEnclave(pki: pki))
            return try await coordinator.activate(request)
        }
    }

    func setUp() async throws -> Setup {
        let start = Date().addingTimeInterval(-86_400)
        let pki = try TestIntelPKI(vectors: HardwarePackageTests.vectors, from: start)
        let fetcher = Fetcher(try pki.collateral(status: "UpToDate", from: start))
        let clock = Clock(start.addingTimeInterval(3600))
        let cache = DCAPCollateralCache(fetcher: fetcher, clock: { clock.read() })
        let dcap = DCAPEvidenceVerifier(verifier: DCAPVerifier(trustedRoot: pki.root), source: cache, clock: { clock.read() })
        let fixture = try Fixture()
        let coordinator = try await Coordinator.open(
            store: FileStateStore(directory: fixture.directory), vault: StateVault(directory: fixture.directory, sealingKey: fixture.sealingKey),
            evidenceProvider: SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement),
            verification: .init(simulationKey: nil, dcap: dcap, collateralCache: cache), logger: Logger(label: "test"))
        let mrenclave = Hex.encode(Array(pki.template[(48 + 64)..<(48 + 96)]))
        try await coordinator.setManifest(Array(#"""
            {"Packages": {"strict": {"Kind": "sgx", "UniqueID": "\#(mrenclave)"},
                          "tolerant": {"Kind": "sgx", "UniqueID": "\#(mrenclave)", "AcceptedTCBStatuses": ["UpToDate", "OutOfDate"]}},
             "Services": {"app": {"Package": "strict"}, "legacy": {"Package": "tolerant"}}}
            """#.utf8))
        return Setup(coordinator: coordinator, pki: pki, fetcher: fetcher, clock: clock, start: start)
    }

    @Test func aLoweredPlatformIsReportedFirstThenRefusedUnlessAccepted() async throws {
        let setup = try await setUp()
        let coordinator = setup.coordinator
        _ = try await setup.activate("app")
        _ = try await setup.activate("legacy")
        #expect(coordinator.status().tcbWarnings == nil)

        // Intel's next documents, fetched ahead of the held ones' nextUpdate, rate the platform OutOfDate.
        setup.fetcher.served.withLock { $0 = try! setup.pki.collateral(status: "OutOfDate", from: setup.start.addingTimeInterval(20 * 86_400)) }
        setup.clock.set(setup.start.addingTimeInterval(30 * 86_400 - 1800))
        let entriesBefore = coordinator.log.count
        await coordinator.refreshHeldCollateral()
        #expect(setup.fetcher.fetches.withLock { $0 } == 2)
        let warnings = try #require(coordinator.status().tcbWarnings)
        #expect(warnings.count == 1 && warnings[0].contains("service 'app' (package 'strict')") && warnings[0].contains("TCB status OutOfDate is not accepted"), "\(warnings)")
        let recorded = coordinator.log.dropFirst(entriesBefore)
        #expect(recorded.map(\.event) == ["tcbLowered"] && recorded.first?.detail["service"] == "app" && recorded.first?.detail["package"] == "strict", "\(recorded)")

        // Reported, then refused at the next activation; the package that accepts OutOfDate still activates.
        await #expect(throws: CoordinatorError.self) { _ = try await setup.activate("app") }
        let legacy = try await setup.activate("legacy")
        #expect(!legacy.certificateChain.isEmpty)

        // The same documents again are no new report.
        setup.clock.set(setup.start.addingTimeInterval(50 * 86_400 - 1800))
        await coordinator.refreshHeldCollateral()
        #expect(coordinator.log.count == entriesBefore + 1)
    }

    /// The refusal is the TCB one, naming the service, the package and the status.
    @Test func theRefusalNamesTheStatus() async throws {
        let setup = try await setUp()
        _ = try await setup.activate("app")
        setup.fetcher.served.withLock { $0 = try! setup.pki.collateral(status: "OutOfDate", from: setup.start.addingTimeInterval(20 * 86_400)) }
        setup.clock.set(setup.start.addingTimeInterval(30 * 86_400 - 1800))
        let refusal = await #expect(throws: CoordinatorError.self) { _ = try await setup.activate("app") }
        guard case .tcbStatusNotAccepted(let service, let package, let reason)? = refusal else {
            Issue.record("not a TCB refusal: \(String(describing: refusal))")
            return
        }
        #expect(service == "app" && package == "strict" && reason == .status(.outOfDate, accepted: [.upToDate]))
        #expect(setup.coordinator.status().tcbWarnings?.first?.contains("service 'app'") == true, "reported by the refresh the activation triggered")
    }
}
