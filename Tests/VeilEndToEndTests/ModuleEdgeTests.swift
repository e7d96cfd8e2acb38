import Foundation
import Testing

/// The module map holds: what a target imports is what it declares, and the launcher that
/// goes into every image links no image converter (tar, zlib, ISA-L).
@Suite struct ModuleEdgeTests {
    @Test func everyTargetDeclaresExactlyWhatItImports() async throws {
        let scratch = try Scratch()
        let check = try await run("/usr/bin/python3", [repositoryRoot + "/Tests/Scripts/check_dependencies.py"], scratch: scratch)
        #expect(check.status == 0, "\(check.stdout)\(check.stderr)")
        #expect(check.stdout.contains("0 difference(s)"))
    }

    /// Wire types belong to the HTTP edge: the coordinator's core takes and returns domain
    /// values, and only `HTTP/` (routes, the wire mapping, the peer client) touches `API`.
    @Test func theCoordinatorCoreUsesNoWireTypes() throws {
        let core = repositoryRoot + "/Sources/VeilCoordinator"
        let files = try #require(FileManager.default.subpathsOfDirectory(atPath: core).filter { $0.hasSuffix(".swift") })
        #expect(files.contains("HTTP/WireMapping.swift") && files.contains("Coordinator+Activation.swift"))
        var offenders: [String] = []
        for file in files where !file.hasPrefix("HTTP/") {
            let text = try String(contentsOfFile: core + "/" + file, encoding: .utf8)
            if text.contains("import VeilAPI") || text.range(of: #"(?<![A-Za-z])API\."#, options: .regularExpression) != nil { offenders.append(file) }
        }
        #expect(offenders.isEmpty, "outside HTTP/: \(offenders)")
    }

    @Test func theLauncherLinksNoCompressionLibrary() async throws {
        let scratch = try Scratch()
        let launcher = URL(fileURLWithPath: veilBinary).deletingLastPathComponent().appendingPathComponent("veil-launcher").path
        let ldd = try await run("/usr/bin/ldd", [launcher], scratch: scratch)
        #expect(ldd.status == 0 && ldd.stdout.contains("libc.so"), "\(ldd.stderr)")
        for library in ["libz.so", "libisal.so"] { #expect(!ldd.stdout.contains(library), "\(ldd.stdout)") }
        // The veil CLI converts images, so it does link them: the check above can see a link.
        let veil = try await run("/usr/bin/ldd", [veilBinary], scratch: scratch)
        #expect(veil.stdout.contains("libz.so") && veil.stdout.contains("libisal.so"), "\(veil.stdout)")
    }
}
