import FoundationEssentials
import Glibc
import VeilCore

/// Evidence from the guest API of a Confidential Containers pod (guest-components'
/// `api-server-rest`, `http://127.0.0.1:8006` inside a pod of a confidential-VM runtime class):
/// `GET /aa/evidence?runtime_data=B64URL&encoding=base64` returns the attestation agent's
/// evidence for that report data, in the attester's shape (``CoCoEvidence``). Such a pod needs
/// no configfs-tsm host path: the agent inside the VM owns the TEE device.
///
/// Plain HTTP on loopback inside the VM, as the guest API serves it; whatever it returns is
/// verified by the coordinator like any other evidence, so the API is not trusted.
public struct GuestAPIProvider: EvidenceProvider {
    public static let defaultURL = "http://127.0.0.1:8006"
    /// The environment variable naming another address (for tests' doubles).
    public static let environmentVariable = VeilEnvironment.guestAPI
    let host: String
    let port: UInt16
    let timeout: Int32

    public var isSimulated: Bool { false }
    public var isConfidentialVM: Bool { true }

    /// `url` is `http://HOST:PORT` with an IPv4 host or `localhost`.
    public init(url: String = GuestAPIProvider.defaultURL, timeoutSeconds: Int32 = 30) throws(ProviderError) {
        guard url.hasPrefix("http://") else { throw .unavailable("guest API URL '\(url)' is not http://HOST:PORT") }
        let authority = url.dropFirst("http://".count).split(separator: "/").first.map(String.init) ?? ""
        guard let colon = authority.lastIndex(of: ":"), let port = UInt16(authority[authority.index(after: colon)...]) else {
            throw .unavailable("guest API URL '\(url)' is not http://HOST:PORT")
        }
        let host = String(authority[..<colon])
        self.host = host == "localhost" ? "127.0.0.1" : host
        self.port = port
        timeout = timeoutSeconds
    }

    public func evidence(reportData: [UInt8]) throws -> Evidence {
        let path = "/aa/evidence?runtime_data=\(Base64URL.encode(reportData))&encoding=base64"
        let (status, body) = try get(path)
        guard status == 200 else {
            throw ProviderError.unavailable("guest API \(host):\(port) answered \(status) to \(path): \(String(decoding: body.prefix(200), as: UTF8.self))")
        }
        guard let value = try? JSONValue.parse(body), let kind = CoCoEvidence.kind(of: value) else {
            throw ProviderError.malformed("guest API evidence is not an SNP or TDX attester's JSON")
        }
        return try CoCoEvidence.evidence(value, kind: kind)
    }

    /// One HTTP/1.1 GET with `Connection: close`: status and body (plain or chunked).
    func get(_ path: String) throws(ProviderError) -> (Int, [UInt8]) {
        let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
        guard fd >= 0 else { throw .unavailable("socket: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        var time = timeval(tv_sec: Int(timeout), tv_usec: 0)
        setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &time, socklen_t(MemoryLayout<timeval>.size))
        var address = sockaddr_in()
        address.sin_family = sa_family_t(AF_INET)
        address.sin_port = port.bigEndian
        guard inet_pton(AF_INET, host, &address.sin_addr) == 1 else { throw .unavailable("guest API host '\(host)' is not an IPv4 address") }
        let connected = withUnsafePointer(to: &address) {
            $0.withMemoryRebound(to: sockaddr.self, capacity: 1) { connect(fd, $0, socklen_t(MemoryLayout<sockaddr_in>.size)) }
        }
        guard connected == 0 else {
            throw .unavailable("cannot reach the guest API at \(host):\(port) (\(String(cString: strerror(errno)))): is this a Confidential Containers pod with api-server-rest?")
        }
        let request = Array("GET \(path) HTTP/1.1\r\nHost: \(host):\(port)\r\nConnection: close\r\n\r\n".utf8)
        guard request.withUnsafeBytes({ send(fd, $0.baseAddress, $0.count, Int32(MSG_NOSIGNAL)) }) == request.count else {
            throw .unavailable("guest API: cannot send the request")
        }
        var response: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let count = buffer.withUnsafeMutableBytes { recv(fd, $0.baseAddress, $0.count, 0) }
            if count == 0 { break }
            guard count > 0 else { throw .unavailable("guest API: reading the answer failed (\(String(cString: strerror(errno))))") }
            response += buffer[..<count]
            guard response.count <= 16 << 20 else { throw .malformed("guest API answer over 16 MiB") }
        }
        return try Self.parse(response)
    }

    static func parse(_ response: [UInt8]) throws(ProviderError) -> (Int, [UInt8]) {
        let separator: [UInt8] = Array("\r\n\r\n".utf8)
        guard let end = response.indices.first(where: { response[$0...].starts(with: separator) }) else {
            throw .malformed("guest API answer has no HTTP header")
        }
        let head = String(decoding: response[..<end], as: UTF8.self).split(separator: "\r\n")
        let statusLine = head.first?.split(separator: " ") ?? []
        guard statusLine.count >= 2, let status = Int(statusLine[1]) else { throw .malformed("guest API answer has no HTTP status") }
        var body = Array(response[(end + 4)...])
        if head.contains(where: { String($0.lowercased().filter { $0 != " " }) == "transfer-encoding:chunked" }) {
            body = try dechunk(body)
        }
        return (status, body)
    }

    static func dechunk(_ bytes: [UInt8]) throws(ProviderError) -> [UInt8] {
        var out: [UInt8] = []
        var index = 0
        while true {
            guard let lineEnd = bytes[index...].firstIndex(of: UInt8(ascii: "\r")), lineEnd + 1 < bytes.count,
                let size = Int(String(decoding: bytes[index..<lineEnd], as: UTF8.self).split(separator: ";")[0], radix: 16)
            else { throw .malformed("guest API answer: bad chunk") }
            index = lineEnd + 2
            if size == 0 { return out }
            guard index + size <= bytes.count else { throw .malformed("guest API answer: truncated chunk") }
            out += bytes[index..<index + size]
            index += size + 2
        }
    }
}
