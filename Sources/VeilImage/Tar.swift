/// One member of a tar stream, with its path already made safe.
///
/// Invariant: `path` is relative, has no empty, `.` or `..` components and no leading or
/// trailing `/`; the empty path is the archive root.
public struct TarEntry: Sendable, Equatable {
    public enum Kind: Sendable, Equatable {
        case file, directory, symlink, hardlink, fifo
        case characterDevice, blockDevice
    }

    public var path: String
    public var kind: Kind
    public var mode: UInt32
    public var uid: UInt32
    public var gid: UInt32
    public var size: UInt64
    /// Symlink target as written, or the normalized path a hard link points to.
    public var linkTarget: String = ""
    public var deviceMajor: UInt32 = 0
    public var deviceMinor: UInt32 = 0

    public init(path: String, kind: Kind, mode: UInt32, uid: UInt32 = 0, gid: UInt32 = 0, size: UInt64 = 0, linkTarget: String = "") {
        self.path = path
        self.kind = kind
        self.mode = mode
        self.uid = uid
        self.gid = gid
        self.size = size
        self.linkTarget = linkTarget
    }

    /// The last path component.
    var name: Substring { path.split(separator: "/").last ?? "" }
    /// The parent directory's path ("" for top-level entries).
    var parent: String { Self.parent(of: path) }

    static func parent(of path: String) -> String {
        guard let slash = path.lastIndex(of: "/") else { return "" }
        return String(path[..<slash])
    }

    /// Makes an archive member name safe: refuses absolute paths and any `..` component.
    static func normalize(_ raw: String) throws -> String {
        if raw.hasPrefix("/") { throw ImageError.unsafeEntry(path: raw, reason: "absolute path") }
        var parts: [Substring] = []
        for part in raw.split(separator: "/", omittingEmptySubsequences: true) {
            if part == "." { continue }
            if part == ".." { throw ImageError.unsafeEntry(path: raw, reason: "path traversal ('..')") }
            parts.append(part)
        }
        return parts.joined(separator: "/")
    }
}

/// Reads a ustar/PAX/GNU tar stream entry by entry. Contents not read are skipped.
public final class TarReader {
    private let stream: any ByteStream
    private var pendingContent: UInt64 = 0
    private var pendingPadding: UInt64 = 0
    private var scratch = [UInt8](repeating: 0, count: 1 << 18)
    private var ended = false

    public init(_ stream: any ByteStream) { self.stream = stream }

    /// What PAX extended headers and GNU long-name entries say about the entry that follows.
    struct Overrides {
        var path: String?
        var link: String?
        var size: UInt64?
        var uid: UInt32?
        var gid: UInt32?
    }

    /// The next entry, or `nil` after the end-of-archive marker (or a clean end of stream).
    public func next() throws -> TarEntry? {
        try skipPending()
        guard !ended else { return nil }
        var overrides = Overrides()
        while true {
            guard let header = try readHeader() else {
                ended = true
                return nil
            }
            let type = header[156]
            var size = try Self.number(header[124..<136], field: "size")
            if let override = overrides.size, type != UInt8(ascii: "x"), type != UInt8(ascii: "g") { size = override }
            if try absorbExtension(type: type, size: size, into: &overrides) { continue }
            let entry = try Self.entry(header: header, type: type, size: size, overrides: overrides)
            // Directories and links may carry a size; their data, if any, is skipped.
            pendingContent = size
            pendingPadding = (512 - size % 512) % 512
            return entry
        }
    }

    /// Reads a PAX (`x`, `g`) or GNU long-name (`L`, `K`) entry into `overrides`; false for
    /// any other type (an entry of its own).
    private func absorbExtension(type: UInt8, size: UInt64, into overrides: inout Overrides) throws -> Bool {
        switch type {
        case UInt8(ascii: "x"), UInt8(ascii: "g"):
            let records = try readWhole(size, what: "PAX header")
            if type == UInt8(ascii: "g") { return true }  // global defaults: none that matter here
            for (key, value) in try Self.paxRecords(records) {
                switch key {
                case "path": overrides.path = try Self.paxText(value, key: key)
                case "linkpath": overrides.link = try Self.paxText(value, key: key)
                case "size": overrides.size = try Self.paxNumber(value, key: key, as: UInt64.self)
                case "uid": overrides.uid = try Self.paxNumber(value, key: key, as: UInt32.self)
                case "gid": overrides.gid = try Self.paxNumber(value, key: key, as: UInt32.self)
                default: break
                }
            }
            return true
        case UInt8(ascii: "L"):
            overrides.path = Self.cString(try readWhole(size, what: "GNU long name")[...])
            return true
        case UInt8(ascii: "K"):
            overrides.link = Self.cString(try readWhole(size, what: "GNU long link")[...])
            return true
        default:
            return false
        }
    }

