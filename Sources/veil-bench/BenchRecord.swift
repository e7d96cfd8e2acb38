import ArgumentParser
import Foundation
import VeilCore
import VeilLauncherCommands

/// One benchmark run's results as kept under `docs/benchmarks/` (`--record DIR`): the
/// machine, date and commit, and every row with the peer measured in the same run. README's
/// benchmark table is rendered from these files (`veil-bench summary`), so every published
/// figure can be traced to one recorded run.
struct BenchRecord: Codable {
    struct Machine: Codable, Equatable {
        var cores: Int
        var cpu: String
        var memoryGiB: Int
        var kernel: String

        static func current() -> Machine {
            let cpuinfo = (try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8)) ?? ""
            let model = cpuinfo.split(separator: "\n").first { $0.hasPrefix("model name") }
                .flatMap { $0.split(separator: ":", maxSplits: 1).last }.map { $0.trimmingCharacters(in: .whitespaces) }
            let release = (try? String(contentsOfFile: "/proc/sys/kernel/osrelease", encoding: .utf8)) ?? "unknown"
            return Machine(
                cores: ProcessInfo.processInfo.activeProcessorCount, cpu: model ?? "unknown",
                memoryGiB: Int((Double(ProcessInfo.processInfo.physicalMemory) / Double(1 << 30)).rounded()),
                kernel: release.trimmingCharacters(in: .whitespacesAndNewlines))
        }
    }

    /// Which direction of a figure is the better one: ratios are always Veil / peer.
    enum Better: String, Codable {
        case higher, lower
    }

    /// One figure of Veil's against its peer's, with the goal the benchmark checks if any.
    struct Row: Codable {
        var name: String
        var value: Double
        var unit: String
        /// What the figure is compared with in the same run; nil for figures with only a goal.
        var peer: String?
        var peerValue: Double?
        var better: Better
        var goal: String?
        var goalMet: Bool?

        var ratio: Double? { peerValue.map { value / $0 } }
    }

    var benchmark: String
    var date: String
    var commit: String
    var build: String
    /// `scripts/build-release.sh` when the release build came from it (every module compiled
    /// with its flag), absent for a plain `swift build -c release`.
    var buildScript: String?
    var machine: Machine
    var rows: [Row] = []

    init(benchmark: String) {
        self.benchmark = benchmark
        date = ISO8601DateFormatter().string(from: Date())
        commit = Self.commit()
        #if DEBUG
            build = "debug"
        #else
            build = "release"
        #endif
        #if VEIL_RELEASE_SCRIPT
            buildScript = "scripts/build-release.sh"
        #endif
        machine = .current()
    }

    mutating func add(
        _ name: String, _ value: Double, _ unit: String, better: Better, peer: String?, _ peerValue: Double?, goal: String? = nil, met: Bool? = nil
    ) {
        rows.append(Row(name: name, value: value, unit: unit, peer: peer, peerValue: peerValue, better: better, goal: goal, goalMet: met))
    }

    /// The commit the working directory is at, with `+changes` when it has uncommitted ones.
    /// Records are not changes: recording one benchmark after another must not mark the second.
    static func commit() -> String {
        guard let head = try? git(["rev-parse", "--short=12", "HEAD"]), !head.isEmpty else { return "unknown" }
        let dirty = (try? git(["status", "--porcelain", "--untracked-files=no", "--", ".", ":(exclude)docs/benchmarks"]))?.isEmpty == false
        return head + (dirty ? "+changes" : "")
    }

    private static func git(_ arguments: [String]) throws -> String {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["git"] + arguments
        process.standardOutput = output
        process.standardError = FileHandle.nullDevice
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        return process.terminationStatus == 0 ? text.trimmingCharacters(in: .whitespacesAndNewlines) : ""
    }

    func write(to directory: String) throws {
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys, .withoutEscapingSlashes]
        try (encoder.encode(self) + Data("\n".utf8)).write(to: URL(fileURLWithPath: "\(directory)/\(benchmark).json"), options: .atomic)
    }

    static func read(from path: String) throws -> BenchRecord {
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandError("cannot read \(path)") }
        do {
            return try JSONDecoder().decode(BenchRecord.self, from: data)
        } catch let error as DecodingError {
            throw CommandError("\(path) is not a benchmark record: \(error.explanation)")
        }
    }
}

/// `--record DIR`, shared by every benchmark.
struct RecordOption: ParsableArguments {
    @Option(
        name: .customLong("record"),
        help: ArgumentHelp("Also write the results (machine, date, commit, every row with its peer) to DIR/BENCHMARK.json.", valueName: "dir"))
    var directory: String?

    /// Writes `record` when asked to, and says where.
    func keep(_ record: BenchRecord) throws {
        guard let directory else { return }
        try record.write(to: directory)
        print("recorded: \(directory)/\(record.benchmark).json")
    }
}
