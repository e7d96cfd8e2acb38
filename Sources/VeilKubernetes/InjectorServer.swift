import FoundationEssentials
import HTTPTypes
import Hummingbird
import HummingbirdTLS
import Logging
import VeilConnections
import NIOCore
import NIOSSL

/// `veil injector`: the mutating admission webhook over HTTPS. `POST /mutate` takes an
/// AdmissionReview v1 and answers it; `GET /healthz` is for probes.
public enum InjectorServer {
    /// The API server sends whole pods; Kubernetes caps objects well below this.
    public static let maximumBody = 4 << 20

    public static func router(mutator: PodMutator, logger: Logger) -> Router<BasicRequestContext> {
        let router = Router()
        router.get("/healthz") { _, _ in "ok" }
        router.post("/mutate") { request, context -> Response in
            let body = try await request.body.collect(upTo: maximumBody)
            let review: AdmissionReview.Request
            do {
                review = try AdmissionReview.parse(Array(body.readableBytesView))
            } catch {
                logger.warning("refused a malformed admission review", metadata: ["reason": "\(error)"])
                throw HTTPError(.badRequest, message: "\(error)")
            }
            let decision = AdmissionReview.decide(review, mutator: mutator)
            let pod = review.object["metadata"]?["name"]?.stringValue ?? review.object["metadata"]?["generateName"]?.stringValue ?? "?"
            switch decision {
            case .unchanged: logger.info("admitted unchanged", metadata: ["namespace": "\(review.namespace)", "pod": "\(pod)"])
            case .patch(let operations): logger.info("mutated", metadata: ["namespace": "\(review.namespace)", "pod": "\(pod)", "operations": "\(operations.count)"])
            case .denied(let reason): logger.warning("denied", metadata: ["namespace": "\(review.namespace)", "pod": "\(pod)", "reason": "\(reason)"])
            }
            return Response(
                status: .ok, headers: [.contentType: "application/json"],
                body: .init(byteBuffer: ByteBuffer(bytes: try AdmissionReview.response(uid: review.uid, decision: decision))))
        }
        return router
    }

    /// A connection that delivers no complete request head within this time of opening (the
    /// TLS handshake included) or of its last answer is closed.
    public static let idleTimeout: Duration = .seconds(10)

    /// Serves on `host:port` with the certificate chain and key (PEM files) until SIGINT/SIGTERM;
    /// `limits` caps open connections per peer address and in total (its idle timeout is
    /// ``idleTimeout``).
    public static func run(
        mutator: PodMutator, host: String, port: Int, certificatePath: String, keyPath: String, limits: ConnectionLimits = ConnectionLimits(), logger: Logger
    ) async throws {
        let chain: [NIOSSLCertificateSource]
        let key: NIOSSLPrivateKey
        do {
            chain = try NIOSSLCertificate.fromPEMFile(certificatePath).map { .certificate($0) }
        } catch {
            throw InjectorStartError(description: "cannot load the certificate chain \(certificatePath) (PEM): \(error)")
        }
        do {
            key = try NIOSSLPrivateKey(file: keyPath, format: .pem)
        } catch {
            throw InjectorStartError(description: "cannot load the private key \(keyPath) (PEM): \(error)")
        }
        var tls = TLSConfiguration.makeServerConfiguration(certificateChain: chain, privateKey: .privateKey(key))
        tls.minimumTLSVersion = .tlsv12
        let gate = ConnectionGate(limits: limits, logger: logger)
        let application = Application(
            router: router(mutator: mutator, logger: logger),
            server: try .tls(.http1(configuration: .init(additionalChannelHandlers: [gate.handler()], idleTimeout: .init(idleTimeout))), tlsConfiguration: tls),
            configuration: .init(address: .hostname(host, port: port)), logger: logger)
        try await application.runService()
    }
}

public struct InjectorStartError: Error, CustomStringConvertible {
    public let description: String
}
