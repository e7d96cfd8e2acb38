import Foundation
import Testing

/// `veil image convert --encrypt-layers-to` against the real skopeo (1.9.3, Debian): the layers
/// Veil encrypts for an RSA and a P-256 recipient decrypt with `skopeo copy --decryption-key`
/// (either key) to exactly the layers and config of the same image converted without
/// encryption; the measurement is the plaintext's; no plaintext layer stays in the layout.
@Suite(.timeLimit(.minutes(5))) struct EncryptedImageTests {
    static let keys = repositoryRoot + "/../shared/testdata/ocicrypt/skopeo-jwe/keys"

    /// The layer digests and config digest of `tag`'s manifest in `layout`.
    static func image(_ layout: String, _ tag: String) throws -> (layers: [[String: Any]], config: String) {
        func object(_ path: String) throws -> [String: Any] {
            try #require(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        }
        let manifests = try #require(try object("\(layout)/index.json")["manifests"] as? [[String: Any]])
        let entry = try #require(manifests.first { ($0["annotations"] as? [String: String])?["org.opencontainers.image.ref.name"] == tag })
        let digest = try #require(entry["digest"] as? String)
        let manifest = try object("\(layout)/blobs/sha256/\(digest.dropFirst(7))")
        return (try #require(manifest["layers"] as? [[String: Any]]), try #require((manifest["config"] as? [String: Any])?["digest"] as? String))
    }

    @Test func veilEncryptedLayersDecryptWithSkopeoToThePlainImage() async throws {
        let scratch = try Scratch()
        let source = scratch.path + "/source", plain = scratch.path + "/plain", encrypted = scratch.path + "/encrypted"
        try await buildImage(layout: source, tag: "app", files: ["/bin/sh"], entrypoint: ["/bin/sh", "-c", "echo hello"], scratch: scratch)
        func convert(_ to: String, _ extra: [String]) async throws -> RunResult {
            try await run(veilBinary, ["image", "convert", "--from", "oci:\(source):app", "--to", "oci:\(to):veil", "--service", "app", "--quiet"] + extra, scratch: scratch, timeout: 120)
        }
        let clear = try await convert(plain, [])
        try #require(clear.status == 0, "\(clear.stderr)")
        let sealed = try await convert(encrypted, ["--encrypt-layers-to", "\(Self.keys)/rsa2048-pub.pem", "--encrypt-layers-to", "\(Self.keys)/ecp256-pub.pem"])
        try #require(sealed.status == 0, "\(sealed.stderr)")
        #expect(sealed.stdout == clear.stdout, "the same package snippet: the measurement is the plaintext's")

        let reference = try Self.image(plain, "veil")
        let locked = try Self.image(encrypted, "veil")
        #expect(locked.config == reference.config, "the config (diff_ids) is unchanged")
        #expect(locked.layers.count == reference.layers.count)
        for layer in locked.layers {
            #expect((layer["mediaType"] as? String)?.hasSuffix("+encrypted") == true)
            let annotations = layer["annotations"] as? [String: String] ?? [:]
            #expect(annotations["org.opencontainers.image.enc.keys.jwe"]?.contains(",") == true, "one JWE per recipient")
            #expect(annotations["org.opencontainers.image.enc.pubopts"] != nil)
        }
        let blobs = Set(try FileManager.default.contentsOfDirectory(atPath: encrypted + "/blobs/sha256"))
        for layer in reference.layers {
            #expect(!blobs.contains(String((layer["digest"] as? String ?? "").dropFirst(7))), "no plaintext layer is left beside the encrypted ones")
        }

        let skopeo = which("skopeo") ?? "/usr/bin/skopeo"
        for key in ["rsa2048-priv.pem", "ecp256-priv.pem"] {
            let decrypted = scratch.path + "/decrypted-\(key)"
            let copy = try await run(skopeo, ["copy", "--decryption-key", "\(Self.keys)/\(key)", "oci:\(encrypted):veil", "oci:\(decrypted):veil"], scratch: scratch, timeout: 120)
            try #require(copy.status == 0, "skopeo with \(key): \(copy.stderr)")
            let opened = try Self.image(decrypted, "veil")
            #expect(opened.layers.map { $0["digest"] as? String } == reference.layers.map { $0["digest"] as? String }, "skopeo with \(key): the plain layers byte for byte")
            #expect(opened.config == reference.config)
        }
        let refused = try await run(skopeo, ["copy", "--decryption-key", "\(Self.keys)/../../keys/ocicrypt-go/encryption_test_private.pem",
                                             "oci:\(encrypted):veil", "oci:\(scratch.path)/wrong:veil"], scratch: scratch, timeout: 120)
        #expect(refused.status != 0, "a key that is no recipient's: \(refused.stderr)")

        let archive = try await convert(scratch.path + "/unused", ["--encrypt-layers-to", "\(Self.keys)/rsa2048-pub.pem", "--to", "docker-archive:\(scratch.path)/image.tar"])
        #expect(archive.status != 0 && archive.stderr.contains("docker load cannot read encrypted layers"), "\(archive.stderr)")
        let badKey = try await convert(scratch.path + "/unused2", ["--encrypt-layers-to", try scratch.write("not a key", to: "bad.pem")])
        #expect(badKey.status != 0 && badKey.stderr.contains("--encrypt-layers-to"), "\(badKey.stderr)")
    }
}
