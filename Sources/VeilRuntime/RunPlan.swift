import Foundation
import VeilImage

/// Which TEE vouches for a converted image's launcher inside the container.
public enum ContainerTEE: Sendable, Equatable {
    /// Development only: evidence signed with the simulation platform key file on the host;
    /// no confidentiality.
    case simulated(simulationKey: String)
    /// The host is an SEV-SNP or TDX guest: the launcher gets the guest's configfs-tsm report
    /// directory and TEE device, and binds the image's measurement into its report data.
    case confidentialVM(ConfidentialVMDevices)
}

/// What a container needs from an SEV-SNP or TDX guest to produce evidence: the configfs-tsm
/// report directory (bind-mounted, writable) and the guest device (`/dev/sev-guest`,
/// `/dev/tdx_guest`; the SNP derived-key request goes through it).
public struct ConfidentialVMDevices: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case snp, tdx

        /// The guest device, on the host and in the container.
        public var device: String { self == .snp ? "/dev/sev-guest" : "/dev/tdx_guest" }
    }

    public var kind: Kind
    public var tsmRoot: String
    /// The host's device node (the container sees it at ``Kind/device``).
    public var device: String
    public var deviceMajor: UInt32
    public var deviceMinor: UInt32

    /// Where the report directory appears in the container (under `/run`: a fresh tmpfs, so
    /// the mount point can be made; `/sys` is read-only).
    public static let containerTSMRoot = "/run/veil/tsm"
    public static let defaultTSMRoot = "/sys/kernel/config/tsm/report"

    /// Checks this machine is such a guest and reads the device's numbers.
    public static func detect(
        _ kind: Kind, tsmRoot: String = defaultTSMRoot, device: String? = nil
    ) throws(ImageError) -> ConfidentialVMDevices {
        let name = kind == .snp ? "SEV-SNP" : "TDX"
        let device = device ?? kind.device
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: tsmRoot, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .launcher("--tee \(kind.rawValue): \(tsmRoot) does not exist: this machine is not an \(name) guest, or configfs is not mounted (Linux 6.7+)")
        }
        var info = stat()
        guard stat(device, &info) == 0, (info.st_mode & UInt32(S_IFMT)) == UInt32(S_IFCHR) else {
            throw .launcher("--tee \(kind.rawValue): \(device) is not a character device: this machine is not an \(name) guest (or its driver is not loaded)")
        }
        // glibc's dev_t encoding (gnu_dev_major/minor are macros Swift cannot see).
        let rdev = UInt64(info.st_rdev)
        let major = (rdev >> 8) & 0xfff | (rdev >> 32) & ~0xfff
        let minor = rdev & 0xff | (rdev >> 12) & ~0xff
        return ConfidentialVMDevices(kind: kind, tsmRoot: tsmRoot, device: device, deviceMajor: UInt32(truncatingIfNeeded: major), deviceMinor: UInt32(truncatingIfNeeded: minor))
    }
}

/// How a converted (Veil) image's launcher reaches the coordinator.
public struct LauncherConnection: Sendable {
    /// Coordinator mesh API, `HOST:PORT` (the container shares the host's loopback).
    public var coordinator: String
    public var tee: ContainerTEE
    /// Coordinator root certificate on the host; without it the launcher attests the coordinator.
    public var rootCA: String?
    /// The launcher reports how long each step took (`VEIL_LAUNCH_TRACE=1`).
    public var traceLaunch: Bool

    public init(coordinator: String, tee: ContainerTEE, rootCA: String?, traceLaunch: Bool = false) {
        self.coordinator = coordinator
        self.tee = tee
        self.rootCA = rootCA
        self.traceLaunch = traceLaunch
    }
}

public enum RunPlan {
    /// The label `veil image convert` sets: a Veil image's service name.
    public static let serviceLabel = "dev.veil.service"
    static let hostDirectory = "/run/veil/host"

    /// The container for `image` unpacked at `rootfs`. A Veil image needs `connection`; its
    /// launcher gets the connection settings as `VEIL_*` variables (it removes them before it
    /// starts the application), the simulation key and root certificate as read-only files, and
    /// in a confidential VM the guest's configfs-tsm directory and device.
    public static func spec(for image: SourceImage, rootfs: String, connection: LauncherConnection?) throws -> ContainerSpec {
        let config = image.config
        guard !config.command.isEmpty else { throw ImageError.launcher("the image has no Entrypoint or Cmd") }
        var spec = ContainerSpec(rootfs: rootfs, args: config.command, env: config.env, workingDir: config.workingDir)
        if spec.env.isEmpty { spec.env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] }
        let user = try ImageUser.resolve(config.user, root: rootfs)
        (spec.uid, spec.gid) = (user.uid, user.gid)
        if config.labels[serviceLabel] != nil {
            guard let connection else {
                throw ImageError.launcher("this is a Veil image: pass --tee snp|tdx in a confidential VM, or --tee simulated with --simulation-key (development only)")
            }
            switch connection.tee {
            case .simulated(let key):
                spec.readOnlyFiles.append((key, "\(hostDirectory)/simulation-platform-key.pem"))
                spec.env += ["VEIL_TEE=simulated", "VEIL_SIMULATION_KEY=\(hostDirectory)/simulation-platform-key.pem"]
            case .confidentialVM(let guest):
                spec.confidentialVM = guest
                spec.env += ["VEIL_TEE=\(guest.kind.rawValue)", "VEIL_TSM_ROOT=\(ConfidentialVMDevices.containerTSMRoot)"]
            }
            spec.env.append("VEIL_COORDINATOR=\(connection.coordinator)")
            if let rootCA = connection.rootCA {
                spec.readOnlyFiles.append((rootCA, "\(hostDirectory)/root.pem"))
                spec.env.append("VEIL_ROOT_CA=\(hostDirectory)/root.pem")
            }
            if connection.traceLaunch { spec.env.append("VEIL_LAUNCH_TRACE=1") }
        }
        return spec
    }
}
