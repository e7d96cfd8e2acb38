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
        try await launch(auxblob: "\(veraison)/upstream/auxblob.bin")
    }

    /// The host supplied no certificates (upstream KVM's default): the launcher sends the report
    /// alone, the coordinator fetches the chip's VCEK from AMD KDS (a stub serving the real one
    /// of the captured Genoa chip) and verifies the report for real — the refusal is again the
    /// report data, so the signature verified with the fetched VCEK. Without a KDS it says so.
    @Test func anEmptyAuxblobIsVerifiedWithTheVCEKFromKDS() async throws {
        let scratch = try Scratch()
        let upstream = veraison + "/upstream"
        let kds = try await KDSStub(scratch: scratch, product: "Genoa", report: upstream + "/outblob.bin", vcek: upstream + "/vcek.der", chain: upstream + "/chain_ask_ark_genoa.pem")
        try await launch(auxblob: nil, coordinatorArguments: ["--kds", kds.url])
        #expect(kds.requests.contains("/vcek/v1/Genoa/cert_chain"), "\(kds.requests)")
        let offline = try await launch(auxblob: nil, coordinatorArguments: ["--kds", "none"], expecting: "carries no VCEK or VLEK")
        #expect(offline.contains("AMD KDS"), "\(offline)")
    }

    /// `veil launch --tee snp` through a configfs-tsm double serving Veraison's capture; the
    /// coordinator must refuse it for `expecting`. Returns the launcher's stderr.
    @discardableResult
    func launch(auxblob: String?, coordinatorArguments: [String] = [], expecting: String = "report data does not bind") async throws -> String {
        try #require(TSMDouble.available, "install python3-fusepy (scripts/install-deps.sh test); /dev/fuse is needed")
        let scratch = try Scratch()
        let coordinator = try await CoordinatorProcess(scratch: scratch, arguments: coordinatorArguments)
        let tsm = try await TSMDouble(scratch: scratch, provider: "sev_guest", outblob: "\(veraison)/upstream/outblob.bin", auxblob: auxblob)

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
            environment: ["VEIL_TSM_ROOT": tsm.root], scratch: scratch)
        let result = await launch.wait(timeout: 30)
        #expect(result.status == 1)
        #expect(result.stderr.contains(expecting), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the app must not start")
        #expect(tsm.writes(to: "inblob").count == 1 && tsm.entries.isEmpty, "the launcher wrote its report data once and removed its entry")
        return result.stderr
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

        // The guest's report directory: a kernel-like double the container gets bind-mounted.
        try #require(TSMDouble.available, "install python3-fusepy (scripts/install-deps.sh test); /dev/fuse is needed")
        let double = try await TSMDouble(
            scratch: scratch, provider: "sev_guest", outblob: "\(veraison)/upstream/outblob.bin", auxblob: "\(veraison)/upstream/auxblob.bin")
        let tsm = double.root
        let arguments = ["run", "oci:\(layout):veil", "--tee", "snp", "--coordinator", coordinator.meshAddress, "--root-ca", coordinator.rootPath,
                         "--state-dir", scratch.path + "/state"]
        // /dev/null stands in for /dev/sev-guest: a character device the container is given.
        let result = try await coordinator.veil(arguments, environment: ["VEIL_TSM_ROOT": tsm, "VEIL_TEE_DEVICE": "/dev/null"], timeout: 120)
        #expect(result.status == 1)
        #expect(result.stderr.contains("report data does not bind"), "\(result.stderr)")
        #expect(!result.stdout.contains("started"), "the app must not start")
        #expect(!result.stderr.contains("NO confidentiality"), "no simulation involved")
        let inblob = try #require(double.writes(to: "inblob").first)
        #expect(inblob.count == 128)
        #expect(inblob.suffix(64) == imageMeasurement, "the launcher bound the image it measured")
        #expect(double.entries.isEmpty, "the launcher removed its entry")

        // Not a guest: no report directory, or no device.
        let noTSM = try await coordinator.veil(arguments, environment: ["VEIL_TSM_ROOT": scratch.path + "/missing", "VEIL_TEE_DEVICE": "/dev/null"])
        #expect(noTSM.status != 0 && noTSM.stderr.contains("is not an SEV-SNP guest"), "\(noTSM.stderr)")
        let noDevice = try await coordinator.veil(arguments, environment: ["VEIL_TSM_ROOT": tsm, "VEIL_TEE_DEVICE": scratch.path + "/missing"])
        #expect(noDevice.status != 0 && noDevice.stderr.contains("is not a character device"), "\(noDevice.stderr)")
        let unknown = try await coordinator.veil(["run", "oci:\(layout):veil", "--tee", "sgx", "--state-dir", scratch.path + "/state"])
        #expect(unknown.status != 0 && unknown.stderr.contains("'sgx' is none of them"), "\(unknown.stderr)")
    }
}
