import Crypto
import Foundation
import Testing
@testable import VeilImage
import VeilImageFormat

@Suite struct TarTests {
    @Test func roundTripsEntriesLongNamesAndContentAcrossShortReads() throws {
        let longName = "deep/" + String(repeating: "d", count: 120) + "/file.txt"
        let longTarget = "/" + String(repeating: "t", count: 130)
        let content = (0..<70_000).map { UInt8(truncatingIfNeeded: $0 &* 31) }
        let bytes = try tarBytes([
            .dir("etc"), .file("etc/hostname", "veil\n", mode: 0o4755),
            Member(entry: TarEntry(path: longName, kind: .file, mode: 0o600, uid: 1000, gid: 1001, size: UInt64(content.count)), content: content),
            .symlink("etc/link", to: longTarget), .hardlink("etc/hard", to: "etc/hostname"),
        ])
        let reader = TarReader(BytesStream(bytes, piece: 333))
        var seen: [TarEntry] = []
        var contents: [String: [UInt8]] = [:]
        while let entry = try reader.next() {
            seen.append(entry)
            if entry.kind == .file {
                var data: [UInt8] = []
                try reader.readContent { data.append(contentsOf: $0) }
                contents[entry.path] = data
            }
        }
        #expect(seen.map(\.path) == ["etc", "etc/hostname", longName, "etc/link", "etc/hard"])
        #expect(seen[1].mode == 0o4755)
        #expect(seen[2].uid == 1000 && seen[2].gid == 1001)
        #expect(contents[longName] == content)
        #expect(contents["etc/hostname"] == Array("veil\n".utf8))
        #expect(seen[3].kind == .symlink && seen[3].linkTarget == longTarget)
        #expect(seen[4].kind == .hardlink && seen[4].linkTarget == "etc/hostname")
    }

