import Foundation
import Testing

/// Activation certificates are X.509-SVIDs: py-spiffe (pip `spiffe`, an implementation of the
/// SPIFFE X.509-SVID rules with no Veil code) parses a launched service's provisioned
/// certificate chain and key as an SVID — exactly one SPIFFE ID URI, not a CA, a signing key
/// usage, CA intermediates — with the ID `spiffe://TRUST-DOMAIN/service/NAME` (the manifest's
/// `Config.TrustDomain` here), and
/// OpenSSL verifies the chain to the coordinator's root. A JWT-SVID it asks for with that
/// certificate validates with py-spiffe against the coordinator's JWT bundle.
@Suite(.timeLimit(.minutes(3))) struct SVIDTests {
    @Test func aLaunchedServicesCertificateIsAnX509SVID() async throws {
        let python = try #require(which("python3"))
        let check = try await run(python, ["-c", "import spiffe"], scratch: try Scratch())
        try #require(check.status == 0, "pip install spiffe (scripts/install-deps.sh test): \(check.stderr)")
        let scratch = try Scratch(memory: true)
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let command = ["/bin/true"]
        let directory = scratch.path + "/svid"
        let parameters = """
            {"Files": {"\(directory)/chain.pem": "{{ pem .Veil.Service.Cert }}{{ pem .Veil.IntermediateCA.Cert }}",
                       "\(directory)/key.pem": "{{ pem .Veil.Service.Private }}"}}
            """
        let manifest = """
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(try await coordinator.measure(service: "web.shop", command: command))"}},
             "Services": {"web.shop": {"Package": "app", "Parameters": \(parameters)}}, "Config": {"AllowSimulation": true, "TrustDomain": "shop.example"}}
            """
        let set = try await coordinator.setManifest(manifest)
        try #require(set.status == 0, "\(set.stderr)")
        let launched = try await coordinator.veil(coordinator.launchArguments(service: "web.shop", command: command))
        try #require(launched.status == 0, "\(launched.stderr)")

        let parsed = try await run(python, ["-c", """
            import sys
            from spiffe import X509Svid
            svid = X509Svid.parse(open(sys.argv[1], "rb").read(), open(sys.argv[2], "rb").read())
            print(svid.spiffe_id, len(svid.cert_chain))
            """, "\(directory)/chain.pem", "\(directory)/key.pem"], scratch: scratch)
        #expect(parsed.status == 0, "\(parsed.stderr)")
        let words = parsed.stdout.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
        let id = try #require(words.first)
        #expect(id == "spiffe://shop.example/service/web.shop" && words.last == "2", "the manifest's trust domain: \(parsed.stdout)")

        let intermediate = try scratch.write(String(try String(contentsOfFile: "\(directory)/chain.pem", encoding: .utf8)
            .components(separatedBy: "-----END CERTIFICATE-----").dropFirst().joined(separator: "-----END CERTIFICATE-----")), to: "intermediate.pem")
        let verified = try await run("/usr/bin/openssl", ["verify", "-CAfile", coordinator.rootPath, "-untrusted", intermediate, "\(directory)/chain.pem"], scratch: scratch)
        #expect(verified.status == 0 && verified.stdout.contains("OK"), "\(verified.stdout)\(verified.stderr)")

        // A JWT-SVID asked for with that certificate validates with py-spiffe against the
        // coordinator's JWT bundle, for its audience only; without the certificate: 401.
        let jwt = try await run(python, ["-c", """
            import json, ssl, sys, urllib.request, urllib.error
            from spiffe import JwtBundle, JwtSvid, TrustDomain
            base, root, chain, key = sys.argv[1:5]
            def post(context):
                request = urllib.request.Request(base + "/api/v1/svid/jwt", data=json.dumps({"audience": ["billing"]}).encode(),
                                                 headers={"Content-Type": "application/json"}, method="POST")
                return json.load(urllib.request.urlopen(request, context=context))
            context = ssl.create_default_context(cafile=root)
            context.load_cert_chain(chain, key)
            answer = post(context)
            bundle_bytes = urllib.request.urlopen(base + "/api/v1/svid/jwt-bundle", context=ssl.create_default_context(cafile=root)).read()
            bundle = JwtBundle.parse(TrustDomain(answer["spiffeID"].split("/")[2]), bundle_bytes)
            print(JwtSvid.parse_and_validate(answer["token"], bundle, {"billing"}).spiffe_id)
            try:
                JwtSvid.parse_and_validate(answer["token"], bundle, {"someone-else"})
                print("another audience: accepted")
            except Exception:
                print("another audience: refused")
            try:
                post(ssl.create_default_context(cafile=root))
            except urllib.error.HTTPError as error:
                print("without certificate:", error.code)
            """, "https://\(coordinator.meshAddress)", coordinator.rootPath, "\(directory)/chain.pem", "\(directory)/key.pem"], scratch: scratch)
        let lines = jwt.stdout.split(separator: "\n").map(String.init)
        #expect(jwt.status == 0 && lines.count == 3, "\(jwt.stdout)\(jwt.stderr)")
        #expect(lines.first == id && lines.dropFirst().first == "another audience: refused" && lines.last == "without certificate: 401", "\(lines)")
    }
}
