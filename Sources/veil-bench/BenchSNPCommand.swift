import ArgumentParser
import Foundation
import VeilAttestation
import VeilLauncherCommands

/// SEV-SNP report verification rate against Python `cryptography` verifying the same
/// ECDSA P-384 signature with the same VCEK key, in the same run.
struct BenchSNPCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "snp", abstract: "SEV-SNP verifications per second vs Python cryptography's P-384 verification.")

    @Option(help: ArgumentHelp("Directory with snp_report_milan.bin, vcek_milan.der, ask_ark_milan.pem.", valueName: "dir"))
    var vectors = "../shared/testdata/attestation/go-sev-guest"
    @Option(help: "Verifications per measurement.") var iterations = 2000

    @OptionGroup var record: RecordOption

    func run() throws {
        guard let report = FileManager.default.contents(atPath: "\(vectors)/snp_report_milan.bin").map(Array.init),
            let vcek = FileManager.default.contents(atPath: "\(vectors)/vcek_milan.der").map(Array.init),
            let chain = try? String(contentsOfFile: "\(vectors)/ask_ark_milan.pem", encoding: .utf8)
        else { throw CommandError("cannot read the SNP vectors in \(vectors)") }
        let time = Date()
        let verifier = SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true))
        let full = try rate { _ = try verifier.verify(report: report, vcek: vcek, chainPEM: chain, at: time) }
        let verified = try verifier.verifyChain(vcek: vcek, chainPEM: chain, at: time)
        let cached = try rate {
            _ = try verifier.verify(report: try SNPReport(report), bytes: report, vcek: verified, at: time)
        }
        let python = try pythonRate()
        print("SEV-SNP report verification, \(iterations) iterations per row (\(ProcessInfo.processInfo.activeProcessorCount) cores)")
        print(String(format: "  Python cryptography, P-384 signature only   %9.0f /s", python))
        print(String(format: "  Veil, full (ARK→ASK→VCEK RSA-PSS + report)  %9.0f /s   %.2fx python", full, full / python))
        print(String(format: "  Veil, chain cached (report checks + P-384)  %9.0f /s   %.2fx python", cached, cached / python))
        var results = BenchRecord(benchmark: "snp")
        let peer = "Python cryptography, P-384 signature only"
        results.add("SNP report, full chain (ARK→ASK→VCEK) + report", full, "/s", better: .higher, peer: peer, python)
        results.add("SNP report, chain cached", cached, "/s", better: .higher, peer: peer, python)
        try record.keep(results)
    }

    private func rate(_ body: () throws -> Void) throws -> Double {
        1e6 / (try Bench.microsecondsPerCall(iterations: iterations, body))
    }

    private func pythonRate() throws -> Double {
        let script = """
            import sys, time
            from cryptography import x509
            from cryptography.hazmat.primitives import hashes
            from cryptography.hazmat.primitives.asymmetric import ec
            from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
            report = open(sys.argv[1], 'rb').read(); n = int(sys.argv[3])
            key = x509.load_der_x509_certificate(open(sys.argv[2], 'rb').read()).public_key()
            r = int.from_bytes(report[0x2A0:0x2A0 + 72], 'little'); s = int.from_bytes(report[0x2E8:0x2E8 + 72], 'little')
            sig = encode_dss_signature(r, s); data = report[:0x2A0]
            for _ in range(min(50, n)): key.verify(sig, data, ec.ECDSA(hashes.SHA384()))
            t = time.perf_counter()
            for _ in range(n): key.verify(sig, data, ec.ECDSA(hashes.SHA384()))
            print(n / (time.perf_counter() - t))
            """
        return try Bench.python(
            script, ["\(vectors)/snp_report_milan.bin", "\(vectors)/vcek_milan.der", "\(iterations)"],
            failure: "python3 with cryptography failed (pip install cryptography)")
    }
}
