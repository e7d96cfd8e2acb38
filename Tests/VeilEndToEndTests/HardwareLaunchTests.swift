import Foundation
import Testing

/// `veil launch --tee snp` through a configfs-tsm directory holding Veraison's real capture
/// from a Genoa guest (outblob and auxblob exactly as the kernel served them: RFC 4122 GUIDs,
/// PEM certificates): the launcher writes its report data to inblob, sends the real evidence,
/// and the coordinator verifies it for real — and refuses it only because the recorded report
/// binds Veraison's nonce instead of this launch's key and nonce. Nothing starts.
@Suite struct HardwareLaunchTests {
    let veraison = repositoryRoot + "/../shared/testdata/attestation/veraison"

    @Test func realSNPEvidenceFlowsAndANonBindingReportIsRefused() throws {
        let scratch = try Scratch()
        let coordinator = try CoordinatorProcess(scratch: scratch)
        let entry = scratch.path + "/tsm/veil"
        try FileManager.default.createDirectory(atPath: entry, withIntermediateDirectories: true)
        try Data("sev_guest\n".utf8).write(to: URL(fileURLWithPath: entry + "/provider"))
        try Data("1\n".utf8).write(to: URL(fileURLWithPath: entry + "/generation"))
        try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/upstream/outblob.bin")).write(to: URL(fileURLWithPath: entry + "/outblob"))
        try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/upstream/auxblob.bin")).write(to: URL(fileURLWithPath: entry + "/auxblob"))

        // MEASUREMENT (48 bytes at 0x90) of the captured report.
        let report = try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/genoa_report.bin"))
        let measurement = report[0x90..<0xC0].map { String(format: "%02x", $0) }.joined()
        let set = try coordinator.setManifest(#"""
            {"Packages": {"guest": {"Kind": "snp", "Measurement": "\#(measurement)"}},
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
