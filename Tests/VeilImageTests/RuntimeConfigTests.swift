import Testing
import VeilCore
import VeilRuntime

/// The OCI runtime `config.json` `veil run` hands to runc.
@Suite struct RuntimeConfigTests {
    func config(_ edit: (inout ContainerSpec) -> Void = { _ in }) throws -> JSONValue {
        var spec = ContainerSpec(rootfs: "/state/images/x/rootfs", args: ["/bin/sh", "-c", "echo \"hi\"\n"], env: ["PATH=/bin", "A=b/c"], workingDir: "")
        edit(&spec)
        return try JSONValue.parse(spec.runtimeConfig(hostname: "veil-1"))
    }

    @Test func describesAnIsolatedReadOnlyContainer() throws {
        let config = try config { $0.uid = 1000; $0.gid = 100; $0.readOnlyFiles = [(host: "/h/root.pem", container: "/run/veil/host/root.pem")] }
        #expect(config["ociVersion"] == .string("1.0.2"))
        #expect(config["hostname"] == .string("veil-1"))
        #expect(config["root"] == .object(["path": .string("/state/images/x/rootfs"), "readonly": .bool(true)]))
        let process = try #require(config["process"])
        #expect(process["args"]?.stringArray == ["/bin/sh", "-c", "echo \"hi\"\n"])
        #expect(process["env"]?.stringArray == ["PATH=/bin", "A=b/c"])
        #expect(process["cwd"] == .string("/"), "an image without a working directory starts in /")
        #expect(process["user"] == .object(["uid": .number(1000), "gid": .number(100)]))
        #expect(process["noNewPrivileges"] == .bool(true) && process["terminal"] == .bool(false))
        #expect(process["capabilities"]?["bounding"]?.stringArray?.contains("CAP_SYS_ADMIN") == false)
        #expect(process["rlimits"] == .array([.object(["type": .string("RLIMIT_NOFILE"), "hard": .number(1024), "soft": .number(1024)])]))
        let namespaces = config["linux"]?["namespaces"]?.arrayValue?.compactMap { $0["type"]?.stringValue }
        #expect(namespaces == ["pid", "ipc", "uts", "mount"], "no network namespace: loopback is shared with the host")
        let mounts = try #require(config["mounts"]?.arrayValue)
        #expect(mounts.compactMap { $0["destination"]?.stringValue } == ["/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys", "/run", "/tmp", "/run/veil/host/root.pem"])
        #expect(mounts.last == .object(["destination": .string("/run/veil/host/root.pem"), "type": .string("bind"), "source": .string("/h/root.pem"),
                                        "options": .strings(["bind", "ro", "nosuid", "nodev"])]))
    }

    @Test func keepsAnImagesWorkingDirectory() throws {
        #expect(try config { $0.workingDir = "/srv/app" }["process"]?["cwd"] == .string("/srv/app"))
    }
}
