import Crypto
import FoundationEssentials
import Logging
import VeilAttestation
import VeilCore
import VeilJOSE
import VeilManifest

/// The Confidential Containers key-broker protocol (Trustee's RCAR handshake) on the
/// manifest: `auth` opens a session with a challenge, `attest` verifies evidence with Veil's
/// verifiers and selects the one KBS service whose package it matches, `release` hands out a
/// resource the manifest lists for that service — counted like an activation and recorded in
/// the signed history.
extension Coordinator {
    /// The one protocol version guest-components and Trustee speak today.
    public static let kbsProtocolVersion = "0.4.0"

    /// Sets how long KBS sessions and tokens last (five minutes each unless set).
    public func configureKBS(_ settings: KBSSettings) {
        kbs.configure(settings)
    }

    /// `POST /kbs/v0/auth`: a session for `tee`, its challenge nonce and, when the client listed
    /// the hash algorithms it supports, the one chosen for the runtime data.
    public func kbsAuth(_ body: [UInt8], now: Date = Date()) throws(KBSError) -> (sessionID: String, nonce: String, selectedHash: String?) {
        let request = try Self.kbsObject(body, "Request")
        guard let version = request["version"]?.stringValue, let tee = request["tee"]?.stringValue else {
            throw .malformedRequest("a Request has string members version and tee")
        }
        guard version == Self.kbsProtocolVersion else { throw .unsupportedVersion(version) }
        guard TrusteeEvidence.supportedTEEs.contains(tee) else { throw .unsupportedTEE(tee) }
        let negotiated = try RuntimeDataHash.negotiate(request["extra-params"])
        guard current.manifest != nil else { throw .noManifest }
        let session = try kbs.sessions.open(tee: tee, hash: negotiated ?? .sha384, lifetime: kbs.settings.sessionLifetime, now: now)
        return (session.id, session.nonce, negotiated?.rawValue)
    }

    /// `POST /kbs/v0/attest`: verifies the evidence bound to the session's nonce and the
    /// client's key, and returns the grant with its token.
    public func kbsAttest(sessionID: String?, body: [UInt8], now: Date = Date()) async throws(KBSError) -> (grant: KBSGrant, token: String) {
        let session = try kbs.sessions.answer(sessionID, now: now)
        guard let manifest = current.manifest else { throw .noManifest }
        let attestation = try KBSAttestation(try Self.kbsObject(body, "Attestation"), hash: session.hash)
        guard attestation.nonce == session.nonce else { throw .nonceMismatch }
        var claims: Claims
        if session.tee == TrusteeEvidence.azureSNPTEE {
            guard attestation.initData == nil else {
                throw .initDataRejected("az-snp-vtpm binds init-data in vTPM PCR 8, which Veil does not check: none is accepted")
            }
            claims = try await verifyAzureEvidence(attestation.primaryEvidence, binding: attestation.runtimeDataHash, manifest: manifest)
        } else {
            let evidence = try TrusteeEvidence.evidence(tee: session.tee, primary: attestation.primaryEvidence)
            claims = try await verifyKBSEvidence(evidence, reportData: attestation.expectedReportData, manifest: manifest)
        }
        // The report data is the runtime-data hash: an image measurement counts only when the
        // client named it in the runtime data that hash covers.
        claims.imageBinding = .runtimeData(attestation.imageMeasurement)
        let (name, service) = try Self.kbsService(for: claims, in: manifest)
        var initData: InitData?
        if let presented = attestation.initData { initData = try InitData(format: presented.format, body: presented.body) }
        try Self.checkInitData(initData, claims: claims, pinned: service.kbs?.initDataDigest)
        let grant = KBSGrant(
            tee: session.tee, service: name, package: service.package, teeKeyJWK: attestation.teeKeyJWK, teeKey: attestation.teeKey,
            initDataDigest: initData?.digest, simulated: claims.simulated, expires: now + kbs.settings.tokenLifetime)
        kbs.sessions.attach(grant, to: sessionID ?? "")
        let token: String
        do {
            token = try kbs.signer(authority).token(for: grant, issuer: authority.coordinatorID, now: now)
        } catch {
            throw .releaseRefused(.storage("cannot sign the attestation token: \(error)"))
        }
        var metadata: Logger.Metadata = ["service": "\(name)", "tee": "\(session.tee)"]
        if claims.simulated { metadata["warning"] = "\(simulationWarning)" }
        logger.info("KBS client attested", metadata: metadata)
        return (grant, token)
    }

