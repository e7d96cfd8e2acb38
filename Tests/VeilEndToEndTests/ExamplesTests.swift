import Foundation
import Testing

/// The README's examples, run for real: Debian's unmodified redis-server and nginx, as plain
/// processes and as a converted OCI image run by `veil run`; memcached, Python, Node and Java
/// talking through the mesh; memcached with its own TLS; a pod from the injector under podman.
@Suite(.serialized, .timeLimit(.minutes(15))) struct ExamplesTests {
    /// Runs the example; the wait polls without blocking a thread (``Spawned/wait(timeout:)``).
    func runExample(_ name: String, timeout: TimeInterval = 180) async throws -> RunResult {
        let scratch = try Scratch()
        return try await run(
            "/bin/bash", [repositoryRoot + "/examples/\(name)/run.sh"],
            environment: ["VEIL_SKIP_BUILD": "1", "VEIL": veilBinary], scratch: scratch, timeout: timeout)
    }

    /// Confidential inference: Debian's python3 and scikit-learn in a converted image, the model
    /// encrypted; predictions over mutual TLS equal scikit-learn's; tampering, rollback and a
    /// changed library are refused before the server starts.
    @Test func healthcareInferenceMatchesScikitLearnAndRefusesTampering() async throws {
        let result = try await runExample("healthcare-inference", timeout: 600)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("143 patients predicted; 0 differ from scikit-learn's own; largest probability difference 0.0e+00"))
        #expect(result.stdout.contains("refused (the model file was tampered with): veil launch: protected file /srv/model/model.joblib"))
        #expect(result.stdout.contains("(rollback refused)"))
        #expect(result.stdout.contains("refused (a library of the image changed)") && result.stdout.contains("is not the package's"))
        #expect(result.stdout.contains("OK: attested inference matched scikit-learn"))
        #expect(result.stderr.contains("NO confidentiality"), "simulation must say so")
    }

    /// The rendered deployment runs: Veil's own image (built twice: one digest), rendered by
    /// digest, its etcd, coordinator and injector under podman; the coordinator attests as the
    /// image's measurement; a labelled pod patched by the running injector answers PONG over TLS.
    @Test func renderedDeploymentRunsFromVeilsOwnImage() async throws {
        let result = try await runExample("kubernetes-deploy", timeout: 300)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("again sha256:") && !result.stdout.contains("two builds of the image differ"))
        #expect(result.stdout.contains("Loaded image: localhost/veil"), "podman image load reads the archive")
        #expect(result.stdout.contains("evidence verified"))
        #expect(result.stdout.contains(#"admission: {"allowed": true, "message": "", "patched": true, "repatched": false}"#))
        #expect(result.stdout.contains("redis-cli --tls --cacert root.pem PING: PONG"))
        #expect(result.stdout.contains("OK: the rendered etcd, coordinator and injector ran from Veil's own image"))
    }

    @Test func redisAnswersPongOverAttestedTLS() async throws {
        let result = try await runExample("redis")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("\nPONG\n"))
        #expect(result.stdout.contains("OK: redis-server answered PONG"))
        #expect(result.stderr.contains("NO confidentiality"), "simulation must say so")
    }

    @Test func nginxServesHTTPSOverAttestedTLS() async throws {
        let result = try await runExample("nginx")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("hello from an attested nginx"))
        #expect(result.stdout.contains("OK: nginx served HTTPS (200)"))
    }

    @Test func convertedRedisImageAnswersPongUnderVeilRun() async throws {
        let result = try await runExample("redis-image")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("\nPONG\n"))
        #expect(result.stdout.contains("OK: the converted redis image answered PONG over TLS"))
        #expect(result.stderr.contains("NO confidentiality"), "simulation must say so")
    }

    /// Spark standalone under Veil: auth secret, UI key stores and the protected dataset only
    /// after attestation; a worker is refused the dataset; an outsider cannot join.
    @Test func confidentialSparkJobRunsWithProvisionedSecurity() async throws {
        let result = try await runExample("confidential-spark", timeout: 600)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("refused: veil launch: coordinator refused (403)") && result.stdout.contains("has no ProtectedFilesKey"))
        #expect(result.stdout.contains("workers registered: 2"))
        #expect(result.stdout.contains("master UI: New, TLSv1.3") && result.stdout.contains("/service/spark-master"))
        #expect(result.stdout.contains("plain HTTP on the UI port redirects: 302 https://"))
        #expect(result.stdout.contains("spark-worker's activation certificate"))
        #expect(result.stdout.contains("outsider refused: Failed to connect to master") && result.stdout.contains("workers still 2"))
        #expect(result.stdout.contains("(matches)"))
        #expect(result.stdout.contains("the secrets are in no log"))
        #expect(result.stdout.contains("OK: Spark ran with its secrets, UI certificates and dataset released only to attested components"))
        #expect(result.stderr.contains("NO confidentiality"), "simulation must say so")
    }

    /// The injector's mutated pod of the converted Redis image runs under `podman kube play`.
    @Test func injectedPodRunsUnderPodmanKubePlay() async throws {
        let result = try await runExample("kubernetes-pod")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains(#"admission: {"allowed": true, "message": "", "patched": true, "repatched": false}"#))
        #expect(result.stdout.contains("redis-cli --tls --cacert root.pem PING: PONG"))
        #expect(result.stdout.contains(#"admission: {"allowed": true, "message": "", "patched": false, "repatched": false}"#))
        #expect(result.stdout.contains("plain pod: PONG"))
        #expect(result.stdout.contains("OK: the injector's pod ran under podman kube play"))
    }

    @Test func pythonReachesPlainMemcachedThroughTheMesh() async throws {
        let result = try await runExample("memcached-mesh")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("refused: alert certificate required"), "an anonymous TLS client is refused")
        #expect(result.stdout.contains("STORED|VALUE greeting 0 22|hello through the mesh|END|"))
        #expect(result.stdout.contains("OK: Python stored and read a value in plain-TCP memcached over mutual attested TLS"))
    }

    @Test func javaCallsNodeThroughTheMesh() async throws {
        let result = try await runExample("node-java-mesh")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("\n200 hello from node, you asked for /orders/42\n"))
        #expect(result.stdout.contains("OK: java Client.java called a Node http server over mutual attested TLS"))
    }

    @Test func memcachedWithItsOwnTLSServesAProvisionedClient() async throws {
        let result = try await runExample("memcached-tls")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("refused: alert certificate required"))
        #expect(result.stdout.contains("TLSv1.3 STORED|VALUE report 0 9|quarterly|END|"))
    }
}
