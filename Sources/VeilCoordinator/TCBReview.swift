import FoundationEssentials
import Synchronization
import VeilAttestation
import VeilManifest

/// The last DCAP quote each activated service presented, per platform: when Intel's documents
/// for a platform change (a TCB recovery), the coordinator re-evaluates these quotes and says
/// which services its packages would now refuse, before the next activation is refused.
///
/// Bounded by services × platforms: a service activated again on the same platform replaces
/// its entry. Held in memory only — after a restart the first activation per platform fills it.
final class TCBWatch: Sendable {
    struct Subject: Hashable, Sendable {
        var service: String
        var platform: DCAPPlatform
    }

    struct Watched: Sendable {
        var quote: [UInt8]
        var package: String
        /// Why the package refuses the quote under the documents last reviewed (nil: accepted).
        var refusal: String?
    }

    private let watched = Mutex<[Subject: Watched]>([:])

    /// Remembers an accepted activation's quote (evidence of other kinds needs no Intel documents).
    func remember(service: String, package: String, evidence: Evidence) {
        guard evidence.format == DCAPEvidence.format, let quote = try? DCAPQuote(evidence.data), let platform = try? DCAPPlatform(of: quote) else { return }
        watched.withLock { $0[Subject(service: service, platform: platform)] = Watched(quote: evidence.data, package: package) }
    }

    func entries(on platform: DCAPPlatform) -> [(Subject, Watched)] {
        watched.withLock { $0.filter { $0.key.platform == platform }.map { ($0.key, $0.value) } }.sorted { $0.0.service < $1.0.service }
    }

    /// Sets `subject`'s verdict and says whether it changed, so that concurrent reviews of one
    /// renewal report each change once.
    func exchange(_ subject: Subject, refusal: String?) -> Bool {
        watched.withLock { entries in
            guard let held = entries[subject], held.refusal != refusal else { return false }
            entries[subject]?.refusal = refusal
            return true
        }
    }

    /// One quote per platform, to keep each platform's documents fetched ahead of expiry.
    var quotePerPlatform: [[UInt8]] {
        watched.withLock { entries in Dictionary(entries.map { ($0.key.platform, $0.value.quote) }, uniquingKeysWith: { first, _ in first }).map(\.value) }
    }

    /// What the status says: each watched service its package now refuses, and why.
    var warnings: [String] {
        watched.withLock { entries in
            entries.compactMap { subject, watched in
                watched.refusal.map { "service '\(subject.service)' (package '\(watched.package)') on \(subject.platform): \($0)" }
            }.sorted()
        }
    }
}

extension Coordinator {
    /// Re-evaluates the watched quotes on `renewal`'s platform with its new documents: each
    /// service its package would now refuse is logged, counted
    /// (`veil_tcb_refusals_ahead_total`), named in the status and recorded in the history
    /// (`tcbLowered`) — once per change of verdict.
    func review(_ renewal: DCAPCollateralCache.Renewal) async {
        guard let manifest = current.manifest, let dcap = verification.dcap else { return }
        var events: [HistoryEvent] = []
        for (subject, watched) in tcbWatch.entries(on: renewal.platform) {
            let refusal: String?
            do {
                let result = try dcap.verify(watched.quote)
                refusal = manifest.tcbRefusal(of: result.claims, package: watched.package).map(\.description)
            } catch {
                refusal = "\(error)"
            }
            guard tcbWatch.exchange(subject, refusal: refusal), let refusal else { continue }
            logger.warning("new Intel collateral: this service's next activation on this platform will be refused", metadata: [
                "service": "\(subject.service)", "package": "\(watched.package)", "platform": "\(renewal.platform)", "reason": "\(refusal)",
                "tcbEvaluation": "\(Self.evaluationNumber(renewal.previous)) → \(Self.evaluationNumber(renewal.current))",
            ])
            metrics.tcbRefusalAhead(service: subject.service)
            events.append(HistoryEvent("tcbLowered", detail: [
                "service": subject.service, "package": watched.package, "platform": "\(renewal.platform)", "reason": refusal,
                "tcbEvaluationDataNumber": Self.evaluationNumber(renewal.current),
            ]))
        }
        guard !events.isEmpty else { return }
        do {
            try await transact { _, _ in ((), events) }
        } catch {
            logger.error("cannot record the TCB review in the history", metadata: ["reason": "\(error)"])
        }
    }

    static func evaluationNumber(_ collateral: DCAPCollateral) -> String {
        struct Numbered: Decodable { var tcbEvaluationDataNumber: Int? }
        return (try? JSONDecoder().decode(Numbered.self, from: Data(collateral.tcbInfo)).tcbEvaluationDataNumber).flatMap { $0 }.map(String.init) ?? "?"
    }
}
