import Foundation
import Testing

/// The SPIFFE Workload API the launcher's agent serves on the manifest's socket, spoken to by
/// py-spiffe (pip `spiffe`, over grpcio): an X.509-SVID whose chain OpenSSL verifies to the
/// coordinator's root, the X.509 bundle, renewals pushed on the open stream, a JWT-SVID validated
/// for its audience and refused for another, the JWT bundle — and a request without the
/// `workload.spiffe.io` header refused. The app finds the socket in `SPIFFE_ENDPOINT_SOCKET`.
@Suite(.timeLimit(.minutes(3))) struct WorkloadAPITests {
    @Test func pySpiffeFetchesValidatesAndSeesRenewalsOnTheStream() async throws {
        let python = try #require(which("python3"))
        let scratch = try Scratch(memory: true)
        let check = try await run(python, ["-c", "import spiffe"], scratch: scratch)
        try #require(check.status == 0, "pip install spiffe (scripts/install-deps.sh test): \(check.stderr)")
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let socket = scratch.path + "/agent/workload.sock"
        let command = ["/bin/sh", "-c", "echo \"socket=$SPIFFE_ENDPOINT_SOCKET\"; exec sleep 600"]
        let set = try await coordinator.setManifest("""
            {"Packages": {"api": {"Kind": "simulated", "Measurement": "\(try await coordinator.measure(service: "api", command: command))"}},
             "Services": {"api": {"Package": "api", "CertificateLifetime": "6s", "WorkloadAPISocket": "\(socket)"}},
             "Config": {"AllowSimulation": true, "TrustDomain": "shop.example"}}
            """)
        try #require(set.status == 0, "\(set.stderr)")
        let app = try Spawned(veilBinary, coordinator.launchArguments(service: "api", command: command), scratch: scratch)
        defer { app.kill9() }
        try #require(await eventually(within: 30) { app.stdout.contains("socket=") }, "\(app.stderr)")
        #expect(app.stdout.contains("socket=unix://\(socket)"), "\(app.stdout)")

        let client = try scratch.write("""
            import subprocess, sys, tempfile, threading
            import grpc
            from cryptography.hazmat.primitives.serialization import Encoding
            from spiffe import WorkloadApiClient
            from spiffe._proto import workload_pb2, workload_pb2_grpc
            socket, root = sys.argv[1], sys.argv[2]
            client = WorkloadApiClient(socket_path="unix://" + socket)
            svid = client.fetch_x509_svid()
            print("x509", svid.spiffe_id)
            chain = [c.public_bytes(Encoding.PEM) for c in svid.cert_chain]
            with tempfile.NamedTemporaryFile(suffix=".pem") as leaf, tempfile.NamedTemporaryFile(suffix=".pem") as rest:
                leaf.write(chain[0]); leaf.flush(); rest.write(b"".join(chain[1:])); rest.flush()
                verified = subprocess.run(["openssl", "verify", "-CAfile", root, "-untrusted", rest.name, leaf.name], capture_output=True, text=True)
                print("chain", "verified" if verified.returncode == 0 else "refused: " + verified.stdout + verified.stderr)
            bundle = client.fetch_x509_bundles().get_bundle_for_trust_domain(svid.spiffe_id.trust_domain)
            print("bundle", len(bundle.x509_authorities))
            seen, done = [svid.leaf.serial_number], threading.Event()
            def renewed(context):
                serial = context.default_svid.leaf.serial_number
                if serial not in seen:
                    seen.append(serial)
                if len(seen) >= 3:
                    done.set()
            handler = client.stream_x509_contexts(renewed, lambda error: print("stream error", error))
            done.wait(20)
            handler.cancel()
            print("renewals", len(seen) - 1)
            jwt = client.fetch_jwt_svid(audience={"db"})
            print("jwt", jwt.spiffe_id)
            print("validated", client.validate_jwt_svid(jwt.token, "db").spiffe_id)
            try:
                client.validate_jwt_svid(jwt.token, "other")
                print("other audience accepted")
            except Exception as error:
                print("other audience refused")
            print("jwt bundle", len(client.fetch_jwt_bundles().bundles))
            stub = workload_pb2_grpc.SpiffeWorkloadAPIStub(grpc.insecure_channel("unix://" + socket))
            try:
                next(stub.FetchX509SVID(workload_pb2.X509SVIDRequest()))
                print("no header accepted")
            except grpc.RpcError as error:
                print("no header refused:", error.code().name, error.details())
            header = (("workload.spiffe.io", "true"),)
            try:
                stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["a" * 70000]), metadata=header)
                print("oversized accepted")
            except grpc.RpcError as error:
                print("oversized refused:", error.code().name, error.details())
            try:
                stub.FetchJWTSVID(workload_pb2.JWTSVIDRequest(audience=["db"], spiffe_id="spiffe://shop.example/service/admin"), metadata=header)
                print("other identity accepted")
            except grpc.RpcError as error:
                print("other identity refused:", error.code().name)
            try:
                grpc.insecure_channel("unix://" + socket).unary_unary("/SpiffeWorkloadAPI/Nope")(b"", metadata=header)
                print("unknown method accepted")
            except grpc.RpcError as error:
                print("unknown method refused:", error.code().name)
            client.close()
            """, to: "client.py")
        let result = try await run(python, [client, socket, coordinator.rootPath], scratch: scratch, timeout: 60)
        let out = result.stdout
        #expect(result.status == 0, "\(result.stderr)\n\(app.stderr)")
        #expect(out.contains("x509 spiffe://shop.example/service/api"), "\(out)")
        #expect(out.contains("chain verified"), "\(out)")
        #expect(out.contains("bundle 1"), "\(out)")
        #expect(out.contains("renewals 2"), "two renewals pushed on the open stream: \(out)\n\(app.stderr)")
        #expect(out.contains("jwt spiffe://shop.example/service/api") && out.contains("validated spiffe://shop.example/service/api"), "\(out)")
        #expect(out.contains("other audience refused"), "\(out)")
        #expect(out.contains("jwt bundle 1"), "\(out)")
        #expect(out.contains("no header refused: INVALID_ARGUMENT security header missing from request"), "\(out)")
        #expect(out.contains("oversized refused: INVALID_ARGUMENT request larger than 65536 bytes"), "\(out)")
        #expect(out.contains("other identity refused: PERMISSION_DENIED"), "\(out)")
        #expect(out.contains("unknown method refused: UNIMPLEMENTED"), "\(out)")
    }

    /// `veil-bench renewal` prints renewals/s against activations/s, and the SVID fetch against
    /// loading the files, each with a positive figure.
    @Test func benchRenewalMeasuresAgainstItsPeers() async throws {
        let scratch = try Scratch()
        let result = try await run(veilBenchBinary, ["renewal", "--count", "40", "--concurrency", "4", "--fetches", "20"], scratch: scratch, timeout: 180)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        for row in ["activations (peer)", "renewals (new key, files rendered)", "X.509-SVID from the Workload API", "the same SVID loaded from files (peer)"] {
            let line = result.stdout.split(separator: "\n").first { $0.contains(row) }
            let figure = line.flatMap { $0.split(separator: " ").compactMap { Double($0) }.first }
            #expect((figure ?? 0) > 0, "\(row): \(result.stdout)")
        }
    }
}
