import Foundation
import Synchronization
import Testing
import VeilAttestation

/// The coordinator's collateral cache with the real dcap-qvl vectors, a fetcher double that
/// counts and can fail, and a clock the test moves: it fetches once per platform, serves from
/// memory until the documents' nextUpdate (also when the source is down), then refuses with
/// both reasons; it adds no trust, so a changed document it holds fails verification.
@Suite struct DCAPCollateralCacheTests {
    final class Fetcher: DCAPCollateralFetcher {
        let served: Mutex<DCAPCollateral?>
        let fetches = Mutex(0)
        var origin: String { "https://pcs.test" }

        init(_ collateral: DCAPCollateral?) { served = Mutex(collateral) }

        func collateral(for quote: DCAPQuote) async throws -> DCAPCollateral {
            fetches.withLock { $0 += 1 }
            guard let collateral = served.withLock({ $0 }) else { throw CancellationError() }
            return collateral
        }
    }

    final class Clock: Sendable {
        let now: Mutex<Date>
        init(_ date: Date) { now = Mutex(date) }
        func read() -> Date { now.withLock { $0 } }
        func set(_ date: Date) { now.withLock { $0 = date } }
    }

    @Test func fetchesOncePerPlatformAndServesUntilNextUpdateThenRefuses() async throws {
        let vector = try Vectors.load("sgx_quote")
        let quote = try DCAPQuote(vector.quote)
        let validUntil = try #require(vector.collateral.validUntil)
        let fetcher = Fetcher(vector.collateral)
        let clock = Clock(vector.time)
        let cache = DCAPCollateralCache(fetcher: fetcher, clock: { clock.read() })

        let before = #expect(throws: DCAPError.self) { try cache.collateral(for: quote) }
        #expect("\(before.map { "\($0)" } ?? "")".contains("no collateral for SGX FMSPC"), "nothing held before the first fetch")
        await cache.prefetch(for: quote)
        await cache.prefetch(for: quote)
        #expect(fetcher.fetches.withLock { $0 } == 1, "held and fresh: fetched once")
        let verifier = DCAPEvidenceVerifier(source: cache, clock: { clock.read() })
        #expect(try verifier.verify(vector.quote).verdict.status.rawValue == vector.expected.status)

        // The source goes away; within the refresh window the cache tries again, keeps its copy.
        fetcher.served.withLock { $0 = nil }
        clock.set(validUntil.addingTimeInterval(-60))
        await cache.prefetch(for: quote)
        #expect(fetcher.fetches.withLock { $0 } == 2, "an hour before nextUpdate it fetches again")
        #expect(try cache.collateral(for: quote) == vector.collateral, "and serves what it holds until nextUpdate")

        clock.set(validUntil.addingTimeInterval(1))
        let expired = #expect(throws: DCAPError.self) { try cache.collateral(for: quote) }
        let text = expired.map { "\($0)" } ?? ""
        #expect(text.contains("expired at its nextUpdate") && text.contains("https://pcs.test") && text.contains("failed"), "\(text)")
    }

    /// With a grace period, held collateral past its nextUpdate (the source down) is still
    /// used — verified as of that nextUpdate, reported as stale — and refused after the grace.
    @Test func withinTheGraceStaleCollateralIsUsedAndReported() async throws {
        let vector = try Vectors.load("sgx_quote")
        let quote = try DCAPQuote(vector.quote)
        let validUntil = try #require(vector.collateral.validUntil)
        let fetcher = Fetcher(vector.collateral)
        let clock = Clock(vector.time)
        let stale = Mutex<[Date]>([])
        let cache = DCAPCollateralCache(fetcher: fetcher, grace: .seconds(86_400), clock: { clock.read() }, onStale: { _, until in stale.withLock { $0.append(until) } })
        await cache.prefetch(for: quote)
        fetcher.served.withLock { $0 = nil }
        let verifier = DCAPEvidenceVerifier(source: cache, clock: { clock.read() })

        clock.set(validUntil.addingTimeInterval(3600))
        await cache.prefetch(for: quote)
        #expect(try verifier.verify(vector.quote).verdict.status.rawValue == vector.expected.status, "an hour past nextUpdate, within a day's grace")
        #expect(stale.withLock { $0 } == [validUntil], "reported as stale, with the nextUpdate it was verified at")

        clock.set(validUntil.addingTimeInterval(86_400 + 1))
        let refused = #expect(throws: DCAPError.self) { try verifier.verify(vector.quote) }
        #expect("\(refused.map { "\($0)" } ?? "")".contains("(grace 86400 s)"))
        let strict = DCAPCollateralCache(fetcher: Fetcher(vector.collateral), clock: { validUntil.addingTimeInterval(1) })
        await strict.prefetch(for: quote)
        #expect(throws: DCAPError.self, "no grace by default") { try strict.collateral(for: quote) }
    }

