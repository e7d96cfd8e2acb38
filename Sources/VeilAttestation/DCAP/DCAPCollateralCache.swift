import FoundationEssentials
import Synchronization
import VeilCore
import X509

/// Which collateral a quote needs: its TEE, its platform's FMSPC and the CA that issued its PCK
/// certificate — what a PCS/PCCS is asked for, and what a cache keys on.
public struct DCAPPlatform: Sendable, Hashable, CustomStringConvertible {
    /// `sgx` or `tdx`.
    public let tee: String
    /// Upper-case hex, as PCS URLs spell it.
    public let fmspc: String
    /// `processor` or `platform`.
    public let ca: String

    /// From the quote's PCK certificate (the first of its certification chain).
    public init(of quote: DCAPQuote) throws(DCAPError) {
        guard let leaf = try DCAPVerifier.certificates(quote.pckChainPEM, "PCK").first else {
            throw .malformedCertificate("the quote's certification data has no PCK certificate")
        }
        guard let fmspc = DCAPVerifier.fmspc(of: leaf) else { throw .pckExtensionInvalid("the PCK certificate has no FMSPC") }
        let issuer = "\(leaf.issuer)"
        guard let ca = issuer.contains("Platform CA") ? "platform" : issuer.contains("Processor CA") ? "processor" : nil else {
            throw .malformedCertificate("PCK issuer '\(issuer)' is neither the PCK Processor nor the Platform CA")
        }
        tee = quote.header.tee == .sgx ? "sgx" : "tdx"
        self.fmspc = Hex.encode(fmspc).uppercased()
        self.ca = ca
    }

    public var description: String { "\(tee.uppercased()) FMSPC \(fmspc) (\(ca) CA)" }
}

/// Fetches a quote's collateral from where Intel's documents come from (Intel PCS, a PCCS).
public protocol DCAPCollateralFetcher: Sendable {
    func collateral(for quote: DCAPQuote) async throws -> DCAPCollateral
    /// Where it fetches from, for errors.
    var origin: String { get }
}

/// Collateral fetched per platform and kept until the earliest `nextUpdate` of its documents,
/// fetched again `refreshAhead` before that. It adds availability, never trust: whoever uses
/// it still verifies every document against Intel's root (``DCAPVerifier``), so a cache — or the
/// coordinator serving what it cached — that hands out a changed document is refused like any
/// other source of it.
///
/// ``prefetch(for:)`` is the only network step (async, called before a quote is verified);
/// ``collateral(for:)`` answers from memory, as the synchronous verifier needs. A document
/// past its `nextUpdate` is served only within `grace` (default none), verified as of that
/// `nextUpdate` and reported to `onStale`; past the grace, when fetching it again fails, the
/// quote is refused with both reasons. A failed fetch is not tried again for `retryAfter`, so
/// an unreachable source costs each attestation nothing but a lookup.
public final class DCAPCollateralCache: DCAPCollateralSource {
    struct Entry {
        var collateral: DCAPCollateral
        var validUntil: Date
    }

    struct Failure {
        var reason: String
        var at: Date
    }

    /// Collateral a fetch brought for a platform in place of different documents held before
    /// (a TCB recovery at Intel: new TCB info or QE identity): what whoever verified quotes
    /// with the old documents re-evaluates them with.
    public struct Renewal: Sendable {
        public let platform: DCAPPlatform
        public let previous: DCAPCollateral
        public let current: DCAPCollateral
    }

    public let fetcher: any DCAPCollateralFetcher
    public let refreshAhead: Duration
    /// How long past its `nextUpdate` held collateral is still used (the source unreachable).
    public let grace: Duration
    /// How long a failed fetch is not tried again.
    public let retryAfter: Duration
    let clock: @Sendable () -> Date
    let onStale: @Sendable (DCAPPlatform, Date) -> Void
    private let entries = Mutex<[DCAPPlatform: Entry]>([:])
    private let failures = Mutex<[DCAPPlatform: Failure]>([:])

    public init(
        fetcher: any DCAPCollateralFetcher, refreshAhead: Duration = .seconds(3600), grace: Duration = .zero, retryAfter: Duration = .seconds(30),
        clock: @escaping @Sendable () -> Date = Date.init, onStale: @escaping @Sendable (DCAPPlatform, Date) -> Void = { _, _ in }
    ) {
        self.fetcher = fetcher
        self.refreshAhead = refreshAhead
        self.grace = grace
        self.retryAfter = retryAfter
        self.clock = clock
        self.onStale = onStale
    }

    var graceSeconds: TimeInterval { TimeInterval(grace.components.seconds) }

