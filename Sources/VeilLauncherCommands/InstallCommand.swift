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
        for name in try FileManager.default.contentsOfDirectory(atPath: root) where name != "protected" {
            let target = destination + "/" + name
            if FileManager.default.fileExists(atPath: target) { try FileManager.default.removeItem(atPath: target) }
            try FileManager.default.copyItem(atPath: root + "/" + name, toPath: target)
        }
        print("installed \(root) into \(destination)")
    }
}
