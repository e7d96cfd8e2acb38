import Glibc

/// Which signals the launcher's own parent left ignored, so the app inherits exactly that and
/// not what the Swift runtime and NIO changed (SIGPIPE ignored, signals blocked on worker threads).
public struct SignalDispositions: Sendable {
    private let ignored: Set<Int32>

    /// Call first thing, before any networking starts.
    public static func capture() -> SignalDispositions {
        var ignored = Set<Int32>()
        for signal in 1..<Int32(65) where signal != SIGKILL && signal != SIGSTOP {
            var current = sigaction()
            if sigaction(signal, nil, &current) == 0, unsafeBitCast(current.__sigaction_handler.sa_handler, to: Int.self) == 1 {
                ignored.insert(signal)
            }
        }
        return SignalDispositions(ignored: ignored)
    }

    /// Unblocks every signal on this thread and restores the captured ignore set; everything
    /// else is default after `exec`.
    func restoreForExec() {
        for signal in 1..<Int32(65) where signal != SIGKILL && signal != SIGSTOP {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = ignored.contains(signal) ? SIG_IGN : SIG_DFL
            sigemptyset(&action.sa_mask)
            _ = sigaction(signal, &action, nil)
        }
        var empty = sigset_t()
        sigemptyset(&empty)
        _ = pthread_sigmask(SIG_SETMASK, &empty, nil)
    }
}