    /// An unreachable source is asked once per `retryAfter`, not on every attestation.
    @Test func aFailedFetchIsNotRetriedWithinTheBackOff() async throws {
        let vector = try Vectors.load("sgx_quote")
        let quote = try DCAPQuote(vector.quote)
        let fetcher = Fetcher(nil)
        let clock = Clock(vector.time)
        let cache = DCAPCollateralCache(fetcher: fetcher, retryAfter: .seconds(30), clock: { clock.read() })
        for _ in 0..<5 { await cache.prefetch(for: quote) }
        #expect(fetcher.fetches.withLock { $0 } == 1)
        clock.set(vector.time.addingTimeInterval(31))
        fetcher.served.withLock { $0 = vector.collateral }
        await cache.prefetch(for: quote)
        #expect(fetcher.fetches.withLock { $0 } == 2 && (try? cache.collateral(for: quote)) == vector.collateral, "tried again after the back-off")
    }

    /// Intel's newer documents for the same platform (FMSPC 00A067110000: TCB evaluation 16 from
    /// dcap-rs, then 17 from dcap-qvl) are a renewal the cache reports; the first fetch and a
    /// fetch of the same documents are not.
    @Test func newerDocumentsForAHeldPlatformAreARenewal() async throws {
        let vector = try Vectors.load("sgx_quote")
        let quote = try DCAPQuote(vector.quote)
        let older = try DCAPCollateral.parseJSON(
            Array(try Data(contentsOf: URL(fileURLWithPath: Vectors.directory + "/../dcap-rs/sgx_v3_00a067110000_collateral.json"))))
        let olderUntil = try #require(older.validUntil)
        let fetcher = Fetcher(older)
        let clock = Clock(olderUntil.addingTimeInterval(-7 * 86_400))
        let cache = DCAPCollateralCache(fetcher: fetcher, clock: { clock.read() })
        #expect(await cache.prefetch(for: quote) == nil, "the first fetch replaces nothing")
        #expect(try DCAPEvidenceVerifier(source: cache, clock: { clock.read() }).verify(vector.quote).verdict.status.rawValue == vector.expected.status)
        clock.set(vector.time)
        fetcher.served.withLock { $0 = vector.collateral }
        let renewal = try #require(await cache.prefetch(for: quote))
        let platform = try DCAPPlatform(of: quote)
        #expect(renewal.previous == older && renewal.current == vector.collateral && renewal.platform == platform)
        clock.set(vector.time.addingTimeInterval(30 * 86_400))
        #expect(await cache.prefetch(for: quote) == nil, "the same documents again are no renewal")
    }

    @Test func aChangedDocumentItHoldsFailsVerification() async throws {
        let vector = try Vectors.load("sgx_quote")
        var changed = vector.collateral
        changed.tcbInfoSignature[0] ^= 1
        let cache = DCAPCollateralCache(fetcher: Fetcher(changed), clock: { vector.time })
        await cache.prefetch(for: try DCAPQuote(vector.quote))
        #expect(throws: DCAPError.tcbInfoSignatureInvalid) {
            try DCAPEvidenceVerifier(source: cache, clock: { vector.time }).verify(vector.quote)
        }
    }

    @Test func thePlatformIsWhatPCSIsAskedFor() throws {
        let sgx = try DCAPPlatform(of: try DCAPQuote(try Vectors.load("sgx_quote").quote))
        #expect(sgx.tee == "sgx" && sgx.fmspc.count == 12 && sgx.fmspc == sgx.fmspc.uppercased() && ["processor", "platform"].contains(sgx.ca))
        let tdx = try DCAPPlatform(of: try DCAPQuote(try Vectors.load("tdx_quote").quote))
        #expect(tdx.tee == "tdx" && tdx != sgx)
        // The documents' own FMSPC is the one the PCK certificate names.
        struct Info: Decodable { var fmspc: String }
        let info = try JSONDecoder().decode(Info.self, from: Data(try Vectors.load("sgx_quote").collateral.tcbInfo))
        #expect(info.fmspc.uppercased() == sgx.fmspc)
    }
}
