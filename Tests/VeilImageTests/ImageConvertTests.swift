import Crypto
import Foundation
import Testing
@testable import VeilImage
import VeilImageFormat

@Suite struct ImageLayoutTests {
    let layers: [[Member]] = [
        [.dir("bin"), .file("bin/app", "#!/bin/sh\necho app\n", mode: 0o755), .dir("srv")],
        [.dir("data"), .file("data/secret.txt", "top secret\n", mode: 0o640), .dir("data/sub"), .file("data/sub/more", "more secret")],
    ]

    @Test func readsAndVerifiesEveryLayer() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        try writeLayout(at: directory, layers: layers)
        let image = try SourceImage.open(ImageReference(parsing: "oci:\(directory):test"))
        #expect(image.config.command == ["/bin/app", "--serve"])
        #expect(image.config.env == ["PATH=/bin", "MODE=test"])
        for index in image.layers.indices {
            try image.readLayer(index) { reader in while try reader.next() != nil {} }
        }
        #expect(throws: ImageError.referenceNotFound("nope", available: ["test"])) {
            try SourceImage.open(ImageReference(parsing: "oci:\(directory):nope"))
        }
    }

    @Test func alteredOrMissingBlobsAreRefused() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let (_, descriptors) = try writeLayout(at: directory, layers: layers, gzipLayers: false)
        let image = try SourceImage.open(ImageReference(parsing: "oci:\(directory):test"))
        // Alter one byte of a layer: its digest no longer matches.
        let path = "\(directory)/blobs/sha256/\(descriptors[1].digest.hex)"
        var bytes = Array(try Data(contentsOf: URL(fileURLWithPath: path)))
        bytes[600] ^= 0x20
        try Data(bytes).write(to: URL(fileURLWithPath: path))
        #expect {
            try image.readLayer(1) { reader in while try reader.next() != nil {} }
        } throws: { error in
            if case ImageError.digestMismatch = error { return true } else { return false }
        }
        try FileManager.default.removeItem(atPath: path)
        #expect(throws: ImageError.missingBlob(descriptors[1].digest.description)) { _ = try image.openLayer(1) }
        // A missing manifest blob fails at open.
        let manifest = try SourceImage.open(ImageReference(parsing: "oci:\(directory):test")).manifestDigest
        try FileManager.default.removeItem(atPath: "\(directory)/blobs/sha256/\(manifest.hex)")
        #expect(throws: ImageError.missingBlob(manifest.description)) { try SourceImage.open(ImageReference(parsing: "oci:\(directory):test")) }
    }

    @Test func notALayoutOrBadReferenceIsAClearError() throws {
        let directory = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: directory) }
        #expect(throws: ImageError.notAnImageLayout(path: directory, reason: "no oci-layout file")) {
            try SourceImage.open(ImageReference(parsing: "oci:\(directory)"))
        }
        #expect(throws: ImageError.self) { try ImageReference(parsing: "docker://busybox") }
        #expect(throws: ImageError.badDigest("sha256:XYZ")) { try BlobDigest(parsing: "sha256:XYZ") }
    }
}

@Suite struct ImageConvertTests {
    let layers: [[Member]] = [
        [.dir("bin"), .file("bin/app", "#!/bin/sh\necho app\n", mode: 0o755), .dir("srv")],
        [.dir("data"), .file("data/secret.txt", "top secret\n", mode: 0o640), .dir("data/sub"), .file("data/sub/more", "more secret")],
    ]

    func convert(_ source: String, into output: String, encrypt: [String] = [], key: SymmetricKey? = nil, scratch: String) throws -> ImageConverter.Result {
        var options = ImageConverter.Options(service: "app", launcher: try fakeLauncher(in: scratch))
        options.encrypt = encrypt
        options.key = key
        return try ImageConverter(options: options).convert(
            SourceImage.open(ImageReference(parsing: "oci:\(source):test")), to: LayoutWriter(directory: output), tag: "veil")
    }

    func files(_ directory: String) throws -> [String: Data] {
        var result: [String: Data] = [:]
        for name in try FileManager.default.subpathsOfDirectory(atPath: directory) {
            var isDirectory: ObjCBool = false
            if FileManager.default.fileExists(atPath: "\(directory)/\(name)", isDirectory: &isDirectory), !isDirectory.boolValue {
                result[name] = try Data(contentsOf: URL(fileURLWithPath: "\(directory)/\(name)"))
            }
        }
        return result
    }

