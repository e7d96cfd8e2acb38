import Crypto
import Foundation
import Testing
import VeilImage
import VeilImageFormat

@Suite struct ProtectedFileTests {
    let secret = SymmetricKey(size: .bits256)
    let plaintext = (0..<(200 * 1024 + 123)).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 >> 9) }
    let chunkSize = 64 * 1024

    func sealed(_ data: [UInt8]? = nil, path: String = "/app/data.db", version: UInt64 = 3) throws -> [UInt8] {
        try ProtectedFile.seal(data ?? plaintext, path: path, secret: secret, version: version, chunkSize: chunkSize)
    }

    /// Offset of chunk `index` (its 24-byte prefix: file ID, index) in a file of full chunks before it.
    func chunkOffset(_ index: Int) -> Int { 120 + index * (24 + chunkSize + 16) }

    @Test func roundTripsAndBindsVersionAndRoot() throws {
        let file = try sealed()
        let (header, opened) = try ProtectedFile.open(file, path: "/app/data.db", secret: secret)
        #expect(opened == plaintext)
        #expect(header.version == 3 && header.chunkCount == 4 && header.plaintextSize == UInt64(plaintext.count))
        #expect(file.firstRange(of: Array(plaintext[1000..<1032])) == nil, "no plaintext in the file")
        let empty = try sealed([])
        #expect(try ProtectedFile.open(empty, path: "/app/data.db", secret: secret).1 == [])
        // Same input, new file ID: new ciphertext (no key/nonce reuse across writes).
        #expect(try sealed() != file)
    }

    @Test func flippedByteIsCorruption() throws {
        var file = try sealed()
        file[chunkOffset(1) + 24 + 500] ^= 0x01
        #expect(throws: ProtectedFile.Error.chunkCorrupted(index: 1)) { try ProtectedFile.open(file, path: "/app/data.db", secret: self.secret) }
        var tag = try sealed()
        tag[chunkOffset(1) - 3] ^= 0x80  // last tag byte region of chunk 0
        #expect(throws: ProtectedFile.Error.chunkCorrupted(index: 0)) { try ProtectedFile.open(tag, path: "/app/data.db", secret: self.secret) }
    }

    @Test func swappedChunksAreOutOfPlace() throws {
        var file = try sealed()
        let size = 24 + chunkSize + 16
        let first = Array(file[chunkOffset(0)..<chunkOffset(0) + size])
        let second = Array(file[chunkOffset(2)..<chunkOffset(2) + size])
        file.replaceSubrange(chunkOffset(0)..<chunkOffset(0) + size, with: second)
        file.replaceSubrange(chunkOffset(2)..<chunkOffset(2) + size, with: first)
        #expect(throws: ProtectedFile.Error.chunkOutOfPlace(index: 0, belongsAt: 2)) { try ProtectedFile.open(file, path: "/app/data.db", secret: self.secret) }
    }

    @Test func chunkFromAnotherFileIsRefused() throws {
        var file = try sealed()
        let other = try sealed(plaintext.map { $0 ^ 0x55 })
        let size = 24 + chunkSize + 16
        file.replaceSubrange(chunkOffset(1)..<chunkOffset(1) + size, with: other[chunkOffset(1)..<chunkOffset(1) + size])
        #expect(throws: ProtectedFile.Error.chunkFromAnotherFile(index: 1)) { try ProtectedFile.open(file, path: "/app/data.db", secret: self.secret) }
    }

    @Test func truncationAndExtension() throws {
        let file = try sealed()
        #expect(throws: ProtectedFile.Error.truncated(expected: file.count, actual: file.count - 1)) {
            try ProtectedFile.open(Array(file.dropLast()), path: "/app/data.db", secret: self.secret)
        }
        #expect(throws: ProtectedFile.Error.extended(expected: file.count, actual: file.count + 5)) {
            try ProtectedFile.open(file + [1, 2, 3, 4, 5], path: "/app/data.db", secret: self.secret)
        }
        // Dropping the last whole chunk is truncation too, whatever the header claims.
        #expect(throws: ProtectedFile.Error.self) { try ProtectedFile.open(Array(file.prefix(chunkOffset(3))), path: "/app/data.db", secret: self.secret) }
        for length in stride(from: 0, to: 200, by: 1) {
            #expect(throws: ProtectedFile.Error.self) { try ProtectedFile.open(Array(file.prefix(length)), path: "/app/data.db", secret: self.secret) }
        }
    }

    @Test func olderVersionAfterANewerOneIsRollback() throws {
        let old = try sealed(version: 3)
        let new = try sealed(version: 4)
        let (header, _) = try ProtectedFile.open(new, path: "/app/data.db", secret: secret, minimumVersion: 3)
        #expect(throws: ProtectedFile.Error.rollback(recorded: header.version, found: 3)) {
            try ProtectedFile.open(old, path: "/app/data.db", secret: self.secret, minimumVersion: header.version)
        }
    }

    @Test func wrongKeyWrongPathAndTamperedHeader() throws {
        let file = try sealed()
        #expect(throws: ProtectedFile.Error.wrongKey) { try ProtectedFile.open(file, path: "/app/data.db", secret: SymmetricKey(size: .bits256)) }
        // The path is part of the key derivation: the same bytes under another name do not open.
        #expect(throws: ProtectedFile.Error.wrongKey) { try ProtectedFile.open(file, path: "/app/other.db", secret: self.secret) }
        var bumped = file
        bumped[15] ^= 0x01  // version field
        #expect(throws: ProtectedFile.Error.headerTampered) { try ProtectedFile.open(bumped, path: "/app/data.db", secret: self.secret) }
        var magic = file
        magic[0] = 0
        #expect(throws: ProtectedFile.Error.notAProtectedFile) { try ProtectedFile.open(magic, path: "/app/data.db", secret: self.secret) }
    }

    /// The on-disk reader (parallel pread + decrypt) gives the same plaintext and the same errors.
    @Test func fileReaderAgreesWithTheInMemoryReader() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("veil-pf-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        func both(_ bytes: [UInt8], minimumVersion: UInt64 = 0) -> (Result<[UInt8], ProtectedFile.Error>, Result<[UInt8], ProtectedFile.Error>) {
            let file = directory + "/f"
            try? Data(bytes).write(to: URL(fileURLWithPath: file))
            let memory = Result { () throws(ProtectedFile.Error) -> [UInt8] in try ProtectedFile.open(bytes, path: "/app/data.db", secret: self.secret, minimumVersion: minimumVersion).1 }
            let disk = Result { () throws(ProtectedFile.Error) -> [UInt8] in try ProtectedFile.open(fileAt: file, path: "/app/data.db", secret: self.secret, minimumVersion: minimumVersion).1 }
            return (memory, disk)
        }
        let good = try sealed()
        let (memory, disk) = both(good)
        #expect(try disk.get() == plaintext)
        #expect(try memory.get() == plaintext)
        let size = 24 + chunkSize + 16
        var corrupted = good
        corrupted[chunkOffset(2) + 100] ^= 1
        var swapped = good
        swapped.replaceSubrange(chunkOffset(0)..<chunkOffset(0) + size, with: good[chunkOffset(1)..<chunkOffset(1) + size])
        swapped.replaceSubrange(chunkOffset(1)..<chunkOffset(1) + size, with: good[chunkOffset(0)..<chunkOffset(0) + size])
        var foreign = good
        let other = try sealed()
        foreign.replaceSubrange(chunkOffset(3)..<foreign.count, with: other[chunkOffset(3)...])
        for bad in [corrupted, swapped, foreign, Array(good.dropLast()), good + [0], try sealed(version: 1)] {
            let (m, d) = both(bad, minimumVersion: 2)
            guard case .failure(let memoryError) = m, case .failure(let diskError) = d else {
                Issue.record("both readers must refuse")
                continue
            }
            #expect(memoryError == diskError)
        }
    }
}
