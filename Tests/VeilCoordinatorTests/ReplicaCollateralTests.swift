import Foundation
import Synchronization
import Testing
import VeilAttestation
@testable import VeilCoordinator

/// A replica started with `--collateral` checks a peer's SGX/TDX quote with collateral fetched
/// for that quote's platform first: with the real dcap-qvl SGX quote, the refusal moves from "no
/// collateral" to the report-data binding (the recorded quote binds another key and nonce).
@Suite struct ReplicaCollateralTests {
    final class Fetcher: DCAPCollateralFetcher {
        let collateral: DCAPCollateral
        let fetches = Mutex(0)
        var origin: String { "https://pccs.test" }
        init(_ collateral: DCAPCollateral) { self.collateral = collateral }
        func collateral(for quote: DCAPQuote) async throws -> DCAPCollateral {
            fetches.withLock { $0 += 1 }
            return collateral
        }
    }

    @Test func aPeersQuoteIsCheckedWithCollateralFetchedForIt() async throws {
        let directory = HardwarePackageTests.vectors
        let quote = Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/sgx_quote")))
        let collateral = try DCAPCollateral.parseJSON(Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/sgx_quote_collateral.json"))))
        let time = HardwarePackageTests.sgxTime
        let fetcher = Fetcher(collateral)
        let cache = DCAPCollateralCache(fetcher: fetcher, clock: { time })
        let policy = ReplicaPolicy(
            ownIdentity: TEEIdentity(tee: .sgx, measurement: [UInt8](repeating: 1, count: 32)),
            verification: VerificationPolicy(dcap: DCAPEvidenceVerifier(source: cache, clock: { time })), collateralCache: cache)
        let evidence = Evidence(format: DCAPEvidence.format, data: quote)
        let binding = ReplicaPolicy.requestBinding(publicKey: [4] + [UInt8](repeating: 2, count: 64), nonce: [UInt8](repeating: 3, count: 32))

        let unfetched = #expect(throws: CoordinatorError.self) { try policy.check(evidence, binding: binding, manifest: nil) }
        #expect("\(unfetched.map { "\($0)" } ?? "")".contains("no collateral for SGX FMSPC"), "without the prefetch nothing is held")
        await #expect(throws: CoordinatorError.evidenceRejected(.reportDataMismatch)) {
            try await policy.verifiedClaims(evidence, binding: binding, manifest: nil)
        }
        #expect(fetcher.fetches.withLock { $0 } == 1)
    }
}
