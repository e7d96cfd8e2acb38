import Foundation

/// One round's figures for one tunnel.
struct Measurement: Codable {
    struct Requests: Codable {
        var perSecond: Double
        var p50Milliseconds: Double
        var p99Milliseconds: Double
    }

    var bulkMiBPerSecond: Double
    var set: Requests
    var get: Requests

    static func median(of rounds: [Measurement]) -> Measurement {
        func requests(_ pick: (Measurement) -> Requests) -> Requests {
            Requests(
                perSecond: Bench.median(rounds.map { pick($0).perSecond }), p50Milliseconds: Bench.median(rounds.map { pick($0).p50Milliseconds }),
                p99Milliseconds: Bench.median(rounds.map { pick($0).p99Milliseconds }))
        }
        return Measurement(bulkMiBPerSecond: Bench.median(rounds.map(\.bulkMiBPerSecond)), set: requests(\.set), get: requests(\.get))
    }
}

struct MeshBenchReport: Codable {
    /// The rows README quotes: each figure against stunnel4, latencies against its p99.
    var record: BenchRecord {
        var results = BenchRecord(benchmark: "mesh")
        let tls = "TLS 1.3 AES-128-GCM, 2 processes per tunnel, median of \(rounds) rounds"
        results.add("mesh, \(mebibytes) MiB over one connection (\(tls))", veil.bulkMiBPerSecond, "MiB/s", better: .higher, peer: "stunnel4", stunnel.bulkMiBPerSecond)
        for (name, ours, theirs) in [("SET", veil.set, stunnel.set), ("GET", veil.get, stunnel.get)] {
            let label = "mesh, redis-benchmark \(name), \(clients) connections"
            results.add(label, ours.perSecond, "/s", better: .higher, peer: "stunnel4", theirs.perSecond)
            results.add(label + ", p99 latency", ours.p99Milliseconds, "ms", better: .lower, peer: "stunnel4", theirs.p99Milliseconds)
        }
        return results
    }

    var mebibytes: Int
    var requests: Int
    var clients: Int
    var rounds: Int
    var veil: Measurement
    var stunnel: Measurement
    var direct: Measurement

    var table: String {
        func row(_ label: String, _ veil: Double, _ stunnel: Double, _ unit: String, _ direct: Double) -> String {
            label.padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: "%12.1f %@ %12.1f %@   %5.2f×   (direct %.1f %@)", veil, unit, stunnel, unit, veil / stunnel, direct, unit)
        }
        func latency(_ label: String, _ veil: Measurement.Requests, _ stunnel: Measurement.Requests) -> String {
            label.padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: "p50 %.3f / %.3f ms   p99 %.3f / %.3f ms (veil / stunnel)", veil.p50Milliseconds, stunnel.p50Milliseconds,
                         veil.p99Milliseconds, stunnel.p99Milliseconds)
        }
        return """
            mesh bench: medians of \(rounds) rounds; both tunnels TLS 1.3 TLS_AES_128_GCM_SHA256, two processes each
            \("".padding(toLength: 26, withPad: " ", startingAt: 0))   veil mesh            stunnel4       veil/stunnel
            \(row("bulk \(mebibytes) MiB, 1 conn", veil.bulkMiBPerSecond, stunnel.bulkMiBPerSecond, "MiB/s", direct.bulkMiBPerSecond))
            \(row("redis SET, \(clients) conns", veil.set.perSecond, stunnel.set.perSecond, "req/s", direct.set.perSecond))
            \(latency("", veil.set, stunnel.set))
            \(row("redis GET, \(clients) conns", veil.get.perSecond, stunnel.get.perSecond, "req/s", direct.get.perSecond))
            \(latency("", veil.get, stunnel.get))
            """
    }
}
