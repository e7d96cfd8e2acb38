import Foundation
import Glibc
import Testing

/// The harness's own process handling (Spawned): exits are seen when they happen, with the
/// status the program left with.
@Suite(.timeLimit(.minutes(1))) struct SpawnedTests {
    /// A program that leaves a child of its own running (as `sh -c 'server &'` or a daemonizing
    /// tool does) is seen to exit at once, with its status. Foundation's `Process` saw it only
    /// when the grandchild ended, which inherited the socket it watched.
    @Test func anExitIsSeenWhileTheProgramsOwnChildLivesOn() async throws {
        let scratch = try Scratch()
        let started = Date()
        let shell = try Spawned("/bin/sh", ["-c", "sleep 30 & echo $!; exit 3"], scratch: scratch)
        let result = await shell.wait(timeout: 20)
        let grandchild = try #require(pid_t(result.stdout.trimmingCharacters(in: .whitespacesAndNewlines)), "\(result.stdout)")
        defer { kill(grandchild, SIGKILL) }
        #expect(kill(grandchild, 0) == 0, "the grandchild still runs")
        #expect(result.status == 3 && !result.signaled)
        #expect(Date().timeIntervalSince(started) < 10, "the exit was seen \(Date().timeIntervalSince(started)) s after the start")
    }

    /// A program killed by a signal reports the signal, and SIGTERM reaches it even though
    /// the test process's threads may block it (the child starts with no blocked signals).
    @Test func aSignalEndsTheProgramAndIsReported() async throws {
        let scratch = try Scratch()
        let sleeper = try Spawned("/bin/sleep", ["30"], scratch: scratch)
        #expect(sleeper.isRunning)
        kill(sleeper.pid, SIGTERM)
        let result = await sleeper.wait(timeout: 10)
        #expect(result.signaled && result.status == SIGTERM, "\(result)")
        #expect(!sleeper.isRunning)
    }

    /// Output goes to the program's own files, stdin is empty, and no descriptor of the test
    /// process but the three standard ones reaches the program.
    @Test func theProgramGetsItsOwnOutputAndNoOtherDescriptors() async throws {
        let scratch = try Scratch()
        // Open in this process without O_CLOEXEC, as a careless library would leave it.
        let null = open("/dev/null", O_RDONLY)
        let leaked = fcntl(null, F_DUPFD, 100)
        defer {
            close(null)
            close(leaked)
        }
        try #require(leaked >= 100)
        let lister = try Spawned("/bin/sh", ["-c", "ls /proc/self/fd; cat; echo to-stderr >&2"], scratch: scratch)
        let result = await lister.wait(timeout: 10)
        #expect(result.status == 0)
        let descriptors = Set(result.stdout.split(separator: "\n").compactMap { Int32($0) })
        // 0-2, and 3: the directory `ls` reads. `cat` ended at once: stdin is empty.
        #expect(descriptors.isSubset(of: [0, 1, 2, 3]) && descriptors.isSuperset(of: [0, 1, 2]), "\(descriptors.sorted())")
        #expect(result.stderr == "to-stderr\n")
    }

    /// A program still open for writing elsewhere (as a just-written script is, for a moment, in
    /// a child another test is spawning) starts once the writer is gone, rather than failing
    /// with "Text file busy".
    @Test func aProgramStillOpenForWritingStartsOnceTheWriterClosesIt() async throws {
        let scratch = try Scratch()
        let script = try scratch.write("#!/bin/sh\nexit 7\n", to: "script")
        chmod(script, 0o755)
        let writer = open(script, O_WRONLY)
        try #require(writer >= 0)
        Thread.detachNewThread {
            usleep(30_000)
            close(writer)
        }
        let result = await (try Spawned(script, [], scratch: scratch)).wait(timeout: 10)
        #expect(result.status == 7 && !result.signaled, "\(result)")
    }
}
