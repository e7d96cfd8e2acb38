import Crypto
import Foundation
import Testing
@testable import VeilImage

/// Image inputs are untrusted: archives and layouts must not reach host files through
/// symlinks, and unpacking is bounded.
@Suite struct UntrustedInputTests {
    /// A legacy `docker save` archive: manifest.json, the config, and layer members, some of
    /// which may be symlinks (docker itself links duplicate layers: `b/layer.tar -> ../a/layer.tar`).
    func dockerArchive(layerMember: Member, extra: [Member] = [], configJSON: [UInt8]) throws -> [UInt8] {
        let manifest = #"[{"Config": "config.json", "RepoTags": ["t:latest"], "Layers": ["a/layer.tar"]}]"#
        return try tarBytes([
            .file("manifest.json", manifest), Member(entry: TarEntry(path: "config.json", kind: .file, mode: 0o644, size: UInt64(configJSON.count)), content: configJSON),
            .dir("a"), layerMember,
        ] + extra)
    }

    func config(diffID: BlobDigest) -> [UInt8] {
        Array(#"{"architecture": "amd64", "os": "linux", "config": {"Cmd": ["/bin/app"]}, "rootfs": {"type": "layers", "diff_ids": ["\#(diffID.description)"]}}"#.utf8)
    }

    @Test func anArchiveMemberThatLinksToAHostFileIsRefused() throws {
        let work = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        // A tar on the host that the archive tries to pull into the image.
        let hostTar = try tarBytes([.file("etc/host-secret", "from the host")])
        try Data(hostTar).write(to: URL(fileURLWithPath: "\(work)/host.tar"))
        let archive = try dockerArchive(layerMember: .symlink("a/layer.tar", to: "\(work)/host.tar"), configJSON: config(diffID: sha256(hostTar)))
        try Data(archive).write(to: URL(fileURLWithPath: "\(work)/evil.tar"))
        let error = try #require(throws: ImageError.self) { try SourceImage.open(.dockerArchive(path: "\(work)/evil.tar")) }
        guard case .unsafePath(_, let reason) = error else { Issue.record("\(error)"); return }
        #expect(reason.contains("absolute path"))

        // The same through a relative link climbing out of the unpacked archive.
        let climbing = try dockerArchive(layerMember: .symlink("a/layer.tar", to: "../../../../../../../../..\(work)/host.tar"), configJSON: config(diffID: sha256(hostTar)))
        try Data(climbing).write(to: URL(fileURLWithPath: "\(work)/climb.tar"))
        #expect(throws: ImageError.self) { try SourceImage.open(.dockerArchive(path: "\(work)/climb.tar")) }
    }

    @Test func linksThatStayInsideTheArchiveAreFollowed() throws {
        let work = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: work) }
        let layer = try tarBytes([.file("bin/app", "app")])
        let archive = try dockerArchive(
            layerMember: .symlink("a/layer.tar", to: "../blobs/layer"), extra: [.dir("blobs"), Member(entry: TarEntry(path: "blobs/layer", kind: .file, mode: 0o644, size: UInt64(layer.count)), content: layer)],
            configJSON: config(diffID: sha256(layer)))
        try Data(archive).write(to: URL(fileURLWithPath: "\(work)/ok.tar"))
        let image = try SourceImage.open(.dockerArchive(path: "\(work)/ok.tar"))
        let names = try image.readLayer(0) { reader in
            var names: [String] = []
            while let entry = try reader.next() { names.append(entry.path) }
            return names
        }
        #expect(names == ["bin/app"])
    }

    @Test func confinedOpenRefusesEveryWayOut() throws {
        let root = try temporaryDirectory()
        let outside = try temporaryDirectory()
        defer { [root, outside].forEach { try? FileManager.default.removeItem(atPath: $0) } }
        try Data("secret".utf8).write(to: URL(fileURLWithPath: "\(outside)/file"))
        try Data("inside".utf8).write(to: URL(fileURLWithPath: "\(root)/file"))
        try FileManager.default.createDirectory(atPath: "\(root)/dir", withIntermediateDirectories: true)
        symlink("\(outside)/file", "\(root)/absolute")
        symlink("../\((outside as NSString).lastPathComponent)/file", "\(root)/relative-out")
        symlink(".", "\(root)/dot")
        symlink("dot/../\((outside as NSString).lastPathComponent)/file", "\(root)/through-dot")
        symlink("dir/../file", "\(root)/inside")
        symlink("loop", "\(root)/loop")
        #expect(try ConfinedFile.read("inside", under: root) == Array("inside".utf8))
        #expect(try ConfinedFile.read("dir/../file", under: root) == Array("inside".utf8))
        for name in ["absolute", "relative-out", "through-dot", "../x", "loop", "dir"] {
            #expect(throws: ImageError.self, "\(name)") { try ConfinedFile.read(name, under: root) }
        }
        #expect(try ConfinedFile.openIfPresent("missing", under: root) == nil)
    }

    @Test func unpackingIsBounded() throws {
        let members: [Member] = [.dir("d"), .file("d/a", "12345"), .file("d/b", "67890")]
        func apply(_ limits: UnpackLimits, _ members: [Member]) throws {
            var tree = RootfsTree(limits: limits)
            let reader = TarReader(BytesStream(try tarBytes(members)))
            while let entry = try reader.next() { try tree.apply(entry, layer: 0) { _ in nil } }
        }
        try apply(.default, members)
        #expect(throws: ImageError.limitExceeded(what: "the image's entry count", limit: "2 entries")) {
            try apply(UnpackLimits(totalBytes: 100, entries: 2, pathLength: 100, componentLength: 100), members)
        }
        #expect(throws: ImageError.self) { try apply(UnpackLimits(totalBytes: 9, entries: 10, pathLength: 100, componentLength: 100), members) }
        let long = [Member.file(String(repeating: "x", count: 300), "y")]
        let error = try #require(throws: ImageError.self) { try apply(.default, long) }
        guard case .limitExceeded(let what, _) = error else { Issue.record("\(error)"); return }
        #expect(what.contains("path component"))
        // An unpacker enforces the same limits on disk.
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let unpacker = try RootfsUnpacker(root: root, limits: UnpackLimits(totalBytes: 9, entries: 10, pathLength: 100, componentLength: 100))
        #expect(throws: ImageError.self) { try unpacker.apply(layer: 0, tar: TarReader(BytesStream(try tarBytes(members)))) }
        #expect(!FileManager.default.fileExists(atPath: "\(root)/d/b"), "the file past the limit was never written")
    }
}
