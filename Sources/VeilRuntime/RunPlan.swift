import Foundation
import VeilAttestation
import VeilCore
import VeilImage
import VeilImageFormat

/// Which TEE vouches for a converted image's launcher inside the container.
public enum ContainerTEE: Sendable, Equatable {
    /// Development only: evidence signed with the simulation platform key file on the host;
    /// no confidentiality.
    case simulated(simulationKey: String)
    /// The host is an SEV-SNP or TDX guest: the launcher gets the guest's configfs-tsm report
    /// directory for its one report, binds the image's measurement into its report data, and
    /// unmounts the directory before the application starts (``VeilLauncher/TEEAccess``).
    case confidentialVM(ConfidentialVMDevices)
}

/// What a container needs from an SEV-SNP or TDX guest to produce evidence: the configfs-tsm
/// report directory (bind-mounted, writable, for the launcher alone). Not the guest device
/// (`/dev/sev-guest`, `/dev/tdx_guest`): reports go through configfs-tsm, and with the device an
/// application could derive the guest's keys or, on a firmware error, wipe its VMPCK.
public struct ConfidentialVMDevices: Sendable, Equatable {
    public enum Kind: String, Sendable {
        case snp, tdx
    }

    public var kind: Kind
    public var tsmRoot: String

    /// Where the report directory appears in the container (under `/run`: a fresh tmpfs, so
    /// the mount point can be made; `/sys` is read-only).
    public static let containerTSMRoot = "/run/veil/tsm"
    public static let defaultTSMRoot = "/sys/kernel/config/tsm/report"

    /// Checks this machine is such a guest: its configfs-tsm report directory exists.
    public static func detect(_ kind: Kind, tsmRoot: String = defaultTSMRoot) throws(ImageError) -> ConfidentialVMDevices {
        let name = kind == .snp ? "SEV-SNP" : "TDX"
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: tsmRoot, isDirectory: &isDirectory), isDirectory.boolValue else {
            throw .launcher("--tee \(kind.rawValue): \(tsmRoot) does not exist: this machine is not an \(name) guest, or configfs is not mounted (Linux 6.7+)")
        }
        return ConfidentialVMDevices(kind: kind, tsmRoot: tsmRoot)
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
    public static let serviceLabel = ImageConverter.serviceLabel
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
                spec.env += ["\(VeilEnvironment.tee)=simulated", "\(VeilEnvironment.simulationKey)=\(hostDirectory)/simulation-platform-key.pem"]
            case .confidentialVM(let guest):
                spec.confidentialVM = guest
                spec.env += ["\(VeilEnvironment.tee)=\(guest.kind.rawValue)", "\(VeilEnvironment.tsmRoot)=\(ConfidentialVMDevices.containerTSMRoot)", "\(VeilEnvironment.dropTEEAccess)=1"]
            }
            spec.env.append("\(VeilEnvironment.coordinator)=\(connection.coordinator)")
            if let rootCA = connection.rootCA {
                spec.readOnlyFiles.append((rootCA, "\(hostDirectory)/root.pem"))
                spec.env.append("\(VeilEnvironment.rootCA)=\(hostDirectory)/root.pem")
            }
            if connection.traceLaunch { spec.env.append("\(VeilEnvironment.launchTrace)=1") }
        }
        return spec
    }
}
