import Foundation
import Logging
import VeilAttestation
import VeilCore
import VeilManifest
import X509

extension Coordinator {
    /// Verifies an activation and returns what the service gets, as a pipeline: pure checks
    /// (nonce, CSR, evidence, package, TCB, protected-file headers), then one transaction
    /// where the service has a quota or protected files moved forward, then rendering.
    /// Nothing is issued unless every step passed.
    public func activate(_ request: ActivationAttempt, now: Date = Date()) async throws(CoordinatorError) -> Activation {
        let started = ContinuousClock.now
        let snapshot = current
        // Only services the manifest lists become label values: a client cannot add series.
        let serviceLabel = snapshot.manifest?.services[request.service] != nil ? request.service : CoordinatorMetrics.unlistedService
        defer { metrics.activationDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds) }
        do {
            let activation = try await checkAndIssue(request, snapshot: snapshot, now: now)
            metrics.countActivation(service: serviceLabel, outcome: "activated")
            return activation
        } catch {
            metrics.countActivation(service: serviceLabel, outcome: error.code)
            throw error
        }
    }

    /// The sequence around the pure rules (``ActivationPolicy``): nonce, CSR and evidence
    /// (which may fetch a VCEK), the decision, one transaction when state changes, rendering.
    func checkAndIssue(_ request: ActivationAttempt, snapshot: Snapshot, now: Date) async throws(CoordinatorError) -> Activation {
        guard let manifest = snapshot.manifest else { throw .noManifest }
        let nonce = request.nonce
        try nonces.check(nonce, now: now)
        _ = try ActivationPolicy.service(request.service, in: manifest)
        let csr: CertificateSigningRequest
        do {
            csr = try CertificateAuthority.parseCSR(request.csrPEM)
        } catch {
            throw .badRequest(error.description)
        }
        let claims = try await verifyEvidence(request, csr: csr, nonce: nonce, manifest: manifest)
        // Only evidence that verified uses up its nonce: the used set cannot be flooded.
        try nonces.consume(nonce, now: now)
        let decision: ActivationDecision
        do {
            decision = try ActivationPolicy.evaluate(
                service: request.service, claims: claims, protectedFiles: request.protectedFiles, manifest: manifest, secrets: snapshot.state.secrets)
        } catch {
            logger.warning("activation refused", metadata: ["service": "\(request.service)", "reason": "\(error)"])
            throw error
        }
        if verification.collateralCache != nil {
            tcbWatch.remember(service: request.service, package: decision.service.package, evidence: request.evidence)
        }
        if decision.needsTransaction {
            // Group-committed with the activations that arrive meanwhile (ActivationCommits).
            try await commits.commit(decision, checkedAgainst: manifest.digest, in: self)
        } else {
            unlimitedActivations.withLock { $0[request.service, default: 0] += 1 }
        }
        return try render(request.service, service: decision.service, claims: claims, csr: csr, now: now)
    }

    func verifyEvidence(
        _ request: ActivationAttempt, csr: CertificateSigningRequest, nonce: [UInt8], manifest: Manifest
    ) async throws(CoordinatorError) -> Claims {
        let evidence: Evidence
        do {
            evidence = try await SNPEvidence.endorsed(request.evidence, by: verification.snpEndorsements)
        } catch {
            logger.warning("activation refused", metadata: ["service": "\(request.service)", "reason": "\(error)"])
            throw .evidenceRejected(.endorsementUnavailable("\(error)"))
        }
        await refreshCollateral(for: evidence)
        await refreshAMDCRL(for: evidence)
        let verifier = evidenceVerifier(for: manifest)
        let started = ContinuousClock.now
        defer { metrics.verificationDuration.recordNanoseconds((ContinuousClock.now - started).nanoseconds) }
        do {
            return try verifier.verify(evidence, binding: try csr.publicKey.subjectPublicKeyInfoDER, nonce: nonce)
        } catch let error as AttestationError {
            logger.warning("activation refused", metadata: ["service": "\(request.service)", "reason": "\(error)"])
            throw .evidenceRejected(error)
        } catch {
            throw .evidenceRejected(.malformedEvidence("\(error)"))
        }
    }

    /// How templates read the stored secrets and the CA certificates. `.Veil.Service.Cert` is
    /// `serviceCertificate` (an activation's leaf; KBS clients have none); `.Veil.Service.Private`
    /// is never resolved here — the launcher fills it in, and validation keeps it out of KBS
    /// resources.
    func referenceResolver(secrets: [String: SecretValue], serviceCertificate: [UInt8]?) -> (Template.Reference) throws -> ReferenceValue {
        let authority = self.authority
        return { reference in
            switch reference {
            case .secret(let name, let part):
                guard let value = secrets[name] else { throw RenderError.unknownSecret(name) }
                return try value.value(for: part, name: name)
            case .rootCACert: return .der(authority.rootDER, pemLabel: "CERTIFICATE")
            case .intermediateCACert: return .der(authority.intermediateDER, pemLabel: "CERTIFICATE")
            case .serviceCert:
                guard let serviceCertificate else { throw RenderError.unknownSecret(".Veil.Service.Cert") }
                return .der(serviceCertificate, pemLabel: "CERTIFICATE")
            case .servicePrivateKey: throw RenderError.unknownSecret(".Veil.Service.Private")
            }
        }
    }

    /// What this coordinator trusts under `manifest`: simulation only when it allows it, SNP
    /// only when it has an SNP package.
    func evidenceVerifier(for manifest: Manifest) -> VeilAttestation.Verifier {
        VeilAttestation.Verifier(
            policy: VerificationPolicy(
                allowSimulation: manifest.config.allowSimulation, simulationKey: verification.simulationKey, dcap: verification.dcap,
                allowSNP: manifest.packages.values.contains { $0.kind == .snp }, snpCRLs: verification.currentSNPCRLs))
    }

    /// Counts an activation of a limited service and records newer protected-file versions,
    /// refusing a quota overrun or a rollback.
    static func record(_ decision: ActivationDecision, in state: inout CoordinatorState) throws(CoordinatorError) {
        let (service, limit) = (decision.serviceName, decision.service.maxActivations)
        if limit > 0 {
            let count = state.activations[service, default: 0]
            guard count < limit else { throw .activationLimitReached(service: service, limit: limit) }
            state.activations[service] = count + 1
        }
        var recorded = state.protectedFiles ?? [:]
        for file in decision.protectedFiles {
            if let previous = recorded[file.key] {
                if file.record.version < previous.version {
                    throw .protectedFileRollback(path: file.path, recorded: previous.version, presented: file.record.version)
                }
                if file.record.version == previous.version && file.record.root != previous.root {
                    throw .protectedFileForked(path: file.path, version: previous.version)
                }
            }
            recorded[file.key] = file.record
        }
        if !decision.protectedFiles.isEmpty { state.protectedFiles = recorded }
    }

    func render(
        _ name: String, service: Manifest.Service, claims: Claims, csr: CertificateSigningRequest, now: Date
    ) throws(CoordinatorError) -> Activation {
        let leafDER: [UInt8]
        do {
            leafDER = try authority.issueServiceLeaf(
                publicKey: csr.publicKey, service: name, package: service.package, trustDomain: manifest?.config.trustDomain,
                validFor: Self.certificateLifetime(of: service), now: now).derBytes
        } catch {
            throw .storage("issuing certificate: \(error)")
        }
        let secrets = current.state.secrets
        let resolve = referenceResolver(secrets: secrets, serviceCertificate: leafDER)
        let activation: Activation
        do {
            let protectedFilesKey = try service.protectedFilesKey.map { name in
                guard let bytes = secrets[name]?.bytes else { throw RenderError.secretNotSet(name) }
                return bytes
            }
            activation = try Activation(
                name: name, claims: claims, certificateChain: [leafDER, authority.intermediateDER], rootCertificate: authority.rootDER,
                service: service, render: { try $0.render(resolve) }, protectedFilesKey: protectedFilesKey)
        } catch {
            throw .renderFailed(service: name, reason: "\(error)")
        }
        var metadata: Logger.Metadata = ["service": "\(name)", "measurement": "\(Hex.encode(claims.measurement))"]
        if claims.simulated { metadata["warning"] = "\(simulationWarning)" }
        logger.info("activated", metadata: metadata)
        return activation
    }
}
