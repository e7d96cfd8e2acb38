import FoundationEssentials
import Glibc

/// The Workload API served on a Unix socket (plaintext gRPC, as SPIFFE's clients expect on
/// `unix://`), reachable only by its owner: the app's user, or the launcher's.
public final class WorkloadAPIServer: Sendable {
    public let path: String
    private let server: GRPCUnixServer

    private init(path: String, server: GRPCUnixServer) {
        self.path = path
        self.server = server
    }

    /// Binds `path` (replacing a stale socket there, never another kind of file) and serves.
    /// Returns once the socket accepts connections.
    public static func start(at path: String, source: any WorkloadIdentitySource, owner: (uid: UInt32, gid: UInt32)?) async throws -> WorkloadAPIServer {
        var existing = stat()
        if lstat(path, &existing) == 0 {
            guard existing.st_mode & S_IFMT == S_IFSOCK else { throw WorkloadAPIError.pathTaken(path) }
            unlink(path)
        }
        let directory = String(path[..<(path.lastIndex(of: "/") ?? path.startIndex)])
        if !directory.isEmpty { try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true) }
        let server: GRPCUnixServer
        do {
            server = try await GRPCUnixServer.bind(path: path, methods: WorkloadAPIService(source: source).methods)
        } catch {
            throw WorkloadAPIError.cannotListen(path, "\(error)")
        }
        if let owner, chown(path, owner.uid, owner.gid) != 0 {
            throw WorkloadAPIError.cannotListen(path, "cannot hand it to \(owner.uid):\(owner.gid): \(String(cString: strerror(errno)))")
        }
        guard chmod(path, 0o600) == 0 else { throw WorkloadAPIError.cannotListen(path, String(cString: strerror(errno))) }
        return WorkloadAPIServer(path: path, server: server)
    }

    public func stop() async {
        await server.close()
        unlink(path)
    }
}

public enum WorkloadAPIError: Error, CustomStringConvertible {
    case pathTaken(String)
    case cannotListen(String, String)

    public var description: String {
        switch self {
        case .pathTaken(let path): return "Workload API socket \(path): something other than a socket is there"
        case .cannotListen(let path, let why): return "Workload API socket \(path): \(why)"
        }
    }
}
