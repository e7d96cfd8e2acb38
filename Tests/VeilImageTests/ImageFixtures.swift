import Crypto
import Foundation
import Testing
@testable import VeilImage

/// A tar member to build test layers from.
struct Member {
    var entry: TarEntry
    var content: [UInt8] = []

    static func file(_ path: String, _ text: String, mode: UInt32 = 0o644) -> Member {
        Member(entry: TarEntry(path: path, kind: .file, mode: mode, size: UInt64(text.utf8.count)), content: Array(text.utf8))
    }
    static func dir(_ path: String, mode: UInt32 = 0o755) -> Member { Member(entry: TarEntry(path: path, kind: .directory, mode: mode)) }
    static func symlink(_ path: String, to target: String) -> Member {
        Member(entry: TarEntry(path: path, kind: .symlink, mode: 0o777, linkTarget: target))
    }
    static func hardlink(_ path: String, to target: String) -> Member {
        Member(entry: TarEntry(path: path, kind: .hardlink, mode: 0o644, linkTarget: target))
    }
}

func tarBytes(_ members: [Member]) throws -> [UInt8] {
    var out: [UInt8] = []
    let writer = TarWriter { out.append(contentsOf: $0) }
    for member in members {
        if member.entry.kind == .file {
            try writer.writeFile(member.entry, contents: member.content)
        } else {
            try writer.writeHeader(member.entry)
        }
    }
    try writer.finish()
    return out
}

/// A raw tar header with any name, for inputs the writer refuses to produce.
func rawTar(name: String, type: Character = "0", link: String = "", content: [UInt8] = []) -> [UInt8] {
    var header = TarWriter.header(name: "x", type: UInt8(ascii: type.unicodeScalars.first!), mode: 0o644, uid: 0, gid: 0,
                                  size: UInt64(content.count), link: link)
    for i in 0..<100 { header[i] = 0 }
    for (i, byte) in Array(name.utf8).prefix(100).enumerated() { header[i] = byte }
    for i in 148..<156 { header[i] = 32 }
    let sum = header.reduce(0) { $0 + Int($1) }
    let text = Array(String(format: "%06o", sum).utf8) + [0, 32]
    for (i, byte) in text.enumerated() { header[148 + i] = byte }
    var out = header + content + [UInt8](repeating: 0, count: (512 - content.count % 512) % 512)
    out += [UInt8](repeating: 0, count: 1024)
    return out
}

func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
    let directory = try temporaryDirectory()
    defer { try? FileManager.default.removeItem(atPath: directory) }
    try Data(bytes).write(to: URL(fileURLWithPath: "\(directory)/data"))
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/gzip")
    process.arguments = ["-n", "\(directory)/data"]
    try process.run()
    process.waitUntilExit()
    return Array(try Data(contentsOf: URL(fileURLWithPath: "\(directory)/data.gz")))
}

func temporaryDirectory() throws -> String {
    var template = Array("\(NSTemporaryDirectory())/veil-image-test-XXXXXX".utf8CString)
    guard let made = mkdtemp(&template) else { throw ImageError.io(path: "tmp", reason: "mkdtemp") }
    return String(cString: made)
}

func sha256(_ bytes: [UInt8]) -> BlobDigest { BlobDigest(sha256: Array(SHA256.hash(data: bytes))) }

/// Writes an OCI layout holding one image built from `layers` (gzip-compressed when asked).
@discardableResult
func writeLayout(at directory: String, tag: String = "test", layers: [[Member]], gzipLayers: Bool = true,
                 entrypoint: [String] = ["/bin/app"], cmd: [String] = ["--serve"]) throws -> (manifest: Descriptor, layers: [Descriptor]) {
    let writer = try LayoutWriter(directory: directory)
    var descriptors: [Descriptor] = []
    var diffIDs: [String] = []
    for members in layers {
        let tar = try tarBytes(members)
        diffIDs.append(sha256(tar).description)
        let blob = gzipLayers ? try gzip(tar) : tar
        descriptors.append(try writer.put(blob, mediaType: gzipLayers ? MediaType.layerGzip : MediaType.layer))
    }
    let config: [String: Any] = [
        "architecture": "amd64", "os": "linux",
        "config": ["Entrypoint": entrypoint, "Cmd": cmd, "Env": ["PATH=/bin", "MODE=test"], "WorkingDir": "/srv"],
        "rootfs": ["type": "layers", "diff_ids": diffIDs],
        "history": layers.map { _ in ["created_by": "test"] },
    ]
    let configDescriptor = try writer.put(
        Array(try JSONSerialization.data(withJSONObject: config, options: [.sortedKeys])), mediaType: MediaType.config)
    let manifest: [String: Any] = [
        "schemaVersion": 2, "mediaType": MediaType.manifest,
        "config": ["mediaType": MediaType.config, "digest": configDescriptor.digest.description, "size": configDescriptor.size],
        "layers": descriptors.map { ["mediaType": $0.mediaType, "digest": $0.digest.description, "size": $0.size] },
    ]
    let manifestDescriptor = try writer.put(
        Array(try JSONSerialization.data(withJSONObject: manifest, options: [.sortedKeys])), mediaType: MediaType.manifest)
    try writer.tag(manifestDescriptor, as: tag)
    return (manifestDescriptor, descriptors)
}

/// A stand-in launcher: a small file, no libraries (conversion only copies it).
func fakeLauncher(in directory: String) throws -> LauncherFiles {
    let path = "\(directory)/fake-launcher"
    try Data("#!/bin/sh\nexit 0\n".utf8).write(to: URL(fileURLWithPath: path))
    chmod(path, 0o755)
    return LauncherFiles(files: [.init(imagePath: "veil/bin/veil-launcher", hostPath: path)], entrypoint: ["/veil/bin/veil-launcher"])
}
