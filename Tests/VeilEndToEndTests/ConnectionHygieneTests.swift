import Foundation
import Testing

/// Connections that never finish a request are closed by the idle deadline, a launch still
/// succeeds in the middle of 3,000 of them, and a peer over its cap is refused while another
/// is served (Tests/Scripts/connection_flood.py makes the connections).
@Suite(.timeLimit(.minutes(5))) struct ConnectionHygieneTests {
    static let flood = repositoryRoot + "/Tests/Scripts/connection_flood.py"

    @Test func silentHalfOpenAndPartialHeaderConnectionsAreClosedAndCappedWhileLaunchesWork() async throws {
        let scratch = try Scratch()
        let idle = 4.0
        let coordinator = try await CoordinatorProcess(scratch: scratch, arguments: ["--idle-timeout", "\(idle)", "--max-connections", "4000"])
        let command = ["/bin/true"]
        let measurement = try await coordinator.measure(service: "app", command: command)
        let set = try await coordinator.setManifest("""
            {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(measurement)"}}, "Services": {"app": {"Package": "app"}},
             "Config": {"AllowSimulation": true}}
            """)
        #expect(set.status == 0, "\(set.stderr)")
        let (host, port) = Self.split(coordinator.meshAddress)

        // 1,000 each of silent, half-a-ClientHello and never-ending-header connections, from 16 addresses.
        let flood = try Spawned("/usr/bin/env", ["python3", Self.flood, "flood", host, port, "1000", "16", "60"], scratch: scratch)
        let opened = await eventually(within: 120) { flood.stdout.contains("opened") || !flood.isRunning }
        #expect(opened && flood.stdout.contains("opened 3000"), "\(flood.stdout) \(flood.stderr)")
        let launch = try await coordinator.veil(coordinator.launchArguments(service: "app", command: command))
        #expect(launch.status == 0, "a launch during the flood: \(launch.stderr)")
        let flooded = await flood.wait(timeout: 120)
        let report = try Self.report(flooded)
        #expect(report["closedByServer"] as? Int == 3000 && report["stillOpen"] as? Int == 0, "\(report)")
        // Closed by the deadline, not before it and not long after (the last was opened last).
        let seconds = report["seconds"] as? Double ?? 0
        #expect(seconds > 0 && seconds < idle + 40, "\(report)")

        // The default cap of 256 per peer: the extra 10 from one address are closed at once,
        // another address is still served.
        let capped = try await run("/usr/bin/env", ["python3", Self.flood, "cap", host, port, "256", "127.0.0.60", "127.0.0.61"], scratch: scratch)
        let cap = try Self.report(capped)
        #expect(cap["closedAtOnce"] as? Int == 10 && cap["otherStatus"] as? Int == 200, "\(cap) \(capped.stderr)")
        // Places are given back when connections end: the capped address is served again.
        var status = 0
        _ = try await eventually(within: 20) {
            status = try Self.report(try await run("/usr/bin/env", ["python3", Self.flood, "get", host, port, "127.0.0.60"], scratch: scratch))["status"] as? Int ?? 0
            return status == 200
        }
        #expect(status == 200, "the capped address was not served again")

        // A TLS connection ends on the server once the client answers the close (or NIOSSL's
        // shutdown timeout passes): the counts settle shortly after the script has exited.
        var metrics = ""
        let counted = try await eventually(within: 30) {
            metrics = try await coordinator.curl("GET", coordinator.clientAddress, "/metrics").1
            return (prometheusSample(metrics, "veil_connections_without_request_total") ?? 0) >= 3000
        }
        #expect(counted, "\(metrics.suffix(1500))")
        #expect((prometheusSample(metrics, "veil_connections_refused_total", ["reason": "peer-cap"]) ?? 0) >= 10, "\(metrics.suffix(1500))")
        #expect(coordinator.process?.stderr.contains("connections refused: too many open") == true)
        #expect(coordinator.process?.isRunning == true)
    }

    static func split(_ address: String) -> (String, String) {
        let parts = address.split(separator: ":")
        return (String(parts[0]), String(parts[1]))
    }

    static func report(_ result: RunResult) throws -> [String: Any] {
        let line = try #require(result.stdout.split(separator: "\n").last, "no report: \(result.stdout) \(result.stderr)")
        return try #require(try JSONSerialization.jsonObject(with: Data(line.utf8)) as? [String: Any], "\(result.stdout) \(result.stderr)")
    }
}
