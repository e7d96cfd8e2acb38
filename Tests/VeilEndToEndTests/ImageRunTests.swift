import Foundation
import Testing

/// Builds an OCI image from host files with umoci (examples/lib.sh `build_image`).
func buildImage(layout: String, tag: String, files: [String], entrypoint: [String], user: String? = nil, scratch: Scratch) async throws {
    let quoted = (files + ["--"] + entrypoint).map { "'\($0)'" }.joined(separator: " ")
    let result = try await run("/bin/bash", ["-c", "source '\(repositoryRoot)/examples/lib.sh' && build_image '\(layout)' '\(tag)' \(quoted)"],
                         environment: user.map { ["IMAGE_USER": $0] } ?? [:], scratch: scratch, timeout: 120)
    try #require(result.status == 0, "build_image failed: \(result.stderr)")
}

/// A converted shell image: prints a greeting and its protected file, exits with a chosen code.
final class ShellImage {
    let coordinator: CoordinatorProcess
    let scratch: Scratch
    var layout: String { scratch.path + "/images" }
    var key: String { scratch.path + "/image.key" }
    var stateDirectory: String { scratch.path + "/state" }
    private(set) var snippet = ""

    init(exitCode: Int = 0, user: String? = nil, script: String? = nil, extraFiles: [String] = []) async throws {
        scratch = try Scratch()
        coordinator = try await CoordinatorProcess(scratch: scratch)
        let secret = try scratch.write("the protected data, version 1\n", to: "secret.txt")
        try await buildImage(
            layout: layout, tag: "plain", files: ["/bin/sh", "/bin/cat", "\(secret)=/data/secret.txt"] + extraFiles,
            entrypoint: ["/bin/sh", "-c", script ?? "echo started; cat /data/secret.txt; exit \(exitCode)"], user: user, scratch: scratch)
        let convert = try await coordinator.veil([
            "image", "convert", "--from", "oci:\(layout):plain", "--to", "oci:\(layout):veil", "--service", "shell",
            "--encrypt", "/data", "--key", key, "--quiet",
        ])
        try #require(convert.status == 0, "convert failed: \(convert.stderr)")
        snippet = convert.stdout
        var manifest = try JSONSerialization.jsonObject(with: Data(snippet.utf8)) as! [String: Any]
        manifest["Config"] = ["AllowSimulation": true]
        let text = String(decoding: try JSONSerialization.data(withJSONObject: manifest), as: UTF8.self)
        let set = try await coordinator.veil(["manifest", "set", try scratch.write(text, to: "manifest.json"), "--secret", "shell-protected-files=\(key)"])
        try #require(set.status == 0, "manifest set failed: \(set.stderr)")
    }

    var runArguments: [String] {
        ["run", "oci:\(layout):veil", "--tee", "simulated", "--simulation-key", coordinator.simulationKey,
         "--coordinator", coordinator.meshAddress, "--root-ca", coordinator.rootPath, "--state-dir", stateDirectory]
    }

    func run(tag: String = "veil") async throws -> RunResult {
        try await coordinator.veil(runArguments.map { $0 == "oci:\(layout):veil" ? "oci:\(layout):\(tag)" : $0 }, timeout: 120)
    }

    /// The cached unpacked root of the converted image (after a first run).
    func cachedRoot() throws -> String {
        let images = stateDirectory + "/images"
        let entries = try FileManager.default.contentsOfDirectory(atPath: images).filter { !$0.hasPrefix(".") }
        try #require(entries.count == 1)
        return "\(images)/\(entries[0])/rootfs"
    }
}

