import Foundation
import Testing

/// `veil run` of ocicrypt-encrypted images: Debian's unmodified redis-server in a Veil image,
/// encrypted by the real skopeo 1.9.3 (RSA and P-256 recipients) and by Veil itself, answers
/// PONG — and so do ones Veil wrote with CoCo key packets and for a key only the coordinator
/// holds — with its layer keys released by
/// the coordinator's key broker only after `veil run`
/// attested as the image's service; the layers are unpacked into a ramfs and nothing decrypted
/// reaches a disk. Every refusal — no attestation, no key named, another service's key, a
/// measurement the manifest does not know, a flipped ciphertext byte, a wrong diff_id — starts
/// nothing and leaves nothing mounted.
@Suite(.serialized, .timeLimit(.minutes(10))) struct EncryptedRunTests {
    static let keys = repositoryRoot + "/../shared/testdata/ocicrypt/skopeo-jwe/keys"

    /// One coordinator, the plain Veil image and its encrypted copies.
    final class Setup {
        let scratch: Scratch
        let coordinator: CoordinatorProcess
        let redisPort = freePort()
        /// A line only the image holds: found on disk after a run, it would be decrypted bytes.
        let marker = "veil-encrypted-marker-\(UUID().uuidString)"
        var images: String { scratch.path + "/images" }
        var state: String { scratch.path + "/state" }
        var kek: String { scratch.path + "/image.kek" }

        init() async throws {
            try #require(which("runc") != nil && which("umoci") != nil && which("skopeo") != nil, "install runc, umoci and skopeo")
            let redis = try #require(which("redis-server"), "install redis-server")
            scratch = try Scratch()
            coordinator = try await CoordinatorProcess(scratch: scratch)
            let markerFile = try scratch.write(marker + "\n", to: "marker.txt")
            let conf = try scratch.write("port \(redisPort)\nbind 127.0.0.1\nsave \"\"\nappendonly no\ndir /tmp\n", to: "redis.conf")
            try await buildImage(layout: scratch.path + "/plain", tag: "redis", files: [redis, "\(conf)=/etc/redis/redis.conf", "\(markerFile)=/etc/veil-marker.txt"],
                                 entrypoint: ["/usr/bin/redis-server", "/etc/redis/redis.conf"], scratch: scratch)
            let convert = try await coordinator.veil([
                "image", "convert", "--from", "oci:\(scratch.path)/plain:redis", "--to", "oci:\(scratch.path)/plain:veil", "--service", "cache", "--quiet",
            ], timeout: 120)
            try #require(convert.status == 0, "\(convert.stderr)")
            let skopeo = try #require(which("skopeo"))
            for (tag, key) in [("rsa", "rsa2048-pub.pem"), ("ec", "ecp256-pub.pem")] {
                let copy = try await run(skopeo, ["copy", "--encryption-key", "jwe:\(EncryptedRunTests.keys)/\(key)", "oci:\(scratch.path)/plain:veil", "oci:\(images):\(tag)"],
                                         scratch: scratch, timeout: 120)
                try #require(copy.status == 0, "skopeo: \(copy.stderr)")
            }
            try Data((0..<32).map { _ in UInt8.random(in: 0...255) }).write(to: URL(fileURLWithPath: kek))
            let veilEncrypted = try await coordinator.veil([
                "image", "convert", "--from", "oci:\(scratch.path)/plain:redis", "--to", "oci:\(images):veil-rsa", "--service", "cache", "--quiet",
                "--encrypt-layers-to", "\(EncryptedRunTests.keys)/rsa2048-pub.pem",
            ], timeout: 120)
            try #require(veilEncrypted.status == 0 && veilEncrypted.stdout == convert.stdout, "\(veilEncrypted.stderr)")
            let cocoPacked = try await coordinator.veil([
                "image", "convert", "--from", "oci:\(scratch.path)/plain:redis", "--to", "oci:\(images):coco", "--service", "cache", "--quiet",
                "--encrypt-layers-to", "kbs:///veil/image-kek/cache=\(kek)",
            ], timeout: 120)
            try #require(cocoPacked.status == 0 && cocoPacked.stdout == convert.stdout, "\(cocoPacked.stderr)")

            var manifest = try JSONSerialization.jsonObject(with: Data(convert.stdout.utf8)) as! [String: Any]
            var packages = manifest["Packages"] as! [String: Any]
            packages["other"] = ["Kind": "simulated", "Measurement": String(repeating: "ab", count: 32)]
            manifest["Packages"] = packages
            var services = manifest["Services"] as! [String: Any]
            var cache = services["cache"] as! [String: Any]
            cache["KBS"] = ["Resources": [
                "veil/image-key/rsa": "{{ raw .Secrets.rsakey }}", "veil/image-key/ec": "{{ raw .Secrets.eckey }}", "veil/image-kek/cache": "{{ raw .Secrets.kek }}",
                "veil/image-key/held": "{{ pem .Secrets.imagekey.Private }}",
            ]]
            services["cache"] = cache
            services["other"] = ["Package": "other", "KBS": ["Resources": ["veil/image-key/other": "{{ raw .Secrets.rsakey }}"]]]
            manifest["Services"] = services
            manifest["Secrets"] = [
                "rsakey": ["Type": "plain", "UserDefined": true], "eckey": ["Type": "plain", "UserDefined": true], "kek": ["Type": "plain", "UserDefined": true],
                "imagekey": ["Type": "cert-ecdsa", "Cert": ["Subject": ["CommonName": "image key"]]],
            ]
            manifest["Config"] = ["AllowSimulation": true]
            let text = String(decoding: try JSONSerialization.data(withJSONObject: manifest), as: UTF8.self)
            let set = try await coordinator.veil([
                "manifest", "set", try scratch.write(text, to: "manifest.json"), "--root-ca", coordinator.rootPath,
                "--secret", "rsakey=\(EncryptedRunTests.keys)/rsa2048-priv.pem", "--secret", "eckey=\(EncryptedRunTests.keys)/ecp256-priv.pem",
                "--secret", "kek=\(kek)",
            ])
            try #require(set.status == 0, "manifest set: \(set.stderr)")
            // A key the coordinator generated and holds: its public key is all convert sees.
            let held = try await coordinator.veil([
                "image", "convert", "--from", "oci:\(scratch.path)/plain:redis", "--to", "oci:\(images):held", "--service", "cache", "--quiet",
                "--encrypt-layers-to", "coordinator:imagekey", "--root-ca", coordinator.rootPath,
            ], timeout: 120)
            try #require(held.status == 0 && held.stdout == convert.stdout, "\(held.stderr)")
        }

        func runArguments(_ tag: String, key: String?) -> [String] {
            ["run", "oci:\(images):\(tag)", "--tee", "simulated", "--simulation-key", coordinator.simulationKey, "--coordinator", coordinator.meshAddress,
             "--root-ca", coordinator.rootPath, "--state-dir", state] + (key.map { ["--decryption-key", "kbs:///\($0)"] } ?? [])
        }

        /// The ramfs mounts under the state directory now.
        func memoryMounts() throws -> [String] {
            try String(contentsOfFile: "/proc/mounts", encoding: .utf8).split(separator: "\n")
                .map { $0.split(separator: " ").map(String.init) }.filter { $0.count > 2 && $0[1].hasPrefix(state + "/memory") }.map { "\($0[1]) \($0[2])" }
        }

        /// Files under the scratch directory (but the plaintext source layout) holding the
        /// marker: `grep` in a child process, so reading hundreds of MB of layers never holds the
        /// test process's cooperative thread.
        func filesWithTheMarker() async throws -> [String] {
            let result = try await run("/bin/grep", ["-rlF", "--exclude-dir=plain", "--exclude=marker.txt", "--", marker, scratch.path], scratch: scratch, timeout: 120)
            try #require(result.status == 0 || result.status == 1, "grep: \(result.stderr)")
            return result.stdout.split(separator: "\n").map(String.init)
        }

        func redisAnswers() async throws -> String {
            try await run(which("redis-cli") ?? "/usr/bin/redis-cli", ["-p", "\(redisPort)", "PING"], scratch: scratch).stdout
                .trimmingCharacters(in: .whitespacesAndNewlines)
        }
    }

    @Test func encryptedRedisAnswersWithKeysReleasedOnlyAfterAttestation() async throws {
        let setup = try await Setup()
        // CoCo's key packets name their own resource: no --decryption-key.
        for (tag, key) in [("rsa", "veil/image-key/rsa"), ("ec", "veil/image-key/ec"), ("veil-rsa", "veil/image-key/rsa"), ("coco", nil),
                           ("held", "veil/image-key/held")] {
            let running = try Spawned(veilBinary, setup.runArguments(tag, key: key), environment: setup.coordinator.environment, scratch: setup.scratch)
            let answered = await eventually(within: 60) {
                guard running.isRunning else { return true }
                return (try? await setup.redisAnswers()) == "PONG"
            }
            #expect(answered && running.isRunning, "\(tag): \(running.stderr)")
            // While it runs: the root is a ramfs of its own, nothing was unpacked to the disk cache.
            let mounts = try setup.memoryMounts()
            #expect(mounts.count == 1 && mounts.first?.hasSuffix(" ramfs") == true, "\(tag): \(mounts)")
            #expect((try? FileManager.default.contentsOfDirectory(atPath: setup.state + "/images"))?.filter { !$0.hasPrefix(".") } ?? [] == [])
            if tag == "rsa" {
                // The scan finds plaintext where it is: in the running container's ramfs only.
                let found = try await setup.filesWithTheMarker()
                #expect(found.count == 1 && found.first?.hasPrefix(setup.state + "/memory/") == true && found.first?.hasSuffix("/etc/veil-marker.txt") == true, "\(found)")
            }
            await running.stop()
            #expect(running.stderr.contains("encrypted layers opened with keys the coordinator released after attestation"), "\(running.stderr)")
            #expect(running.stderr.contains("NO confidentiality"))
            #expect(try setup.memoryMounts() == [], "\(tag): the ramfs is gone after the run")
        }
        #expect(try await setup.filesWithTheMarker() == [], "no decrypted byte on a disk filesystem")
        let log = try await setup.coordinator.veil(["manifest", "log", "--root-ca", setup.coordinator.rootPath])
        #expect(log.stdout.components(separatedBy: "kbsResourceReleased").count - 1 == 5, "one release per run: \(log.stdout)")
    }

    /// The key packets Veil writes are CoCo's version 1 packets: an independent reader (Python
    /// `cryptography`) opens each with the key-encryption key to ocicrypt's private options.
    @Test func veilsKeyPacketsOpenWithAnIndependentReader() async throws {
        let setup = try await Setup()
        let script = """
            import base64, json, sys
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
            layout, kek = sys.argv[1], open(sys.argv[2], "rb").read()
            blob = lambda d: open(f"{layout}/blobs/sha256/{d[7:]}", "rb").read()
            index = json.load(open(f"{layout}/index.json"))
            entry = next(m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == "coco")
            for layer in json.loads(blob(entry["digest"]))["layers"]:
                packet = json.loads(base64.b64decode(layer["annotations"]["org.opencontainers.image.enc.keys.provider.attestation-agent"]))
                assert sorted(packet) == ["iv", "kid", "wrap_type", "wrapped_data"] and packet["wrap_type"] == "A256GCM", packet
                options = json.loads(AESGCM(kek).decrypt(base64.b64decode(packet["iv"]), base64.b64decode(packet["wrapped_data"]), None))
                print(packet["kid"], sorted(options), layer["mediaType"])
            """
        let result = try await run("/usr/bin/python3", ["-c", script, setup.images, setup.kek], scratch: setup.scratch)
        #expect(result.status == 0, "\(result.stderr)")
        let lines = result.stdout.split(separator: "\n")
        #expect(!lines.isEmpty && lines.allSatisfy { $0.hasPrefix("kbs:///veil/image-kek/cache ['cipheroptions', 'digest', 'symkey'] application/vnd.oci.image.layer.v1.tar") && $0.hasSuffix("+encrypted") },
                "\(result.stdout)")
    }

    /// `veil run --tee snp` of an encrypted image in a (doubled) SEV-SNP guest: the configfs-tsm
    /// double serves Veraison's real Genoa report with its certificates; the key broker verifies
    /// it for real (VCEK, chain, the package's measurement) and refuses it only because the
    /// recorded report binds Veraison's nonce, not this run's runtime data (a SHA-384 hash,
    /// zero-padded: what `veil run` wrote to inblob). No key, nothing unpacked, nothing started.
    @Test func inAConfidentialVMTheKeyBrokerVerifiesTheRealReportBeforeAnyKey() async throws {
        try #require(TSMDouble.available, "install python3-fusepy (scripts/install-deps.sh test); /dev/fuse is needed")
        let setup = try await Setup()
        let veraison = repositoryRoot + "/../shared/testdata/attestation/veraison"
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let tsm = try await TSMDouble(scratch: scratch, provider: "sev_guest", outblob: "\(veraison)/upstream/outblob.bin", auxblob: "\(veraison)/upstream/auxblob.bin")
        let report = try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/genoa_report.bin"))
        let measurement = report[0x90..<0xC0].map { String(format: "%02x", $0) }.joined()
        let set = try await coordinator.veil([
            "manifest", "set", try scratch.write(#"""
                {"Packages": {"guest": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)"}},
                 "Services": {"cache": {"Package": "guest", "KBS": {"Resources": {"veil/image-key/rsa": "{{ raw .Secrets.rsakey }}"}}}},
                 "Secrets": {"rsakey": {"Type": "plain", "UserDefined": true}}}
                """#, to: "manifest.json"), "--root-ca", coordinator.rootPath, "--secret", "rsakey=\(Self.keys)/rsa2048-priv.pem",
        ])
        try #require(set.status == 0, "\(set.stderr)")
        let result = try await run(veilBinary, [
            "run", "oci:\(setup.images):rsa", "--tee", "snp", "--coordinator", coordinator.meshAddress, "--root-ca", coordinator.rootPath,
            "--state-dir", setup.state, "--decryption-key", "kbs:///veil/image-key/rsa",
        ], environment: ["VEIL_TSM_ROOT": tsm.root], scratch: scratch, timeout: 60)
        #expect(result.status == 125 && result.stderr.contains("the key broker refused attest (401)") && result.stderr.contains("report data"),
                "\(result.stderr)")
        let inblob = tsm.writes(to: "inblob")
        #expect(inblob.count == 1 && inblob.first?.count == 128 && inblob.first?.hasSuffix(String(repeating: "0", count: 32)) == true,
                "one report over the runtime-data hash: \(inblob)")
        #expect(try setup.memoryMounts() == [])
    }

    @Test func everyRefusalStartsNothingAndLeavesNothingMounted() async throws {
        let setup = try await Setup()
        let tamper = repositoryRoot + "/Tests/Scripts/tamper_layout.py"
        for (mode, extra) in [("flip-layer", [String]()), ("diff-id", []), ("label", ["dev.veil.measurement", String(repeating: "cd", count: 32)]), ("add-layer", [])] {
            let result = try await run("/usr/bin/python3", [tamper, setup.images, "rsa", mode, mode] + extra, scratch: setup.scratch)
            try #require(result.status == 0, "\(result.stderr)")
        }
        let cases: [(tag: String, key: String?, status: Int32, reason: String)] = [
            ("rsa", nil, 125, "--decryption-key kbs:///REPOSITORY/TYPE/TAG"),
            ("rsa", "veil/image-key/other", 125, "the key broker refused resource veil/image-key/other (403)"),
            ("label", "veil/image-key/rsa", 125, "the key broker refused attest (401)"),
            ("flip-layer", "veil/image-key/rsa", 125, "the encrypted layer's HMAC does not match: a byte of it was changed (nothing was decrypted)"),
            ("diff-id", "veil/image-key/rsa", 125, "the image config says"),
            // The config still claims the measurement (the key is released), but a layer was
            // added: the launcher measures what was unpacked and the activation is refused.
            ("add-layer", "veil/image-key/rsa", 125, "is not the package's"),
        ]
        for refusal in cases {
            let result = try await setup.coordinator.veil(setup.runArguments(refusal.tag, key: refusal.key), timeout: 120)
            #expect(result.status == refusal.status && result.stderr.contains(refusal.reason), "\(refusal.tag): \(result.status) \(result.stderr)")
            #expect(try setup.memoryMounts() == [], "\(refusal.tag): nothing left mounted")
        }
        // Without attestation there is no key: `veil run` needs a TEE for a Veil image, and the
        // key broker answers a resource request without a session or token with 401.
        let noTEE = try await setup.coordinator.veil(["run", "oci:\(setup.images):rsa", "--state-dir", setup.state, "--decryption-key", "kbs:///veil/image-key/rsa"])
        #expect(noTEE.status == 64 && noTEE.stderr.contains("pass --tee"), "\(noTEE.stderr)")
        let (status, _) = try await setup.coordinator.curl("GET", setup.coordinator.meshAddress, "/kbs/v0/resource/veil/image-key/rsa")
        #expect(status == 401)
        // Anyone reads a certificate secret's public key, and nothing else through that route.
        let client = setup.coordinator.clientAddress
        let (publicStatus, publicKey) = try await setup.coordinator.curl("GET", client, "/api/v1/public-keys/imagekey")
        #expect(publicStatus == 200 && publicKey.hasPrefix("-----BEGIN PUBLIC KEY-----") && !publicKey.contains("PRIVATE"), "\(publicKey)")
        #expect(try await setup.coordinator.curl("GET", client, "/api/v1/public-keys/kek").0 == 400, "a plain secret has no public key")
        #expect(try await setup.coordinator.curl("GET", client, "/api/v1/public-keys/nothing").0 == 404)
        let noSuchSecret = try await setup.coordinator.veil([
            "image", "convert", "--from", "oci:\(setup.scratch.path)/plain:redis", "--to", "oci:\(setup.scratch.path)/unused:x", "--service", "cache",
            "--encrypt-layers-to", "coordinator:kek", "--root-ca", setup.coordinator.rootPath,
        ])
        #expect(noSuchSecret.status != 0 && noSuchSecret.stderr.contains("only certificate secrets"), "\(noSuchSecret.stderr)")
        #expect(!FileManager.default.fileExists(atPath: setup.scratch.path + "/unused"), "nothing written")
        #expect(try await setup.redisAnswers() != "PONG", "redis never started")
        #expect(try await setup.filesWithTheMarker() == [], "no decrypted byte on a disk filesystem")
    }

    /// `veil-bench encrypted`, small: both conversions and both starts complete and print their rows.
    @Test func benchEncryptedComparesEachFigureWithTheUnencryptedImage() async throws {
        try #require(which("runc") != nil, "install runc")
        let scratch = try Scratch()
        let result = try await run(veilBenchBinary, ["encrypted", "--megabytes", "4", "--repetitions", "1", "--starts", "1"], scratch: scratch, timeout: 300)
        #expect(result.status == 0, "\(result.stdout)\n\(result.stderr)")
        for row in ["veil image convert (peer)", "veil image convert --encrypt-layers-to", "veil run, unencrypted (peer; cached root)", "veil run, layers encrypted"] {
            let line = result.stdout.split(separator: "\n").first { $0.contains(row) }
            let figure = line.flatMap { $0.split(separator: " ").compactMap { Double($0) }.first }
            #expect((figure ?? 0) > 0, "\(row): \(result.stdout)")
        }
    }
}
