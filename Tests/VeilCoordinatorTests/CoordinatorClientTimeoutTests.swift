import Foundation
import Glibc
import Testing
@testable import VeilClient

/// A server that accepts connections but never answers must not hang a command.
@Suite struct CoordinatorClientTimeoutTests {
    /// A listening socket that is never accepted from: the kernel completes TCP handshakes into
    /// its backlog, and nothing ever reads or writes.
    final class SilentListener {
        let fd: Int32
        let port: Int

        init() throws {
            let fd = socket(AF_INET, Int32(SOCK_STREAM.rawValue), 0)
            self.fd = fd
            var address = sockaddr_in()
            address.sin_family = sa_family_t(AF_INET)
            address.sin_addr.s_addr = inet_addr("127.0.0.1")
            var length = socklen_t(MemoryLayout<sockaddr_in>.size)
            let bound = withUnsafeMutablePointer(to: &address) { pointer in
                pointer.withMemoryRebound(to: sockaddr.self, capacity: 1) { bind(fd, $0, length) == 0 && listen(fd, 8) == 0 && getsockname(fd, $0, &length) == 0 }
            }
            guard bound else { throw POSIXError(.EADDRNOTAVAIL) }
            port = Int(UInt16(bigEndian: address.sin_port))
        }

        deinit { close(fd) }
    }

    @Test(.timeLimit(.minutes(1))) func aSilentServerIsAnErrorNamingTheWaitNotAHang() async throws {
        let silent = try SilentListener()
        let client = try CoordinatorClient(address: "127.0.0.1:\(silent.port)", trust: .unverifiedForAttestation, responseTimeout: .seconds(1))
        let started = ContinuousClock.now
        do {
            _ = try await client.call(.GET, "/api/v1/status")
            Issue.record("a server that never answers produced a response")
        } catch let error as CoordinatorClientError {
            #expect("\(error)".contains("cannot reach the coordinator at 127.0.0.1:\(silent.port): no answer within 1 s"), "\(error)")
            // Failover: another replica may answer.
            #expect(error.isFailover)
        }
        #expect(ContinuousClock.now - started < .seconds(10))
        await client.shutdown()
    }
}
