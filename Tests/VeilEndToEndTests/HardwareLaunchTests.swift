import Foundation
import Testing

/// `veil launch --tee snp` through a configfs-tsm directory holding Veraison's real capture
/// from a Genoa guest (outblob and auxblob exactly as the kernel served them: RFC 4122 GUIDs,
/// PEM certificates): the launcher writes its report data to inblob, sends the real evidence,
/// and the coordinator verifies it for real — and refuses it only because the recorded report
/// binds Veraison's nonce instead of this launch's key and nonce. Nothing starts.
@Suite(.timeLimit(.minutes(5))) struct HardwareLaunchTests {
    let veraison = repositoryRoot + "/../shared/testdata/attestation/veraison"

    @Test func realSNPEvidenceFlowsAndANonBindingReportIsRefused() async throws {
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let entry = scratch.path + "/tsm/veil"
        try FileManager.default.createDirectory(atPath: entry, withIntermediateDirectories: true)
        try Data("sev_guest\n".utf8).write(to: URL(fileURLWithPath: entry + "/provider"))
        try Data("1\n".utf8).write(to: URL(fileURLWithPath: entry + "/generation"))
        try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/upstream/outblob.bin")).write(to: URL(fileURLWithPath: entry + "/outblob"))
        try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/upstream/auxblob.bin")).write(to: URL(fileURLWithPath: entry + "/auxblob"))

        // MEASUREMENT (48 bytes at 0x90) of the captured report.
        let report = try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/genoa_report.bin"))
        let measurement = report[0x90..<0xC0].map { String(format: "%02x", $0) }.joined()
        let set = try await coordinator.setManifest(#"""
            {"Packages": {"guest": {"Kind": "snp", "Measurement": "\#(measurement)"}},
             "Services": {"app": {"Package": "guest"}}}
            """#)
        #expect(set.status == 0, "\(set.stderr)")

        let marker = scratch.path + "/started"
        let launch = try Spawned(
            veilBinary,
            ["launch", "--coordinator", coordinator.meshAddress, "--service", "app", "--tee", "snp", "--root-ca", coordinator.rootPath, "--", "/usr/bin/touch", marker],
            environment: ["VEIL_TSM_ROOT": scratch.path + "/tsm", "VEIL_TSM_ENTRY": "veil"], scratch: scratch)
        let result = await launch.wait(timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr.contains("report data does not bind"), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the app must not start")
        #expect((try? Data(contentsOf: URL(fileURLWithPath: entry + "/inblob")))?.count == 64, "the launcher wrote its report data")
    }

    /// `veil run --tee snp` of a converted image in a (doubled) SEV-SNP guest: the container gets
    /// the guest's configfs-tsm directory (bind-mounted at /run/veil/tsm) and device, and the
    /// launcher inside binds the image's measurement into the VM's report data. The double
    /// serves Veraison's real report, so the coordinator refuses it for the key binding; what
    /// the launcher wrote to inblob shows the image was bound.
    @Test func aConvertedImageInAConfidentialVMBindsItsMeasurement() async throws {
        try #require(which("runc") != nil && which("umoci") != nil, "install runc and umoci")
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch)
        let layout = scratch.path + "/images"
        try await buildImage(layout: layout, tag: "plain", files: ["/bin/sh"], entrypoint: ["/bin/sh", "-c", "echo started"], scratch: scratch)
        let convert = try await coordinator.veil(["image", "convert", "--from", "oci:\(layout):plain", "--to", "oci:\(layout):veil", "--service", "app", "--quiet"])
        try #require(convert.status == 0, "\(convert.stderr)")
        let snippet = try JSONSerialization.jsonObject(with: Data(convert.stdout.utf8)) as! [String: [String: [String: Any]]]
        let imageMeasurement = try #require(snippet["Packages"]?["app"]?["Measurement"] as? String)
        #expect(convert.stderr.contains("\"ImageMeasurement\": \"\(imageMeasurement)\""), "convert tells how to pin the image in a VM: \(convert.stderr)")

        let report = try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/genoa_report.bin"))
        let vmMeasurement = report[0x90..<0xC0].map { String(format: "%02x", $0) }.joined()
        let set = try await coordinator.setManifest(#"""
            {"Packages": {"guest": {"Kind": "snp", "Measurement": "\#(vmMeasurement)", "ImageMeasurement": "\#(imageMeasurement)"}},
             "Services": {"app": {"Package": "guest"}}}
            """#)
        try #require(set.status == 0, "\(set.stderr)")

        // The guest's report directory; the launcher is PID 1 in its container, so its entry is veil-1.
        let tsm = scratch.path + "/tsm", entry = tsm + "/veil-1"
        try FileManager.default.createDirectory(atPath: entry, withIntermediateDirectories: true)
        try Data("sev_guest\n".utf8).write(to: URL(fileURLWithPath: entry + "/provider"))
        try Data("1\n".utf8).write(to: URL(fileURLWithPath: entry + "/generation"))
        try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/upstream/outblob.bin")).write(to: URL(fileURLWithPath: entry + "/outblob"))
        try Data(contentsOf: URL(fileURLWithPath: "\(veraison)/upstream/auxblob.bin")).write(to: URL(fileURLWithPath: entry + "/auxblob"))
        let arguments = ["run", "oci:\(layout):veil", "--tee", "snp", "--coordinator", coordinator.meshAddress, "--root-ca", coordinator.rootPath,
                         "--state-dir", scratch.path + "/state"]
        // /dev/null stands in for /dev/sev-guest: a character device the container is given.
        let result = try await coordinator.veil(arguments, environment: ["VEIL_TSM_ROOT": tsm, "VEIL_TEE_DEVICE": "/dev/null"], timeout: 120)
        #expect(result.status == 1)
        #expect(result.stderr.contains("report data does not bind"), "\(result.stderr)")
        #expect(!result.stdout.contains("started"), "the app must not start")
        #expect(!result.stderr.contains("NO confidentiality"), "no simulation involved")
        let inblob = try Data(contentsOf: URL(fileURLWithPath: entry + "/inblob"))
        #expect(inblob.count == 64)
        #expect(inblob.suffix(32).map { String(format: "%02x", $0) }.joined() == imageMeasurement, "the launcher bound the image it measured")

        // Not a guest: no report directory, or no device.
        let noTSM = try await coordinator.veil(arguments, environment: ["VEIL_TSM_ROOT": scratch.path + "/missing", "VEIL_TEE_DEVICE": "/dev/null"])
        #expect(noTSM.status != 0 && noTSM.stderr.contains("is not an SEV-SNP guest"), "\(noTSM.stderr)")
        let noDevice = try await coordinator.veil(arguments, environment: ["VEIL_TSM_ROOT": tsm, "VEIL_TEE_DEVICE": scratch.path + "/missing"])
        #expect(noDevice.status != 0 && noDevice.stderr.contains("is not a character device"), "\(noDevice.stderr)")
        let unknown = try await coordinator.veil(["run", "oci:\(layout):veil", "--tee", "sgx", "--state-dir", scratch.path + "/state"])
        #expect(unknown.status != 0 && unknown.stderr.contains("'sgx' is none of them"), "\(unknown.stderr)")
    }
}
