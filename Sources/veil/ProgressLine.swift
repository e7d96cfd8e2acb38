import Foundation
import Glibc
import Synchronization

/// A progress report on standard error, at most twice a second: rewritten in place on a
/// terminal, one line per report otherwise. Safe to call from several threads.
final class ProgressLine: Sendable {
    let label: String
    private let state = Mutex<(last: ContinuousClock.Instant?, percent: Int)>((nil, -1))
    private let terminal = isatty(2) != 0

    init(label: String) { self.label = label }

    func update(_ done: UInt64, of total: UInt64) {
        let percent = total > 0 ? Int(Double(done) / Double(total) * 100) : 100
        let now = ContinuousClock.now
        let due = state.withLock { state -> Bool in
            guard percent != state.percent, state.last.map({ now - $0 >= .milliseconds(500) }) ?? true || done == total else { return false }
            state = (now, percent)
            return true
        }
        guard due else { return }
        let text = "\(label): \(percent)% (\(done >> 20) of \(total >> 20) MiB)"
        FileHandle.standardError.write(Data((terminal ? "\r\(text)\u{1b}[K" : text + "\n").utf8))
    }

    static func finish() {
        if isatty(2) != 0 { FileHandle.standardError.write(Data("\n".utf8)) }
    }
}