    /// The entry a ustar header (with its overrides) describes.
    private static func entry(header: [UInt8], type: UInt8, size: UInt64, overrides: Overrides) throws -> TarEntry {
        let rawName: String
        if let path = overrides.path {
            rawName = path
        } else {
            let prefix = cString(header[345..<500])
            let name = cString(header[0..<100])
            let isUstar = header[257..<263].elementsEqual(Array("ustar\0".utf8))
            rawName = isUstar && !prefix.isEmpty ? prefix + "/" + name : name
        }
        let kind = try kind(of: type, name: rawName)
        var entry = TarEntry(
            path: try TarEntry.normalize(rawName), kind: kind,
            mode: UInt32(truncatingIfNeeded: try number(header[100..<108], field: "mode")) & 0o7777,
            uid: try overrides.uid ?? UInt32(truncatingIfNeeded: number(header[108..<116], field: "uid")),
            gid: try overrides.gid ?? UInt32(truncatingIfNeeded: number(header[116..<124], field: "gid")),
            size: kind == .file ? size : 0)
        let link = overrides.link ?? cString(header[157..<257])
        switch kind {
        case .symlink:
            entry.linkTarget = link
        case .hardlink:
            entry.linkTarget = try TarEntry.normalize(link)
        case .characterDevice, .blockDevice:
            entry.deviceMajor = UInt32(truncatingIfNeeded: try number(header[329..<337], field: "devmajor"))
            entry.deviceMinor = UInt32(truncatingIfNeeded: try number(header[337..<345], field: "devminor"))
        default:
            break
        }
        return entry
    }

    private static func kind(of type: UInt8, name: String) throws -> TarEntry.Kind {
        switch type {
        case 0, UInt8(ascii: "0"), UInt8(ascii: "7"): return name.hasSuffix("/") ? .directory : .file
        case UInt8(ascii: "1"): return .hardlink
        case UInt8(ascii: "2"): return .symlink
        case UInt8(ascii: "3"): return .characterDevice
        case UInt8(ascii: "4"): return .blockDevice
        case UInt8(ascii: "5"): return .directory
        case UInt8(ascii: "6"): return .fifo
        default: throw ImageError.unsupportedEntry(path: name, reason: "tar type '\(Character(UnicodeScalar(type)))'")
        }
    }

    /// A PAX `path`/`linkpath`: UTF-8 without NUL. A NUL would end the name for every C
    /// tool that later reads it (tar, the kernel), so they and Veil would see different files.
    static func paxText(_ value: [UInt8], key: String) throws -> String {
        guard !value.contains(0) else { throw ImageError.malformedTar("PAX \(key) contains a NUL byte") }
        guard let text = String(validating: value, as: UTF8.self) else { throw ImageError.malformedTar("PAX \(key) is not UTF-8") }
        return text
    }

    /// A PAX number: decimal digits only, within the field's type. Silently falling back to
    /// the ustar header's value would let two readers disagree on an entry's size.
    static func paxNumber<Number: FixedWidthInteger>(_ value: [UInt8], key: String, as type: Number.Type) throws -> Number {
        guard !value.isEmpty, value.allSatisfy({ (48...57).contains($0) }), let number = Number(String(decoding: value, as: UTF8.self)) else {
            throw ImageError.malformedTar("PAX \(key) '\(String(decoding: value.prefix(32), as: UTF8.self))' is not a decimal number in range")
        }
        return number
    }

    /// Streams the current entry's content to `body`, in pieces.
    public func readContent(_ body: (UnsafeRawBufferPointer) throws -> Void) throws {
        let count = pendingContent
        pendingContent = 0
        try stream.consume(count, scratch: &scratch, orElse: .malformedTar("stream ends inside an entry's content"), body)
    }

    private func skipPending() throws {
        let count = pendingContent + pendingPadding
        pendingContent = 0
        pendingPadding = 0
        try stream.consume(count, scratch: &scratch, orElse: .malformedTar("stream ends inside an entry's content")) { _ in }
    }

