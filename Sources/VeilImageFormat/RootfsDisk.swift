import Crypto
import Dispatch
import FoundationEssentials
import Glibc

/// Measures container roots on disk, never following a symlink: every path is walked
/// component by component with `openat(…, O_NOFOLLOW)` from the root's descriptor.
public enum RootfsDisk {
    /// The ``RootfsDigest`` of the tree at `root`, as the launcher computes it inside the
    /// container (where `root` is `/`). Equal to ``RootfsTree/digest()`` of the image it was
    /// unpacked from.
    /// Files in `ownCode` that are the measuring process's own code take their content digest
    /// from its record instead of being read (see ``OwnCode``).
    public static func measure(root: String, ownCode: OwnCode = .none) throws -> [UInt8] {
        let fd = open(root, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        guard fd >= 0 else { throw ImageFormatError.unreadable(path: root, reason: String(cString: strerror(errno))) }
        defer { close(fd) }
        var records: [(String, RootfsNode)] = []
        var walked: [(index: Int, inode: ino_t, device: dev_t)] = []
        try walk(fd, prefix: "", display: root, into: &records, files: &walked)
        var files: [(index: Int, inode: ino_t)] = []
        for file in walked {
            if let recorded = ownCode.recordedDigest(path: records[file.index].0, device: file.device, inode: file.inode) {
                records[file.index].1.contentDigest = recorded
            } else {
                files.append((file.index, file.inode))
            }
        }
        // Contents are hashed on all cores, large files chunk by chunk (``ContentDigest``), so
        // one big file does not leave the other cores idle. Every piece reopens its file without
        // following symlinks, and the file must be the object the walk saw.
        let paths = files.map { records[$0.index].0 }
        let sizes = files.map { records[$0.index].1.size }
        let inodes = files.map(\.inode)
        let pieces = sizes.enumerated().flatMap { file, size in (0..<ContentDigest.chunkCount(size: size)).map { (file: file, chunk: $0) } }
        let digests = ParallelResults<[UInt8]>(count: pieces.count)
        let workers = min(pieces.count, ProcessInfo.processInfo.activeProcessorCount)
        DispatchQueue.concurrentPerform(iterations: workers) { worker in
            var buffer = [UInt8](repeating: 0, count: ContentDigest.chunkSize)
            for index in stride(from: worker, to: pieces.count, by: workers) {
                let (file, chunk) = pieces[index]
                digests.set(index) {
                    try hashChunk(chunk, of: paths[file], in: fd, display: root, inode: inodes[file], size: sizes[file], buffer: &buffer)
                }
            }
        }
        var chunkDigests = try digests.values()[...]
        for (slot, file) in files.enumerated() {
            let count = ContentDigest.chunkCount(size: sizes[slot])
            let own = Array(chunkDigests.prefix(count))
            chunkDigests = chunkDigests.dropFirst(count)
            records[file.index].1.contentDigest = count == 1 ? own[0] : ContentDigest.combine(own)
        }
        return RootfsDigest.digest(records)
    }

    /// SHA-256 of chunk `chunk` of the file at `path` (the whole file when it is one chunk).
    private static func hashChunk(
        _ chunk: Int, of path: String, in rootFD: Int32, display: String, inode: ino_t, size: UInt64, buffer: inout [UInt8]
    ) throws -> [UInt8] {
        var dirFD = dup(rootFD)
        let components = path.split(separator: "/").map(String.init)
        for component in components.dropLast() {
            let next = openat(dirFD, component, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
            close(dirFD)
            guard next >= 0 else { throw ImageFormatError.unreadable(path: display + "/" + path, reason: "changed during measurement") }
            dirFD = next
        }
        let file = openat(dirFD, components.last!, O_RDONLY | O_NOFOLLOW | O_CLOEXEC)
        close(dirFD)
        guard file >= 0 else { throw ImageFormatError.unreadable(path: display + "/" + path, reason: String(cString: strerror(errno))) }
        defer { close(file) }
        var st = stat()
        guard fstat(file, &st) == 0, st.st_ino == inode, UInt64(st.st_size) == size else {
            throw ImageFormatError.unreadable(path: display + "/" + path, reason: "changed during measurement")
        }
        let start = UInt64(chunk) * UInt64(ContentDigest.chunkSize)
        let length = Int(min(UInt64(ContentDigest.chunkSize), size - start))
        var hasher = SHA256()
        var done = 0
        while done < length {
            let n = buffer.withUnsafeMutableBytes { pread(file, $0.baseAddress, length - done, off_t(start) + off_t(done)) }
            if n < 0 && errno == EINTR { continue }
            guard n >= 0 else { throw ImageFormatError.unreadable(path: display + "/" + path, reason: String(cString: strerror(errno))) }
            guard n > 0 else { throw ImageFormatError.unreadable(path: display + "/" + path, reason: "changed during measurement") }
            buffer.withUnsafeBytes { hasher.update(bufferPointer: UnsafeRawBufferPointer(rebasing: $0[..<n])) }
            done += n
        }
        // The last chunk must end the file: nothing was appended after the walk.
        if start + UInt64(length) == size {
            var probe: UInt8 = 0
            guard pread(file, &probe, 1, off_t(size)) == 0 else { throw ImageFormatError.unreadable(path: display + "/" + path, reason: "changed during measurement") }
        }
        return Array(hasher.finalize())
    }

    private static func walk(_ dirFD: Int32, prefix: String, display: String, into records: inout [(String, RootfsNode)],
                             files: inout [(index: Int, inode: ino_t, device: dev_t)]) throws {
        for name in try listDirectory(dirFD, display: display) {
            let path = prefix.isEmpty ? name : prefix + "/" + name
            if RootfsDigest.isExcluded(path) { continue }
            var st = stat()
            guard fstatat(dirFD, name, &st, AT_SYMLINK_NOFOLLOW) == 0 else {
                throw ImageFormatError.unreadable(path: display + "/" + path, reason: String(cString: strerror(errno)))
            }
            var node = RootfsNode(kind: .directory, mode: st.st_mode & 0o7777, uid: st.st_uid, gid: st.st_gid)
            switch st.st_mode & S_IFMT {
            case S_IFDIR:
                records.append((path, node))
                let child = openat(dirFD, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC)
                guard child >= 0 else { throw ImageFormatError.unreadable(path: display + "/" + path, reason: String(cString: strerror(errno))) }
                defer { close(child) }
                try walk(child, prefix: path, display: display, into: &records, files: &files)
                continue
            case S_IFREG:
                node.kind = .file
                node.size = UInt64(st.st_size)
                files.append((records.count, st.st_ino, st.st_dev))
            case S_IFLNK:
                node.kind = .symlink
                var target = [UInt8](repeating: 0, count: Int(PATH_MAX) + 1)
                let n = target.withUnsafeMutableBytes { readlinkat(dirFD, name, $0.baseAddress!.assumingMemoryBound(to: CChar.self), $0.count) }
                guard n >= 0 else { throw ImageFormatError.unreadable(path: display + "/" + path, reason: String(cString: strerror(errno))) }
                node.linkTarget = String(decoding: target[..<n], as: UTF8.self)
            case S_IFIFO:
                node.kind = .fifo
            case S_IFCHR, S_IFBLK:
                node.kind = st.st_mode & S_IFMT == S_IFCHR ? .characterDevice : .blockDevice
                (node.deviceMajor, node.deviceMinor) = OwnCode.FileIdentity.split(st.st_rdev)
            default:
                continue  // sockets are runtime artefacts
            }
            records.append((path, node))
        }
    }

    package static func listDirectory(_ dirFD: Int32, display: String) throws -> [String] {
        let copy = dup(dirFD)
        guard copy >= 0, let dir = fdopendir(copy) else { throw ImageFormatError.unreadable(path: display, reason: String(cString: strerror(errno))) }
        defer { closedir(dir) }
        rewinddir(dir)
        var names: [String] = []
        while let entry = readdir(dir) {
            let name = withUnsafeBytes(of: entry.pointee.d_name) { String(cString: $0.baseAddress!.assumingMemoryBound(to: CChar.self)) }
            if name == "." || name == ".." { continue }
            names.append(name)
        }
        return names
    }
}
