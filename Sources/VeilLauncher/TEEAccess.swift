import CVeilSys
import FoundationEssentials
import Glibc
import Synchronization
import VeilAttestation
import VeilCore

/// Takes the TEE's report interface away from the application. In a container of a
/// confidential VM the launcher needs configfs-tsm for its reports, but an application running
/// as root with it could mint reports over any data — another image's measurement in the
/// second half included — and impersonate that image's service.
///
/// `veil run` bind-mounts the guest's report directory at `/run/veil/tsm`, grants the launcher
/// CAP_SYS_ADMIN for exactly this and sets ``environmentVariable``. First thing in `main`,
/// while the process has one thread (capabilities are per thread, and threads inherit them),
/// `veil-launcher` opens the directory, detaches the mount (the open descriptor keeps working,
/// close-on-exec, for the launcher's own reports, failover included) and drops CAP_SYS_ADMIN
/// from every capability set, the bounding set included, so nothing it or the application runs
/// later can mount configfs again (`noNewPrivileges` is set too). The guest device is never
/// given to the container.
public enum TEEAccess {
    /// The environment variable `veil run` sets to ask for this.
    public static let environmentVariable = VeilEnvironment.dropTEEAccess

    public struct DropFailed: Error, CustomStringConvertible {
        public let step: String
        public let errno: Int32
        public var description: String {
            "cannot take the TEE's report interface away from the application (\(step)\(errno == 0 ? "" : ": " + String(cString: strerror(errno)))); refusing to go on"
        }
    }

    private static let detached = Atomic<Int32>(-1)

    /// Detaches the report directory at `VEIL_TSM_ROOT` and drops CAP_SYS_ADMIN when asked
    /// (``environmentVariable`` is `1`); nothing otherwise. Call before any thread starts.
    public static func detachIfAsked(environment: [String: String]) throws(DropFailed) {
        guard environment[environmentVariable] == "1" else { return }
        guard let tsmRoot = environment[VeilEnvironment.tsmRoot] else { throw DropFailed(step: "VEIL_TSM_ROOT is not set", errno: 0) }
        let threads = (try? FileManager.default.contentsOfDirectory(atPath: "/proc/self/task").count) ?? 0
        guard threads == 1 else { throw DropFailed(step: "\(threads) threads run already; capabilities are per thread", errno: 0) }
        let fd = open(tsmRoot, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw DropFailed(step: "open \(tsmRoot)", errno: errno) }
        guard umount2(tsmRoot, Int32(MNT_DETACH)) == 0 else { throw DropFailed(step: "umount \(tsmRoot)", errno: errno) }
        guard veil_drop_capability(CAP_SYS_ADMIN) == 0 else { throw DropFailed(step: "drop CAP_SYS_ADMIN", errno: errno) }
        detached.store(fd, ordering: .sequentiallyConsistent)
    }

    /// The provider for reports through the detached directory, when the launcher was asked
    /// to detach it; throws if it was asked but did not (not `veil-launcher`, or too late).
    public static func detachedProvider(environment: [String: String], expectedProvider: String?) throws(DropFailed) -> ConfigfsTSMProvider? {
        guard environment[environmentVariable] == "1" else { return nil }
        let fd = detached.load(ordering: .sequentiallyConsistent)
        guard fd >= 0 else { throw DropFailed(step: "only veil-launcher detaches the report directory, at its start", errno: 0) }
        return ConfigfsTSMProvider(descriptor: fd, root: environment[VeilEnvironment.tsmRoot] ?? "", expectedProvider: expectedProvider)
    }
}
