import Foundation
import Glibc

/// A progress report on standard error, at most twice a second: rewritten in place on a
/// terminal, one line per report otherwise.
final class ProgressLine: @unchecked Sendable {
    let label: String
    private var last = Date.distantPast
    private var lastPercent = -1
    private let terminal = isatty(2) != 0

    init(label: String) { self.label = label }

    func update(_ done: UInt64, of total: UInt64) {
        let now = Date()
        guard now.timeIntervalSince(last) >= 0.5 || done == total else { return }
        last = now
        let percent = total > 0 ? Int(Double(done) / Double(total) * 100) : 100
        guard percent != lastPercent else { return }
        lastPercent = percent
        let text = "\(label): \(percent)% (\(done >> 20) of \(total >> 20) MiB)"
        FileHandle.standardError.write(Data((terminal ? "\r\(text)\u{1b}[K" : text + "\n").utf8))
    }

    static func finish() {
        if isatty(2) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
