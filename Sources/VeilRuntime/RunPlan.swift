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

    public init(coordinator: String, simulationKey: String, rootCA: String?) {
        self.coordinator = coordinator
        self.simulationKey = simulationKey
        self.rootCA = rootCA
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
        (spec.uid, spec.gid) = try user(config.user, rootfs: rootfs)
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
        }
        return spec
    }

    /// Resolves the image's `User` (`uid[:gid]` or names from the image's own passwd/group).
    static func user(_ text: String, rootfs: String) throws -> (UInt32, UInt32) {
        if text.isEmpty { return (0, 0) }
        let parts = text.split(separator: ":", maxSplits: 1).map(String.init)
        func lookup(_ name: String, in file: String, field: Int) throws -> UInt32 {
            if let number = UInt32(name) { return number }
            // The file is read from the image; a symlink out of it is not followed.
            let path = "\(rootfs)/etc/\(file)"
            let resolved = URL(fileURLWithPath: path).resolvingSymlinksInPath().path
            guard resolved.hasPrefix(rootfs + "/"), let data = FileManager.default.contents(atPath: resolved) else {
                throw ImageError.launcher("user '\(name)': the image has no readable /etc/\(file)")
            }
            for line in String(decoding: data, as: UTF8.self).split(separator: "\n") {
                let fields = line.split(separator: ":", omittingEmptySubsequences: false)
                if fields.count > field, fields[0] == name, let id = UInt32(fields[field]) { return id }
            }
            throw ImageError.launcher("user '\(name)' is not in the image's /etc/\(file)")
        }
        let uid = try lookup(parts[0], in: "passwd", field: 2)
        let gid = parts.count > 1 ? try lookup(parts[1], in: "group", field: 2) : (UInt32(parts[0]) == nil ? try lookup(parts[0], in: "passwd", field: 3) : 0)
        return (uid, gid)
    }
}
