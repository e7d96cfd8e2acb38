import Testing
@testable import VeilImage

/// PAX extended headers: values are taken exactly or the archive is refused.
@Suite struct PAXTests {
    /// One `x` header with `records`, then a regular file named `short` holding "hello".
    func archive(_ records: [(String, [UInt8])]) -> [UInt8] {
        var body: [UInt8] = []
        for (key, value) in records {
            let payload = Array(" \(key)=".utf8) + value + [10]
            // The length counts its own digits: try until it is self-consistent.
            var length = payload.count + 1
            while String(length).utf8.count + payload.count != length { length += 1 }
            body += Array(String(length).utf8) + payload
        }
        let extended = rawTar(name: "pax", type: "x", content: body).dropLast(1024)
        return Array(extended) + rawTar(name: "short", content: Array("hello".utf8))
    }

    func entries(_ bytes: [UInt8]) throws -> [TarEntry] {
        let reader = TarReader(BytesStream(bytes, piece: 100))
        var entries: [TarEntry] = []
        while let entry = try reader.next() { entries.append(entry) }
        return entries
    }

    func refusal(_ records: [(String, [UInt8])]) -> String? {
        do {
            _ = try entries(archive(records))
            return nil
        } catch {
            return "\(error)"
        }
    }

    @Test func wellFormedRecordsOverrideTheHeader() throws {
        let long = "dir/" + String(repeating: "n", count: 150)
        let read = try entries(archive([("path", Array(long.utf8)), ("uid", Array("1000".utf8)), ("gid", Array("70000".utf8))]))
        #expect(read.map(\.path) == [long])
        #expect(read.first?.uid == 1000 && read.first?.gid == 70000)
    }

    @Test func aNULInAPathOrLinkIsRefused() {
        #expect(refusal([("path", Array("etc/passwd".utf8) + [0] + Array("ignored".utf8))])?.contains("PAX path contains a NUL byte") == true)
        #expect(refusal([("linkpath", Array("a".utf8) + [0])])?.contains("PAX linkpath contains a NUL byte") == true)
    }

    @Test func aPathThatIsNotUTF8IsRefused() {
        #expect(refusal([("path", [0x66, 0xFF, 0x66])])?.contains("PAX path is not UTF-8") == true)
    }

    @Test func numbersThatDoNotParseAreRefusedNotIgnored() {
        for (key, value) in [("size", "12x"), ("size", "-1"), ("size", ""), ("size", " 5"), ("uid", "4294967296"), ("gid", "0x10"), ("size", "18446744073709551616")] {
            #expect(refusal([(key, Array(value.utf8))])?.contains("PAX \(key) '") == true, "\(key)=\(value)")
        }
    }
}
