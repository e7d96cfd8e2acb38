import Foundation
import Testing
import VeilConnections
import VeilManifest
@testable import VeilMesh

/// The mesh proxy in process, against certificates issued exactly as activations issue them:
/// who gets through an ingress, what an egress accepts, and that bytes arrive intact.
@Suite struct MeshProxyTests {
    let authority: TestAuthority
    let payload: [UInt8]

    init() throws {
        authority = try TestAuthority()
        payload = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) }
    }

    /// A handshake deadline no test reaches: the proxy verifies peers in a task on the
    /// cooperative pool, which the parallel suites keep busy for seconds at a time. Only the
    /// deadline's own test uses a short one.
    static let patient: Duration = .seconds(300)

    /// `cache` behind an ingress that admits only `web`.
    func cacheIngress(logs: LogCapture) async throws -> (proxy: MeshProxy, app: EchoApp, port: Int) {
        let app = try await EchoApp.start()
        let port = try freePort()
        let policy = MeshPolicy(ingress: [.init(listen: "127.0.0.1:\(port)", forward: "127.0.0.1:\(app.port)", clients: ["web"])])
        let proxy = try MeshProxy(credentials: try authority.credentials("cache"), policy: policy, logger: logs.logger, handshakeTimeout: Self.patient)
        try await proxy.start()
        return (proxy, app, port)
    }

    /// A connection that never starts TLS is closed at the handshake deadline and logged, and
    /// nothing reaches the app.
    @Test func aSilentConnectionIsClosedAtTheHandshakeDeadline() async throws {
        let logs = LogCapture()
        let app = try await EchoApp.start()
        let port = try freePort()
        let policy = MeshPolicy(ingress: [.init(listen: "127.0.0.1:\(port)", forward: "127.0.0.1:\(app.port)", clients: ["web"])])
        let proxy = try MeshProxy(credentials: try authority.credentials("cache"), policy: policy, logger: logs.logger, handshakeTimeout: .milliseconds(500))
        try await proxy.start()
        defer { Task { await proxy.stop(); await app.stop() } }
        // Without the deadline the connection would stay open for good; the wait is generous
        // because the unit suites share two cores (no timing is asserted).
        let outcome = try await silentConnection(port: port, seconds: 60)
        #expect(outcome == .received([]), "closed by the proxy, nothing sent: \(String(describing: outcome))")
        #expect(await logs.contains("no TLS handshake within 0.5 s"))
        #expect(app.connections == 0, "nothing reached the app")
    }

    /// Over the per-peer cap (2 here) an ingress connection is closed at once, before any
    /// handshake, while the held ones stay open; once they end, a listed peer is served again.
    @Test func anIngressConnectionOverThePeerCapIsClosedAtOnce() async throws {
        let logs = LogCapture()
        let app = try await EchoApp.start()
        let port = try freePort()
        var limits = ConnectionLimits()
        limits.perPeer = 2
        let policy = MeshPolicy(ingress: [.init(listen: "127.0.0.1:\(port)", forward: "127.0.0.1:\(app.port)", clients: ["web"])])
        let proxy = try MeshProxy(
            credentials: try authority.credentials("cache"), policy: policy, logger: logs.logger, handshakeTimeout: Self.patient, ingressLimits: limits)
        try await proxy.start()
        defer { Task { await proxy.stop(); await app.stop() } }

        // Held with plain sockets (a loopback connect returns at once), so the test's own side
        // does not wait for the cooperative pool, which the parallel suites keep busy.
        let held = try (0..<2).map { _ in try Self.heldConnection(port: port) }
        let deadline = ContinuousClock.now + .seconds(60)
        while proxy.ingressGate.openConnections < 2 && ContinuousClock.now < deadline { try await Task.sleep(for: .milliseconds(20)) }
        #expect(proxy.ingressGate.openConnections == 2)
        let third = try await silentConnection(port: port, seconds: 30)
        #expect(third == .received([]), "the third connection from the address is closed by the proxy: \(String(describing: third))")
        for fd in held {
            var byte: UInt8 = 0
            #expect(recv(fd, &byte, 1, Int32(MSG_DONTWAIT)) < 0 && errno == EAGAIN, "a connection within the cap stays open")
            close(fd)
        }
        while proxy.ingressGate.openConnections > 0 && ContinuousClock.now < deadline + .seconds(30) { try await Task.sleep(for: .milliseconds(20)) }
        #expect(await logs.contains("connections refused: too many open"))
        let served = try await exchange(port: port, payload: Array("ping".utf8), tls: (try authority.credentials("web"), authority.rootPEM))
        #expect(served == .received(Array("ping".utf8)), "a listed peer is served again once the held connections closed")
    }

    /// A TCP connection to 127.0.0.1:`port` that says nothing (the caller closes it).
    static func heldConnection(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = in_port_t(UInt16(port).bigEndian)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard fd >= 0, connected == 0 else { throw MeshError.listen("127.0.0.1:\(port)", reason: "cannot connect: \(errno)") }
        return fd
    }

    @Test func listedServiceReachesTheAppWithEveryByte() async throws {
        let logs = LogCapture()
        let (proxy, app, port) = try await cacheIngress(logs: logs)
        defer { Task { await proxy.stop(); await app.stop() } }
        let outcome = try await exchange(port: port, payload: payload, tls: (try authority.credentials("web"), authority.rootPEM))
        #expect(outcome == .received(payload), "the echo of 1 MiB through the ingress, half-close carried; proxy log: \(logs.text)")
        #expect(app.connections == 1)
    }

    /// The peer's certificate is judged on the verification executor's threads, not on the
    /// cooperative pool (which other work in the process can keep busy past the deadline).
    @Test func peerVerificationRunsOnItsOwnExecutor() async throws {
        let (proxy, app, port) = try await cacheIngress(logs: LogCapture())
        defer { Task { await proxy.stop(); await app.stop() } }
        let before = VerificationExecutor.shared.jobsRun
        let outcome = try await exchange(port: port, payload: Array("ping".utf8), tls: (try authority.credentials("web"), authority.rootPEM))
        #expect(outcome == .received(Array("ping".utf8)))
        #expect(VerificationExecutor.shared.jobsRun > before, "the verification ran no job on its executor")
    }

    @Test func egressToIngressCarriesPlainBytesBothWays() async throws {
        let logs = LogCapture()
        let (ingress, app, ingressPort) = try await cacheIngress(logs: logs)
        let egressPort = try freePort()
        let egress = try MeshProxy(
            credentials: try authority.credentials("web"),
            policy: MeshPolicy(egress: [.init(listen: "127.0.0.1:\(egressPort)", service: "cache", address: "127.0.0.1:\(ingressPort)")]),
            logger: logs.logger, handshakeTimeout: Self.patient)
        try await egress.start()
        defer { Task { await egress.stop(); await ingress.stop(); await app.stop() } }
        let outcome = try await exchange(port: egressPort, payload: payload)
        #expect(outcome == .received(payload))
        #expect(!logs.text.contains("refused"), "\(logs.text)")
    }

    // MARK: - Refused at the ingress; the app never sees the connection

    func expectIngressRefuses(_ credentials: MeshCredentials?, reason: String) async throws {
        let logs = LogCapture()
        let (proxy, app, port) = try await cacheIngress(logs: logs)
        defer { Task { await proxy.stop(); await app.stop() } }
        let outcome = try await exchange(port: port, payload: Array("stats\r\n".utf8), tls: (credentials, authority.rootPEM))
        guard case .failed = outcome else {
            Issue.record("expected a refused handshake, got \(outcome)")
            return
        }
        #expect(app.connections == 0, "a refused peer must never reach the app")
        #expect(await logs.contains(reason), "log: \(logs.text)")
        #expect(logs.text.contains("direction=ingress"))
    }

    @Test func clientWithoutCertificateIsRefused() async throws {
        try await expectIngressRefuses(nil, reason: "reason=the peer presented no certificate")
    }

    @Test func clientWithCertificateFromAnotherCAIsRefused() async throws {
        let stranger = try TestAuthority()
        try await expectIngressRefuses(
            try stranger.credentials("web", trusting: authority), reason: "is not from this coordinator's CA")
    }

    @Test func attestedServiceNotListedInClientsIsRefused() async throws {
        try await expectIngressRefuses(
            try authority.credentials("batch"), reason: "reason=service 'batch' is not among the allowed clients (web)")
        let logs = LogCapture()
        let (proxy, app, port) = try await cacheIngress(logs: logs)
        defer { Task { await proxy.stop(); await app.stop() } }
        _ = try await exchange(port: port, payload: [1], tls: (try authority.credentials("batch"), authority.rootPEM))
        #expect(await logs.contains("peer=batch"), "the refusal names the peer's service: \(logs.text)")
    }

    @Test func expiredServiceCertificateIsRefused() async throws {
        try await expectIngressRefuses(
            try authority.credentials("web", issuedAt: Date().addingTimeInterval(-7200), validFor: 3600), reason: "reason=the peer's certificate is not valid now")
    }

    @Test func coordinatorTLSCertificateIsNoService() async throws {
        try await expectIngressRefuses(try authority.coordinatorCredentials(), reason: "names no Veil service")
    }

    // MARK: - Refused at the egress; the app's connection closes with no byte

    func expectEgressRefuses(peer: MeshCredentials, reason: String) async throws {
        let logs = LogCapture(), peerLogs = LogCapture()
        let app = try await EchoApp.start()
        let peerPort = try freePort(), egressPort = try freePort()
        let impostor = try MeshProxy(
            credentials: peer,
            policy: MeshPolicy(ingress: [.init(listen: "127.0.0.1:\(peerPort)", forward: "127.0.0.1:\(app.port)", clients: ["web"])]),
            logger: peerLogs.logger, handshakeTimeout: Self.patient)
        try await impostor.start()
        let egress = try MeshProxy(
            credentials: try authority.credentials("web"),
            policy: MeshPolicy(egress: [.init(listen: "127.0.0.1:\(egressPort)", service: "cache", address: "127.0.0.1:\(peerPort)")]),
            logger: logs.logger, handshakeTimeout: Self.patient)
        try await egress.start()
        defer { Task { await egress.stop(); await impostor.stop(); await app.stop() } }
        let outcome = try await exchange(port: egressPort, payload: Array("get secret\r\n".utf8))
        if case .received(let bytes) = outcome {
            #expect(bytes.isEmpty, "the app's connection closes without a byte from the impostor")
        }
        #expect(await logs.contains(reason), "log: \(logs.text)")
        #expect(logs.text.contains("direction=egress"))
        #expect(app.connections == 0, "nothing the app sent reaches the impostor's app")
    }

    @Test func egressRefusesAPeerProvingAnotherService() async throws {
        try await expectEgressRefuses(peer: try authority.credentials("db"), reason: "reason=the peer is service 'db', not 'cache'")
    }

    @Test func egressRefusesAPeerFromAnotherCA() async throws {
        let stranger = try TestAuthority()
        try await expectEgressRefuses(peer: try stranger.credentials("cache", trusting: authority), reason: "is not from this coordinator's CA")
    }

    // MARK: - Startup

    @Test func aTakenListenAddressFailsStartAndBindsNothing() async throws {
        let logs = LogCapture()
        let (proxy, app, port) = try await cacheIngress(logs: logs)
        defer { Task { await proxy.stop(); await app.stop() } }
        let other = try freePort()
        let second = try MeshProxy(
            credentials: try authority.credentials("cache"),
            policy: MeshPolicy(
                ingress: [.init(listen: "127.0.0.1:\(other)", forward: "127.0.0.1:\(app.port)", clients: ["web"])],
                egress: [.init(listen: "127.0.0.1:\(port)", service: "db", address: "127.0.0.1:1")]),
            logger: logs.logger)
        await #expect(throws: MeshError.self) { try await second.start() }
        // The first listener it bound was closed again.
        let outcome = try await exchange(port: other, payload: [1])
        #expect(outcome != .received([1]))
    }

    @Test func credentialsThatDoNotParseAreRefused() throws {
        var credentials = try authority.credentials("web")
        credentials.privateKeyPEM = "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
        #expect(throws: MeshError.self) { try MeshProxy(credentials: credentials, policy: MeshPolicy(), logger: LogCapture().logger) }
    }
}
