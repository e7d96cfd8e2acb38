import Foundation
import Testing

/// Figures in the docs come from recorded runs: README's benchmark table is `veil-bench
/// summary docs/benchmarks` verbatim, and every record is a clean release run that names its
/// machine, commit and peers.
@Suite(.timeLimit(.minutes(2))) struct DocsTests {
    static let records = repositoryRoot + "/docs/benchmarks"
    /// Issue 26's figures, which docs/performance.md says come from scripts/build-release.sh.
    static let builtByTheReleaseScript: Set<String> = ["coordinator.json", "ha.json", "image.json", "mesh.json"]
    static let begin = "<!-- begin: veil-bench summary docs/benchmarks -->\n"
    static let end = "<!-- end: veil-bench summary -->"

    @Test func readmeBenchmarkTableIsTheRecordedRuns() async throws {
        let readme = try String(contentsOfFile: repositoryRoot + "/README.md", encoding: .utf8)
        let start = try #require(readme.range(of: Self.begin), "README has no benchmark block").upperBound
        let stop = try #require(readme.range(of: Self.end, range: start..<readme.endIndex)).lowerBound
        let rendered = try await run(veilBenchBinary, ["summary", Self.records], scratch: try Scratch())
        #expect(rendered.status == 0, "\(rendered.stderr)")
        #expect(String(readme[start..<stop]) == rendered.stdout, "README's table differs from `veil-bench summary docs/benchmarks`:\n\(rendered.stdout)")
    }

    /// docs/architecture.md names files and modules; each must exist as named.
    @Test func theArchitecturePageNamesFilesAndModulesThatExist() throws {
        let page = try String(contentsOfFile: repositoryRoot + "/docs/architecture.md", encoding: .utf8)
        let sources = try FileManager.default.subpathsOfDirectory(atPath: repositoryRoot + "/Sources")
        let files = Set(page.matches(of: /[A-Za-z+\/]+\.swift/).map { String($0.0) })
        #expect(files.count >= 6, "\(files)")
        for file in files {
            let exists = sources.contains { $0 == file || $0.hasSuffix("/" + file) } || FileManager.default.fileExists(atPath: repositoryRoot + "/" + file)
            #expect(exists, "docs/architecture.md names \(file), which is neither under Sources/ nor at the top")
        }
        let table = page.split(separator: "\n").filter { $0.hasPrefix("| Veil") }
        #expect(table.count >= 9)
        let targets = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/Sources")
        for row in table {
            let module = String(row.dropFirst(2).prefix { $0 != " " })
            #expect(targets.contains(module), "the module table lists \(module), which is not a target")
        }
    }

    /// README's module table names every Swift target under Sources/ and nothing else.
    @Test func theReadmeModuleTableIsEveryTarget() throws {
        let readme = try String(contentsOfFile: repositoryRoot + "/README.md", encoding: .utf8)
        let section = try #require(readme.range(of: "| module | job |")).upperBound
        let table = readme[section...].split(separator: "\n", omittingEmptySubsequences: false).dropFirst(2).prefix { $0.hasPrefix("| `") }
        let listed = Set(table.flatMap { row in
            String(row.dropFirst(2).prefix { $0 != "|" }).matches(of: /`([A-Za-z-]+)`/).map { String($0.1) }
        })
        let sources = try FileManager.default.contentsOfDirectory(atPath: repositoryRoot + "/Sources")
        let swiftTargets = Set(sources.filter { !$0.hasPrefix("C") && !$0.hasPrefix(".") })
        #expect(listed == swiftTargets, "README lists \(listed.subtracting(swiftTargets).sorted()) that are not targets and omits \(swiftTargets.subtracting(listed).sorted())")
    }

    @Test func everyRecordIsACleanReleaseRunWithPeersOrGoals() throws {
        let names = try FileManager.default.contentsOfDirectory(atPath: Self.records).filter { $0.hasSuffix(".json") }
        #expect(Set(names) == Set(["coordinator", "dcap", "snp", "protected", "image", "attest", "ha", "mesh", "kbs", "renewal", "encrypted"].map { $0 + ".json" }), "\(names)")
        for name in names {
            let data = try Data(contentsOf: URL(fileURLWithPath: "\(Self.records)/\(name)"))
            let record = try #require(try JSONSerialization.jsonObject(with: data) as? [String: Any], "\(name)")
            let commit = record["commit"] as? String ?? ""
            #expect(commit.count == 12 && !commit.contains("+"), "\(name): recorded at \(commit), not a clean commit")
            #expect(record["build"] as? String == "release", "\(name)")
            if Self.builtByTheReleaseScript.contains(name) {
                #expect(record["buildScript"] as? String == "scripts/build-release.sh", "\(name): not recorded from scripts/build-release.sh's build")
            }
            #expect((record["machine"] as? [String: Any])?["cores"] as? Int ?? 0 > 0, "\(name)")
            let rows = record["rows"] as? [[String: Any]] ?? []
            #expect(!rows.isEmpty, "\(name)")
            for row in rows {
                #expect(row["peerValue"] as? Double != nil || row["goal"] is String, "\(name): \(row["name"] ?? "?") has neither a peer nor a goal")
            }
        }
    }
}
