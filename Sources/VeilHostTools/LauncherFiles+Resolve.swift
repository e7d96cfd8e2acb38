import Foundation
import Glibc
import VeilCore
import VeilImage

/// Finding the launcher's files on this host: `ldd` and `strip` run here, at conversion time,
/// so the launcher itself needs neither.
extension LauncherFiles {
    /// Collects `executable` (as `veil/bin/NAME`) and the libraries `ldd` resolves for it on this host.
    /// - Parameter strip: ship the executable without its symbol tables (a quarter of the size,
    ///   so images are smaller and the launcher measures less at every start), made with
    ///   binutils' `strip` once per executable and cached; unchanged when `strip` is missing.
    public static func resolve(executable: String, strip: Bool = true, name: String = "veil-launcher") throws -> LauncherFiles {
        let resolved = URL(fileURLWithPath: executable).resolvingSymlinksInPath().path
        guard access(resolved, X_OK) == 0 else { throw ImageError.launcher("\(resolved) is not executable") }
        let output = try runLDD(resolved)
        var files = [File(imagePath: "veil/bin/\(name)", hostPath: strip ? (stripped(resolved) ?? resolved) : resolved)]
        var loader: String?
        var seen: Set<String> = []
        for line in output.split(separator: "\n") {
            let trimmed = line.trimmingWhitespace
            // "libfoo.so.1 => /path/libfoo.so.1 (0x…)" or "/lib64/ld-linux-x86-64.so.2 (0x…)"
            let parts = trimmed.components(separatedBy: " ")
            var host: String?
            if let arrow = parts.firstIndex(of: "=>"), arrow + 1 < parts.count, parts[arrow + 1].hasPrefix("/") {
                host = parts[arrow + 1]
            } else if parts.first?.hasPrefix("/") == true {
                host = parts[0]
                loader = URL(fileURLWithPath: parts[0]).lastPathComponent
            } else if trimmed.contains("not found") {
                throw ImageError.launcher("ldd: \(trimmed)")
            }
            guard let host else { continue }
            let name = URL(fileURLWithPath: host).lastPathComponent
            guard seen.insert(name).inserted else { continue }
            files.append(File(imagePath: "veil/lib/\(name)", hostPath: URL(fileURLWithPath: host).resolvingSymlinksInPath().path))
        }
        if output.isEmpty {
            // A statically linked launcher runs on its own.
            return LauncherFiles(files: files, entrypoint: ["/veil/bin/\(name)"])
        }
        guard let loader else { throw ImageError.launcher("ldd lists no dynamic loader for \(resolved)") }
        return LauncherFiles(
            files: files.sorted { $0.imagePath < $1.imagePath },
            entrypoint: ["/veil/lib/\(loader)", "--library-path", "/veil/lib", "/veil/bin/\(name)"])
    }

    /// A stripped copy of `path` in the user's cache, named by the SHA-256 of the original.
    static func stripped(_ path: String) -> String? {
        guard FileManager.default.isExecutableFile(atPath: "/usr/bin/strip"), let stream = try? FileStream(path: path) else { return nil }
        let digest = DigestingStream(stream)
        guard (try? digest.drain()) != nil else { return nil }
        let environment = ProcessInfo.processInfo.environment
        let cache = (environment["XDG_CACHE_HOME"] ?? ((environment["HOME"] ?? "/root") + "/.cache")) + "/veil/launchers"
        let target = "\(cache)/\(digest.digest.hex)"
        if FileManager.default.isExecutableFile(atPath: target) { return target }
        guard (try? FileManager.default.createDirectory(atPath: cache, withIntermediateDirectories: true)) != nil else { return nil }
        let partial = "\(target).\(getpid()).partial"
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/strip")
        process.arguments = ["-o", partial, path]
        process.standardError = FileHandle.nullDevice
        guard (try? process.run()) != nil else { return nil }
        process.waitUntilExit()
        guard process.terminationStatus == 0, rename(partial, target) == 0 else {
            unlink(partial)
            return nil
        }
        return target
    }

    private static func runLDD(_ path: String) throws -> String {
        let process = Process()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/ldd")
        process.arguments = [path]
        let pipe = Pipe()
        process.standardOutput = pipe
        process.standardError = FileHandle.nullDevice
        do {
            try process.run()
        } catch {
            throw ImageError.launcher("cannot run ldd (install libc-bin): \(error)")
        }
        let data = pipe.fileHandleForReading.readDataToEndOfFile()
        process.waitUntilExit()
        let text = String(decoding: data, as: UTF8.self)
        if process.terminationStatus != 0 {
            if text.contains("not a dynamic executable") { return "" }
            throw ImageError.launcher("ldd \(path) failed: \(text)")
        }
        return text
    }

    /// `veil-launcher` beside the running executable (veil and veil-launcher are products of
    /// the same build).
    public static func besideThisExecutable() throws -> String {
        let running = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let launcher = URL(fileURLWithPath: running).deletingLastPathComponent().appendingPathComponent("veil-launcher").path
        guard FileManager.default.isExecutableFile(atPath: launcher) else {
            throw LauncherFilesError.launcherMissing(beside: running)
        }
        return launcher
    }
}

public enum LauncherFilesError: Error, CustomStringConvertible {
    case launcherMissing(beside: String)

    public var description: String {
        switch self {
        case .launcherMissing(let running):
            return "no veil-launcher beside \(running): build it (swift build --product veil-launcher) or pass --launcher FILE"
        }
    }
}