    /// Fetches the collateral `quote` needs unless a copy is good for longer than `refreshAhead`
    /// or a fetch for its platform failed less than `retryAfter` ago. A failed fetch keeps the
    /// copy held (valid until its own `nextUpdate`) and is remembered for the refusal that
    /// follows once it runs out.
    /// - Returns: the renewal, when the fetch replaced different documents held for the platform.
    @discardableResult
    public func prefetch(for quote: DCAPQuote) async -> Renewal? {
        guard let platform = try? DCAPPlatform(of: quote) else { return nil }
        let now = clock()
        let held = entries.withLock { $0[platform] }
        if let held, held.validUntil.timeIntervalSince(now) > TimeInterval(refreshAhead.components.seconds) { return nil }
        if let failed = failures.withLock({ $0[platform] }), now.timeIntervalSince(failed.at) < TimeInterval(retryAfter.components.seconds) { return nil }
        let fetched: DCAPCollateral
        do {
            fetched = try await fetcher.collateral(for: quote)
        } catch {
            failures.withLock { $0[platform] = Failure(reason: "\(error)", at: now) }
            return nil
        }
        entries.withLock { $0[platform] = Entry(collateral: fetched, validUntil: fetched.validUntil ?? now) }
        failures.withLock { $0[platform] = nil }
        guard let previous = held?.collateral, previous.tcbInfo != fetched.tcbInfo || previous.qeIdentity != fetched.qeIdentity else { return nil }
        return Renewal(platform: platform, previous: previous, current: fetched)
    }

    /// Prefetches for DCAP `evidence`; other evidence needs no Intel collateral.
    @discardableResult
    public func prefetch(for evidence: Evidence) async -> Renewal? {
        guard evidence.format == DCAPEvidence.format, let quote = try? DCAPQuote(evidence.data) else { return nil }
        return await prefetch(for: quote)
    }

    public func collateral(for quote: DCAPQuote) throws -> DCAPCollateral {
        let platform = try DCAPPlatform(of: quote)
        let failure = failures.withLock { $0[platform]?.reason }
        guard let held = entries.withLock({ $0[platform] }) else {
            throw DCAPError.collateralUnavailable("no collateral for \(platform) from \(fetcher.origin)" + (failure.map { ": \($0)" } ?? ""))
        }
        let now = clock()
        guard now <= held.validUntil.addingTimeInterval(graceSeconds) else {
            throw DCAPError.collateralUnavailable(
                "the collateral held for \(platform) expired at its nextUpdate \(held.validUntil)"
                    + (grace == .zero ? "" : " (grace \(Int(graceSeconds)) s)") + " and fetching it again from \(fetcher.origin) "
                    + (failure.map { "failed: \($0)" } ?? "has not succeeded"))
        }
        if now > held.validUntil { onStale(platform, held.validUntil) }
        return held.collateral
    }

    /// Within the grace, held collateral is verified as of its `nextUpdate` (the last moment its
    /// documents vouch for); otherwise at `now`.
    public func verificationTime(for collateral: DCAPCollateral, now: Date) -> Date {
        guard let until = collateral.validUntil, now > until, now <= until.addingTimeInterval(graceSeconds) else { return now }
        return until
    }

    /// The collateral last fetched for `quote`'s platform, even past its `nextUpdate` (for
    /// handing out: whoever verifies with it checks the dates and says which one ran out), or
    /// `nil`.
    public func held(for quote: DCAPQuote) -> DCAPCollateral? {
        guard let platform = try? DCAPPlatform(of: quote) else { return nil }
        return entries.withLock { $0[platform]?.collateral }
    }
}

/// One collateral document set, as a client got it beside a coordinator's evidence.
public struct FixedDCAPCollateralSource: DCAPCollateralSource {
    public let collateral: DCAPCollateral
    public init(_ collateral: DCAPCollateral) { self.collateral = collateral }
    public func collateral(for quote: DCAPQuote) throws -> DCAPCollateral { collateral }
}

extension DCAPCollateral {
    /// The earliest `nextUpdate` of the four documents (TCB info, QE identity, both CRLs), or
    /// `nil` when one of them names none.
    public var validUntil: Date? {
        let dates = [Self.nextUpdate(ofSignedJSON: tcbInfo), Self.nextUpdate(ofSignedJSON: qeIdentity), Self.nextUpdate(ofCRL: pckCRL), Self.nextUpdate(ofCRL: rootCACRL)]
        guard dates.allSatisfy({ $0 != nil }) else { return nil }
        return dates.compactMap { $0 }.min()
    }
}
