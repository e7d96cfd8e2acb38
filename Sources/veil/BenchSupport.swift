import Foundation

/// Timing helpers shared by the benchmarks.
enum Bench {
    /// Mean microseconds per call of `body` over `iterations`, after a short warm-up.
    static func microsecondsPerCall(iterations: Int, _ body: () throws -> Void) throws -> Double {
        for _ in 0..<min(50, iterations) { try body() }
        let start = ContinuousClock.now
        for _ in 0..<iterations { try body() }
        let elapsed = ContinuousClock.now - start
        return (Double(elapsed.components.seconds) * 1e6 + Double(elapsed.components.attoseconds) / 1e12) / Double(iterations)
    }

    /// Runs a Python peer that prints one number and returns it.
    static func python(_ script: String, _ arguments: [String], failure: String) throws -> Double {
        let process = Process()
        let output = Pipe()
        process.executableURL = URL(fileURLWithPath: "/usr/bin/env")
        process.arguments = ["python3", "-c", script] + arguments
        process.standardOutput = output
        try process.run()
        let text = String(decoding: output.fileHandleForReading.readDataToEndOfFile(), as: UTF8.self)
        process.waitUntilExit()
        guard process.terminationStatus == 0, let value = Double(text.trimmingCharacters(in: .whitespacesAndNewlines)) else {
            throw CommandError(failure)
        }
        return value
    }
}