    @Test(arguments: [GunzipStream.Engine.isal, .zlib])
    func gzipStreamsDecompressIncludingConcatenatedMembers(engine: GunzipStream.Engine) throws {
        let first = (0..<300_000).map { UInt8(truncatingIfNeeded: $0 % 251) }
        let second = Array("tail".utf8)
        let stream = try GunzipStream(BytesStream(try gzip(first) + gzip(second), piece: 1000), engine: engine)
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 4096)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            if n == 0 { break }
            out += buffer[..<n]
        }
        #expect(out == first + second)
    }

    @Test func gzipWriterIsDeterministicAndReadableByGunzip() throws {
        let input = (0..<500_000).map { UInt8(truncatingIfNeeded: ($0 * $0) >> 7) }
        func compress() throws -> [UInt8] {
            var out: [UInt8] = []
            let writer = try GzipWriter { out.append(contentsOf: $0) }
            for chunk in stride(from: 0, to: input.count, by: 70_000) {
                try input[chunk..<min(input.count, chunk + 70_000)].withUnsafeBytes { try writer.write($0) }
            }
            try writer.finish()
            return out
        }
        let compressed = try compress()
        #expect(try compress() == compressed, "same input, same bytes")
        #expect(compressed.count < input.count)
        let stream = try GunzipStream(BytesStream(compressed))
        var out: [UInt8] = []
        var buffer = [UInt8](repeating: 0, count: 8192)
        while true {
            let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
            if n == 0 { break }
            out += buffer[..<n]
        }
        #expect(out == input)
    }

    @Test(arguments: [GunzipStream.Engine.isal, .zlib])
    func truncatedOrCorruptGzipIsRefused(engine: GunzipStream.Engine) throws {
        let compressed = try gzip(Array(repeating: 7, count: 100_000))
        var buffer = [UInt8](repeating: 0, count: 1 << 20)
        func drain(_ bytes: [UInt8]) throws {
            let stream = try GunzipStream(BytesStream(bytes), engine: engine)
            while try buffer.withUnsafeMutableBytes({ try stream.read(into: $0) }) > 0 {}
        }
        #expect(throws: ImageError.compression("gzip stream ends before its end marker (truncated layer)")) {
            try drain(Array(compressed.prefix(compressed.count / 2)))
        }
        var corrupt = compressed
        corrupt[20] ^= 0xff
        #expect(throws: ImageError.self) { try drain(corrupt) }
        // A flipped bit in the CRC-32 of the trailer: the data inflates, the check fails.
        var badCRC = compressed
        badCRC[badCRC.count - 8] ^= 0x01
        #expect(throws: ImageError.compression("gzip data is corrupt: incorrect data check")) { try drain(badCRC) }
        var badLength = compressed
        badLength[badLength.count - 1] ^= 0x01
        #expect(throws: ImageError.self) { try drain(badLength) }
    }

    /// ISA-L and zlib agree byte for byte on many members of many sizes, split at odd places.
    @Test func isalAndZlibInflateAlike() throws {
        var generator = SystemRandomNumberGenerator()
        var members: [[UInt8]] = []
        for size in [0, 1, 17, 4096, 65_537, 200_003] {
            members.append((0..<size).map { _ in UInt8.random(in: 0...15, using: &generator) })
        }
        let compressed = try members.map(gzip).reduce([], +)
        func inflate(_ engine: GunzipStream.Engine) throws -> [UInt8] {
            let stream = try GunzipStream(BytesStream(compressed, piece: 777), bufferSize: 1000, engine: engine)
            var out: [UInt8] = []
            var buffer = [UInt8](repeating: 0, count: 3001)
            while true {
                let n = try buffer.withUnsafeMutableBytes { try stream.read(into: $0) }
                if n == 0 { break }
                out += buffer[..<n]
            }
            return out
        }
        let expected = members.reduce([], +)
        #expect(try inflate(.isal) == expected)
        #expect(try inflate(.zlib) == expected)
    }

    @Test func unsafeNamesAreRefused() throws {
        for name in ["../evil", "a/../../evil", "/etc/passwd"] {
            let reader = TarReader(BytesStream(rawTar(name: name, content: Array("x".utf8))))
            #expect(throws: ImageError.self, "\(name)") { _ = try reader.next() }
        }
        let hardlink = TarReader(BytesStream(rawTar(name: "h", type: "1", link: "../../etc/shadow")))
        #expect(throws: ImageError.self) { _ = try hardlink.next() }
    }

    @Test func badHeaderChecksumIsRefused() throws {
        var bytes = rawTar(name: "file", content: Array("x".utf8))
        bytes[10] ^= 1
        #expect(throws: ImageError.malformedTar("header checksum mismatch (stored \(try TarReader.number(bytes[148..<156], field: "c")), computed \(bytes[0..<512].enumerated().reduce(UInt64(0)) { $0 + ((148..<156).contains($1.offset) ? 32 : UInt64($1.element)) }))")) {
            _ = try TarReader(BytesStream(bytes)).next()
        }
    }
}

@Suite struct RootfsTreeTests {
    func apply(_ layers: [[Member]]) throws -> RootfsTree {
        var tree = RootfsTree()
        for (index, members) in layers.enumerated() {
            let reader = TarReader(BytesStream(try tarBytes(members)))
            while let entry = try reader.next() {
                try tree.apply(entry, layer: index) { _ in
                    guard entry.kind == .file else { return nil }
                    var hasher = ContentDigest()
                    try reader.readContent { hasher.update($0) }
                    return (hasher.finalize(), entry.size)
                }
            }
        }
        return tree
    }

    @Test func whiteoutsAndOpaqueDirectoriesHideLowerLayers() throws {
        let tree = try apply([
            [.dir("app"), .file("app/a", "1"), .file("app/b", "2"), .dir("cfg"), .file("cfg/x", "x"), .file("keep", "k")],
            [.file("app/.wh.a", ""), .file("cfg/.wh..wh..opq", ""), .file("cfg/y", "y")],
        ])
        #expect(tree.nodes["app/a"] == nil)
        #expect(tree.nodes["app/b"] != nil)
        #expect(tree.nodes["cfg/x"] == nil, "opaque directory hides the lower layer's children")
        #expect(tree.nodes["cfg/y"] != nil, "but keeps its own layer's")
        #expect(tree.nodes["keep"] != nil)
        #expect(tree.nodes.keys.allSatisfy { !$0.contains(".wh.") })
    }