    private func readWhole(_ size: UInt64, what: String) throws -> [UInt8] {
        guard size <= 1 << 20 else { throw ImageError.malformedTar("\(what) of \(size) bytes") }
        let bytes = try stream.readExactly(Int(size), orElse: .malformedTar("stream ends inside a \(what)"))
        try stream.consume((512 - size % 512) % 512, scratch: &scratch, orElse: .malformedTar("stream ends inside a \(what)")) { _ in }
        return bytes
    }

    /// Reads one 512-byte header; `nil` at a zero block or a clean end of stream.
    private func readHeader() throws -> [UInt8]? {
        var header = [UInt8](repeating: 0, count: 512)
        var filled = 0
        while filled < 512 {
            let n = try header.withUnsafeMutableBytes { (raw) throws -> Int in
                try stream.read(into: UnsafeMutableRawBufferPointer(rebasing: raw[filled...]))
            }
            if n == 0 {
                if filled == 0 { return nil }
                throw ImageError.malformedTar("stream ends inside a header")
            }
            filled += n
        }
        if header.allSatisfy({ $0 == 0 }) { return nil }
        let stored = try Self.number(header[148..<156], field: "checksum")
        var sum: UInt64 = 0
        for (index, byte) in header.enumerated() { sum += (148..<156).contains(index) ? 32 : UInt64(byte) }
        guard stored == sum else { throw ImageError.malformedTar("header checksum mismatch (stored \(stored), computed \(sum))") }
        return header
    }

    /// Octal (NUL/space terminated) or GNU base-256 numbers.
    static func number(_ field: ArraySlice<UInt8>, field name: String) throws -> UInt64 {
        if let first = field.first, first & 0x80 != 0 {
            var value: UInt64 = UInt64(first & 0x7f)
            for byte in field.dropFirst() {
                guard value >> 56 == 0 else { throw ImageError.malformedTar("\(name) field overflows") }
                value = value << 8 | UInt64(byte)
            }
            return value
        }
        var value: UInt64 = 0
        var seenDigit = false
        for byte in field {
            if byte == 0 || (byte == 32 && seenDigit) { break }
            if byte == 32 { continue }
            guard (48...55).contains(byte) else { throw ImageError.malformedTar("\(name) field is not octal") }
            guard value >> 60 == 0 else { throw ImageError.malformedTar("\(name) field overflows") }
            value = value << 3 | UInt64(byte - 48)
            seenDigit = true
        }
        return value
    }

    static func cString(_ bytes: ArraySlice<UInt8>) -> String {
        String(decoding: bytes.prefix(while: { $0 != 0 }), as: UTF8.self)
    }

    /// `"<len> <key>=<value>\n"` records.
    static func paxRecords(_ bytes: [UInt8]) throws -> [(String, [UInt8])] {
        var records: [(String, [UInt8])] = []
        var index = 0
        while index < bytes.count {
            guard let space = bytes[index...].firstIndex(of: 32),
                let length = Int(String(decoding: bytes[index..<space], as: UTF8.self)), length > 0,
                index + length <= bytes.count, bytes[index + length - 1] == 10,
                let equals = bytes[(space + 1)..<(index + length)].firstIndex(of: UInt8(ascii: "="))
            else { throw ImageError.malformedTar("bad PAX record") }
            records.append((
                String(decoding: bytes[(space + 1)..<equals], as: UTF8.self),
                Array(bytes[(equals + 1)..<(index + length - 1)])))
            index += length
        }
        return records
    }
}

/// Writes a deterministic tar stream: ustar headers, PAX records for long names, mtime 0,
/// numeric owners only.
public struct TarWriter {
    private let sink: (UnsafeRawBufferPointer) throws -> Void

    public init(sink: @escaping (UnsafeRawBufferPointer) throws -> Void) { self.sink = sink }

    private func emit(_ bytes: [UInt8]) throws {
        try bytes.withUnsafeBytes { (raw) throws in try sink(raw) }
    }

