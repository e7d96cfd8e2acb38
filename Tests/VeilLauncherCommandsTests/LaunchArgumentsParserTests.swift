import ArgumentParser
import Testing
@testable import VeilLauncherCommands

/// The launcher's lean parser against swift-argument-parser on the same lines: equal where it
/// answers, nil (the argument parser takes over) everywhere else, and every option `launch`
/// declares known to it.
@Suite struct LaunchArgumentsParserTests {
    /// What the argument parser makes of `line` (without the executable's name).
    func reference(_ line: [String]) throws -> LaunchArguments {
        try LaunchCommand.parse(Array(line.dropFirst())).values
    }

    @Test(arguments: [
        ["launch", "--coordinator", "10.0.0.1:7001", "--service", "web", "--tee", "simulated", "--simulation-key", "/k.pem",
         "--root-ca", "/root.pem", "--", "/bin/true"],
        ["launch", "--service=web", "--tee=snp", "--coordinator=a:1,b:2", "--", "nginx", "-g", "daemon off;", "--", "--service"],
        ["launch", "--image", "/veil/image.json"],
        ["launch", "--service", "db", "--protected-file", "/s/a=/run/a", "--protected-file=/s/b=/run/b", "--", "redis-server"],
        ["launch", "--coordinator-measurement", "aa", "--coordinator-measurement", "bb", "--coordinator-policy", "/p.json",
         "--coordinator-collateral", "/c", "--insecure-any-coordinator", "--allow-debug-coordinator", "--allow-coordinator-mrtd-only",
         "--service", "x", "--", "/bin/sh", "-c", "exit 3"],
        ["launch", "--service", "x", "--"],
        ["launch"],
    ])
    func answersExactlyAsTheArgumentParser(_ line: [String]) throws {
        let lean = try #require(LaunchArguments.parse(line))
        #expect(lean == (try reference(line)))
    }

    @Test func readsEachValueIntoItsPlace() throws {
        let lean = try #require(LaunchArguments.parse(["launch", "--root-ca=/r.pem", "--service", "web", "--", "a", "b"]))
        #expect(lean.trust.connection.rootCA == "/r.pem")
        #expect(lean.trust.service == "web")
        #expect(lean.command == ["a", "b"])
        #expect(lean.trust.connection.coordinator == nil)
    }

    /// Lines the lean parser leaves to the argument parser: help, errors and every form it
    /// does not read. Each of these must get the argument parser's answer, so it must be nil.
    @Test(arguments: [
        ["launch", "--help"], ["launch", "-h"], ["launch", "--version"], ["help", "launch"],
        ["mesh", "--service", "x"], ["--service", "x", "launch"],
        ["launch", "--no-such-option", "x", "--", "/bin/true"],
        ["launch", "--service", "a", "--service", "b", "--", "/bin/true"],
        ["launch", "--service"], ["launch", "--service", "--tee", "simulated"], ["launch", "--service="],
        ["launch", "--insecure-any-coordinator=true"], ["launch", "--insecure-any-coordinator", "--insecure-any-coordinator"],
        ["launch", "/bin/true"], ["launch", "-s", "x"],
    ])
    func leavesEverythingElseToTheArgumentParser(_ line: [String]) {
        #expect(LaunchArguments.parse(line) == nil)
    }

    /// A new `launch` option the lean parser did not learn would only cost speed (lines using
    /// it fall back), but this keeps the two in step: every `--name` in `launch`'s help is read.
    @Test func knowsEveryOptionLaunchDeclares() throws {
        let help = LaunchCommand.helpMessage(columns: 1000)
        // Option definitions start their help lines ("  --name <value>"); prose mentions others' options.
        let names = Set(help.split(separator: "\n").map { $0.drop { $0 == " " } }
            .filter { $0.hasPrefix("--") }.map { String($0.prefix { $0 != " " && $0 != "=" }) })
            .subtracting(["--help", "--version"])
        #expect(names.count >= 13)
        for name in names {
            let asValue = LaunchArguments.parse(["launch", name, "v", "--", "p"])
            let asFlag = LaunchArguments.parse(["launch", name, "--", "p"])
            #expect(asValue != nil || asFlag != nil, "the lean parser does not read \(name)")
            if let parsed = asValue ?? asFlag {
                let line = asValue != nil ? ["launch", name, "v", "--", "p"] : ["launch", name, "--", "p"]
                #expect(parsed == (try reference(line)), "\(name) is read differently")
            }
        }
    }
}

/// The reader under both lean parsers, with a grammar like `veil run`'s (one positional, no `--`).
@Suite struct LeanCommandLineTests {
    let grammar = LeanCommandLine.Grammar(values: ["tee", "state-dir", "decryption-key"], repeatable: ["decryption-key"], positionals: 1)

    @Test func readsAPositionalAnywhereAmongTheOptions() throws {
        for words in [["oci:/i:t", "--tee", "simulated", "--state-dir=/s"], ["--tee", "simulated", "oci:/i:t", "--state-dir", "/s"]] {
            let line = try #require(LeanCommandLine.read(words[...], grammar))
            #expect(line.positionals == ["oci:/i:t"] && line.value("tee") == "simulated" && line.value("state-dir") == "/s")
        }
        let keys = try #require(LeanCommandLine.read(["i", "--decryption-key", "kbs:///a/b/c", "--decryption-key=kbs:///d/e/f"], grammar))
        #expect(keys.values["decryption-key"] == ["kbs:///a/b/c", "kbs:///d/e/f"])
    }

    @Test(arguments: [
        ["a", "b"], ["i", "--"], ["i", "--tee"], ["i", "--tee", "x", "--tee", "y"], ["i", "--tee="], ["i", "-t", "x"], ["i", "--help"],
        ["i", "--unknown", "x"], ["i", "--tee", "--state-dir", "/s"],
    ])
    func leavesEverythingElseToTheArgumentParser(_ words: [String]) {
        #expect(LeanCommandLine.read(words[...], grammar) == nil)
    }
}
