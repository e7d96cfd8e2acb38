import Foundation
import Glibc
import Testing

/// The mesh proxy as `veil launch` starts it and as the `veil mesh` sidecar: it comes up before
/// the app, a launch whose proxy cannot start never starts the app, and the proxy leaves no
/// listener behind once its app is gone. These manifests name their own SPIFFE trust domain
/// (`mesh.test`): the proxies match peers in it.
@Suite(.timeLimit(.minutes(5))) struct MeshLaunchTests {
    func manifest(_ services: [(name: String, measurement: String, mesh: String, parameters: String)]) -> String {
        let packages = services.map { "\"\($0.name)\": {\"Kind\": \"simulated\", \"Measurement\": \"\($0.measurement)\"}" }
        let entries = services.map { "\"\($0.name)\": {\"Package\": \"\($0.name)\", \"Parameters\": \($0.parameters), \"Mesh\": \($0.mesh)}" }
        return """
            {"Packages": {\(packages.joined(separator: ","))}, "Services": {\(entries.joined(separator: ","))}, "Config": {"AllowSimulation": true, "TrustDomain": "mesh.test"}}
            """
    }

    func ingress(listen: Int, forward: Int, clients: [String]) -> String {
        #"{"Ingress": [{"Listen": "127.0.0.1:\#(listen)", "Forward": "127.0.0.1:\#(forward)", "Clients": [\#(clients.map { "\"\($0)\"" }.joined(separator: ","))]}]}"#
    }

    func waitUntil(_ seconds: TimeInterval, _ condition: () -> Bool) async -> Bool {
        await eventually(within: seconds) { condition() }
    }

    /// PIDs of live (not zombie) `veil mesh --inherited-config` processes whose parent is `parent`.
    func meshChildren(of parent: Int32) -> [Int32] {
        let entries = (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []
        return entries.compactMap(Int32.init).filter { pid in
            guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8),
                let cmdline = try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)
            else { return false }
            return status.contains("\nPPid:\t\(parent)\n") && !status.contains("State:\tZ") && cmdline.contains("--inherited-config")
        }
    }

    func isAlive(_ pid: Int32) -> Bool {
        guard let status = try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8) else { return false }
        return !status.contains("State:\tZ")
    }

    @Test func theProxyDiesWithItsAppAndLeavesNoListener() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let killedPort = freePort(), exitingPort = freePort()
        let sleeping = ["/bin/sleep", "600"], brief = ["/bin/sleep", "2"]
        #expect(try await coordinator.setManifest(manifest([
            ("killed", try await coordinator.measure(service: "killed", command: sleeping), ingress(listen: killedPort, forward: freePort(), clients: ["exiting"]), "{}"),
            ("exiting", try await coordinator.measure(service: "exiting", command: brief), ingress(listen: exitingPort, forward: freePort(), clients: ["killed"]), "{}"),
        ])).status == 0)

        // Killed with SIGKILL: nothing of the app runs any more, yet its proxy goes too.
        let app = try Spawned(veilBinary, coordinator.launchArguments(service: "killed", command: sleeping), scratch: scratch)
        #expect(await waitUntil(20) { isListening(port: killedPort) }, "\(app.stderr)")
        let proxies = meshChildren(of: app.pid)
        #expect(proxies.count == 1, "one proxy, the app's child")
        app.kill9()
        #expect(await waitUntil(5) { !isListening(port: killedPort) }, "the ingress listener outlived its app")
        #expect(await waitUntil(5) { proxies.allSatisfy { !isAlive($0) } })

        // Exiting on its own.
        let exiting = try Spawned(veilBinary, coordinator.launchArguments(service: "exiting", command: brief), scratch: scratch)
        #expect(await waitUntil(20) { isListening(port: exitingPort) }, "\(exiting.stderr)")
        let result = await exiting.wait(timeout: 20)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(await waitUntil(5) { !isListening(port: exitingPort) }, "the ingress listener outlived its app")
    }

    /// The proxy's ingress speaks TLS 1.3 only (a TLS 1.2 client is refused in the handshake), and
    /// the service's private key reaches the proxy through an inherited descriptor: it is in
    /// neither the proxy's command line nor its environment.
    @Test func theIngressRefusesTLS12AndTheKeyIsNotInArgvOrEnvironment() async throws {
        let openssl = try #require(which("openssl"), "install openssl")
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let port = freePort()
        let sleeping = ["/bin/sleep", "600"]
        #expect(try await coordinator.setManifest(manifest([
            ("server", try await coordinator.measure(service: "server", command: sleeping), ingress(listen: port, forward: freePort(), clients: ["server"]), "{}"),
        ])).status == 0)
        let app = try Spawned(veilBinary, coordinator.launchArguments(service: "server", command: sleeping), scratch: scratch)
        defer { app.kill9() }
        #expect(await waitUntil(20) { isListening(port: port) }, "\(app.stderr)")
        let proxy = try #require(meshChildren(of: app.pid).first)
        for file in ["cmdline", "environ"] {
            let bytes = (try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(proxy)/\(file)"))) ?? Data()
            let text = String(decoding: bytes.map { $0 == 0 ? 0x20 : $0 }, as: UTF8.self)
            #expect(!bytes.isEmpty || file == "environ", "\(file) readable")
            #expect(!text.contains("PRIVATE KEY") && !text.contains("BEGIN"), "no key material in the proxy's \(file): \(text.prefix(300))")
        }
        let tls12 = try await run(openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_2", "-brief"], scratch: scratch, timeout: 20)
        #expect(tls12.status != 0, "a TLS 1.2 client got through: \(tls12.stdout) \(tls12.stderr)")
        #expect(!(tls12.stdout + tls12.stderr).contains("Protocol version: TLSv1.2"), "\(tls12.stderr)")
        let tls13 = try await run(openssl, ["s_client", "-connect", "127.0.0.1:\(port)", "-tls1_3", "-brief"], scratch: scratch, timeout: 20)
        #expect((tls13.stdout + tls13.stderr).contains("TLSv1.3"), "the proxy does speak TLS 1.3: \(tls13.stdout) \(tls13.stderr)")
    }

    @Test func aProxyThatCannotListenStopsTheLaunchBeforeTheAppStarts() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let taken = try TakenPort()
        let marker = scratch.path + "/app-ran"
        let command = ["/bin/sh", "-c", "touch \(marker)"]
        #expect(try await coordinator.setManifest(manifest([
            ("app", try await coordinator.measure(service: "app", command: command), ingress(listen: taken.port, forward: freePort(), clients: ["app"]), "{}"),
        ])).status == 0)
        let result = try await coordinator.veil(coordinator.launchArguments(service: "app", command: command))
        #expect(result.status == 125)
        #expect(result.stderr.contains("mesh proxy did not start: mesh cannot listen on 127.0.0.1:\(taken.port)"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the app must not run without its proxy")
    }

    @Test func sidecarProxiesForAnAppItDoesNotLaunch() async throws {
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let curl = try #require(which("curl"))
        let python = try #require(which("python3"))
        let site = scratch.path + "/site"
        try FileManager.default.createDirectory(atPath: site, withIntermediateDirectories: true)
        try "served behind a sidecar\n".write(toFile: site + "/hello.txt", atomically: true, encoding: .utf8)
        let appPort = freePort(), meshPort = freePort(), egressPort = freePort()
        let app = try Spawned(python, ["-m", "http.server", "\(appPort)", "--bind", "127.0.0.1", "--directory", site], scratch: scratch)
        defer { app.stopInBackground() }

        let sidecarMeasurement = try await coordinator.veil(["measure", "--service", "web", "--mesh-sidecar"]).stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        #expect(sidecarMeasurement.hasPrefix("sha256:"))
        let fetch = [curl, "-sS", "--max-time", "10", "http://127.0.0.1:\(egressPort)/hello.txt"]
        #expect(try await coordinator.setManifest(manifest([
            ("web", sidecarMeasurement, ingress(listen: meshPort, forward: appPort, clients: ["probe"]), "{}"),
            ("probe", try await coordinator.measure(service: "probe", command: fetch),
             #"{"Egress": [{"Listen": "127.0.0.1:\#(egressPort)", "Service": "web", "Address": "127.0.0.1:\#(meshPort)"}]}"#, "{}"),
        ])).status == 0)

        let sidecarArguments = ["mesh", "--coordinator", coordinator.meshAddress, "--service", "web", "--tee", "simulated",
                                "--simulation-key", coordinator.simulationKey, "--root-ca", coordinator.rootPath]
        let sidecar = try Spawned(veilBinary, sidecarArguments, scratch: scratch)
        defer { sidecar.stopInBackground() }
        #expect(await waitUntil(20) { isListening(port: meshPort) }, "\(sidecar.stderr)")
        #expect(sidecar.stderr.contains("NO confidentiality"), "simulation must say so")

        let fetched = try await coordinator.veil(coordinator.launchArguments(service: "probe", command: fetch))
        #expect(fetched.status == 0, "\(fetched.stderr)")
        #expect(fetched.stdout == "served behind a sidecar\n")

        // A sidecar started for a service with no Mesh says so and exits.
        let wrong = try await coordinator.veil(Array(sidecarArguments.prefix(4)) + ["probe"] + Array(sidecarArguments.dropFirst(5)))
        #expect(wrong.status == 1)
        #expect(wrong.stderr.contains("does not match package 'probe'") || wrong.stderr.contains("no Mesh"), "\(wrong.stderr)")

        kill(sidecar.pid, SIGTERM)
        let stopped = await sidecar.wait(timeout: 10)
        #expect(!stopped.signaled && stopped.status == 0, "SIGTERM stops the sidecar cleanly")
        #expect(await waitUntil(5) { !isListening(port: meshPort) })
    }
}

/// A loopback port held by a listening socket for the life of the value.
final class TakenPort {
    let descriptor: Int32
    let port: Int

    init() throws {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = 0
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let bound = withUnsafeMutablePointer(to: &address) { pointer in
            pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 1) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard bound else {
            close(fd)
            throw POSIXError(.EADDRINUSE)
        }
        descriptor = fd
        port = Int(UInt16(bigEndian: address.sin_port))
    }

    deinit { close(descriptor) }
}
