import ArgumentParser
import Foundation
import VeilLauncherCommands

/// README's benchmark table, rendered from the recorded runs so no figure is typed by hand.
struct BenchSummaryCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "summary",
        abstract: "Print the Markdown table of recorded benchmark runs (what README quotes).",
        discussion: helpText("""
            Reads every BENCHMARK.json in DIR (written with --record), in the order of the
            benchmarks' commands, and prints one table: each row's figure, its peer from the same
            run, the ratio, and the goal with whether it is met; then the machine, date and commit
            of each run.
            """))

    @Argument(help: ArgumentHelp("Directory of recorded runs.", valueName: "dir")) var directory = "docs/benchmarks"

    func run() throws {
        print(try Self.render(directory: directory), terminator: "")
    }

    static let order = ["coordinator", "dcap", "snp", "protected", "image", "attest", "ha", "mesh"]

    static func render(directory: String) throws -> String {
        let names = try FileManager.default.contentsOfDirectory(atPath: directory).filter { $0.hasSuffix(".json") }
            .map { String($0.dropLast(5)) }
            .sorted { (order.firstIndex(of: $0) ?? order.count, $0) < (order.firstIndex(of: $1) ?? order.count, $1) }
        guard !names.isEmpty else { throw CommandError("no recorded runs (*.json) in \(directory): run a benchmark with --record \(directory)") }
        let records = try names.map { try BenchRecord.read(from: "\(directory)/\($0).json") }
        var lines = [
            "| benchmark | Veil | peer in the same run | Veil / peer | goal |",
            "| --- | --- | --- | --- | --- |",
        ]
        for record in records {
            for row in record.rows {
                let goal = row.goal.map { goal in "\(goal): " + (row.goalMet == true ? "met" : "**not met**") } ?? ""
                var peer = "none (goal only)"
                if let name = row.peer, let value = row.peerValue { peer = "\(name) \(figure(value, row.unit))" }
                let ratio = row.ratio.map { String(format: "%.2f× (%@ is better)", $0, row.better.rawValue) } ?? "—"
                lines.append("| \(row.name) | \(figure(row.value, row.unit)) | \(peer) | \(ratio) | \(goal) |")
            }
        }
        lines.append("")
        lines.append("Recorded runs (`docs/benchmarks/BENCHMARK.json`):")
        for record in records {
            let machine = record.machine
            lines.append(
                "- `\(record.benchmark)`: \(record.date.prefix(10)), commit \(record.commit), \(record.build) build\(record.buildScript.map { " (\($0))" } ?? ""), "
                    + "\(machine.cores) cores (\(machine.cpu)), \(machine.memoryGiB) GiB, Linux \(machine.kernel)")
        }
        return lines.joined(separator: "\n") + "\n"
    }

    /// Three significant digits at most, thousands grouped: `1,715/s`, `388 µs`, `2.04 GB/s`.
    static func figure(_ value: Double, _ unit: String) -> String {
        let digits = value >= 100 ? 0 : value >= 10 ? 1 : 2
        var number = String(format: "%.\(digits)f", value)
        // Thousands grouped by hand: Foundation's formatter on Linux ignores the digit limits.
        let integerEnd = number.firstIndex(of: ".") ?? number.endIndex
        var position = number.index(integerEnd, offsetBy: -3, limitedBy: number.startIndex) ?? number.startIndex
        while position > number.startIndex {
            number.insert(",", at: position)
            position = number.index(position, offsetBy: -3, limitedBy: number.startIndex) ?? number.startIndex
        }
        return unit.hasPrefix("/") ? number + unit : number + " " + unit
    }
}
