import Foundation
import Testing

/// `/metrics` on the client API: Prometheus text that promtool accepts, with counts that
/// follow what launchers actually did.
@Suite(.timeLimit(.minutes(5))) struct MetricsTests {
    @Test func scrapeCountsActivationsAndPassesPromtool() async throws {
        let promtool = try #require(which("promtool"), "promtool (Debian prometheus) must be installed")
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let command = ["/bin/true"]
        let measurement = try await coordinator.measure(service: "app", command: command)
        #expect(try await coordinator.setManifest("""
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(measurement)"}},
             "Services": {"app": {"Package": "app", "MaxActivations": 1}},
             "Config": {"AllowSimulation": true}}
            """).status == 0)

        #expect(try await coordinator.veil(coordinator.launchArguments(service: "app", command: command)).status == 0)
        let overQuota = try await coordinator.veil(coordinator.launchArguments(service: "app", command: command))
        #expect(overQuota.status != 0)
        let otherKey = scratch.path + "/other-key.pem"
        #expect(try await run(which("openssl") ?? "/usr/bin/openssl", ["genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-out", otherKey], scratch: scratch).status == 0)
        #expect(try await coordinator.veil(coordinator.launchArguments(service: "app", key: otherKey, command: command)).status != 0)
        // Client-chosen names never become series.
        for name in ["nope", "attacker-\(UUID().uuidString.prefix(8).lowercased())"] {
            #expect(try await coordinator.veil(coordinator.launchArguments(service: name, command: command)).status != 0)
        }

        // Scraped over TLS verified against the pinned root, as Prometheus would with `ca_file`.
        let scrape = try await run(which("curl") ?? "/usr/bin/curl", ["-sS", "--fail", "--cacert", coordinator.rootPath, "https://\(coordinator.clientAddress)/metrics"], scratch: scratch)
        #expect(scrape.status == 0, "\(scrape.stderr)")
        let text = scrape.stdout

        #expect(prometheusSample(text, "veil_activations_total", ["service": "app", "outcome": "activated"]) == 1, "\(text)")
        #expect(prometheusSample(text, "veil_activations_total", ["service": "app", "outcome": "activationLimitReached"]) == 1)
        #expect(prometheusSample(text, "veil_activations_total", ["service": "app", "outcome": "untrustedPlatformKey"]) == 1)
        #expect(prometheusSample(text, "veil_activations_total", ["service": "_unlisted", "outcome": "unknownService"]) == 2)
        #expect(!text.contains("nope") && !text.contains("attacker-"))
        // Every attempt is timed; the two unknown services never reached verification.
        #expect(prometheusSample(text, "veil_activation_duration_seconds_count") == 5)
        #expect(prometheusSample(text, "veil_evidence_verification_duration_seconds_count") == 3)
        #expect(prometheusSample(text, "veil_activation_duration_seconds_bucket", ["le": "+Inf"]) == 5)

        let status = try JSONSerialization.jsonObject(with: Data(try await coordinator.curl("GET", coordinator.clientAddress, "/api/v1/status").1.utf8)) as? [String: Any]
        let generation = try #require(status?["generation"] as? Int)
        #expect(prometheusSample(text, "veil_state_generation") == Double(generation))
        #expect(prometheusSample(text, "veil_history_entries") == Double(try #require(status?["historyLength"] as? Int)))
        #expect(prometheusSample(text, "veil_manifest_set") == 1)
        #expect(prometheusSample(text, "veil_recovery_mode") == 0)
        #expect(prometheusSample(text, "veil_simulated") == 1)
        let expiry = try #require(prometheusSample(text, "veil_coordinator_certificate_expiry_timestamp_seconds"))
        let days = (expiry - Date().timeIntervalSince1970) / 86400
        #expect(days > 29 && days <= 30, "default validity is 30 days: \(days)")

        // promtool lints names, types, help texts and the histogram layout.
        let file = try scratch.write(text, to: "scrape.prom")
        let lint = try await run("/bin/sh", ["-c", "\"$0\" check metrics < \"$1\"", promtool, file], scratch: scratch)
        #expect(lint.status == 0, "promtool: \(lint.stdout)\(lint.stderr)")
        // The control: promtool does fail on a family without help text.
        let bad = try scratch.write("# TYPE veil_bad_total counter\nveil_bad_total 1\n", to: "bad.prom")
        #expect(try await run("/bin/sh", ["-c", "\"$0\" check metrics < \"$1\"", promtool, bad], scratch: scratch).status != 0)
    }
}
