import Foundation
import Testing

/// Certificates that rotate under a running, unmodified program: nginx launched by `veil
/// launch` with a 6-second `CertificateLifetime` and `Reload: SIGHUP` reads its certificate
/// files, and the launcher's resident agent renews them at half-life, rewrites the files and
/// signals nginx, which serves each new certificate without restarting (same PID).
@Suite(.timeLimit(.minutes(3))) struct RenewalLaunchTests {
    @Test func nginxServesEachRenewedCertificateWithoutRestarting() async throws {
        let nginx = try #require(["/usr/sbin/nginx", "/usr/bin/nginx"].first { FileManager.default.isExecutableFile(atPath: $0) }, "apt-get install nginx")
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let port = freePort()
        let tls = scratch.path + "/tls"
        let config = try scratch.write("""
            worker_processes 1;
            daemon off;
            pid \(scratch.path)/nginx.pid;
            error_log \(scratch.path)/nginx-error.log;
            events { worker_connections 64; }
            http {
              access_log off;
              client_body_temp_path \(scratch.path)/body;
              proxy_temp_path \(scratch.path)/proxy;
              fastcgi_temp_path \(scratch.path)/fastcgi;
              uwsgi_temp_path \(scratch.path)/uwsgi;
              scgi_temp_path \(scratch.path)/scgi;
              server {
                listen 127.0.0.1:\(port) ssl;
                ssl_certificate \(tls)/cert.pem;
                ssl_certificate_key \(tls)/key.pem;
                location / { return 200 "ok\\n"; }
              }
            }
            """, to: "nginx.conf")
        let command = [nginx, "-e", scratch.path + "/nginx-error.log", "-p", scratch.path, "-c", config]
        let measurement = try await coordinator.measure(service: "web", command: command)
        let set = try await coordinator.setManifest("""
            {"Packages": {"web": {"Kind": "simulated", "Measurement": "\(measurement)"}},
             "Services": {"web": {"Package": "web", "CertificateLifetime": "6s", "Reload": "SIGHUP", "Parameters": {"Files": {
                "\(tls)/cert.pem": "{{ pem .Veil.Service.Cert }}{{ pem .Veil.IntermediateCA.Cert }}",
                "\(tls)/key.pem": "{{ pem .Veil.Service.Private }}",
                "\(tls)/root.pem": "{{ pem .Veil.RootCA.Cert }}"}}}},
             "Config": {"AllowSimulation": true}}
            """)
        try #require(set.status == 0, "\(set.stderr)")
        let server = try Spawned(veilBinary, coordinator.launchArguments(service: "web", command: command), scratch: scratch)
        defer { kill(server.pid, SIGKILL) }
        let listening = await eventually(within: 30) { isListening(port: port) || !server.isRunning }
        try #require(listening && server.isRunning, "\(server.stdout)\(server.stderr)")

        // The served leaf, fetched with the root as the only trust anchor (the chain must verify).
        let probe = try scratch.write("""
            import socket, ssl, sys
            context = ssl.create_default_context(cafile=sys.argv[2])
            context.check_hostname = False
            with socket.create_connection(("127.0.0.1", int(sys.argv[1]))) as raw:
                with context.wrap_socket(raw) as tls:
                    print(ssl.DER_cert_to_PEM_cert(tls.getpeercert(binary_form=True)))
            """, to: "served.py")
        func served() async throws -> String {
            let result = try await run("/usr/bin/python3", [probe, "\(port)", tls + "/root.pem"], scratch: scratch)
            return result.status == 0 ? result.stdout : "failed: \(result.stderr)"
        }
        var seen = [try await served()]
        try #require(seen[0].hasPrefix("-----BEGIN CERTIFICATE-----"), "\(seen[0])\n\(server.stderr)")
        for _ in 0..<3 {
            let renewed = await eventually(within: 20) {
                guard let now = try? await served(), now.hasPrefix("-----BEGIN"), !seen.contains(now) else { return false }
                seen.append(now)
                return true
            }
            try #require(renewed, "no new certificate served after \(seen.count - 1) renewals\n\(server.stderr)\n\(scratch.read("nginx-error.log") ?? "")")
        }
        #expect(server.isRunning)
        let pidFile = (scratch.read("nginx.pid") ?? "").trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(pidFile == "\(server.pid)", "nginx's master is the process the launcher became, still the same")
        #expect(server.stderr.contains("certificate renewed"), "\(server.stderr)")
        // The file on disk is the certificate served now. Renewals go on every ~3 s, so the
        // file and the served leaf are compared again until one read of each agrees.
        let agree = await eventually(within: 10) {
            let file = scratch.read("tls/cert.pem") ?? ""
            guard let now = try? await served(), now.hasPrefix("-----BEGIN") else { return false }
            return file.hasPrefix(now.trimmingCharacters(in: .whitespacesAndNewlines))
        }
        #expect(agree, "the file holds the served leaf first")
    }

    /// `veil secret set` reaches a running service: its agent, waiting at the coordinator for the
    /// state to change, rewrites the file that renders the secret and signals the app — which
    /// keeps running (same PID) and sees the new value.
    @Test func aSecretSetWithTheCLIReachesTheRunningServicesFileAndSignalsIt() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let alice = try await UserCLITests().makeUser("alice", in: scratch)
        let aliceCert = String(decoding: try JSONEncoder().encode(try String(contentsOfFile: alice.cert, encoding: .utf8)), as: UTF8.self)
        let token = scratch.path + "/app/token", signals = scratch.path + "/signals"
        let command = ["/bin/sh", "-c", "trap 'echo reloaded >> \(signals)' HUP; while true; do sleep 0.1; done"]
        let manifest = """
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(try await coordinator.measure(service: "app", command: command))"}},
             "Services": {"app": {"Package": "app", "CertificateLifetime": "1h", "Reload": "SIGHUP",
                                  "Parameters": {"Files": {"\(token)": "{{ raw .Secrets.token }}"}}}},
             "Secrets": {"token": {"Type": "plain", "UserDefined": true}},
             "Users": {"alice": {"Certificate": \(aliceCert), "Roles": ["tokens"]}},
             "Roles": {"tokens": {"ResourceType": "Secrets", "ResourceNames": ["token"], "Actions": ["WriteSecret"]}},
             "Config": {"AllowSimulation": true}}
            """
        let set = try await coordinator.veil(["manifest", "set", try scratch.write(manifest, to: "manifest.json"), "--secret", "token=\(try scratch.write("first", to: "first"))"])
        try #require(set.status == 0, "\(set.stderr)")
        let app = try Spawned(veilBinary, coordinator.launchArguments(service: "app", command: command), scratch: scratch)
        defer { app.kill9() }
        try #require(await eventually(within: 30) { scratch.read("app/token") == "first" }, "\(app.stderr)")
        #expect(scratch.read("signals") == nil, "no signal before anything changed")

        let changed = try await coordinator.veil(["secret", "set", "token", "--from-literal", "second", "--user-cert", alice.cert, "--user-key", alice.key])
        try #require(changed.status == 0, "\(changed.stderr)")
        let started = Date()
        let delivered = await eventually(within: 10) { scratch.read("app/token") == "second" }
        #expect(delivered, "the running service's file still says \(scratch.read("app/token") ?? "nothing")\n\(app.stderr)")
        print("secret delivered to the running service in \(Int(Date().timeIntervalSince(started) * 1000)) ms")
        #expect(await eventually(within: 10) { scratch.read("signals") == "reloaded\n" }, "\(app.stderr)")
        #expect(app.isRunning, "the app kept running")
        #expect(app.stderr.contains("files updated"), "\(app.stderr)")
        let log = try await coordinator.veil(["manifest", "log"])
        #expect(log.stdout.contains("secretSet"), "\(log.stdout)")
    }
}