    @Test func conversionIsDeterministicAndUnpacksToTheMeasuredTree() throws {
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try writeLayout(at: "\(scratch)/src", layers: layers)
        let key = SymmetricKey(data: [UInt8](repeating: 9, count: 32))
        let first = try convert("\(scratch)/src", into: "\(scratch)/a", encrypt: ["/data"], key: key, scratch: scratch)
        let second = try convert("\(scratch)/src", into: "\(scratch)/b", encrypt: ["/data"], key: key, scratch: scratch)
        #expect(first.measurement == second.measurement)
        #expect(try files("\(scratch)/a") == files("\(scratch)/b"), "same input, same output bytes")
        #expect(first.protectedFiles.map(\.path).sorted() == ["/data/secret.txt", "/data/sub/more"])

        // No plaintext of the encrypted paths anywhere in the output blobs, gzip layers decompressed first.
        var decompressedLayers = 0
        for (name, raw) in try files("\(scratch)/a") {
            var data = raw
            if raw.starts(with: [0x1f, 0x8b]) {
                data = try Self.gunzip(Array(raw))
                decompressedLayers += 1
            }
            #expect(data.range(of: Data("top secret".utf8)) == nil, "\(name)")
            #expect(data.range(of: Data("more secret".utf8)) == nil, "\(name)")
        }
        #expect(decompressedLayers > 0, "the compressed layers were searched decompressed")

        // Unpacked, the result measures what conversion printed, and holds the image config.
        let converted = try SourceImage.open(ImageReference(parsing: "oci:\(scratch)/a:veil"))
        #expect(converted.config.entrypoint == ["/veil/bin/veil-launcher", "launch", "--image", "/veil/image.json"])
        #expect(converted.config.cmd.isEmpty)
        #expect(converted.config.labels["dev.veil.service"] == "app")
        let root = "\(scratch)/rootfs"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let unpacker = try RootfsUnpacker(root: root)
        for index in converted.layers.indices {
            try converted.readLayer(index) { try unpacker.apply(layer: index, tar: $0) }
        }
        #expect(ImageMeasurement.measurement(rootfsDigest: try RootfsDisk.measure(root: root)) == first.measurement)
        let runConfig = try ImageRunConfig.load(at: "\(root)/veil/image.json")
        #expect(runConfig.command == ["/bin/app", "--serve"] && runConfig.workingDir == "/srv" && runConfig.service == "app")
        #expect(try FileManager.default.destinationOfSymbolicLink(atPath: "\(root)/data") == "/run/veil/protected/data")
        let stored = try #require(runConfig.protectedFiles.first { $0.path == "/data/secret.txt" })
        let (_, plaintext) = try ProtectedFile.open(fileAt: root + stored.stored, path: stored.path, secret: key)
        #expect(plaintext == Array("top secret\n".utf8))
        #expect(stored.mode == 0o640 && stored.plaintext == "/run/veil/protected/data/secret.txt")
    }

    @Test func withoutEncryptionOriginalLayersAreKeptByteForByte() throws {
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let (_, original) = try writeLayout(at: "\(scratch)/src", layers: layers)
        let result = try convert("\(scratch)/src", into: "\(scratch)/out", scratch: scratch)
        let converted = try SourceImage.open(ImageReference(parsing: "oci:\(scratch)/out:veil"))
        #expect(Array(converted.layers.prefix(2)) == original)
        #expect(converted.layers.count == 4, "the original two, the launcher layer, the image's Veil layer")
        #expect(result.protectedFiles.isEmpty)
    }

    @Test func theLauncherLayerIsTheSameForEveryImage() throws {
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try writeLayout(at: "\(scratch)/one", layers: layers)
        try writeLayout(at: "\(scratch)/two", layers: [[.file("other", "x")]], entrypoint: ["/other"])
        let first = try convert("\(scratch)/one", into: "\(scratch)/out", scratch: scratch)
        let second = try convert("\(scratch)/two", into: "\(scratch)/out", scratch: scratch)
        let index = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(scratch)/out/index.json"))) as! [String: Any]
        #expect((index["manifests"] as! [Any]).count == 1, "the second conversion replaced the tag")
        let manifests = [first.manifest, second.manifest].map { descriptor -> [String: Any] in
            let data = try! Data(contentsOf: URL(fileURLWithPath: "\(scratch)/out/blobs/sha256/\(descriptor.digest.hex)"))
            return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
        }
        let launcherLayers = manifests.map { (($0["layers"] as! [[String: Any]]).dropLast().last!["digest"] as! String) }
        #expect(launcherLayers[0] == launcherLayers[1])
        #expect(first.measurement != second.measurement)
    }

    @Test func missingEncryptPathAndMissingKeyAreRefused() throws {
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try writeLayout(at: "\(scratch)/src", layers: layers)
        let key = SymmetricKey(size: .bits256)
        #expect(throws: ImageError.encryptPathNotFound("/nothing")) {
            try convert("\(scratch)/src", into: "\(scratch)/out", encrypt: ["/nothing"], key: key, scratch: scratch)
        }
        #expect(throws: ImageError.self) { try convert("\(scratch)/src", into: "\(scratch)/out", encrypt: ["/data"], scratch: scratch) }
        #expect(throws: ImageError.self) { try convert("\(scratch)/src", into: "\(scratch)/out", encrypt: ["/veil"], key: key, scratch: scratch) }
    }

    @Test func maliciousLayersAreRefusedBeforeAnythingIsTagged() throws {
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try writeLayout(at: "\(scratch)/src", layers: [[.symlink("etc", to: "/etc"), .file("etc/cron.d/evil", "* * * * * root sh")]])
        #expect(throws: ImageError.self) { try convert("\(scratch)/src", into: "\(scratch)/out", scratch: scratch) }
        #expect(!FileManager.default.fileExists(atPath: "\(scratch)/out/index.json"), "nothing tagged")
        let leftovers = try FileManager.default.contentsOfDirectory(atPath: "\(scratch)/out/blobs/sha256")
        #expect(leftovers.allSatisfy { !$0.hasPrefix(".partial") }, "no partial blobs left behind")
    }

    /// The decompressed bytes of a gzip member (VeilImage's own reader, as unpacking uses).
    static func gunzip(_ bytes: [UInt8]) throws -> Data {
        let stream = try GunzipStream(BytesStream(bytes))
        var output = Data()
        var buffer = [UInt8](repeating: 0, count: 1 << 16)
        while true {
            let count = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            if count == 0 { return output }
            output.append(contentsOf: buffer[..<count])
        }
    }
}
