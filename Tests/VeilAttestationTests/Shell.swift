import Foundation
import Testing

/// Runs a bash script (the tests use it to have OpenSSL build independent test PKIs).
func runShell(_ script: String) throws {
    let process = Process()
    process.executableURL = URL(fileURLWithPath: "/bin/bash")
    process.arguments = ["-c", script]
    try process.run()
    process.waitUntilExit()
    try #require(process.terminationStatus == 0, "the script failed (is openssl installed?)")
}