    /// The grant a resource request presents: the bearer token when there is one, else the session.
    public func kbsGrant(sessionID: String?, bearerToken: String?, now: Date = Date()) throws(KBSError) -> KBSGrant {
        if let bearerToken { return try KBSTokenSigner.grant(from: bearerToken, authority: authority, now: now) }
        guard let sessionID else { throw .notAuthenticated }
        return try kbs.sessions.grant(sessionID, now: now)
    }

    /// `GET /kbs/v0/resource/REPO/TYPE/TAG`: the resource's bytes, after the transaction that
    /// counts the release against the service's `MaxActivations` and records it in the history.
    /// The manifest is read again here: a service, package or resource removed since the
    /// attestation releases nothing more.
    public func kbsRelease(_ resource: String, to grant: KBSGrant) async throws(KBSError) -> [UInt8] {
        let snapshot = current
        guard let manifest = snapshot.manifest else { throw .noManifest }
        let template = try Self.kbsResource(resource, for: grant, in: manifest)
        // Group-committed with activations and other releases (ActivationCommits): counted
        // against MaxActivations, and signed into the history only if it commits.
        let event = HistoryEvent("kbsResourceReleased", detail: ["service": grant.service, "resource": resource, "tee": grant.tee])
        let decision = ActivationDecision(serviceName: grant.service, service: manifest.services[grant.service]!, protectedFiles: [], history: [event])
        do throws(CoordinatorError) {
            try await commits.commit(decision, checkedAgainst: manifest.digest, in: self)
        } catch {
            logger.warning("KBS release refused", metadata: ["service": "\(grant.service)", "resource": "\(resource)", "reason": "\(error)"])
            throw .releaseRefused(error)
        }
        do {
            return try template.render(referenceResolver(secrets: current.state.secrets, serviceCertificate: nil)).assemble(servicePrivateKeyDER: [])
        } catch {
            throw .releaseRefused(.renderFailed(service: grant.service, reason: "\(error)"))
        }
    }

    static func kbsResource(_ resource: String, for grant: KBSGrant, in manifest: Manifest) throws(KBSError) -> Template {
        guard let service = manifest.services[grant.service], service.package == grant.package, let access = service.kbs else {
            throw .resourceNotAllowed(service: grant.service, resource: resource)
        }
        if let template = access.resources[resource] { return template }
        if manifest.services.values.contains(where: { $0.kbs?.resources[resource] != nil }) {
            throw .resourceNotAllowed(service: grant.service, resource: resource)
        }
        throw .resourceNotFound(resource)
    }

    func verifyKBSEvidence(_ evidence: Evidence, reportData: [UInt8], manifest: Manifest) async throws(KBSError) -> Claims {
        var endorsed: Evidence
        do {
            endorsed = try await SNPEvidence.endorsed(evidence, by: verification.snpEndorsements)
            // Attesters send the VCEK alone: the product's ASK/ARK come from the same source.
            if let source = verification.snpEndorsements, let report = SNPEvidence.reportNeedingChain(endorsed),
                let vcek = SNPEvidence.endorsementKey(in: endorsed) {
                endorsed = try SNPEvidence.withEndorsement(endorsed, vcek: vcek, chain: try await source.chain(for: report))
            }
        } catch {
            throw .evidenceRejected(.endorsementUnavailable("\(error)"))
        }
        await refreshCollateral(for: endorsed)
        await refreshAMDCRL(for: endorsed)
        do {
            return try evidenceVerifier(for: manifest).verify(endorsed, expectedReportData: reportData)
        } catch let error as AttestationError {
            logger.warning("KBS attestation refused", metadata: ["reason": "\(error)"])
            throw .evidenceRejected(error)
        } catch {
            throw .evidenceRejected(.malformedEvidence("\(error)"))
        }
    }

