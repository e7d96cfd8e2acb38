import Foundation
import VeilImage

/// How a converted (Veil) image's launcher reaches the coordinator.
public struct LauncherConnection: Sendable {
    /// Coordinator mesh API, `HOST:PORT` (the container shares the host's loopback).
    public var coordinator: String
    /// Simulation platform key file on the host (development only: no confidentiality).
    public var simulationKey: String
    /// Coordinator root certificate on the host; without it the launcher attests the coordinator.
    public var rootCA: String?
    /// The launcher reports how long each step took (`VEIL_LAUNCH_TRACE=1`).
    public var traceLaunch: Bool

    public init(coordinator: String, simulationKey: String, rootCA: String?, traceLaunch: Bool = false) {
        self.coordinator = coordinator
        self.simulationKey = simulationKey
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
    /// starts the application) and the key and root certificate as read-only files.
    public static func spec(for image: SourceImage, rootfs: String, connection: LauncherConnection?) throws -> ContainerSpec {
        let config = image.config
        guard !config.command.isEmpty else { throw ImageError.launcher("the image has no Entrypoint or Cmd") }
        var spec = ContainerSpec(rootfs: rootfs, args: config.command, env: config.env, workingDir: config.workingDir)
        if spec.env.isEmpty { spec.env = ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"] }
        let user = try ImageUser.resolve(config.user, root: rootfs)
        (spec.uid, spec.gid) = (user.uid, user.gid)
        if config.labels[serviceLabel] != nil {
            guard let connection else {
                throw ImageError.launcher("this is a Veil image: pass --tee simulated with --simulation-key (development only) to run it here")
            }
            spec.readOnlyFiles.append((connection.simulationKey, "\(hostDirectory)/simulation-platform-key.pem"))
            spec.env += [
                "VEIL_TEE=simulated", "VEIL_SIMULATION_KEY=\(hostDirectory)/simulation-platform-key.pem",
                "VEIL_COORDINATOR=\(connection.coordinator)",
            ]
            if let rootCA = connection.rootCA {
                spec.readOnlyFiles.append((rootCA, "\(hostDirectory)/root.pem"))
                spec.env.append("VEIL_ROOT_CA=\(hostDirectory)/root.pem")
            }
            if connection.traceLaunch { spec.env.append("VEIL_LAUNCH_TRACE=1") }
        }
        return spec
    }
}
