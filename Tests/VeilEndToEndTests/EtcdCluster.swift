import Foundation
import Glibc
import Testing

/// A real etcd cluster (Debian's etcd-server) on loopback: TLS with client certificates on the
/// client port, made by OpenSSL; members started and stopped by PID.
final class EtcdCluster {
    let scratch: Scratch
    let directory: String
    let clientPorts: [Int]
    let peerPorts: [Int]
    private(set) var members: [Spawned?]

    var ca: String { directory + "/ca.pem" }
    var clientCert: String { directory + "/client.pem" }
    var clientKey: String { directory + "/client-key.pem" }
    var endpoints: [String] { clientPorts.map { "https://127.0.0.1:\($0)" } }

    /// `veil coordinator` arguments for a store under `prefix` in this cluster.
    func storeArguments(prefix: String) -> [String] {
        ["--store", "etcd", "--etcd-endpoints", endpoints.joined(separator: ","), "--etcd-ca", ca, "--etcd-cert", clientCert,
         "--etcd-key", clientKey, "--etcd-prefix", prefix]
    }

    init(scratch: Scratch, size: Int = 3) async throws {
        self.scratch = scratch
        directory = scratch.path + "/etcd"
        clientPorts = (0..<size).map { _ in freePort() }
        peerPorts = (0..<size).map { _ in freePort() }
        members = Array(repeating: nil, count: size)
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        try await makeCertificates()
        for index in 0..<size { try start(index, state: "new") }
        try await waitUntilHealthy()
    }

    deinit { stopAll() }

    private func makeCertificates() async throws {
        let script = """
            set -e
            cd '\(directory)'
            openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout ca-key.pem -out ca.pem -subj /CN=etcd-test-ca -days 2 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout server-key.pem -out server.csr -subj /CN=etcd 2>/dev/null
            printf 'subjectAltName=IP:127.0.0.1,DNS:localhost\\nextendedKeyUsage=serverAuth,clientAuth\\n' > server.ext
            openssl x509 -req -in server.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile server.ext -out server.pem 2>/dev/null
            openssl req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout client-key.pem -out client.csr -subj /CN=veil 2>/dev/null
            printf 'extendedKeyUsage=clientAuth\\n' > client.ext
            openssl x509 -req -in client.csr -CA ca.pem -CAkey ca-key.pem -CAcreateserial -days 2 -extfile client.ext -out client.pem 2>/dev/null
            """
        let result = try await run("/bin/bash", ["-c", script], scratch: scratch)
        try #require(result.status == 0, "\(result.stderr)")
    }

    func start(_ index: Int, state: String = "existing") throws {
        let etcd = try #require(which("etcd"), "etcd is not installed (apt-get install -y etcd-server)")
        let cluster = peerPorts.enumerated().map { "m\($0)=http://127.0.0.1:\($1)" }.joined(separator: ",")
        members[index] = try Spawned(etcd, [
            "--name", "m\(index)", "--data-dir", "\(directory)/m\(index)",
            "--listen-client-urls", endpoints[index], "--advertise-client-urls", endpoints[index],
            "--listen-peer-urls", "http://127.0.0.1:\(peerPorts[index])", "--initial-advertise-peer-urls", "http://127.0.0.1:\(peerPorts[index])",
            "--initial-cluster", cluster, "--initial-cluster-state", state, "--initial-cluster-token", "veil-test",
            "--cert-file", "\(directory)/server.pem", "--key-file", "\(directory)/server-key.pem",
            "--trusted-ca-file", ca, "--client-cert-auth", "--log-level", "warn",
        ], scratch: scratch)
    }

    /// POSTs JSON to a member's gateway with the client certificate.
    func call(_ member: Int, _ path: String, _ body: String) async throws -> String {
        try await run(which("curl") ?? "/usr/bin/curl", [
            "-s", "-m", "5", "--cacert", ca, "--cert", clientCert, "--key", clientKey, "-X", "POST", "\(endpoints[member])\(path)", "-d", body,
        ], scratch: scratch).stdout
    }

    func waitUntilHealthy(timeout: TimeInterval = 30) async throws {
        let healthy = await eventually(within: timeout) {
            for member in members.indices where members[member]?.isRunning == true {
                if (try? await call(member, "/v3/kv/range", #"{"key": "AA=="}"#))?.contains("header") == true { return true }
            }
            return false
        }
        if healthy { return }
        Issue.record("etcd cluster not healthy after \(timeout) s")
    }

    /// The index of the current leader.
    func leader() async throws -> Int? {
        struct Status: Decodable {
            struct Header: Decodable { var member_id: String }
            var header: Header
            var leader: String
        }
        for index in members.indices where members[index]?.isRunning == true {
            guard let reply = try? await call(index, "/v3/maintenance/status", "{}"),
                let status = try? JSONDecoder().decode(Status.self, from: Data(reply.utf8)) else { continue }
            for candidate in members.indices where members[candidate]?.isRunning == true {
                if let other = try? await JSONDecoder().decode(Status.self, from: Data(try call(candidate, "/v3/maintenance/status", "{}").utf8)),
                    other.header.member_id == status.leader
                {
                    return candidate
                }
            }
        }
        return nil
    }

    func kill(_ index: Int) {
        members[index]?.kill9()
    }

    func stopAll() {
        for member in members { member?.kill9() }
    }

    /// The raw value stored at `key` (base64 in etcd's JSON), or nil.
    func value(_ key: String) async throws -> String? {
        struct Range: Decodable {
            struct KV: Decodable { var value: String? }
            var kvs: [KV]?
        }
        let body = #"{"key": "\#(Data(key.utf8).base64EncodedString())"}"#
        for index in members.indices where members[index]?.isRunning == true {
            if let range = try? await JSONDecoder().decode(Range.self, from: Data(try call(index, "/v3/kv/range", body).utf8)) { return range.kvs?.first?.value }
        }
        return nil
    }

    func put(_ key: String, base64Value: String) async throws {
        let body = #"{"key": "\#(Data(key.utf8).base64EncodedString())", "value": "\#(base64Value)"}"#
        for index in members.indices where members[index]?.isRunning == true {
            if await (try? call(index, "/v3/kv/put", body))?.contains("header") == true { return }
        }
        Issue.record("could not put \(key)")
    }
}
