import ArgumentParser

public struct LaunchCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "launch",
        abstract: "Attest, activate as a service, provision files/env/argv, then exec the program.",
        discussion: helpText("""
            The program becomes this process (same PID, signals and exit code). On any failure
            the program is not started and veil exits 125 with one line on stderr (as `docker run`
            does for its own failures), so a launch failure is told apart from the program's exit.
            Exit codes: 0 and the program's own; 64 usage; 125 could not launch.
            """))

    /// The exit status of a launch that failed before the program started (docker run's 125).
    public static let couldNotLaunch: Int32 = 125

    @OptionGroup var trust: LaunchTrustOptions

    @Option(help: ArgumentHelp(
        "Launch a converted image from inside its container: read its launch configuration (/veil/image.json), measure the whole root filesystem and unlock its protected files. The command, environment and service come from the measured image.",
        valueName: "file"))
    var image: String?

    @Option(help: ArgumentHelp(
        "Unlock a protected file (repeatable): STORED is the file `veil protect seal` wrote, PATH the path it was sealed for, where the plaintext is written (in memory) once the coordinator released the service's ProtectedFilesKey and accepted the file's version.",
        valueName: "stored=path"))
    var protectedFile: [String] = []

    @Argument(parsing: .postTerminator, help: "The program and its arguments.")
    var command: [String] = []

    public init() {}

    /// The parsed command as plain values.
    var values: LaunchArguments {
        LaunchArguments(trust: trust.values, image: image, protectedFile: protectedFile, command: command)
    }

    public func run() async throws {
        throw ExitCode(await values.run())
    }
}
