import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import VeilAPI
import VeilCore
import VeilManifest

/// Routes of the coordinator's listeners. Handlers are thin: decode, call the coordinator,
/// encode; every error leaves as `{"error": {…}}` with a 4xx/5xx status.
public enum HTTPAPI {
    /// The client API: users, operators and relying parties. Anonymous clients may read status,
    /// attestation, certificates, the manifest and its history, and set the first manifest;
    /// the `secrets` and `update` groups need a manifest user, authenticated by TLS client
    /// certificate before any body is read.
    /// `/metrics` serves `exposition` (Prometheus text format) when given.
    public static func clientRouter(_ coordinator: Coordinator, metrics exposition: PrometheusExposition? = nil) -> Router<CoordinatorRequestContext> {
        clientRouter(coordinator, metrics: exposition, noting: RouteTable())
    }

    /// The client router, its routes noted in `table` (tests read every route from it).
    static func clientRouter(_ coordinator: Coordinator, metrics exposition: PrometheusExposition?, noting table: RouteTable) -> Router<CoordinatorRequestContext> {
        let router = Router(context: CoordinatorRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(.client))
        let routes = router.notingRoutes(in: table)
        routes.get("/healthz") { _, _ in JSON(["status": "ok"]) }
        addMetricsRoute(routes, exposition)
        let api = routes.group(RouterPath(API.prefix))
        addPublicRoutes(api, coordinator)
        api.get("manifest") { _, _ -> Response in
            guard let manifest = coordinator.manifest else { throw CoordinatorError.noManifest }
            return Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: manifest.raw)))
        }
        api.post("manifest") { request, _ in
            JSON(API.ManifestSetResponse(digest: Hex.encode(try await coordinator.setManifest(try await request.bytes()))))
        }
        api.post("manifest/with-secrets") { request, context in
            let set = try await request.decode(as: API.ManifestSetRequest.self, context: context)
            let digest = try await coordinator.setManifest(set.manifest.bytes, userDefinedSecrets: set.secrets.mapValues(\.bytes))
            return JSON(API.ManifestSetResponse(digest: Hex.encode(digest)))
        }
        api.get("certificate/chain") { _, _ in PEMBody(text: coordinator.chainPEM) }
        api.get("public-keys/:name") { _, context in
            PEMBody(text: PEM.encode(try coordinator.secretPublicKey(try context.parameters.require("name")), label: "PUBLIC KEY"))
        }
        // The manifest's history: digests and names only, readable like the manifest itself.
        api.get("log") { _, _ in JSON(coordinator.log) }
        api.get("update") { _, _ in JSON(API.UpdateStatus(coordinator.updateStatus())) }

        let update = api.group("update").add(middleware: RequireUser(coordinator: coordinator))
        update.post("packages") { request, context in
            JSON(API.ManifestSetResponse(digest: Hex.encode(try await coordinator.updatePackages(try await request.bytes(), by: try context.requireUser()))))
        }
        update.post("manifest") { request, context in
            JSON(API.UpdateStatus(try await coordinator.proposeUpdate(try await request.bytes(), by: try context.requireUser())))
        }
        update.post("acknowledge") { request, context in
            JSON(API.UpdateStatus(try await coordinator.acknowledgeUpdate(try await request.bytes(), by: try context.requireUser())))
        }

        let secrets = api.group("secrets").add(middleware: RequireUser(coordinator: coordinator))
        secrets.put(":name") { request, context -> Response in
            let name = try context.parameters.require("name")
            let set = try await request.decode(as: API.SecretSetRequest.self, context: context)
            try await coordinator.setSecret(name, value: set.value.bytes, by: try context.requireUser())
            return Response(status: .noContent)
        }
        secrets.get { request, context in
            JSON(try coordinator.secrets(request.uri.queryParameters.getAll("name").map { String($0) }, by: try context.requireUser()).mapValues(API.SecretContent.init))
        }
        return router
    }

    /// The mesh API: launchers activating services (and peer replicas asking for the state key).
    public static func meshRouter(_ coordinator: Coordinator, peers: PeerKeyService? = nil) -> Router<CoordinatorRequestContext> {
        meshRouter(coordinator, peers: peers, noting: RouteTable())
    }

    static func meshRouter(_ coordinator: Coordinator, peers: PeerKeyService?, noting table: RouteTable) -> Router<CoordinatorRequestContext> {
        let router = Router(context: CoordinatorRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(.mesh))
        let routes = router.notingRoutes(in: table)
        routes.get("/healthz") { _, _ in JSON(["status": "ok"]) }
        let api = routes.group(RouterPath(API.prefix))
        api.get("certificate/root") { _, _ in PEMBody(text: coordinator.rootCertificatePEM) }
        api.get("attestation") { request, _ in JSON(API.AttestationResponse(try await coordinator.evidenceWithCollateral(nonce: try request.nonceParameter()))) }
        let activation = api.group("activation")
        activation.post("nonce") { request, _ in
            let service = request.uri.queryParameters.get("service")
            return JSON(API.NonceResponse(nonce: Hex.encode(coordinator.issueNonce()), provisioning: service.flatMap(coordinator.provisioning(of:)).map(API.ProvisioningTargets.init)))
        }
        activation.post { request, context in
            let wire = try await request.decode(as: API.ActivationRequest.self, context: context)
            return JSON(API.ActivationResponse(try await coordinator.activate(ActivationAttempt(wire))))
        }
        activation.post("renew") { request, context in
            let wire = try await request.decode(as: API.RenewalRequest.self, context: context)
            return JSON(API.RenewalResponse(try coordinator.renew(csrPEM: Array(wire.csr.utf8), certificate: await context.clientCertificateDER())))
        }
        activation.get("files") { request, context in
            let after = try request.uri.queryParameters.get("after").map { text in
                guard let revision = Int64(text), revision >= 0 else { throw CoordinatorError.badRequest("after must be a revision this API answered") }
                return revision
            }
            return JSON(API.ServiceFilesResponse(try await coordinator.serviceFiles(certificate: await context.clientCertificateDER(), after: after)))
        }
        api.post("svid/jwt") { request, context in
            let wire = try await request.decode(as: API.JWTSVIDRequest.self, context: context)
            let svid = try coordinator.jwtSVID(audience: wire.audience, certificate: await context.clientCertificateDER())
            return JSON(API.JWTSVIDResponse(token: svid.token, spiffeID: svid.spiffeID, expiresAt: svid.expiresAt.formatted(.iso8601)))
        }
        api.get("svid/jwt-bundle") { _, _ in
            Response(status: .ok, headers: [.contentType: "application/json"], body: .init(byteBuffer: ByteBuffer(bytes: try CanonicalJSON.encode(coordinator.jwtBundle))))
        }
        // Trustee's and Vault's APIs, not Veil's: outside the noted routes and docs/openapi.yaml (docs/kbs.md, docs/transit.md).
        KBSRoutes.add(to: router, coordinator)
        TransitRoutes.add(to: router, coordinator)
        if let peers {
            api.post("peer/state-key") { request, context in
                let wire = try await request.decode(as: API.StateKeyRequest.self, context: context)
                return JSON(API.StateKeyResponse(try await peers.answer(publicKey: wire.publicKey.bytes, nonce: wire.nonce.bytes, evidence: wire.evidence)))
            }
        }
        return router
    }

    /// Anonymous like `status`: counts and times per manifest service, nothing secret.
    static func addMetricsRoute(_ router: some RouterMethods<CoordinatorRequestContext>, _ exposition: PrometheusExposition?) {
        guard let exposition else { return }
        router.get("/metrics") { _, _ in
            Response(
                status: .ok, headers: [.contentType: PrometheusExposition.contentType],
                body: .init(byteBuffer: ByteBuffer(bytes: exposition.scrape())))
        }
    }

    static func addPublicRoutes(_ api: RouterGroup<CoordinatorRequestContext>, _ coordinator: Coordinator) {
        api.get("status") { _, _ in JSON(API.StatusResponse(coordinator.status())) }
        api.get("attestation") { request, _ in JSON(API.AttestationResponse(try await coordinator.evidenceWithCollateral(nonce: try request.nonceParameter()))) }
        api.get("certificate/root") { _, _ in PEMBody(text: coordinator.rootCertificatePEM) }
    }

    /// Both listeners while this replica cannot open the state: status, evidence and share
    /// collection (submitters are authorized before their body is read).
    public static func recoveryRouter(
        _ recovery: RecoveryCoordinator, metrics exposition: PrometheusExposition? = nil, onRecovered: @escaping @Sendable () -> Void
    ) -> Router<CoordinatorRequestContext> {
        recoveryRouter(recovery, metrics: exposition, noting: RouteTable(), onRecovered: onRecovered)
    }

    static func recoveryRouter(
        _ recovery: RecoveryCoordinator, metrics exposition: PrometheusExposition?, noting table: RouteTable, onRecovered: @escaping @Sendable () -> Void
    ) -> Router<CoordinatorRequestContext> {
        let router = Router(context: CoordinatorRequestContext.self)
        router.add(middleware: JSONErrorMiddleware(.client))
        // Every other request: the coordinator is not serving yet (a known path with another
        // method still gets 405, from the inner middleware).
        router.add(middleware: RecoveryMode(reason: recovery.reason))
        let routes = router.notingRoutes(in: table)
        routes.get("/healthz") { _, _ in JSON(["status": "recovery"]) }
        addMetricsRoute(routes, exposition)
        let api = routes.group(RouterPath(API.prefix))
        api.get("status") { _, _ in JSON(API.StatusResponse(recovery.status())) }
        api.get("attestation") { request, _ in JSON(API.AttestationResponse(try recovery.evidence(nonce: try request.nonceParameter()))) }
        api.get("certificate/root") { _, _ in PEMBody(text: recovery.rootCertificatePEM) }
        api.get("log") { _, _ in JSON([LogEntry]()) }
        api.get("recovery") { _, _ in JSON(API.RecoveryInfo(try recovery.offer())) }
        api.post("recovery") { request, context in
            let certificate = await context.clientCertificateDER()
            try recovery.authorizeSubmitter(certificate)
            let submission = try await request.decode(as: API.RecoverySubmission.self, context: context)
            let status = try await recovery.submit(name: submission.name, share: submission.share.bytes, by: certificate)
            if status.recovered { onRecovered() }
            return JSON(API.RecoveryStatus(status))
        }
        return router
    }
}

/// While recovering, endpoints other than the recovery ones answer 503 with the reason
/// (clients fail over to another replica), not 404.
struct RecoveryMode: RouterMiddleware {
    let reason: String
    func handle(_ request: Request, context: CoordinatorRequestContext, next: (Request, CoordinatorRequestContext) async throws -> Response) async throws -> Response {
        do {
            return try await next(request, context)
        } catch let error as HTTPError where error.status == .notFound {
            throw CoordinatorError.stateUnavailable("this replica is in recovery (\(reason)); \(request.method) \(request.uri.path) is served once it has the state key")
        }
    }
}
