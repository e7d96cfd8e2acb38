import Foundation
import Testing
import VeilCore
import VeilImage
import VeilImageFormat

/// The launcher takes the digests of its own files from the measured record, and only those:
/// every file not mapped into the measuring process is hashed, whatever the record says.
@Suite struct OwnCodeTests {
    /// A converted image unpacked at `root`, its measurement and launch configuration.
    func unpackedImage(in scratch: String) throws -> (root: String, measurement: [UInt8], config: ImageRunConfig) {
        try writeLayout(at: "\(scratch)/src", layers: [[.dir("bin"), .file("bin/app", "#!/bin/sh\necho app\n", mode: 0o755)]])
        let result = try ImageConverter(options: .init(service: "app", launcher: try fakeLauncher(in: scratch)))
            .convert(SourceImage.open(ImageReference(parsing: "oci:\(scratch)/src:test")), to: LayoutWriter(directory: "\(scratch)/out"), tag: "veil")
        let root = "\(scratch)/rootfs"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let converted = try SourceImage.open(ImageReference(parsing: "oci:\(scratch)/out:veil"))
        let unpacker = try RootfsUnpacker(root: root)
        for index in converted.layers.indices { try converted.readLayer(index) { try unpacker.apply(layer: index, tar: $0) } }
        return (root, result.measurement, try ImageRunConfig.load(at: "\(root)/veil/image.json"))
    }

    func identity(of path: String) throws -> RootfsDisk.OwnCode.FileIdentity {
        var st = stat()
        guard stat(path, &st) == 0 else { throw CocoaError(.fileReadNoSuchFile) }
        return .init(device: st.st_dev, inode: st.st_ino)
    }

    /// Rewrites `path` in place (same inode, same size), as a tampering host would.
    func overwrite(_ path: String, with text: String) throws {
        let handle = try FileHandle(forWritingTo: URL(fileURLWithPath: path))
        try handle.write(contentsOf: Data(text.utf8))
        try handle.close()
    }

    func measure(_ root: String, _ ownCode: RootfsDisk.OwnCode) throws -> [UInt8] {
        ImageMeasurement.measurement(rootfsDigest: try RootfsDisk.measure(root: root, ownCode: ownCode))
    }

    @Test func theConverterRecordsTheLauncherFilesDigestsAndTheRecordMeasuresTheSame() throws {
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let (root, measurement, config) = try unpackedImage(in: scratch)
        let launcherFiles = try #require(config.launcherFiles)
        #expect(Array(launcherFiles.keys) == ["veil/bin/veil-launcher"])
        let launcher = "\(root)/veil/bin/veil-launcher"
        #expect(launcherFiles["veil/bin/veil-launcher"] == Hex.encode(ContentDigest.of(Array(try Data(contentsOf: URL(fileURLWithPath: launcher))))))

        var ownCode = try RootfsDisk.OwnCode.ofThisProcess(launcherFiles: launcherFiles)
        #expect(try measure(root, ownCode) == measurement, "not mapped here: hashed, and equal")
        ownCode.mapped.insert(try identity(of: launcher))
        #expect(try measure(root, ownCode) == measurement, "taken from the record: equal")

        // Changed under the record: the running launcher's bytes are not re-read (they could
        // not vouch for themselves), so the record stands; measured by hashing, it differs.
        try overwrite(launcher, with: "#!/bin/sh\nexit 1\n")
        #expect(try measure(root, ownCode) == measurement)
        #expect(try measure(root, .none) != measurement)
    }

    @Test func anApplicationFileIsHashedEvenWhenARecordNamesIt() throws {
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        let (root, measurement, config) = try unpackedImage(in: scratch)
        let app = "\(root)/bin/app"
        var records = try #require(config.launcherFiles)
        records["bin/app"] = Hex.encode(ContentDigest.of(Array(try Data(contentsOf: URL(fileURLWithPath: app)))))
        try overwrite(app, with: "#!/bin/sh\necho evil\n")
        // The launcher maps only its own files: the record cannot spare the application's.
        let ownCode = try RootfsDisk.OwnCode.ofThisProcess(launcherFiles: records)
        #expect(!ownCode.mapped.contains(try identity(of: app)))
        #expect(try measure(root, ownCode) != measurement)
    }

    @Test func theMappedFilesAreThisProcesssOwn() throws {
        let ownCode = try RootfsDisk.OwnCode.ofThisProcess(launcherFiles: [:])
        #expect(ownCode.mapped.contains(try identity(of: "/proc/self/exe")), "the running executable is mapped")
        let scratch = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: scratch) }
        try Data("x".utf8).write(to: URL(fileURLWithPath: "\(scratch)/plain"))
        #expect(!ownCode.mapped.contains(try identity(of: "\(scratch)/plain")))
    }

    @Test(arguments: ["", "zz", String(repeating: "ab", count: 31), String(repeating: "ab", count: 33)])
    func aMalformedRecordIsRefused(_ digest: String) {
        #expect(throws: ImageFormatError.self) { try RootfsDisk.OwnCode.ofThisProcess(launcherFiles: ["veil/bin/veil-launcher": digest]) }
    }
}
