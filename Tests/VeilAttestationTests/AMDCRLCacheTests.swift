import Foundation
import Synchronization
import Testing
@testable import VeilAttestation

/// The coordinator's AMD CRL cache with CRLs of an OpenSSL-made ARK (``VLEKTests/makePKI(report:)``;
/// AMD publishes no CRL sample): fetched once per product and held until its nextUpdate, fetched
/// again ahead of it (a newly revoked ASK is then seen), not retried within the back-off, and
/// bytes that are no CRL of the product's ARK are not held.
@Suite struct AMDCRLCacheTests {
    final class Source: Sendable {
        let served: Mutex<[UInt8]?>
        let fetches = Mutex<[AMDProduct]>([])
        init(_ crl: [UInt8]?) { served = Mutex(crl) }
        func fetch(_ product: AMDProduct) throws -> [UInt8] {
            fetches.withLock { $0.append(product) }
            guard let crl = served.withLock({ $0 }) else { throw CancellationError() }
            return crl
        }
    }

    let original = Array(try! Data(contentsOf: URL(fileURLWithPath: "\(SNPTests.directory)/snp_report_milan.bin")))

    @Test func heldUntilNextUpdateFetchedAgainAheadOfIt() async throws {
        let pki = try VLEKTests.makePKI(report: try SNPReport(original))
        let source = Source(pki.emptyCRL)
        let now = Mutex(Date())
        let cache = AMDCRLCache(origin: "http://kds.test", clock: { now.withLock { $0 } }) { try source.fetch($0) }
        await cache.prefetch(for: .milan)
        await cache.prefetch(for: .milan)
        #expect(source.fetches.withLock { $0 } == [.milan] && cache.held[.milan] == pki.emptyCRL)
        let verifier = SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true), trustedARKPEM: pki.arkPEM)
        #expect(try verifier.verifyChain(vcek: pki.vlekDER, chainPEM: pki.chainPEM, crl: cache.held[.milan], at: now.withLock { $0 }).revocationChecked)

        // Within an hour of its nextUpdate (30 days) the CRL is fetched again: the ASK is now revoked.
        now.withLock { $0 = $0.addingTimeInterval(30 * 86_400 - 1800) }
        source.served.withLock { $0 = pki.revokingCRL }
        await cache.prefetch(for: .milan)
        #expect(cache.held[.milan] == pki.revokingCRL)
        #expect(throws: SNPError.self) { try verifier.verifyChain(vcek: pki.vlekDER, chainPEM: pki.chainPEM, crl: cache.held[.milan], at: now.withLock { $0 }) }
    }

    @Test func aFailedOrWrongFetchHoldsNothingAndBacksOff() async throws {
        let pki = try VLEKTests.makePKI(report: try SNPReport(original))
        let source = Source(nil)
        let now = Mutex(Date())
        let cache = AMDCRLCache(origin: "http://kds.test", retryAfter: .seconds(30), clock: { now.withLock { $0 } }) { try source.fetch($0) }
        for _ in 0..<3 { await cache.prefetch(for: .milan) }
        #expect(source.fetches.withLock { $0.count } == 1 && cache.held.isEmpty && cache.failure(for: .milan) != nil)

        // A Milan ARK's CRL served for Genoa is not Genoa's CRL.
        source.served.withLock { $0 = pki.emptyCRL }
        await cache.prefetch(for: .genoa)
        #expect(cache.held[.genoa] == nil && cache.failure(for: .genoa)?.contains("no CRL of ARK-Genoa") == true, "\(cache.failure(for: .genoa) ?? "")")
        now.withLock { $0 = $0.addingTimeInterval(31) }
        await cache.prefetch(for: .milan)
        #expect(cache.held[.milan] == pki.emptyCRL && cache.failure(for: .milan) == nil, "fetched after the back-off")
    }
}