@Suite(.serialized, .timeLimit(.minutes(10))) struct ImageRunTests {
    @Test func convertedImageRunsUnderRuncAndRealToolsReadIt() async throws {
        try #require(which("runc") != nil && which("umoci") != nil, "install runc and umoci")
        let image = try await ShellImage(exitCode: 7)
        let result = try await image.run()
        #expect(result.status == 7, "the app's exit status passes through: \(result.stderr)")
        #expect(result.stdout == "started\nthe protected data, version 1\n")
        #expect(result.stderr.contains("NO confidentiality"))
        // No container or bundle is left behind.
        #expect(try FileManager.default.contentsOfDirectory(atPath: image.stateDirectory + "/bundles").isEmpty)

        if let skopeo = which("skopeo") {
            let inspect = try await run(skopeo, ["inspect", "oci:\(image.layout):veil"], scratch: image.scratch)
            #expect(inspect.status == 0 && inspect.stdout.contains("dev.veil.measurement"), "\(inspect.stderr)")
        }
        let unpacked = image.scratch.path + "/umoci-bundle"
        let unpack = try await run(which("umoci")!, ["unpack", "--image", "\(image.layout):veil", unpacked], scratch: image.scratch)
        #expect(unpack.status == 0, "\(unpack.stderr)")
        #expect(FileManager.default.fileExists(atPath: unpacked + "/rootfs/veil/image.json"))
        let plaintextInImage = try FileManager.default.subpathsOfDirectory(atPath: unpacked + "/rootfs").contains { path in
            (try? String(contentsOfFile: "\(unpacked)/rootfs/\(path)", encoding: .utf8))?.contains("the protected data") ?? false
        }
        #expect(!plaintextInImage, "the encrypted path is not in the converted image in plaintext")
    }

    @Test func theLauncherBecomesTheImageUserAfterProvisioning() async throws {
        let image = try await ShellImage(user: "1000:1000", script: "cat /proc/self/status; cat /data/secret.txt")
        let result = try await image.run()
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout.contains("Uid:\t1000\t1000\t1000\t1000"), "\(result.stdout)")
        #expect(result.stdout.contains("Gid:\t1000\t1000\t1000\t1000"))
        #expect(result.stdout.contains("the protected data, version 1"), "the decrypted file belongs to the image's user")
        #expect(result.stdout.contains("CapEff:\t0000000000000000"), "no capabilities left")
    }

    /// What `veil run` promises about the container, read from inside it: a read-only root,
    /// fresh memory filesystems on /run and /tmp, `noNewPrivileges`; and a SIGTERM sent to `veil
    /// run` reaches the application, whose exit status comes back.
    @Test func theContainerIsConfinedAndSignalsReachTheApp() async throws {
        let script = """
            while read -r dev mnt type rest; do case "$mnt" in /run|/tmp) echo "mount $mnt $type";; esac; done < /proc/mounts
            while read -r key value; do [ "$key" = "NoNewPrivs:" ] && echo "nnp $value"; done < /proc/self/status
            ( : > /probe ) 2>/dev/null && echo root-writable || echo root-read-only
            trap "echo got TERM; exit 42" TERM
            echo waiting
            while :; do sleep 0.1; done
            """
        let image = try await ShellImage(script: script, extraFiles: ["/bin/sleep"])
        let run = try Spawned(veilBinary, image.runArguments, environment: image.coordinator.environment, scratch: image.scratch)
        let waiting = await eventually(within: 60) { run.stdout.contains("waiting") || !run.isRunning }
        #expect(waiting && run.isRunning, "the app did not start: \(run.stderr)")
        kill(run.pid, SIGTERM)
        let result = await run.wait(timeout: 30)
        #expect(result.status == 42, "SIGTERM reached the app and its exit status came back: \(result.stdout) \(result.stderr)")
        #expect(result.stdout.contains("got TERM"))
        #expect(result.stdout.contains("mount /run tmpfs") && result.stdout.contains("mount /tmp tmpfs"), "\(result.stdout)")
        #expect(result.stdout.contains("nnp 1"), "\(result.stdout)")
        #expect(result.stdout.contains("root-read-only"), "\(result.stdout)")
    }

    /// The launcher brings its own loader and libraries: it runs in an image with no libc at
    /// all (a static busybox) and in one whose only libc is musl (Debian's musl-gcc).
    @Test(arguments: ["static busybox", "musl"])
    func theLauncherRunsInImagesWithoutGlibc(_ kind: String) async throws {
        try #require(which("runc") != nil && which("umoci") != nil, "install runc and umoci")
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let layout = scratch.path + "/images"
        let files: [String], entrypoint: [String]
        if kind == "musl" {
            let musl = try #require(which("musl-gcc"), "install musl-tools")
            let source = try scratch.write("#include <stdio.h>\nint main(void) { puts(\"hello from musl\"); return 0; }\n", to: "hello.c")
            let built = try await run(musl, ["-o", scratch.path + "/hello", source], scratch: scratch)
            try #require(built.status == 0, "\(built.stderr)")
            files = ["\(scratch.path)/hello=/bin/hello", "/lib/ld-musl-x86_64.so.1"]
            entrypoint = ["/bin/hello"]
        } else {
            try #require(FileManager.default.fileExists(atPath: "/bin/busybox"), "install busybox-static")
            files = ["/bin/busybox"]
            entrypoint = ["/bin/busybox", "echo", "hello from busybox"]
        }
        try await buildImage(layout: layout, tag: "plain", files: files, entrypoint: entrypoint, scratch: scratch)
        // Make the musl program executable (build_image installs KEY=PATH files 0644).
        if kind == "musl" {
            let fix = try await run("/bin/bash", ["-c", """
                set -e; b=$(mktemp -d); umoci unpack --image '\(layout):plain' "$b/x" >/dev/null; chmod 0755 "$b/x/rootfs/bin/hello"; \
                umoci repack --image '\(layout):plain' "$b/x"; rm -rf "$b"
                """], scratch: scratch, timeout: 120)
            try #require(fix.status == 0, "\(fix.stderr)")
        }
        let convert = try await coordinator.veil(["image", "convert", "--from", "oci:\(layout):plain", "--to", "oci:\(layout):veil", "--service", "app", "--quiet"])
        try #require(convert.status == 0, "\(convert.stderr)")
        var manifest = try JSONSerialization.jsonObject(with: Data(convert.stdout.utf8)) as! [String: Any]
        manifest["Config"] = ["AllowSimulation": true]
        let set = try await coordinator.setManifest(String(decoding: try JSONSerialization.data(withJSONObject: manifest), as: UTF8.self))
        try #require(set.status == 0, "\(set.stderr)")
        let result = try await coordinator.veil([
            "run", "oci:\(layout):veil", "--tee", "simulated", "--simulation-key", coordinator.simulationKey, "--coordinator", coordinator.meshAddress,
            "--root-ca", coordinator.rootPath, "--state-dir", scratch.path + "/state",
        ], timeout: 120)
        #expect(result.status == 0, "\(result.stderr)")
        #expect(result.stdout == "hello from \(kind == "musl" ? "musl" : "busybox")\n", "\(result.stdout)")
        // No glibc in the image's own files: only the launcher's bundled copy.
        let unpacked = scratch.path + "/plain-bundle"
        _ = try await run(which("umoci")!, ["unpack", "--image", "\(layout):plain", unpacked], scratch: scratch)
        let ownFiles = FileManager.default.subpaths(atPath: unpacked + "/rootfs") ?? []
        #expect(!ownFiles.contains { $0.contains("libc.so.6") || $0.contains("ld-linux") }, "\(ownFiles)")
    }

    @Test func alteredRootfsIsRefusedAndTheAppNeverStarts() async throws {
        let image = try await ShellImage()
        // Re-pack the converted image with one changed byte in /bin/cat, as a tampering registry would.
        let bundle = image.scratch.path + "/tamper"
        let umoci = try #require(which("umoci"))
        #expect(try await run(umoci, ["unpack", "--image", "\(image.layout):veil", bundle], scratch: image.scratch).status == 0)
        let cat = bundle + "/rootfs/bin/cat"
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: cat)))
        bytes[bytes.count / 2] ^= 1
        try Data(bytes).write(to: URL(fileURLWithPath: cat))
        #expect(try await run(umoci, ["repack", "--image", "\(image.layout):tampered", bundle], scratch: image.scratch).status == 0)

        let result = try await image.run(tag: "tampered")
        #expect(result.status != 0)
        #expect(result.stderr.contains("measurement"), "\(result.stderr)")
        #expect(!result.stdout.contains("started"), "the app must not start")
    }

    @Test func olderProtectedFileVersionIsRefusedAcrossCoordinatorRestarts() async throws {
        let image = try await ShellImage()
        #expect(try await image.run().status == 0)
        let stored = try image.cachedRoot() + "/veil/protected/data/secret.txt.vpf"
        let version1 = image.scratch.path + "/v1.vpf"
        try FileManager.default.copyItem(atPath: stored, toPath: version1)

        // Seal-back: version 2 of the data replaces the stored file.
        let updated = try image.scratch.write("the protected data, version 2\n", to: "v2.txt")
        let seal = try await image.coordinator.veil([
            "protect", "seal", "--key", image.key, "--path", "/data/secret.txt", "--previous", stored, updated, stored,
        ])
        #expect(seal.status == 0 && seal.stdout.contains("version 2"), "\(seal.stderr)")
        let second = try await image.run()
        #expect(second.status == 0 && second.stdout.contains("version 2"), "\(second.stderr)")

        // Replaying version 1 is refused, also after the coordinator restarted.
        try FileManager.default.removeItem(atPath: stored)
        try FileManager.default.copyItem(atPath: version1, toPath: stored)
        try await image.coordinator.restart()
        let replay = try await image.run()
        #expect(replay.status != 0)
        #expect(replay.stderr.contains("rollback"), "\(replay.stderr)")
        #expect(!replay.stdout.contains("started"))
    }

    @Test func dockerArchiveInputConvertsToTheSameMeasurement() async throws {
        let skopeo = try #require(which("skopeo"), "install skopeo")
        let scratch = try Scratch()
        let layout = scratch.path + "/images"
        try await buildImage(layout: layout, tag: "plain", files: ["/bin/true"], entrypoint: ["/bin/true"], scratch: scratch)
        let archive = scratch.path + "/image.tar"
        let copy = try await run(skopeo, ["copy", "oci:\(layout):plain", "docker-archive:\(archive):test/true:1"], scratch: scratch)
        try #require(copy.status == 0, "\(copy.stderr)")
        func convert(_ from: String, _ tag: String) async throws -> RunResult {
            try await run(veilBinary, ["image", "convert", "--from", from, "--to", "oci:\(layout):\(tag)", "--service", "t", "--quiet"], scratch: scratch)
        }
        let fromLayout = try await convert("oci:\(layout):plain", "a")
        let fromArchive = try await convert("docker-archive:\(archive)", "b")
        #expect(fromLayout.status == 0 && fromArchive.status == 0, "\(fromArchive.stderr)")
        #expect(fromLayout.stdout == fromArchive.stdout, "same files, same measurement")
        // Converting again gives the same manifest digest (deterministic output).
        let again = try await convert("oci:\(layout):plain", "c")
        let index = try String(contentsOfFile: layout + "/index.json", encoding: .utf8)
        let digests = try JSONSerialization.jsonObject(with: Data(index.utf8)) as! [String: Any]
        let byTag = Dictionary(uniqueKeysWithValues: (digests["manifests"] as! [[String: Any]]).map {
            (($0["annotations"] as! [String: String])["org.opencontainers.image.ref.name"]!, $0["digest"] as! String)
        })
        #expect(again.status == 0 && byTag["a"] == byTag["c"])

        // Veil writes docker archives too; skopeo reads them, and so does Veil.
        let written = scratch.path + "/veil.tar"
        let toArchive = try await run(veilBinary, ["image", "convert", "--from", "oci:\(layout):plain", "--to", "docker-archive:\(written)",
                                             "--service", "t", "--quiet"], scratch: scratch)
        #expect(toArchive.status == 0 && toArchive.stdout == fromLayout.stdout, "\(toArchive.stderr)")
        let inspect = try await run(skopeo, ["inspect", "docker-archive:\(written)"], scratch: scratch)
        #expect(inspect.status == 0 && inspect.stdout.contains("dev.veil.service"), "\(inspect.stderr)")
        let reread = try await run(skopeo, ["copy", "docker-archive:\(written)", "oci:\(layout):reloaded"], scratch: scratch)
        #expect(reread.status == 0, "\(reread.stderr)")
    }

    @Test func malformedInputIsAClearErrorAndWritesNothing() async throws {
        let scratch = try Scratch()
        let layout = scratch.path + "/images"
        try await buildImage(layout: layout, tag: "plain", files: ["/bin/true"], entrypoint: ["/bin/true"], scratch: scratch)
        // Remove the layer blob the manifest references.
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: layout + "/index.json"))) as! [String: Any]
        let manifestDigest = ((index["manifests"] as! [[String: Any]])[0]["digest"] as! String).dropFirst(7)
        let manifest = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(layout)/blobs/sha256/\(manifestDigest)"))) as! [String: Any]
        let layer = ((manifest["layers"] as! [[String: Any]])[0]["digest"] as! String)
        try FileManager.default.removeItem(atPath: "\(layout)/blobs/sha256/\(layer.dropFirst(7))")
        let output = scratch.path + "/out"
        let result = try await run(veilBinary, ["image", "convert", "--from", "oci:\(layout):plain", "--to", "oci:\(output)", "--service", "t", "--quiet"], scratch: scratch)
        #expect(result.status != 0)
        #expect(result.stderr.contains("blob \(layer) is referenced but missing"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: output + "/index.json"))
    }
}
