/// `launch`'s options read by ``LeanCommandLine``, ahead of the argument parser.
extension LaunchArguments {
    static let grammar = LeanCommandLine.Grammar(
        values: [
            "coordinator", "simulation-key", "root-ca", "service", "tee", "image", "coordinator-measurement", "coordinator-policy",
            "coordinator-collateral", "protected-file",
        ],
        repeatable: ["coordinator-measurement", "protected-file"],
        flags: ["insecure-any-coordinator", "allow-debug-coordinator", "allow-coordinator-mrtd-only"],
        terminator: true)

    /// `arguments` are what follows the executable's name, starting with `launch`; nil when the
    /// argument parser must read them (see ``LeanCommandLine``).
    public static func parse(_ arguments: [String]) -> LaunchArguments? {
        guard arguments.first == "launch", let line = LeanCommandLine.read(arguments.dropFirst(), grammar) else { return nil }
        var parsed = LaunchArguments()
        parsed.trust.connection = CoordinatorConnection(
            coordinator: line.value("coordinator"), simulationKey: line.value("simulation-key"), rootCA: line.value("root-ca"))
        parsed.trust.service = line.value("service")
        parsed.trust.tee = line.value("tee")
        parsed.trust.coordinatorMeasurement = line.values["coordinator-measurement"] ?? []
        parsed.trust.coordinatorPolicy = line.value("coordinator-policy")
        parsed.trust.coordinatorCollateral = line.value("coordinator-collateral")
        parsed.trust.insecureAnyCoordinator = line.flags.contains("insecure-any-coordinator")
        parsed.trust.allowDebugCoordinator = line.flags.contains("allow-debug-coordinator")
        parsed.trust.allowCoordinatorMRTDOnly = line.flags.contains("allow-coordinator-mrtd-only")
        parsed.image = line.value("image")
        parsed.protectedFile = line.values["protected-file"] ?? []
        parsed.command = line.program
        return parsed
    }
}
