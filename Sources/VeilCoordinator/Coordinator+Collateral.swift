import FoundationEssentials
import VeilAttestation

/// Where the coordinator gets the vendors' documents it verifies with (docs/collateral.md):
/// Intel collateral for its own quote and for every DCAP quote it verifies, fetched ahead of
/// expiry, and AMD's CRLs.
extension Coordinator {
    /// ``evidence(nonce:)`` with the collateral for it fetched first when none is held (the
    /// first request after start, or after the cached documents ran out).
    public func evidenceWithCollateral(nonce: [UInt8]) async throws(CoordinatorError) -> CoordinatorEvidence {
        let answer = try evidence(nonce: nonce)
        guard answer.collateral == nil, verification.collateralCache != nil, answer.evidence.format == DCAPEvidence.format else { return answer }
        await refreshCollateral(for: answer.evidence)
        return CoordinatorEvidence(
            evidence: answer.evidence, rootCertificate: answer.rootCertificate, logHead: answer.logHead, simulated: answer.simulated,
            collateral: heldCollateral(for: answer.evidence))
    }

    /// The collateral held for the coordinator's own DCAP quote, which clients verify against
    /// Intel's root as from any source.
    func heldCollateral(for evidence: Evidence) -> DCAPCollateral? {
        guard let cache = verification.collateralCache, evidence.format == DCAPEvidence.format, let quote = try? DCAPQuote(evidence.data) else { return nil }
        return cache.held(for: quote)
    }

    /// Keeps the collateral of the coordinator's own quote and of every platform a service was
    /// seen on fetched (``refreshHeldCollateral()`` every 10 minutes), until cancelled.
    public func keepOwnCollateralFresh() async {
        guard verification.collateralCache != nil else { return }
        while !Task.isCancelled {
            await refreshHeldCollateral()
            try? await Task.sleep(for: .seconds(600))
        }
    }

    /// Fetches the documents of the coordinator's own platform and of every platform a service
    /// was seen on that are within the cache's refresh window (a cheap check otherwise), and
    /// reviews the services on a platform whose documents changed (``review(_:)``).
    public func refreshHeldCollateral() async {
        if let evidence = ownEvidence.withLock({ $0 }) ?? (try? evidenceProvider.evidence(reportData: [UInt8](repeating: 0, count: ReportData.size))) {
            ownEvidence.withLock { $0 = evidence }
            await refreshCollateral(for: evidence)
        }
        await refreshWatchedPlatforms()
    }

    /// Fetches the Intel collateral `evidence` needs (when the coordinator fetches collateral)
    /// and, when that replaced different documents for its platform, reviews the services last
    /// seen on it before anything is verified with the new documents.
    func refreshCollateral(for evidence: Evidence) async {
        guard let renewal = await verification.collateralCache?.prefetch(for: evidence) else { return }
        await review(renewal)
    }

    /// Fetches AMD's CRL for the product of SNP `evidence` when the coordinator fetches CRLs
    /// and no file gives it; says so when revocation goes unchecked for want of one.
    func refreshAMDCRL(for evidence: Evidence) async {
        guard let cache = verification.amdCRLCache, evidence.format == SNPEvidence.format,
            let product = (try? SNPEvidence.unverifiedReport(in: evidence))?.product, verification.snpCRLs[product] == nil
        else { return }
        await cache.prefetch(for: product)
        if cache.held[product] == nil, let reason = cache.failure(for: product) {
            logger.warning("no AMD CRL: revocation of this SEV-SNP report's ASK/VCEK is not checked", metadata: [
                "product": "\(product.rawValue)", "source": "\(cache.origin)", "reason": "\(reason)",
            ])
        }
    }

    /// Keeps the documents of every platform a service was seen on fetched ahead of their
    /// `nextUpdate` (the cache fetches only within its refresh window), reviewing each renewal.
    func refreshWatchedPlatforms() async {
        for quote in tcbWatch.quotePerPlatform {
            await refreshCollateral(for: Evidence(format: DCAPEvidence.format, data: quote))
        }
    }
}
