import Foundation
import Testing

/// `veil-bench mesh` end to end, small: the mesh, stunnel4 and Envoy (installed by
/// scripts/install-deps.sh) come up with the same TLS 1.3 cipher, carry every byte and
/// redis-benchmark's requests, and nothing is left running afterwards.
@Suite(.timeLimit(.minutes(10))) struct BenchMeshTests {
    @Test func benchMeshComparesEveryTunnelAndCleansUp() async throws {
        let scratch = try Scratch()
        let report = scratch.path + "/mesh.json"
        let result = try await run(
            veilBenchBinary, ["mesh", "--mebibytes", "32", "--requests", "5000", "--clients", "10", "--rounds", "1", "--json", report],
            scratch: scratch, timeout: 300)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        #expect(result.stdout.contains("veil mesh: TLSv1.3 TLS_AES_128_GCM_SHA256"))
        #expect(result.stdout.contains("stunnel4: TLSv1.3 TLS_AES_128_GCM_SHA256"))
        #expect(result.stdout.contains("envoy: TLSv1.3 TLS_AES_128_GCM_SHA256"), "\(result.stdout)")
        let json = try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: report))) as? [String: Any])
        for contender in ["veil", "stunnel", "envoy", "direct"] {
            let figures = try #require(json[contender] as? [String: Any], "\(contender)")
            #expect((figures["bulkMiBPerSecond"] as? Double ?? 0) > 0, "\(contender)")
            let get = try #require(figures["get"] as? [String: Any])
            #expect((get["perSecond"] as? Double ?? 0) > 0, "\(contender)")
            #expect((get["p99Milliseconds"] as? Double ?? 0) >= (get["p50Milliseconds"] as? Double ?? 1), "\(contender)")
        }
        // The proxies, stunnel and redis-server it started are gone.
        let leftovers = ((try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? []).compactMap(Int32.init).filter { pid in
            let cmdline = (try? String(contentsOfFile: "/proc/\(pid)/cmdline", encoding: .utf8)) ?? ""
            let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
            return !status.contains("State:\tZ") && (cmdline.contains("--parent-link\0polling") || cmdline.contains("veil-bench-mesh-"))
        }
        #expect(leftovers.isEmpty, "left running: \(leftovers)")
    }
}