    /// Writes the header of `entry`; a file's `entry.size` content bytes must follow via ``writeContent(_:)``
    /// and then ``finishContent(size:)``.
    public func writeHeader(_ entry: TarEntry) throws {
        var name = entry.path.isEmpty ? "./" : entry.path + (entry.kind == .directory ? "/" : "")
        let link = entry.linkTarget
        var pax: [(String, String)] = []
        if name.utf8.count > 100 { pax.append(("path", name)); name = String(decoding: Array(name.utf8.prefix(99)), as: UTF8.self) }
        if link.utf8.count > 100 { pax.append(("linkpath", link)) }
        if !pax.isEmpty {
            var records: [UInt8] = []
            for (key, value) in pax {
                let body = " \(key)=\(value)\n"
                var length = body.utf8.count + 1
                while "\(length)".utf8.count + body.utf8.count != length { length += 1 }
                records += Array("\(length)\(body)".utf8)
            }
            try emit(Self.header(name: "PaxHeaders/" + String(name.suffix(80)), type: UInt8(ascii: "x"), mode: 0o644, uid: 0, gid: 0,
                                 size: UInt64(records.count), link: ""))
            try emit(records + [UInt8](repeating: 0, count: (512 - records.count % 512) % 512))
        }
        let type: UInt8
        switch entry.kind {
        case .file: type = UInt8(ascii: "0")
        case .hardlink: type = UInt8(ascii: "1")
        case .symlink: type = UInt8(ascii: "2")
        case .characterDevice: type = UInt8(ascii: "3")
        case .blockDevice: type = UInt8(ascii: "4")
        case .directory: type = UInt8(ascii: "5")
        case .fifo: type = UInt8(ascii: "6")
        }
        try emit(Self.header(name: name, type: type, mode: entry.mode, uid: entry.uid, gid: entry.gid,
                             size: entry.kind == .file ? entry.size : 0, link: String(decoding: Array(link.utf8.prefix(100)), as: UTF8.self),
                             major: entry.deviceMajor, minor: entry.deviceMinor))
    }

    public func writeContent(_ bytes: UnsafeRawBufferPointer) throws { try sink(bytes) }

    /// Pads the content of a `size`-byte file to the block boundary.
    public func finishContent(size: UInt64) throws {
        let padding = Int((512 - size % 512) % 512)
        if padding > 0 { try emit([UInt8](repeating: 0, count: padding)) }
    }

    /// Writes a whole file entry from memory.
    public func writeFile(_ entry: TarEntry, contents: [UInt8]) throws {
        var entry = entry
        entry.size = UInt64(contents.count)
        try writeHeader(entry)
        try contents.withUnsafeBytes { (raw) throws in try sink(raw) }
        try finishContent(size: entry.size)
    }

    /// The end-of-archive marker: two zero blocks.
    public func finish() throws { try emit([UInt8](repeating: 0, count: 1024)) }

    static func header(name: String, type: UInt8, mode: UInt32, uid: UInt32, gid: UInt32, size: UInt64, link: String,
                       major: UInt32 = 0, minor: UInt32 = 0) -> [UInt8] {
        var block = [UInt8](repeating: 0, count: 512)
        func put(_ bytes: [UInt8], at offset: Int, width: Int) {
            for (i, byte) in bytes.prefix(width).enumerated() { block[offset + i] = byte }
        }
        func octal(_ value: UInt64, at offset: Int, width: Int) {
            if value >= UInt64(1) << (3 * UInt64(width - 1)) {
                // GNU base-256 for values octal cannot hold.
                block[offset] = 0x80
                for i in 0..<(width - 1) { block[offset + width - 1 - i] = UInt8(truncatingIfNeeded: value >> (8 * UInt64(i))) }
                return
            }
            let text = String(value, radix: 8)
            put(Array((String(repeating: "0", count: width - 1 - text.count) + text).utf8) + [0], at: offset, width: width)
        }
        put(Array(name.utf8), at: 0, width: 100)
        octal(UInt64(mode), at: 100, width: 8)
        octal(UInt64(uid), at: 108, width: 8)
        octal(UInt64(gid), at: 116, width: 8)
        octal(size, at: 124, width: 12)
        octal(0, at: 136, width: 12)
        block[156] = type
        put(Array(link.utf8), at: 157, width: 100)
        put(Array("ustar\0".utf8), at: 257, width: 6)
        put(Array("00".utf8), at: 263, width: 2)
        octal(UInt64(major), at: 329, width: 8)
        octal(UInt64(minor), at: 337, width: 8)
        for i in 148..<156 { block[i] = 32 }
        let sum = block.reduce(0) { $0 + UInt64($1) }
        let text = String(sum, radix: 8)
        put(Array((String(repeating: "0", count: 6 - text.count) + text).utf8) + [0, 32], at: 148, width: 8)
        return block
    }
}