    /// Azure SNP vTPM evidence: everything verified (``AzureVTPMEvidence``), then the quote's
    /// qualifying data — and from version 2 the HCL's user-data — must be the runtime-data hash.
    func verifyAzureEvidence(_ primary: JSONValue, binding hash: [UInt8], manifest: Manifest) async throws(KBSError) -> Claims {
        guard manifest.packages.values.contains(where: { $0.kind == .snp }) else {
            throw .evidenceRejected(.unsupportedFormat("az-snp-vtpm (the manifest has no SNP package)"))
        }
        let verified: AzureVTPMEvidence.Verified
        do {
            let report = try AzureVTPMEvidence.snpReport(primary)
            // The attester sends the VCEK alone: the product's ASK/ARK come from the KDS source.
            guard let source = verification.snpEndorsements else {
                throw AttestationError.endorsementUnavailable("no KDS source (--kds) for the ASK/ARK chain")
            }
            let chain: String
            do {
                chain = try await source.chain(for: report)
            } catch {
                throw AttestationError.endorsementUnavailable("\(error)")
            }
            verified = try AzureVTPMEvidence.verify(primary, chain: chain, crls: verification.currentSNPCRLs)
        } catch let error as AttestationError {
            logger.warning("KBS attestation refused", metadata: ["reason": "\(error)"])
            throw .evidenceRejected(error)
        } catch {
            throw .evidenceRejected(.malformedEvidence("\(error)"))
        }
        guard verified.nonce == hash, verified.userData.map({ $0.starts(with: hash) }) ?? true else {
            throw .evidenceRejected(.reportDataMismatch)
        }
        return verified.claims
    }

    /// The one KBS service whose package the claims match (validation gives each package at
    /// most one; two packages matching the same evidence are refused as ambiguous).
    static func kbsService(for claims: Claims, in manifest: Manifest) throws(KBSError) -> (String, Manifest.Service) {
        var matches: [(String, Manifest.Service)] = []
        var reasons: [String] = []
        for name in manifest.services.keys.sorted() {
            guard let service = manifest.services[name], service.kbs != nil, let package = manifest.packages[service.package] else { continue }
            if let mismatch = package.mismatch(claims) {
                reasons.append("\(name): \(mismatch)")
            } else if let refusal = manifest.tcbRefusal(of: claims, package: service.package) {
                reasons.append("\(name): \(refusal)")
            } else {
                matches.append((name, service))
            }
        }
        guard let match = matches.first else {
            throw .noMatchingService("no KBS service's package matches this evidence" + (reasons.isEmpty ? " (the manifest has no service with KBS access)" : ": " + reasons.joined(separator: "; ")))
        }
        guard matches.count == 1 else {
            throw .noMatchingService("the evidence matches the packages of several KBS services (\(matches.map(\.0).joined(separator: ", "))): make their packages distinct")
        }
        return match
    }

    /// Init-data counts only when the TEE bound its digest (SNP HOST_DATA, TDX MRCONFIGID);
    /// a pinned digest must be presented.
    static func checkInitData(_ initData: InitData?, claims: Claims, pinned: [UInt8]?) throws(KBSError) {
        guard let initData else {
            if pinned != nil { throw .initDataRejected("the manifest pins init-data for this service and none was presented") }
            return
        }
        let bound: [UInt8]
        switch claims.tee {
        case .snp: bound = claims.snp?.hostData ?? []
        case .tdx: bound = claims.tdx?.mrConfigID ?? []
        case .sgx, .simulated: throw .initDataRejected("a \(claims.tee.rawValue) TEE has no register that binds init-data")
        }
        guard !bound.isEmpty, initData.fitted(to: bound.count) == bound else {
            throw .initDataRejected("its digest is not the one the evidence binds (\(claims.tee == .snp ? "HOST_DATA" : "MRCONFIGID") \(Hex.encode(bound)))")
        }
        if let pinned, pinned != initData.digest {
            throw .initDataRejected("digest \(Hex.encode(initData.digest)) is not the manifest's \(Hex.encode(pinned))")
        }
    }

