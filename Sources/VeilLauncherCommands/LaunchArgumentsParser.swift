/// The launcher's own parser for `launch`'s options, ahead of the argument parser.
///
/// swift-argument-parser builds its model by reflection and dynamic casts, which in a
/// statically linked launcher scan every protocol conformance of the binary: about a third of
/// a launch's CPU time (issue 26). This parser reads exactly the options `LaunchCommand`
/// declares, in the forms every launch script uses (`--name value`, `--name=value`, flags,
/// `--` then the program), into the same `LaunchArguments`. Anything else — help, a version
/// request, an unknown or repeated option, a missing value, a word before `--` — makes it
/// return nil, and the argument parser handles the line with its usual errors and help, so
/// both paths accept the same lines and differ only in speed (`LaunchArgumentsParserTests`).
extension LaunchArguments {
    /// `arguments` are what follows the executable's name, starting with `launch`.
    public static func parse(_ arguments: [String]) -> LaunchArguments? {
        guard arguments.first == "launch" else { return nil }
        var parsed = LaunchArguments()
        var seen: Set<String> = []
        var index = 1
        while index < arguments.count {
            let word = arguments[index]
            index += 1
            if word == "--" {
                parsed.command = Array(arguments[index...])
                return parsed
            }
            guard word.hasPrefix("--") else { return nil }
            var name = String(word.dropFirst(2))
            var inlineValue: String?
            if let equals = name.firstIndex(of: "=") {
                inlineValue = String(name[name.index(after: equals)...])
                name = String(name[..<equals])
            }
            if let flag = Flag(rawValue: name) {
                guard inlineValue == nil, seen.insert(name).inserted else { return nil }
                parsed.set(flag)
                continue
            }
            guard let option = ValueOption(rawValue: name) else { return nil }
            guard option.repeatable || seen.insert(name).inserted else { return nil }
            let value: String
            if let inlineValue {
                guard !inlineValue.isEmpty else { return nil }
                value = inlineValue
            } else {
                // The argument parser takes a value that starts with "-" as the next option.
                guard index < arguments.count, !arguments[index].hasPrefix("-") else { return nil }
                value = arguments[index]
                index += 1
            }
            parsed.set(option, value)
        }
        return parsed
    }

    private enum Flag: String {
        case insecureAnyCoordinator = "insecure-any-coordinator"
        case allowDebugCoordinator = "allow-debug-coordinator"
        case allowCoordinatorMRTDOnly = "allow-coordinator-mrtd-only"
    }

    private enum ValueOption: String {
        case coordinator, service, tee, image
        case simulationKey = "simulation-key"
        case rootCA = "root-ca"
        case coordinatorMeasurement = "coordinator-measurement"
        case coordinatorPolicy = "coordinator-policy"
        case coordinatorCollateral = "coordinator-collateral"
        case protectedFile = "protected-file"

        var repeatable: Bool { self == .coordinatorMeasurement || self == .protectedFile }
    }

    private mutating func set(_ flag: Flag) {
        switch flag {
        case .insecureAnyCoordinator: trust.insecureAnyCoordinator = true
        case .allowDebugCoordinator: trust.allowDebugCoordinator = true
        case .allowCoordinatorMRTDOnly: trust.allowCoordinatorMRTDOnly = true
        }
    }

    private mutating func set(_ option: ValueOption, _ value: String) {
        switch option {
        case .coordinator: trust.connection.coordinator = value
        case .simulationKey: trust.connection.simulationKey = value
        case .rootCA: trust.connection.rootCA = value
        case .service: trust.service = value
        case .tee: trust.tee = value
        case .image: image = value
        case .coordinatorMeasurement: trust.coordinatorMeasurement.append(value)
        case .coordinatorPolicy: trust.coordinatorPolicy = value
        case .coordinatorCollateral: trust.coordinatorCollateral = value
        case .protectedFile: protectedFile.append(value)
        }
    }
}
