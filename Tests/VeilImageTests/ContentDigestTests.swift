import Crypto
import Foundation
import Testing
@testable import VeilImage
import VeilImageFormat

/// The measured digest of file contents: plain SHA-256 up to one chunk, chunked beyond, the
/// same however the bytes arrive, and the same on disk (parallel, per chunk) as from layers.
@Suite struct ContentDigestTests {
    static let chunk = ContentDigest.chunkSize

    func randomBytes(_ count: Int) -> [UInt8] {
        var generator = SystemRandomNumberGenerator()
        return (0..<count).map { _ in UInt8.random(in: 0...255, using: &generator) }
    }

    @Test(arguments: [0, 1, 4096, chunk - 1, chunk])
    func upToOneChunkIsPlainSHA256(size: Int) {
        let bytes = randomBytes(size)
        #expect(ContentDigest.of(bytes) == Array(SHA256.hash(data: bytes)))
        #expect(ContentDigest.chunkCount(size: UInt64(size)) == 1)
    }

    @Test(arguments: [chunk + 1, 2 * chunk, 3 * chunk + chunk / 2])
    func largerFilesHashTheirChunkDigests(size: Int) {
        let bytes = randomBytes(size)
        let slices = stride(from: 0, to: size, by: Self.chunk).map { Array(bytes[$0..<min($0 + Self.chunk, size)]) }
        var outer = SHA256()
        outer.update(data: Array("veil-chunked-v1\0".utf8))
        for slice in slices { outer.update(data: Array(SHA256.hash(data: slice))) }
        #expect(ContentDigest.of(bytes) == Array(outer.finalize()))
        #expect(ContentDigest.of(bytes) != Array(SHA256.hash(data: bytes)))
        #expect(ContentDigest.chunkCount(size: UInt64(size)) == slices.count)
    }

    @Test func anySplitOfTheInputGivesTheSameDigest() {
        let bytes = randomBytes(3 * Self.chunk + 12_345)
        let expected = ContentDigest.of(bytes)
        for _ in 0..<20 {
            var digest = ContentDigest()
            var offset = 0
            while offset < bytes.count {
                // Pieces from empty to larger than a chunk, so boundaries fall anywhere.
                let length = min(bytes.count - offset, Int.random(in: 0...(Self.chunk + 1000)))
                bytes[offset..<(offset + length)].withUnsafeBytes { digest.update($0) }
                offset += length
            }
            #expect(digest.finalize() == expected)
        }
    }

    @Test func diskMeasurementOfLargeFilesMatchesTheLayers() throws {
        let big = randomBytes(3 * Self.chunk + 777)
        let members: [Member] = [
            .dir("opt"), Member(entry: TarEntry(path: "opt/big", kind: .file, mode: 0o644, size: UInt64(big.count)), content: big), .file("opt/small", "s"),
        ]
        let root = NSTemporaryDirectory() + "/veil-content-\(UUID().uuidString)"
        defer { try? FileManager.default.removeItem(atPath: root) }
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        let unpacker = try RootfsUnpacker(root: root)
        try unpacker.apply(layer: 0, tar: TarReader(BytesStream(try tarBytes(members))))
        #expect(unpacker.tree.nodes["opt/big"]?.contentDigest == ContentDigest.of(big))
        #expect(try RootfsDisk.measure(root: root) == unpacker.tree.digest())
        // One byte changed in the third chunk changes the measurement.
        let handle = try FileHandle(forUpdating: URL(fileURLWithPath: root + "/opt/big"))
        try handle.seek(toOffset: UInt64(2 * Self.chunk + 5))
        try handle.write(contentsOf: Data([big[2 * Self.chunk + 5] ^ 1]))
        try handle.close()
        #expect(try RootfsDisk.measure(root: root) != unpacker.tree.digest())
    }
}
