import Foundation
import Testing

/// The README's examples, run for real: Debian's unmodified redis-server and nginx, as plain
/// processes and as a converted OCI image run by `veil run`.
@Suite(.serialized) struct ExamplesTests {
    func runExample(_ name: String) throws -> RunResult {
        let scratch = try Scratch()
        return try run(
            "/bin/bash", [repositoryRoot + "/examples/\(name)/run.sh"],
            environment: ["VEIL_SKIP_BUILD": "1", "VEIL": veilBinary], scratch: scratch, timeout: 180)
    }

    @Test func redisAnswersPongOverAttestedTLS() throws {
        let result = try runExample("redis")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("\nPONG\n"))
        #expect(result.stdout.contains("OK: redis-server answered PONG"))
        #expect(result.stderr.contains("NO confidentiality"), "simulation must say so")
    }

    @Test func nginxServesHTTPSOverAttestedTLS() throws {
        let result = try runExample("nginx")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("hello from an attested nginx"))
        #expect(result.stdout.contains("OK: nginx served HTTPS (200)"))
    }

    @Test func convertedRedisImageAnswersPongUnderVeilRun() throws {
        let result = try runExample("redis-image")
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("\nPONG\n"))
        #expect(result.stdout.contains("OK: the converted redis image answered PONG over TLS"))
        #expect(result.stderr.contains("NO confidentiality"), "simulation must say so")
    }
}
