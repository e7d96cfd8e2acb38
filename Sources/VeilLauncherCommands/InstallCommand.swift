import ArgumentParser
import FoundationEssentials

/// `veil-launcher install DIR`: what the injector's init container runs to bring the launcher
/// into a pod whose app image does not carry it.
public struct InstallCommand: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "install",
        abstract: "Copy this launcher, its loader and libraries (the directory above bin/) into DIR.",
        discussion: "DIR is usually a memory-backed volume shared with the app containers, which then run DIR/bin/veil-launcher.")

    @Argument(help: ArgumentHelp("Destination directory (must exist).", valueName: "dir"))
    var destination: String

    public init() {}

    public func run() throws {
        let executable = try FileManager.default.destinationOfSymbolicLink(atPath: "/proc/self/exe")
        let bin = executable.split(separator: "/").dropLast()
        guard bin.last == "bin" else { throw CommandError("\(executable) is not in a bin/ directory: nothing to install from") }
        let root = "/" + bin.dropLast().joined(separator: "/")
        var isDirectory = false
        guard FileManager.default.fileExists(atPath: destination, isDirectory: &isDirectory), isDirectory else {
            throw CommandError("\(destination) is not an existing directory")
        }
        // The launcher and its libraries only: Veil's own image also holds `veil`, which the
        // app's pod does not need in memory. Files are copied as the running user (the init
        // container runs as non-root): content and mode, not owner, which only root could keep.
        var files = ["bin/veil-launcher"]
        files += (try? FileManager.default.contentsOfDirectory(atPath: root + "/lib"))?.sorted().map { "lib/" + $0 } ?? []
        for directory in ["bin", "lib"] {
            try FileManager.default.createDirectory(atPath: destination + "/" + directory, withIntermediateDirectories: true)
        }
        for file in files {
            let source = root + "/" + file, target = destination + "/" + file
            let mode = (try FileManager.default.attributesOfItem(atPath: source)[.posixPermissions] as? Int) ?? 0o755
            guard let bytes = FileManager.default.contents(atPath: source) else { throw CommandError("cannot read \(source)") }
            if FileManager.default.fileExists(atPath: target) { try FileManager.default.removeItem(atPath: target) }
            guard FileManager.default.createFile(atPath: target, contents: bytes, attributes: [.posixPermissions: mode]) else {
                throw CommandError("cannot write \(target)")
            }
        }
        print("installed \(root) into \(destination)")
    }
}
