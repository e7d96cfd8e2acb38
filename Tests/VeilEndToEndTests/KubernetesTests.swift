import Foundation
import Testing

/// `veil kubernetes render` and deploy/kubernetes against Kubernetes' own schemas, and
/// `veil injector` answering real AdmissionReview v1 requests over HTTPS, its patches applied
/// with a standard JSONPatch library.
@Suite(.timeLimit(.minutes(5))) struct KubernetesTests {
    static let tees = ["simulated", "sgx", "confidential-vm"]
    static let versions = ["1.30.0", "1.37.0"]
    /// Images by digest under a reserved name (RFC 2606 `.invalid`): what deploy/kubernetes holds,
    /// since the real digest is the one `veil image self` prints for a given build.
    static let placeholderImages = [
        "--image", "registry.invalid/veil@sha256:" + String(repeating: "0", count: 64),
        "--etcd-image", "registry.invalid/etcd@sha256:" + String(repeating: "0", count: 64),
    ]

    /// `kubernetes-validate --strict` for both versions; any warning (an unknown kind) fails too.
    func validate(_ file: String, scratch: Scratch) async throws -> (passed: Bool, output: String) {
        let validator = try #require(which("kubernetes-validate"), "pip install kubernetes-validate")
        var output = ""
        var passed = true
        for version in Self.versions {
            let result = try await run(validator, ["--strict", "-k", version, file], scratch: scratch)
            output += result.stdout + result.stderr
            let complaints = (result.stdout + result.stderr).split(separator: "\n").filter { !$0.hasPrefix("INFO") }
            passed = passed && result.status == 0 && complaints.isEmpty
        }
        return (passed, output)
    }

    func documentCount(_ yaml: String) -> Int { yaml.split(separator: "\n").filter { $0 == "---" }.count }

    @Test func renderedDeploymentsPassKubernetesSchemas() async throws {
        let scratch = try Scratch()
        for tee in Self.tees {
            let render = try await run(veilBinary, ["kubernetes", "render", "--tee", tee, "--replicas", "3"] + Self.placeholderImages, scratch: scratch)
            #expect(render.status == 0, "\(render.stderr)")
            let file = try scratch.write(render.stdout, to: "\(tee).yaml")
            let (passed, output) = try await validate(file, scratch: scratch)
            #expect(passed, "\(tee): \(output)")
            // One INFO line per object and version: nothing skipped.
            #expect(output.split(separator: "\n").filter { $0.hasPrefix("INFO") && $0.contains("passed") }.count == 2 * documentCount(render.stdout))
            #expect(render.stdout.contains("kind: MutatingWebhookConfiguration") && render.stdout.contains("caBundle:"))
        }
        // Controls: the validator does reject an unknown field and flag an unknown kind.
        let rendered = try await run(veilBinary, ["kubernetes", "render"] + Self.placeholderImages, scratch: scratch).stdout
        let bogus = try scratch.write(rendered.replacingOccurrences(of: "  replicas: 2\n", with: "  replicas: 2\n  replicaz: 2\n"), to: "bogus.yaml")
        await #expect(try validate(bogus, scratch: scratch).passed == false)
        let unknown = try scratch.write("apiVersion: example.com/v1\nkind: Gadget\nmetadata:\n  name: x\n", to: "unknown.yaml")
        await #expect(try validate(unknown, scratch: scratch).passed == false)
    }

    /// The etcd certificates `render` makes work as rendered: a real etcd with the member
    /// certificate and mutual TLS, a coordinator with the client certificate; no certificate, no entry.
    @Test func renderedEtcdCertificatesWorkWithEtcdAndTheCoordinator() async throws {
        let scratch = try Scratch()
        let etcd = try #require(which("etcd"), "etcd-server must be installed")
        let rendered = try scratch.write(try await run(veilBinary, ["kubernetes", "render"] + Self.placeholderImages, scratch: scratch).stdout, to: "render.yaml")
        let extract = try await run("/usr/bin/env", ["python3", "-c", """
            import sys, yaml
            for doc in yaml.safe_load_all(open(sys.argv[1])):
                if doc and doc["kind"] == "Secret" and doc["metadata"]["name"] in ("veil-etcd-tls", "veil-coordinator-etcd-tls"):
                    for key, value in doc["stringData"].items():
                        open(f"{sys.argv[2]}/{doc['metadata']['name']}-{key}", "w").write(value)
            """, rendered, scratch.path], scratch: scratch)
        #expect(extract.status == 0, "\(extract.stderr)")
        let file = { (name: String) in scratch.path + "/" + name }
        let (client, peer) = (freePort(), freePort())
        let member = try Spawned(etcd, [
            "--name", "e0", "--data-dir", scratch.path + "/etcd", "--listen-client-urls", "https://127.0.0.1:\(client)",
            "--advertise-client-urls", "https://localhost:\(client)", "--listen-peer-urls", "https://127.0.0.1:\(peer)",
            "--initial-advertise-peer-urls", "https://localhost:\(peer)", "--initial-cluster", "e0=https://localhost:\(peer)",
            "--cert-file", file("veil-etcd-tls-tls.crt"), "--key-file", file("veil-etcd-tls-tls.key"), "--trusted-ca-file", file("veil-etcd-tls-ca.crt"),
            "--client-cert-auth", "--peer-cert-file", file("veil-etcd-tls-tls.crt"), "--peer-key-file", file("veil-etcd-tls-tls.key"),
            "--peer-trusted-ca-file", file("veil-etcd-tls-ca.crt"), "--peer-client-cert-auth",
        ], scratch: scratch)
        defer { member.stopInBackground() }
        let deadline = Date().addingTimeInterval(20)
        while !isListening(port: client) && Date() < deadline { try? await Task.sleep(for: .milliseconds(100)) }
        let coordinator = try await CoordinatorProcess(scratch: scratch, arguments: [
            "--store", "etcd", "--etcd-endpoints", "https://localhost:\(client)", "--etcd-prefix", "/veil/render-test",
            "--etcd-ca", file("veil-coordinator-etcd-tls-ca.crt"), "--etcd-cert", file("veil-coordinator-etcd-tls-tls.crt"),
            "--etcd-key", file("veil-coordinator-etcd-tls-tls.key"),
        ])
        #expect(try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status").1.contains("awaitingManifest"))
        let anonymous = try await run(which("curl") ?? "/usr/bin/curl", [
            "-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", file("veil-etcd-tls-ca.crt"), "https://localhost:\(client)/health",
        ], scratch: scratch)
        #expect(anonymous.stdout == "000", "etcd must refuse a client without a certificate: \(anonymous.stdout)")
    }

    /// A standard Kubernetes security scanner (checkov) finds nothing in any rendering: limits,
    /// probes, pod and container security contexts, images by digest, etcd's TLS flags.
    /// Controls: a tag reference and a container without limits are reported.
    @Test func renderedDeploymentsPassCheckov() async throws {
        let scratch = try Scratch()
        let checkov = try #require(
            ["/opt/veil-tools/checkov/bin/checkov", which("checkov")].compactMap { $0 }.first { FileManager.default.isExecutableFile(atPath: $0) },
            "checkov is not installed (bash scripts/install-deps.sh test)")
        func scan(_ yaml: String, _ name: String) async throws -> (failed: Int, output: String) {
            let file = try scratch.write(yaml, to: name)
            let result = try await run(checkov, ["-f", file, "--framework", "kubernetes", "--compact", "--quiet", "--output", "json"], scratch: scratch, timeout: 300)
            let report = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any]
            let summary = report?["summary"] as? [String: Any]
            let passed = summary?["passed"] as? Int ?? 0
            #expect(passed > 200, "checkov ran no checks on \(name): \(result.stdout.prefix(2000)) \(result.stderr.suffix(2000))")
            return (summary?["failed"] as? Int ?? -1, result.stdout)
        }
        for tee in Self.tees {
            let render = try await run(veilBinary, ["kubernetes", "render", "--tee", tee] + Self.placeholderImages, scratch: scratch)
            let (failed, output) = try await scan(render.stdout, "\(tee).yaml")
            #expect(failed == 0, "\(tee): \(output.prefix(4000))")
        }
        let tagged = try await run(veilBinary, ["kubernetes", "render", "--image", "veil:latest"], scratch: scratch)
        #expect(tagged.stderr.contains("is a tag, not a digest"), "\(tagged.stderr)")
        let (taggedFailures, taggedOutput) = try await scan(tagged.stdout, "tagged.yaml")
        #expect(taggedFailures > 0 && taggedOutput.contains("CKV_K8S_43"), "a tag reference must be reported")
        let unlimited = try await run(veilBinary, ["kubernetes", "render"] + Self.placeholderImages, scratch: scratch).stdout
            .replacingOccurrences(of: "          limits:\n            cpu: \"1\"\n            memory: 512Mi\n", with: "")
        let (unlimitedFailures, unlimitedOutput) = try await scan(unlimited, "unlimited.yaml")
        #expect(unlimitedFailures > 0 && unlimitedOutput.contains("CKV_K8S_11"), "a container without limits must be reported")
        let missing = try await run(veilBinary, ["kubernetes", "render"], scratch: scratch)
        #expect(missing.status != 0 && missing.stderr.contains("--image"), "render without --image must say what to pass: \(missing.stderr)")
    }

    @Test func deployFilesAreTheRenderedOnesAndValid() async throws {
        let scratch = try Scratch()
        for tee in Self.tees {
            let path = repositoryRoot + "/deploy/kubernetes/\(tee).yaml"
            let committed = try String(contentsOfFile: path, encoding: .utf8)
            let render = try await run(veilBinary, ["kubernetes", "render", "--tee", tee, "--without-secrets"] + Self.placeholderImages, scratch: scratch)
            #expect(committed == render.stdout, "\(path) differs from `veil kubernetes render --tee \(tee) --without-secrets`: regenerate it")
            #expect(!committed.contains("PRIVATE KEY"))
            let (passed, output) = try await validate(path, scratch: scratch)
            #expect(passed, "\(path): \(output)")
        }
    }

    struct Admission {
        let allowed: Bool
        let message: String
        let patched: Bool
        let repatched: Bool
        let pod: [String: Any]
        let podPath: String
    }

    func admit(_ pod: [String: Any], namespace: String, url: String, ca: String, scratch: Scratch) async throws -> Admission {
        let name = UUID().uuidString.prefix(8)
        let input = try scratch.write(String(decoding: try JSONSerialization.data(withJSONObject: pod), as: UTF8.self), to: "pod-\(name).json")
        let output = scratch.path + "/mutated-\(name).json"
        let result = try await run("/usr/bin/env", ["python3", repositoryRoot + "/Tests/Scripts/admission.py", url, ca, namespace, input, output], scratch: scratch)
        guard result.status == 0, let summary = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8)) as? [String: Any] else {
            throw CoordinatorProcess.CoordinatorStartError(log: result.stdout + result.stderr)
        }
        let mutated = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: output))) as? [String: Any] ?? [:]
        return Admission(
            allowed: summary["allowed"] as? Bool ?? false, message: summary["message"] as? String ?? "", patched: summary["patched"] as? Bool ?? false,
            repatched: summary["repatched"] as? Bool ?? true, pod: mutated, podPath: output)
    }

    func pod(labels: [String: String], containers: [[String: Any]], initContainers: [[String: Any]]? = nil, volumes: [[String: Any]]? = nil) -> [String: Any] {
        var spec: [String: Any] = ["containers": containers]
        if let initContainers { spec["initContainers"] = initContainers }
        if let volumes { spec["volumes"] = volumes }
        return ["apiVersion": "v1", "kind": "Pod", "metadata": ["name": "p", "labels": labels], "spec": spec]
    }

    func containers(_ pod: [String: Any], _ key: String = "containers") -> [[String: Any]] {
        (pod["spec"] as? [String: Any])?[key] as? [[String: Any]] ?? []
    }

    func names(_ items: Any?, _ key: String = "name") -> [String] { (items as? [[String: Any]] ?? []).compactMap { $0[key] as? String } }

    @Test func injectorMutatesLabelledPodsOverHTTPS() async throws {
        let scratch = try Scratch()
        let (cert, key) = (scratch.path + "/injector.pem", scratch.path + "/injector.key")
        #expect(try await run(which("openssl") ?? "/usr/bin/openssl", [
            "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
            "-subj", "/CN=veil-injector", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
        ], scratch: scratch).status == 0)
        let port = freePort()
        let injector = try Spawned(veilBinary, [
            "injector", "--listen", "127.0.0.1:\(port)", "--tls-cert", cert, "--tls-key", key, "--tee", "simulated",
            "--coordinator", "veil-coordinator.veil-system.svc:2001", "--launcher-image", "veil:test", "--simulation-namespaces", "dev",
            "--max-connections-per-peer", "4",
        ], scratch: scratch)
        defer { injector.stopInBackground() }
        let deadline = Date().addingTimeInterval(20)
        while !isListening(port: port) && Date() < deadline { try? await Task.sleep(for: .milliseconds(50)) }
        let url = "https://127.0.0.1:\(port)/mutate"

        // Existing env, volumes and init containers; one container with an explicit command, one converted image.
        let original = pod(
            labels: ["veil.dev/service": "cache", "app": "redis"],
            containers: [
                ["name": "redis", "image": "debian:bookworm", "command": ["/usr/bin/redis-server", "/etc/redis/redis.conf"],
                 "env": [["name": "TZ", "value": "UTC"]], "volumeMounts": [["name": "conf", "mountPath": "/etc/redis"]]],
                ["name": "converted", "image": "registry.example/redis-veil:1"],
            ],
            initContainers: [["name": "prepare", "image": "busybox", "command": ["true"]]],
            volumes: [["name": "conf", "configMap": ["name": "redis-conf"]]])
        let mutated = try await admit(original, namespace: "dev", url: url, ca: cert, scratch: scratch)
        #expect(mutated.allowed && mutated.patched)
        #expect(!mutated.repatched, "a second pass must change nothing")
        let (passed, output) = try await validate(mutated.podPath, scratch: scratch)
        #expect(passed, "mutated pod: \(output)")
        let redis = containers(mutated.pod)[0], converted = containers(mutated.pod)[1]
        #expect(names(redis["env"]) == ["TZ", "VEIL_SERVICE", "VEIL_COORDINATOR", "VEIL_ROOT_CA", "VEIL_TEE", "VEIL_SIMULATION_KEY"])
        #expect(names(converted["env"]) == ["VEIL_SERVICE", "VEIL_COORDINATOR", "VEIL_ROOT_CA", "VEIL_TEE", "VEIL_SIMULATION_KEY"])
        #expect((redis["env"] as? [[String: Any]])?.first { $0["name"] as? String == "VEIL_SERVICE" }?["value"] as? String == "cache")
        #expect(redis["command"] as? [String] == [
            "/run/veil-launcher/lib/ld-linux-x86-64.so.2", "--library-path", "/run/veil-launcher/lib", "/run/veil-launcher/bin/veil-launcher", "launch", "--",
            "/usr/bin/redis-server", "/etc/redis/redis.conf",
        ])
        #expect(converted["command"] == nil, "a converted image's entrypoint already runs the launcher")
        #expect(names(redis["volumeMounts"], "mountPath") == ["/etc/redis", "/run/veil-root", "/run/veil", "/run/veil-simulation-key", "/run/veil-launcher"])
        #expect(names(converted["volumeMounts"], "mountPath") == ["/run/veil-root", "/run/veil", "/run/veil-simulation-key"])
        let volumes = (mutated.pod["spec"] as? [String: Any])?["volumes"] as? [[String: Any]] ?? []
        #expect(names(volumes) == ["conf", "veil-root", "veil-run", "veil-simulation-key", "veil-launcher"])
        #expect((volumes.first { $0["name"] as? String == "veil-run" }?["emptyDir"] as? [String: Any])?["medium"] as? String == "Memory")
        #expect(names(containers(mutated.pod, "initContainers")) == ["prepare", "veil-launcher-install"])
        #expect(containers(mutated.pod, "initContainers")[1]["image"] as? String == "veil:test")

        // Without the label: unchanged. Simulation outside its namespaces: denied, with the reason.
        let plain = try await admit(pod(labels: ["app": "redis"], containers: [["name": "redis", "image": "redis"]]), namespace: "dev", url: url, ca: cert, scratch: scratch)
        #expect(plain.allowed && !plain.patched)
        let denied = try await admit(original, namespace: "prod", url: url, ca: cert, scratch: scratch)
        #expect(!denied.allowed && !denied.patched)
        #expect(denied.message.contains("no confidentiality") && denied.message.contains("'prod'"), "\(denied.message)")

        // Not an AdmissionReview: 400, and the injector keeps serving.
        let bad = try await run(which("curl") ?? "/usr/bin/curl", ["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert", cert, "-X", "POST", "--data", "{\"kind\":\"Pod\"}", url], scratch: scratch)
        #expect(bad.stdout == "400")
        #expect(injector.isRunning)
        await #expect(try admit(original, namespace: "dev", url: url, ca: cert, scratch: scratch).patched)

        // A connection that never speaks is closed by the idle deadline (10 s), not kept.
        let silent = try await run("/usr/bin/python3", ["-c", """
            import socket, time
            s = socket.create_connection(("127.0.0.1", \(port)))
            s.settimeout(60)
            start = time.monotonic()
            print(len(s.recv(1)), round(time.monotonic() - start))
            """], scratch: scratch, timeout: 70)
        let closed = silent.stdout.split(separator: " ").map { Int($0.trimmingCharacters(in: .whitespacesAndNewlines)) ?? -1 }
        #expect(closed.count == 2 && closed[0] == 0 && (9...50).contains(closed[1]), "closed after: \(silent.stdout) \(silent.stderr)")

        // Over the per-peer cap (4 here): a fifth open connection from the address is closed at
        // once while the four stay open; once they close, the address is served again.
        let capped = try await run("/usr/bin/python3", ["-c", """
            import socket, time
            held = [socket.create_connection(("127.0.0.1", \(port))) for _ in range(4)]
            time.sleep(0.5)
            extra = socket.create_connection(("127.0.0.1", \(port)))
            extra.settimeout(5)
            start = time.monotonic()
            print(len(extra.recv(1)), round(time.monotonic() - start, 1))
            for s in held:
                s.setblocking(False)
                try:
                    print("closed" if s.recv(1) == b"" else "data")
                except BlockingIOError:
                    print("open")
                s.close()
            """], scratch: scratch, timeout: 30)
        let lines = capped.stdout.split(separator: "\n").map(String.init)
        #expect(lines.first.map { $0.hasPrefix("0 ") && (Double($0.dropFirst(2)) ?? 9) < 2 } == true && lines.dropFirst() == ["open", "open", "open", "open"],
                "\(capped.stdout) \(capped.stderr)")
        #expect(try await eventually(within: 10) {
            (try? await self.admit(original, namespace: "dev", url: url, ca: cert, scratch: scratch).patched) == true
        }, "served again once the held connections closed")
    }
}