    @Test func digestIgnoresTimesButNotModesOwnersOrContent() throws {
        let base = try apply([[.dir("bin"), .file("bin/app", "code", mode: 0o755)]]).digest()
        #expect(try apply([[.dir("bin"), .file("bin/app", "code", mode: 0o755)]]).digest() == base)
        #expect(try apply([[.dir("bin"), .file("bin/app", "code", mode: 0o4755)]]).digest() != base)
        #expect(try apply([[.dir("bin"), .file("bin/app", "cod3", mode: 0o755)]]).digest() != base)
        var owned = Member.file("bin/app", "code", mode: 0o755)
        owned.entry.uid = 1
        #expect(try apply([[.dir("bin"), owned]]).digest() != base)
        // Runtime-owned trees and protected files are not measured.
        let withVeil = try apply([[.dir("bin"), .file("bin/app", "code", mode: 0o755), .dir("veil")]]).digest()
        #expect(try apply([[.dir("bin"), .file("bin/app", "code", mode: 0o755), .file("tmp/x", "x"),
                            .file("veil/protected/a.vpf", "sealed")]]).digest() == withVeil)
    }

    @Test func entriesThroughSymlinksAndEscapingLinksAreRefused() throws {
        #expect(throws: ImageError.unsafeEntry(path: "escape/passwd", reason: "it would be written through the symlink 'escape'")) {
            try apply([[.symlink("escape", to: "/etc"), .file("escape/passwd", "root::0:0")]])
        }
        #expect(throws: ImageError.self) { try apply([[.symlink("a/up", to: "../../host")]]) }
        #expect(throws: ImageError.self) { try apply([[.hardlink("h", to: "missing")]]) }
        // Absolute and in-root relative targets are ordinary (Debian's /etc/alternatives).
        let tree = try apply([[.symlink("usr/bin/awk", to: "/etc/alternatives/awk"), .symlink("lib", to: "usr/lib")]])
        #expect(tree.nodes["usr/bin/awk"]?.linkTarget == "/etc/alternatives/awk")
    }

    @Test func unpackedDiskTreeMeasuresLikeTheInMemoryTree() throws {
        let layers: [[Member]] = [
            [.dir("srv", mode: 0o750), .file("srv/app", "binary", mode: 0o755), .symlink("srv/current", to: "app"),
             .file("srv/old", "old"), .dir("etc"), .file("etc/conf", "a=1")],
            [.file("srv/.wh.old", ""), .hardlink("etc/conf2", to: "etc/conf"), .file("etc/conf", "a=2", mode: 0o600)],
        ]
        let root = try temporaryDirectory()
        defer { try? FileManager.default.removeItem(atPath: root) }
        let unpacker = try RootfsUnpacker(root: root)
        for (index, members) in layers.enumerated() {
            try unpacker.apply(layer: index, tar: TarReader(BytesStream(try tarBytes(members))))
        }
        #expect(FileManager.default.fileExists(atPath: "\(root)/srv/old") == false)
        #expect(try String(contentsOfFile: "\(root)/etc/conf2", encoding: .utf8) == "a=1")
        #expect(try RootfsDisk.measure(root: root) == unpacker.tree.digest())
        #expect(try RootfsDisk.measure(root: root) == apply(layers).digest())
        // Altering one byte on disk changes the measurement.
        try Data("binarY".utf8).write(to: URL(fileURLWithPath: "\(root)/srv/app"))
        #expect(try RootfsDisk.measure(root: root) != unpacker.tree.digest())
    }

    @Test func unpackingNeverWritesOutsideTheRoot() throws {
        let root = try temporaryDirectory()
        let outside = try temporaryDirectory()
        defer {
            try? FileManager.default.removeItem(atPath: root)
            try? FileManager.default.removeItem(atPath: outside)
        }
        let unpacker = try RootfsUnpacker(root: root)
        let evil = try tarBytes([.symlink("escape", to: outside), .file("escape/planted", "gotcha")])
        #expect(throws: ImageError.self) { try unpacker.apply(layer: 0, tar: TarReader(BytesStream(evil))) }
        #expect(try FileManager.default.contentsOfDirectory(atPath: outside).isEmpty)
        let traversal = rawTar(name: "../planted", content: Array("x".utf8))
        #expect(throws: ImageError.self) { try unpacker.apply(layer: 1, tar: TarReader(BytesStream(traversal))) }
        #expect(!FileManager.default.fileExists(atPath: "\(root)/../planted"))
    }
}