    static func kbsObject(_ body: [UInt8], _ name: String) throws(KBSError) -> JSONValue {
        guard let value = try? JSONValue.parse(body), value.objectValue != nil else { throw .malformedRequest("the body is not a JSON \(name) object") }
        return value
    }
}

/// An `Attestation` payload, read generically so the runtime-data hash covers the members
/// exactly as the client sent them.
struct KBSAttestation {
    let nonce: String
    let teeKeyJWK: JSONValue
    let teeKey: JWEPublicKey
    let primaryEvidence: JSONValue
    let initData: (format: String, body: String)?
    /// The container image a Veil client in a confidential VM names in its additional evidence
    /// (`{"veil-image-measurement": HEX}`): bound by the runtime-data hash, so it stands where
    /// a launcher's report data would carry it.
    let imageMeasurement: [UInt8]?
    /// `SHA-384(JCS({"tee-pubkey", "nonce", "additional-evidence"}))`, or the negotiated hash.
    let runtimeDataHash: [UInt8]
    /// ``runtimeDataHash`` zero-padded to 64 bytes: what guest-components' attesters put in the
    /// report data (Azure's vTPM quotes carry the hash itself).
    var expectedReportData: [UInt8] { runtimeDataHash + [UInt8](repeating: 0, count: ReportData.size - runtimeDataHash.count) }

    init(_ payload: JSONValue, hash: RuntimeDataHash = .sha384) throws(KBSError) {
        guard let runtime = payload["runtime-data"], let nonce = runtime["nonce"]?.stringValue, let jwk = runtime["tee-pubkey"] else {
            throw .malformedRequest("runtime-data needs nonce and tee-pubkey")
        }
        guard let evidence = payload["tee-evidence"], let primary = evidence["primary_evidence"] else {
            throw .malformedRequest("tee-evidence needs primary_evidence")
        }
        let additional = evidence["additional_evidence"] ?? .string("")
        guard case .string = additional else { throw .malformedRequest("tee-evidence.additional_evidence must be a JSON string") }
        do {
            teeKey = try JWEPublicKey(jwk: jwk)
        } catch {
            throw .teeKeyRefused(error)
        }
        if let initData = payload["init-data"], initData != .null {
            guard let format = initData["format"]?.stringValue, let body = initData["body"]?.stringValue else {
                throw .malformedRequest("init-data needs format and body strings")
            }
            self.initData = (format, body)
        } else {
            initData = nil
        }
        imageMeasurement = try Self.imageMeasurement(in: additional.stringValue ?? "")
        let bound = JSONValue.object(["tee-pubkey": jwk, "nonce": .string(nonce), "additional-evidence": additional])
        do {
            runtimeDataHash = hash.digest(try JCS.encode(bound))
        } catch {
            throw .malformedRequest("runtime-data: \(error)")
        }
        self.nonce = nonce
        teeKeyJWK = jwk
        primaryEvidence = primary
    }

    /// Veil's member of the additional evidence, when the client sent one: other attesters put
    /// their own JSON (or nothing) there, which is left alone.
    static let imageMeasurementMember = "veil-image-measurement"

    static func imageMeasurement(in additional: String) throws(KBSError) -> [UInt8]? {
        guard additional.contains(imageMeasurementMember), let object = try? JSONValue.parse(Array(additional.utf8)),
            let member = object[imageMeasurementMember]
        else { return nil }
        guard let hex = member.stringValue, let bytes = Hex.decode(hex), bytes.count == 32, bytes.contains(where: { $0 != 0 }) else {
            throw .malformedRequest("additional_evidence: \(imageMeasurementMember) must be 64 hex digits, not all zero")
        }
        return bytes
    }
}
