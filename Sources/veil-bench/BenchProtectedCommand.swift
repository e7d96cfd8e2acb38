import ArgumentParser
import Crypto
import Foundation
import Glibc
import VeilImage
import VeilLauncherCommands
import VeilImageFormat

/// Protected-file sequential read (read + authenticate + decrypt) against a plain read of the
/// same plaintext size from the page cache, in the same run.
struct BenchProtectedCommand: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "protected", abstract: "Protected file read throughput vs plain read.")

    @Option(help: "Plaintext size in MiB.") var megabytes = 256
    @Option(help: "Repetitions (best is reported).") var repetitions = 5
    @OptionGroup var record: RecordOption

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
        // Both sides read with read(2) into a [UInt8] of the file's size.
        let plain = try best { _ = try Self.readFile(plainPath) }
        let protected = try best { _ = try ProtectedFile.open(fileAt: protectedPath, path: "/data", secret: secret) }
        let sealedBytes = try Self.readFile(protectedPath)
        let decryptOnly = try best { _ = try ProtectedFile.open(sealedBytes, path: "/data", secret: secret) }
        let gb = Double(plaintext.count) / 1e9
        print("protected file read, \(megabytes) MiB, best of \(repetitions)")
        print(String(format: "  plain read           %7.2f GB/s", gb / plain))
        print(String(format: "  protected read       %7.2f GB/s   %.2fx plain (goal >= 0.6x and >= 1 GB/s)", gb / protected, plain / protected))
        print(String(format: "  of which decryption  %7.2f GB/s (bytes already in memory)", gb / decryptOnly))
        var results = BenchRecord(benchmark: "protected")
        results.add(
            "protected file read, \(megabytes) MiB (parallel pread + decrypt)", gb / protected, "GB/s", better: .higher, peer: "plain read(2)", gb / plain,
            goal: "≥ 0.6× and ≥ 1 GB/s", met: plain / protected >= 0.6 && gb / protected >= 1)
        try record.keep(results)
    }

    static func readFile(_ path: String) throws -> [UInt8] {
        let fd = open(path, O_RDONLY | O_CLOEXEC)
        guard fd >= 0 else { throw CommandError("cannot open \(path)") }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else { throw CommandError("cannot stat \(path)") }
        var bytes = [UInt8](repeating: 0, count: Int(info.st_size))
        var offset = 0
        try bytes.withUnsafeMutableBytes { buffer in
            while offset < buffer.count {
                let count = Glibc.read(fd, buffer.baseAddress! + offset, buffer.count - offset)
                if count < 0 && errno == EINTR { continue }
                guard count > 0 else { throw CommandError("cannot read \(path)") }
                offset += count
            }
        }
        return bytes
    }
}
