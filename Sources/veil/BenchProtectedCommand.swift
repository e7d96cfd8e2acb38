import ArgumentParser
import Crypto
import Foundation
import VeilImage

/// Protected-file sequential read (read + authenticate + decrypt) against a plain read of the
/// same plaintext size from the page cache, in the same run.
struct BenchProtectedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "protected", abstract: "Protected file read throughput vs plain read.")

    @Option(help: "Plaintext size in MiB.") var megabytes = 256
    @Option(help: "Repetitions (best is reported).") var repetitions = 5

    func run() throws {
        let directory = FileManager.default.temporaryDirectory.appendingPathComponent("veil-bench-pf-\(UUID().uuidString.prefix(8))").path
        try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        defer { try? FileManager.default.removeItem(atPath: directory) }
        let plaintext = SymmetricKey(size: .bits256).withUnsafeBytes { seed in
            (0..<megabytes << 20).map { UInt8(truncatingIfNeeded: $0 &* 2_654_435_761 >> 13) ^ seed[$0 & 31] }
        }
        let secret = SymmetricKey(size: .bits256)
        let plainPath = "\(directory)/plain", protectedPath = "\(directory)/protected"
        try Data(plaintext).write(to: URL(fileURLWithPath: plainPath))
        try Data(try ProtectedFile.seal(plaintext, path: "/data", secret: secret, version: 1)).write(to: URL(fileURLWithPath: protectedPath))

        func best(_ body: () throws -> Void) throws -> Double {
            var fastest = Double.infinity
            for _ in 0..<repetitions {
                let start = ContinuousClock.now
                try body()
                let elapsed = ContinuousClock.now - start
                fastest = min(fastest, Double(elapsed.components.seconds) + Double(elapsed.components.attoseconds) / 1e18)
            }
            return fastest
        }
        let plain = try best { _ = try Data(contentsOf: URL(fileURLWithPath: plainPath)) }
        let protected = try best {
            let bytes = Array(try Data(contentsOf: URL(fileURLWithPath: protectedPath)))
            _ = try ProtectedFile.open(bytes, path: "/data", secret: secret)
        }
        let gb = Double(plaintext.count) / 1e9
        print("protected file read, \(megabytes) MiB, best of \(repetitions)")
        print(String(format: "  plain read           %7.2f GB/s", gb / plain))
        print(String(format: "  protected read       %7.2f GB/s   %.2fx plain (goal >= 0.6x and >= 1 GB/s)", gb / protected, plain / protected))
    }
}
