import Foundation
import Glibc
import Testing

/// Renewal under the mesh: two launched services with 6-second certificates talk through their
/// proxies. One TCP connection held open through the client's egress outlives three renewals of
/// both proxies' certificates; new connections get each new certificate; and once a manifest
/// update removes the client, it cannot renew and the server's proxy refuses it after expiry.
@Suite(.timeLimit(.minutes(4))) struct MeshRenewalTests {
    @Test func aLongConnectionOutlivesThreeRenewalsAndARemovedServiceIsRefusedAfterExpiry() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let alice = try await UserCLITests().makeUser("alice", in: scratch)
        let aliceCert = String(decoding: try JSONEncoder().encode(try String(contentsOfFile: alice.cert, encoding: .utf8)), as: UTF8.self)
        let (ingressPort, echoPort, egressPort) = (freePort(), freePort(), freePort())
        let python = "/usr/bin/python3"
        let echo = try scratch.write("""
            import socketserver, sys
            class Echo(socketserver.StreamRequestHandler):
                def handle(self):
                    for line in self.rfile:
                        self.wfile.write(line)
                        self.wfile.flush()
            socketserver.ThreadingTCPServer.allow_reuse_address = True
            socketserver.ThreadingTCPServer(("127.0.0.1", int(sys.argv[1])), Echo).serve_forever()
            """, to: "echo.py")
        let serverCommand = [python, echo, "\(echoPort)"], clientCommand = ["/bin/sleep", "600"]
        let client = scratch.path + "/client"
        func manifest(clientListed: Bool) async throws -> String {
            let clientFiles = #"{"Files": {"\#(client)/cert.pem": "{{ pem .Veil.Service.Cert }}{{ pem .Veil.IntermediateCA.Cert }}", "\#(client)/key.pem": "{{ pem .Veil.Service.Private }}", "\#(client)/root.pem": "{{ pem .Veil.RootCA.Cert }}"}}"#
            let clientEntry = clientListed ? """
                , "client": {"Package": "client", "CertificateLifetime": "6s", "Parameters": \(clientFiles),
                             "Mesh": {"Egress": [{"Listen": "127.0.0.1:\(egressPort)", "Service": "server", "Address": "127.0.0.1:\(ingressPort)"}]}}
                """ : ""
            return """
                {"Packages": {"server": {"Kind": "simulated", "Measurement": "\(try await coordinator.measure(service: "server", command: serverCommand))"},
                              "client": {"Kind": "simulated", "Measurement": "\(try await coordinator.measure(service: "client", command: clientCommand))"}},
                 "Services": {"server": {"Package": "server", "CertificateLifetime": "6s",
                                         "Mesh": {"Ingress": [{"Listen": "127.0.0.1:\(ingressPort)", "Forward": "127.0.0.1:\(echoPort)", "Clients": ["\(clientListed ? "client" : "server")"]}]}}
                              \(clientEntry)},
                 "Users": {"alice": {"Certificate": \(aliceCert), "Roles": ["admin"]}},
                 "Roles": {"admin": {"ResourceType": "Manifest", "Actions": ["UpdateManifest"]}},
                 "Config": {"AllowSimulation": true, "TrustDomain": "mesh.test"}}
                """
        }
        let set = try await coordinator.setManifest(try await manifest(clientListed: true))
        try #require(set.status == 0, "\(set.stderr)")
        let server = try Spawned(veilBinary, coordinator.launchArguments(service: "server", command: serverCommand), scratch: scratch)
        defer { server.kill9() }
        let clientApp = try Spawned(veilBinary, coordinator.launchArguments(service: "client", command: clientCommand), scratch: scratch)
        defer { clientApp.kill9() }
        try #require(await eventually(within: 30) { isListening(port: ingressPort) && isListening(port: egressPort) && isListening(port: echoPort) }, "\(server.stderr)\(clientApp.stderr)")

        // One connection through the client's egress, a line echoed every half second for 14 s.
        let hold = try scratch.write("""
            import socket, sys, time
            with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as connection:
                reader = connection.makefile("rb")
                for index in range(28):
                    line = b"ping %d\\n" % index
                    connection.sendall(line)
                    if reader.readline() != line:
                        sys.exit("echo %d lost" % index)
                    time.sleep(0.5)
            print("survived 28")
            """, to: "hold.py")
        let held = try Spawned(python, [hold, "\(egressPort)"], scratch: scratch)

        // New connections meanwhile, straight to the server's ingress as the client (its renewed files).
        let probe = try scratch.write("""
            import socket, ssl, sys
            context = ssl.create_default_context(cafile=sys.argv[2] + "/root.pem")
            context.check_hostname = False
            context.load_cert_chain(sys.argv[2] + "/cert.pem", sys.argv[2] + "/key.pem")
            with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as raw:
                with context.wrap_socket(raw) as tls:
                    tls.sendall(b"probe\\n")
                    assert tls.recv(6) == b"probe\\n"
                    print(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)))
            """, to: "probe.py")
        var served: Set<String> = []
        let threeRenewalsSeen = await eventually(within: 16) {
            if let result = try? await run(python, [probe, "\(ingressPort)", client], scratch: scratch), result.status == 0 { served.insert(result.stdout) }
            return served.count >= 4
        }
        #expect(threeRenewalsSeen, "new connections saw \(served.count) server certificates\n\(server.stderr)")
        let holding = await held.wait(timeout: 30)
        #expect(holding.status == 0 && holding.stdout.contains("survived 28"), "\(holding.stdout)\(holding.stderr)")
        for app in [server, clientApp] {
            #expect(app.stderr.components(separatedBy: "certificate renewed").count - 1 >= 3, "\(app.stderr)")
        }

        // The client leaves the manifest: its next renewal is refused, and after expiry the server refuses it.
        let update = try await coordinator.veil(
            ["manifest", "update", try scratch.write(try await manifest(clientListed: false), to: "removed.json")],
            environment: ["VEIL_USER_CERT": alice.cert, "VEIL_USER_KEY": alice.key])
        try #require(update.status == 0, "\(update.stderr)")
        let refused = await eventually(within: 15) { clientApp.stderr.contains("the manifest no longer lists it") }
        #expect(refused, "\(clientApp.stderr)")
        let expired = await eventually(within: 15) { clientApp.stderr.contains("certificate expired without renewal") }
        #expect(expired, "\(clientApp.stderr)")
        let afterExpiry = try await run(python, [hold, "\(egressPort)"], scratch: scratch, timeout: 20)
        #expect(afterExpiry.status != 0, "an expired client still got through: \(afterExpiry.stdout)")
        #expect(server.stderr.contains("the peer's certificate is not valid now"), "the server's proxy says why: \(server.stderr.suffix(2000))")
    }

    /// `veil mesh` as a sidecar renews too: its certificate files change at half-life, with no
    /// app to signal.
    @Test func theSidecarRenewsItsCertificateAndFiles() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let measurement = try await coordinator.veil(["measure", "--service", "web", "--mesh-sidecar"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        let (meshPort, appPort) = (freePort(), freePort())
        let set = try await coordinator.setManifest("""
            {"Packages": {"web": {"Kind": "simulated", "Measurement": "\(measurement)"}},
             "Services": {"web": {"Package": "web", "CertificateLifetime": "4s", "Reload": "SIGHUP",
                                  "Parameters": {"Files": {"\(scratch.path)/web/cert.pem": "{{ pem .Veil.Service.Cert }}"}},
                                  "Mesh": {"Ingress": [{"Listen": "127.0.0.1:\(meshPort)", "Forward": "127.0.0.1:\(appPort)", "Clients": ["web"]}]}}},
             "Config": {"AllowSimulation": true}}
            """)
        try #require(set.status == 0, "\(set.stderr)")
        let sidecar = try Spawned(veilBinary, ["mesh", "--coordinator", coordinator.meshAddress, "--service", "web", "--tee", "simulated",
                                               "--simulation-key", coordinator.simulationKey, "--root-ca", coordinator.rootPath], scratch: scratch)
        defer { sidecar.kill9() }
        try #require(await eventually(within: 20) { scratch.read("web/cert.pem") != nil }, "\(sidecar.stderr)")
        var seen: Set<String> = [scratch.read("web/cert.pem") ?? ""]
        let renewed = await eventually(within: 15) {
            if let now = scratch.read("web/cert.pem"), !now.isEmpty { seen.insert(now) }
            return seen.count >= 3
        }
        #expect(renewed, "the sidecar's certificate file changed \(seen.count - 1) times\n\(sidecar.stderr)")
        #expect(sidecar.isRunning && sidecar.stderr.contains("certificate renewed"), "\(sidecar.stderr)")
    }
}
