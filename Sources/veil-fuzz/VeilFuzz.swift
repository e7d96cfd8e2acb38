import Foundation
import VeilFuzzTargets

// Built two ways (docs/fuzzing.md):
// - with `-sanitize=fuzzer,address -D VEIL_FUZZ`: a libFuzzer binary; the target is chosen by the
//   environment variable VEIL_FUZZ_TARGET, every argument goes to libFuzzer;
// - normally: a tool that lists targets, writes seed corpora and replays inputs.

#if VEIL_FUZZ
@_silgen_name("LLVMFuzzerRunDriver")
func runFuzzerDriver(
    _ argc: UnsafeMutablePointer<Int32>, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>>,
    _ callback: @convention(c) (UnsafePointer<UInt8>?, Int) -> Int32
) -> Int32

nonisolated(unsafe) private var selected: FuzzTarget = .json

/// libFuzzer's runtime references this entry even when its driver is given the callback.
@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> Int32 {
    selected.run(data.map { Array(UnsafeBufferPointer(start: $0, count: size)) } ?? [])
    return 0
}

/// SwiftPM links executables through their Swift entry point, so libFuzzer's own `main` is not
/// used: this one picks the target and hands the command line to libFuzzer's driver.
@main
struct VeilFuzz {
    static func main() {
        let name = ProcessInfo.processInfo.environment[FuzzTarget.environmentVariable] ?? ""
        guard let target = FuzzTarget(rawValue: name) else {
            FileHandle.standardError.write(Data("veil-fuzz: set VEIL_FUZZ_TARGET to one of \(FuzzTarget.allCases.map(\.rawValue).joined(separator: ", "))\n".utf8))
            exit(2)
        }
        selected = target
        target.warmUp()
        var argc = CommandLine.argc
        var argv = CommandLine.unsafeArgv
        exit(runFuzzerDriver(&argc, &argv) { data, size in fuzzerTestOneInput(data, size) })
    }
}
#else
@main
struct VeilFuzz {
    static let usage = """
        usage: veil-fuzz list
               veil-fuzz seeds DIR            write a seed corpus per target into DIR/TARGET/
               veil-fuzz replay TARGET PATH…  run files (or every file in directories) through TARGET
        """

    static func main() {
        let arguments = Array(CommandLine.arguments.dropFirst())
        do {
            switch arguments.first {
            case "list":
                for target in FuzzTarget.allCases { print(target.rawValue) }
            case "seeds" where arguments.count == 2:
                for (target, count) in try SeedCorpus.write(to: arguments[1]) { print("\(target.rawValue): \(count) seeds") }
            case "replay" where arguments.count >= 3:
                guard let target = FuzzTarget(rawValue: arguments[1]) else { throw Failure("unknown target '\(arguments[1])'") }
                let inputs = try SeedCorpus.files(arguments.dropFirst(2))
                for input in inputs { target.run(Array(try Data(contentsOf: URL(fileURLWithPath: input)))) }
                print("\(target.rawValue): \(inputs.count) inputs replayed")
            default:
                throw Failure(usage)
            }
        } catch {
            FileHandle.standardError.write(Data("veil-fuzz: \(error)\n".utf8))
            exit(1)
        }
    }
}

struct Failure: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
#endif
