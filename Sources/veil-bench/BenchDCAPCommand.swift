import ArgumentParser
import Crypto
import Foundation
import VeilAttestation
import VeilLauncherCommands

/// Times DCAP quote verification against dcap-qvl (the reference verifier, PyPI, Rust core)
/// on the same quote and collateral, one process each, in the same run.
struct BenchDCAPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "dcap", abstract: "Veil's DCAP verification vs dcap-qvl on the same quotes (needs `pip install dcap-qvl==0.7.0`).")

    @Option(help: ArgumentHelp("Directory with the shared vectors (QUOTE, QUOTE_collateral.json, EXPECTED.json).", valueName: "dir"))
    var vectors = "../shared/testdata/attestation/dcap-qvl"
    @Option(help: "Verifications per measurement.") var iterations = 2000

    @OptionGroup var record: RecordOption

    func run() throws {
        var results = BenchRecord(benchmark: "dcap")
        struct Expected: Decodable { var collateral: String; var verify_at_unix: Int; var status: String? }
        guard let data = FileManager.default.contents(atPath: vectors + "/EXPECTED.json"),
            let expected = try? JSONDecoder().decode([String: Expected].self, from: data)
        else { throw CommandError("cannot read \(vectors)/EXPECTED.json") }
        print("DCAP verification, \(iterations) iterations per row, one process each (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
        print("quote          dcap-qvl µs   veil full µs   ratio   veil cached µs   ratio")
        for name in expected.keys.sorted() where expected[name]?.status != nil {
            let vector = expected[name]!
            guard let quote = FileManager.default.contents(atPath: "\(vectors)/\(name)").map(Array.init),
                let collateralBytes = FileManager.default.contents(atPath: "\(vectors)/\(vector.collateral)").map(Array.init)
            else { throw CommandError("cannot read \(name)") }
            let time = Date(timeIntervalSince1970: TimeInterval(vector.verify_at_unix))
            let verifier = DCAPVerifier()
            // Like dcap-qvl's loop, the collateral JSON is parsed once; every signature, chain, CRL
            // and window is checked on every iteration.
            let collateral = try DCAPCollateral.parseJSON(collateralBytes)
            let full = try measure { _ = try verifier.verify(quote: quote, collateral: collateral, at: time) }
            let prepared = try verifier.prepare(collateral, at: time)
            let cached = try measure { _ = try verifier.verify(quote, prepared: prepared, at: time) }
            let reference = try dcapQvl(quote: "\(vectors)/\(name)", collateral: "\(vectors)/\(vector.collateral)", at: vector.verify_at_unix)
            print(String(format: "%-14@ %11.1f   %12.1f   %5.2fx   %14.1f   %5.2fx", name as NSString, reference, full, full / reference, cached, cached / reference))
            results.add("DCAP `\(name)`, full verification", full, "µs", better: .lower, peer: "dcap-qvl", reference, goal: "≤ 0.5× dcap-qvl", met: full <= reference / 2)
            results.add("DCAP `\(name)`, prepared collateral", cached, "µs", better: .lower, peer: "dcap-qvl", reference, goal: "≤ 200 µs", met: cached <= 200)
        }
        print("ratio = Veil time / dcap-qvl time (goal: full <= 0.5x; cached <= 200 µs)")
        let key = P256.Signing.PrivateKey()
        let message = [UInt8](repeating: 7, count: 600)
        let signature = try key.signature(for: message)
        let ecdsa = try measure { _ = key.publicKey.isValidSignature(signature, for: message) }
        print(String(format: "one ECDSA P-256 verification (swift-crypto/BoringSSL): %.1f µs", ecdsa))
        try record.keep(results)
    }

    private func measure(_ body: () throws -> Void) throws -> Double {
        try Bench.microsecondsPerCall(iterations: iterations, body)
    }

    private func dcapQvl(quote: String, collateral: String, at unix: Int) throws -> Double {
        let script = """
            import dcap_qvl, sys, time
            q = open(sys.argv[1], 'rb').read(); c = dcap_qvl.QuoteCollateralV3.from_json(open(sys.argv[2]).read())
            t, n = int(sys.argv[3]), int(sys.argv[4])
            for _ in range(min(50, n)): dcap_qvl.verify(q, c, t)
            s = time.perf_counter()
            for _ in range(n): dcap_qvl.verify(q, c, t)
            print((time.perf_counter() - s) / n * 1e6)
            """
        return try Bench.python(
            script, [quote, collateral, "\(unix)", "\(iterations)"], failure: "dcap-qvl failed (pip install dcap-qvl==0.7.0)")
    }
}
