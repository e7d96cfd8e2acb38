import Foundation
import Glibc
import Testing

/// A configfs-tsm report directory that behaves like the kernel's (Tests/Scripts/tsm_double.py,
/// mounted with FUSE): entries appear with their attributes on mkdir, `generation` counts
/// writes, outblob is produced at read, privlevel floors and faults as asked. Its log is every
/// operation, so tests see what a caller wrote even after it removed its entry.
final class TSMDouble {
    static let script = repositoryRoot + "/Tests/Scripts/tsm_double.py"
    let root: String
    let logPath: String
    private let process: Spawned

    /// Mounts a double at `scratch/name` serving `outblob` (and `auxblob`, SNP) as `provider`.
    init(scratch: Scratch, name: String = "tsm", provider: String, outblob: String, auxblob: String? = nil, options: [String] = []) async throws {
        root = scratch.path + "/" + name
        logPath = scratch.path + "/\(name).log"
        try FileManager.default.createDirectory(atPath: root, withIntermediateDirectories: true)
        var arguments = [Self.script, root, "--provider", provider, "--outblob", outblob, "--log", logPath] + options
        if let auxblob { arguments += ["--auxblob", auxblob] }
        process = try Spawned("/usr/bin/python3", arguments, scratch: scratch)
        let root = root, process = process
        guard await eventually(within: 20, { Self.isMounted(root) || !process.isRunning }), Self.isMounted(root) else {
            let stderr = process.stderr
            await process.stop()
            throw DoubleFailed(what: "the configfs-tsm double did not mount at \(root): \(stderr)")
        }
    }

    struct DoubleFailed: Error, CustomStringConvertible { let what: String; var description: String { what } }

    deinit {
        process.kill9()
        // A FUSE daemon killed outright leaves its mount behind; detach it.
        if Self.isMounted(root) { umount2(root, Int32(MNT_DETACH)) }
    }

    static func isMounted(_ path: String) -> Bool {
        let mounts = (try? String(contentsOfFile: "/proc/self/mounts", encoding: .utf8)) ?? ""
        return mounts.split(separator: "\n").contains { $0.split(separator: " ").dropFirst().first.map(String.init) == path }
    }

    /// Whether FUSE works here (python3-fusepy, /dev/fuse); tests say what to install otherwise.
    static var available: Bool {
        FileManager.default.fileExists(atPath: "/dev/fuse") && FileManager.default.fileExists(atPath: "/usr/lib/python3/dist-packages/fusepy.py")
    }

    /// Every operation so far, oldest first.
    var events: [[String: Any]] {
        let text = (try? String(contentsOfFile: logPath, encoding: .utf8)) ?? ""
        return text.split(separator: "\n").compactMap { try? JSONSerialization.jsonObject(with: Data($0.utf8)) as? [String: Any] }
    }

    /// The data written to `attribute` (hex), in order.
    func writes(to attribute: String) -> [String] {
        events.filter { $0["op"] as? String == "write" && $0["attribute"] as? String == attribute && $0["foreign"] == nil }.compactMap { $0["data"] as? String }
    }

    /// Entries present now (the caller's must be gone after each request).
    var entries: [String] { (try? FileManager.default.contentsOfDirectory(atPath: root)) ?? [] }
}

/// AMD KDS on loopback (Tests/Scripts/kds_stub.py): one product's VCEK for one chip ID, and
/// its cert_chain; every request path is logged.
final class KDSStub {
    let url: String
    let logPath: String
    private let process: Spawned

    /// Serves the VCEK for the chip of `report` (a raw SNP report file).
    /// - Parameter crl: the product's CRL (DER) to serve; without it `/crl` is a 404.
    init(scratch: Scratch, product: String, report: String, vcek: String, chain: String, crl: String? = nil, delayMilliseconds: Int = 0) async throws {
        let chipID = Array(try Data(contentsOf: URL(fileURLWithPath: report)))[0x1A0..<0x1E0].map { String(format: "%02x", $0) }.joined()
        let port = freePort()
        url = "http://127.0.0.1:\(port)"
        logPath = scratch.path + "/kds-\(port).log"
        process = try Spawned(
            "/usr/bin/python3", [repositoryRoot + "/Tests/Scripts/kds_stub.py", "\(port)", "--product", product, "--chip-id", chipID,
                                 "--vcek", vcek, "--chain", chain, "--log", logPath, "--delay-ms", "\(delayMilliseconds)"] + (crl.map { ["--crl", $0] } ?? []),
            scratch: scratch)
        let process = process
        guard await eventually(within: 20, { isListening(port: port) || !process.isRunning }), isListening(port: port) else {
            throw TSMDouble.DoubleFailed(what: "the KDS stub did not start: \(process.stderr)")
        }
    }

    deinit { process.kill9() }

    var requests: [String] { ((try? String(contentsOfFile: logPath, encoding: .utf8)) ?? "").split(separator: "\n").map(String.init) }
}
