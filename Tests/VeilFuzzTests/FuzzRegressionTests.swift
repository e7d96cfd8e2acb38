import Foundation
import Testing
import VeilFuzzTargets
import VeilImage
import VeilManifest
import VeilImageFormat

/// Replays every seed and every input a fuzzing run ever found (Tests/Fuzz/regressions/TARGET/)
/// through its target in the normal build: a crash here is a regression.
@Suite struct FuzzRegressionTests {
    static let regressions = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("Fuzz/regressions").path

    @Test(arguments: FuzzTarget.allCases)
    func seedsAndFoundInputsRunWithoutCrashing(_ target: FuzzTarget) throws {
        let seeds = try SeedCorpus.seeds(for: target)
        #expect(!seeds.isEmpty)
        for seed in seeds { target.run(seed) }
        for path in try SeedCorpus.files(["\(Self.regressions)/\(target.rawValue)"]) {
            target.run(Array(try Data(contentsOf: URL(fileURLWithPath: path))))
        }
    }

    /// Seeds that the first parser refuses would start the fuzzer at the surface only.
    @Test func seedsAreValidInstancesOfTheirFormats() throws {
        for seed in try SeedCorpus.seeds(for: .manifest) { _ = try Manifest.parse(seed) }
        for seed in try SeedCorpus.seeds(for: .protectedFile) {
            #expect(throws: Never.self) { try ProtectedFile.open(seed, path: "/srv/data/records.csv", secret: .init(data: [UInt8](repeating: 0x5a, count: 32))) }
        }
        for seed in try SeedCorpus.seeds(for: .tar) {
            let reader = TarReader(BytesStream(seed))
            var count = 0
            while try reader.next() != nil { count += 1 }
            #expect(count == 5)
        }
    }
}
