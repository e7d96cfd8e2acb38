import FoundationEssentials
import Synchronization

/// AMD's CRL per product (KDS `/vcek/v1/{product}/crl`), fetched the first time a report of the
/// product is verified and kept until its `nextUpdate`, fetched again `refreshAhead` before that.
/// Like Intel's collateral it adds availability, never trust: the verifier checks each CRL's
/// ARK signature and dates (``SNPVerifier/verifyChain(vcek:chainPEM:crl:at:)``), so a held CRL
/// past its `nextUpdate` that could not be fetched again is refused, never used stale.
///
/// A failed fetch is not tried again for `retryAfter`. A CRL given as a file is not fetched.
public final class AMDCRLCache: Sendable {
    public typealias Fetch = @Sendable (AMDProduct) async throws -> [UInt8]

    struct Entry {
        var der: [UInt8]
        var validUntil: Date
    }

    /// Where CRLs come from, for logs.
    public let origin: String
    public let refreshAhead: Duration
    public let retryAfter: Duration
    let fetch: Fetch
    let clock: @Sendable () -> Date
    private let entries = Mutex<[AMDProduct: Entry]>([:])
    private let failures = Mutex<[AMDProduct: (reason: String, at: Date)]>([:])

    public init(
        origin: String, refreshAhead: Duration = .seconds(3600), retryAfter: Duration = .seconds(30), clock: @escaping @Sendable () -> Date = Date.init,
        fetch: @escaping Fetch
    ) {
        self.origin = origin
        self.refreshAhead = refreshAhead
        self.retryAfter = retryAfter
        self.clock = clock
        self.fetch = fetch
    }

    /// Fetches `product`'s CRL unless one is held for longer than `refreshAhead` or a fetch failed
    /// less than `retryAfter` ago. Bytes that are not a CRL of that product's ARK are a failed fetch.
    public func prefetch(for product: AMDProduct) async {
        let now = clock()
        if let held = entries.withLock({ $0[product] }), held.validUntil.timeIntervalSince(now) > TimeInterval(refreshAhead.components.seconds) { return }
        if let failed = failures.withLock({ $0[product] }), now.timeIntervalSince(failed.at) < TimeInterval(retryAfter.components.seconds) { return }
        do {
            let der = try await fetch(product)
            guard SNPEvidence.product(ofCRL: der) == product, let crl = try? RevocationList(derEncoded: der) else {
                throw SNPError.crlInvalid("\(origin) served no CRL of ARK-\(product.rawValue)")
            }
            entries.withLock { $0[product] = Entry(der: der, validUntil: crl.nextUpdate ?? now) }
            failures.withLock { $0[product] = nil }
        } catch {
            failures.withLock { $0[product] = ("\(error)", now) }
        }
    }

    /// The CRLs held, past their `nextUpdate` included (the verifier refuses those, naming the date).
    public var held: [AMDProduct: [UInt8]] { entries.withLock { $0.mapValues(\.der) } }

    /// Why the last fetch of `product`'s CRL failed, if it did.
    public func failure(for product: AMDProduct) -> String? { failures.withLock { $0[product]?.reason } }
}
