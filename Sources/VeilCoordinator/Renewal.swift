import Foundation
import Logging
import VeilManifest
import X509

/// What a running service's agent gets when it renews: a certificate for its new key and the
/// service's files rendered again (with the new certificate and the secrets as they are now).
///
/// Invariant: only ``Coordinator/renew(csrPEM:certificate:now:)`` makes one, for a caller whose
/// current certificate this coordinator issued, while the manifest still lists the service with
/// the package it was activated under.
public struct Renewal: Sendable {
    public let service: String
    /// DER: the new certificate, then the intermediate CA that issued it.
    public let certificateChain: [[UInt8]]
    /// Absolute path → content, as at activation (the service key filled in by the agent).
    public let files: [String: RenderedValue]
    /// The signal the agent sends the app after rewriting files.
    public let reload: ReloadSignal?
}

extension Coordinator {
    /// The lifetime of a service's activation certificate: the manifest's, or a year.
    static func certificateLifetime(of service: Manifest.Service) -> TimeInterval {
        TimeInterval(service.certificateLifetime?.seconds ?? 365 * 86400)
    }

    /// Renews a running service's certificate. The caller proves who it is with its current
    /// certificate (the TLS client certificate) and asks for a new key (`csrPEM`); no evidence
    /// is presented again, so what is checked is what can have changed since the activation:
    /// the manifest must still list the service, give it a `CertificateLifetime`, and give it
    /// the package its certificate names. Removing a service or changing its package therefore
    /// revokes it by expiry, within one lifetime.
    public func renew(csrPEM: [UInt8], certificate: [UInt8]?, now: Date = Date()) throws(CoordinatorError) -> Renewal {
        let caller = try serviceCertificate(certificate, now: now, needing: "a renewal")
        let serviceLabel = manifest?.services[caller.service] != nil ? caller.service : CoordinatorMetrics.unlistedService
        do {
            let renewal = try checkAndRenew(caller.service, presented: caller.certificate, csrPEM: csrPEM, now: now)
            metrics.countRenewal(service: serviceLabel, outcome: "renewed")
            logger.debug("renewed", metadata: ["service": "\(caller.service)"])
            return renewal
        } catch {
            metrics.countRenewal(service: serviceLabel, outcome: error.code)
            logger.warning("renewal refused", metadata: ["service": "\(caller.service)", "reason": "\(error)"])
            throw error
        }
    }

    private func checkAndRenew(_ name: String, presented: Certificate, csrPEM: [UInt8], now: Date) throws(CoordinatorError) -> Renewal {
        let manifest = try requireManifest()
        let service = try stillEntitled(name, presented: presented, in: manifest)
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateAuthority.parseCSR(csrPEM)
        } catch {
            throw .badRequest(error.description)
        }
        guard csr.publicKey != presented.publicKey else { throw .renewalRefused(service: name, reason: "a renewal needs a new key pair, not the current one") }
        let leafDER: [UInt8]
        do {
            leafDER = try authority.issueServiceLeaf(
                publicKey: csr.publicKey, service: name, package: service.package, trustDomain: manifest.config.trustDomain,
                validFor: Self.certificateLifetime(of: service), now: now).derBytes
        } catch {
            throw .storage("issuing certificate: \(error)")
        }
        let files = try renderFiles(name, service, certificate: leafDER, secrets: current.state.secrets)
        return Renewal(service: name, certificateChain: [leafDER, authority.intermediateDER], files: files, reload: service.reload)
    }

    /// The service's files as they render now for the certificate presented, once the state
    /// has moved past `revision` (at once when nil; after `timeout` at the latest): how a
    /// running service's agent learns of a changed secret or manifest within a moment.
    /// The same checks as a renewal: a certificate this coordinator issued, valid now, for a
    /// service the manifest still lists with a `CertificateLifetime` and the same package.
    public func serviceFiles(
        certificate: [UInt8]?, after revision: Int64?, waitingUpTo timeout: Duration = .seconds(25)
    ) async throws(CoordinatorError) -> ServiceFiles {
        _ = try serviceCertificate(certificate, now: Date(), needing: "the service's files")
        if let revision {
            let deadline = ContinuousClock.now + timeout
            while current.revision <= revision && ContinuousClock.now < deadline && !Task.isCancelled {
                try? await Task.sleep(for: Self.watchInterval)
            }
        }
        let caller = try serviceCertificate(certificate, now: Date(), needing: "the service's files")
        let snapshot = current
        guard let manifest = snapshot.manifest else { throw .noManifest }
        let service = try stillEntitled(caller.service, presented: caller.certificate, in: manifest)
        let files = try renderFiles(caller.service, service, certificate: certificate ?? [], secrets: snapshot.state.secrets)
        return ServiceFiles(revision: snapshot.revision, files: files, reload: service.reload)
    }

    /// How often a waiting ``serviceFiles(certificate:after:waitingUpTo:)`` looks at the state.
    static let watchInterval = Duration.milliseconds(200)

    private func requireManifest() throws(CoordinatorError) -> Manifest {
        guard let manifest else { throw .noManifest }
        return manifest
    }

    /// The manifest entry that still entitles the holder of `presented` to renew: listed, with a
    /// `CertificateLifetime`, under the package the certificate names.
    private func stillEntitled(_ name: String, presented: Certificate, in manifest: Manifest) throws(CoordinatorError) -> Manifest.Service {
        guard let service = manifest.services[name] else { throw .renewalRefused(service: name, reason: "the manifest no longer lists it") }
        guard service.certificateLifetime != nil else {
            throw .renewalRefused(service: name, reason: "the manifest gives it no CertificateLifetime (its certificates are not renewed)")
        }
        let activatedUnder = CertificateAuthority.package(of: presented)
        guard activatedUnder == service.package else {
            throw .renewalRefused(
                service: name,
                reason: "it was activated under package '\(activatedUnder ?? "(none named)")' and the manifest now gives it '\(service.package)': activate again")
        }
        return service
    }

    private func renderFiles(
        _ name: String, _ service: Manifest.Service, certificate: [UInt8], secrets: [String: SecretValue]
    ) throws(CoordinatorError) -> [String: RenderedValue] {
        let resolve = referenceResolver(secrets: secrets, serviceCertificate: certificate)
        do {
            return try service.parameters.files.mapValues { try $0.render(resolve) }
        } catch {
            throw .renderFailed(service: name, reason: "\(error)")
        }
    }
}

/// A running service's files as they render now, and the state revision they render.
public struct ServiceFiles: Sendable {
    public let revision: Int64
    public let files: [String: RenderedValue]
    public let reload: ReloadSignal?
}
