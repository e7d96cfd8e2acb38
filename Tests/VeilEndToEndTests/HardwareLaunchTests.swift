import Foundation
import Testing

/// `veil launch --tee snp` through a configfs-tsm directory double holding AMD's real Milan
/// report and certificates: the launcher writes its report data to inblob, sends the real
/// evidence, and the coordinator verifies it for real — and refuses it, because the recorded
/// report binds 01 02 03 04 05 instead of this launch's key and nonce. Nothing starts.
@Suite struct HardwareLaunchTests {
    let snp = repositoryRoot + "/../shared/testdata/attestation/go-sev-guest"

    func der(fromPEM text: String) -> [[UInt8]] {
        text.components(separatedBy: "-----END CERTIFICATE-----").compactMap { block in
            guard let start = block.range(of: "-----BEGIN CERTIFICATE-----") else { return nil }
            return Data(base64Encoded: block[start.upperBound...].filter { !$0.isWhitespace }).map(Array.init)
        }
    }

    /// SEV certificate table: (GUID, offset, length) entries, zero terminator, then the certificates.
    func certificateTable(vcek: [UInt8], ask: [UInt8], ark: [UInt8]) -> [UInt8] {
        let guids = [
            "8d75da6364e66445adc5f4b93be8accd", "a406b4c003a852499743 3fb6014cd0ae".replacingOccurrences(of: " ", with: ""),
            "79b3b74aacbbe44fa02f05aef327c782",
        ]
        let certificates = [vcek, ask, ark]
        var header: [UInt8] = []
        var payload: [UInt8] = []
        for (guid, certificate) in zip(guids, certificates) {
            let offset = UInt32(4 * 24 + payload.count)
            let guidBytes = stride(from: 0, to: 32, by: 2).map { UInt8(guid[guid.index(guid.startIndex, offsetBy: $0)...].prefix(2), radix: 16)! }
            header += guidBytes + withUnsafeBytes(of: offset.littleEndian, Array.init) + withUnsafeBytes(of: UInt32(certificate.count).littleEndian, Array.init)
            payload += certificate
        }
        return header + [UInt8](repeating: 0, count: 24) + payload
    }

    @Test func realSNPEvidenceFlowsAndANonBindingReportIsRefused() throws {
        let scratch = try Scratch()
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let chain = der(fromPEM: try String(contentsOfFile: "\(snp)/ask_ark_milan.pem", encoding: .utf8))
        let vcek = Array(try Data(contentsOf: URL(fileURLWithPath: "\(snp)/vcek_milan.der")))
        let entry = scratch.path + "/tsm/veil"
        try FileManager.default.createDirectory(atPath: entry, withIntermediateDirectories: true)
        try Data("sev_guest\n".utf8).write(to: URL(fileURLWithPath: entry + "/provider"))
        try Data("1\n".utf8).write(to: URL(fileURLWithPath: entry + "/generation"))
        try Data(contentsOf: URL(fileURLWithPath: "\(snp)/snp_report_milan.bin")).write(to: URL(fileURLWithPath: entry + "/outblob"))
        try Data(certificateTable(vcek: vcek, ask: chain[0], ark: chain[1])).write(to: URL(fileURLWithPath: entry + "/auxblob"))

        let measurement = "b07af9620f3b839b47996422ddec6058338951d984e312115131ea82705eaf5b6bdf8a9ece31a5a608eb0cf2e4872b01"
        let set = try coordinator.setManifest(#"""
            {"Packages": {"guest": {"Kind": "snp", "Measurement": "\#(measurement)", "Debug": true}},
             "Services": {"app": {"Package": "guest"}}}
            """#)
        #expect(set.status == 0, "\(set.stderr)")

        let marker = scratch.path + "/started"
        let launch = try Spawned(
            veilBinary,
            ["launch", "--coordinator", coordinator.meshAddress, "--service", "app", "--tee", "snp", "--root-ca", coordinator.rootPath, "--", "/usr/bin/touch", marker],
            environment: ["VEIL_TSM_ROOT": scratch.path + "/tsm", "VEIL_TSM_ENTRY": "veil"], scratch: scratch)
        let result = launch.wait(timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr.contains("report data does not bind"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the app must not start")
        #expect((try? Data(contentsOf: URL(fileURLWithPath: entry + "/inblob")))?.count == 64, "the launcher wrote its report data")
    }
}
