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
        #expect(kds.requests.contains("/vcek/v1/Genoa/crl"), "the product's CRL is asked for (this stub has none): \(kds.requests)")
        let offline = try await launch(auxblob: nil, coordinatorArguments: ["--kds", "none"], expecting: "carries no VCEK or VLEK")
        #expect(offline.contains("AMD KDS"), "\(offline)")
    }

    /// The coordinator fetches the product's CRL from KDS too, and checks it against AMD's ARK:
    /// a CRL issued in the name of AMD's ARK-Genoa but signed by another key (OpenSSL, here) refuses the
    /// activation rather than passing revocation unchecked.
    @Test func aCRLFromKDSNotSignedByAMDRefusesTheActivation() async throws {
        let scratch = try Scratch()
        let made = try await run("/bin/sh", ["-c", """
            set -e; cd '\(scratch.path)'
            openssl req -x509 -newkey rsa:2048 -nodes -keyout ark.key -subj '/OU=Engineering/C=US/L=Santa Clara/ST=CA/O=Advanced Micro Devices/CN=ARK-Genoa' -days 30 -out ark.pem 2>/dev/null
            touch index.txt && echo 01 > crlnumber
            printf '[ca]\\ndefault_ca=d\\n[d]\\ndatabase=index.txt\\ncrlnumber=crlnumber\\ndefault_md=sha384\\ndefault_crl_days=30\\n' > ca.cnf
            openssl ca -config ca.cnf -keyfile ark.key -cert ark.pem -gencrl -out forged.crl 2>/dev/null
            openssl crl -in forged.crl -outform DER -out forged.der
            """], scratch: scratch)
        try #require(made.status == 0, "\(made.stderr)")
        let upstream = veraison + "/upstream"
        let kds = try await KDSStub(
            scratch: scratch, product: "Genoa", report: upstream + "/outblob.bin", vcek: upstream + "/vcek.der", chain: upstream + "/chain_ask_ark_genoa.pem",
            crl: scratch.path + "/forged.der")
        try await launch(auxblob: nil, coordinatorArguments: ["--kds", kds.url], expecting: "signature does not verify with ARK-Genoa's key")
        #expect(kds.requests.contains("/vcek/v1/Genoa/crl"), "\(kds.requests)")
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
            {"Packages": {"guest": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)"}},
             "Services": {"app": {"Package": "guest"}}}
            """#)
        #expect(set.status == 0, "\(set.stderr)")

        let marker = scratch.path + "/started"
        let launch = try Spawned(
            veilBinary,
            ["launch", "--coordinator", coordinator.meshAddress, "--service", "app", "--tee", "snp", "--root-ca", coordinator.rootPath, "--", "/usr/bin/touch", marker],
            environment: ["VEIL_TSM_ROOT": tsm.root], scratch: scratch)
        let result = await launch.wait(timeout: 30)
        #expect(result.status == 125)
        #expect(result.stderr.contains(expecting), "\(result.stderr)")
        #expect(!FileManager.default.fileExists(atPath: marker), "the app must not start")
        #expect(tsm.writes(to: "inblob").count == 1 && tsm.entries.isEmpty, "the launcher wrote its report data once and removed its entry")
        return result.stderr
    }

    /// `veil run --tee snp` of a converted image in a (doubled) SEV-SNP guest: the container gets
    /// the guest's configfs-tsm directory (bind-mounted at /run/veil/tsm), never the guest
    /// device, and the launcher inside binds the image's measurement into the VM's report data.
    /// Before anything else the launcher detaches the directory and drops CAP_SYS_ADMIN (bounding
    /// set included): while its activation is in flight (slowed by a KDS that answers late),
    /// the container's PID 1 — the process the application becomes — has no report directory,
    /// no device and no way to mount one. The double serves Veraison's real report without
    /// certificates, so the coordinator fetches the VCEK and then refuses it for the key
    /// binding; what the launcher wrote to inblob shows the image was bound.
    @Test func aConvertedImageInAConfidentialVMBindsItsMeasurementAndLosesTheReportInterface() async throws {
        try #require(which("runc") != nil && which("umoci") != nil, "install runc and umoci")
        try #require(TSMDouble.available, "install python3-fusepy (scripts/install-deps.sh test); /dev/fuse is needed")
        let scratch = try Scratch()
        let upstream = veraison + "/upstream"
        let kds = try await KDSStub(scratch: scratch, product: "Genoa", report: upstream + "/outblob.bin", vcek: upstream + "/vcek.der",
                                    chain: upstream + "/chain_ask_ark_genoa.pem", delayMilliseconds: 4000)
        let coordinator = try await CoordinatorProcess(scratch: scratch, arguments: ["--kds", kds.url])
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
            {"Packages": {"guest": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(vmMeasurement)", "ImageMeasurement": "\#(imageMeasurement)"}},
             "Services": {"app": {"Package": "guest"}}}
            """#)
        try #require(set.status == 0, "\(set.stderr)")

        let double = try await TSMDouble(scratch: scratch, provider: "sev_guest", outblob: upstream + "/outblob.bin")
        let arguments = ["run", "oci:\(layout):veil", "--tee", "snp", "--coordinator", coordinator.meshAddress, "--root-ca", coordinator.rootPath,
                         "--state-dir", scratch.path + "/state"]
        let run = try Spawned(veilBinary, arguments, environment: coordinator.environment.merging(["VEIL_TSM_ROOT": double.root]) { $1 }, scratch: scratch)
        // The launcher is the container's PID 1; on the host, the process whose environment
        // names this test's coordinator and asks for the drop.
        var launcher: Int32?
        _ = await eventually(within: 30) {
            launcher = Self.process(environmentContains: ["VEIL_DROP_TEE_ACCESS=1", "VEIL_COORDINATOR=\(coordinator.meshAddress)"])
            return launcher != nil && double.writes(to: "inblob").count == 1
        }
        let pid = try #require(launcher, "no launcher process seen: \(run.stderr)")
        let status = (try? String(contentsOfFile: "/proc/\(pid)/status", encoding: .utf8)) ?? ""
        for set in ["CapBnd", "CapPrm", "CapEff"] {
            let mask = try #require(status.split(separator: "\n").first { $0.hasPrefix(set + ":") }.flatMap { UInt64($0.split(separator: "\t").last ?? "", radix: 16) })
            #expect(mask & (1 << 21) == 0, "\(set) still has CAP_SYS_ADMIN: \(String(mask, radix: 16))")
        }
        let mounts = (try? String(contentsOfFile: "/proc/\(pid)/mountinfo", encoding: .utf8)) ?? ""
        #expect(!mounts.isEmpty && !mounts.contains(" /run/veil/tsm "), "the report directory is still mounted in the container")
        #expect((try? FileManager.default.contentsOfDirectory(atPath: "/proc/\(pid)/root/run/veil/tsm")) == [], "nothing at /run/veil/tsm")
        #expect(!FileManager.default.fileExists(atPath: "/proc/\(pid)/root/dev/sev-guest"), "no guest device in the container")
        #expect(run.isRunning, "the activation was still in flight while this was checked")

        let result = await run.wait(timeout: 120)
        #expect(result.status == 125)
        #expect(result.stderr.contains("report data does not bind"), "\(result.stderr)")
        #expect(!result.stdout.contains("started"), "the app must not start")
        #expect(!result.stderr.contains("NO confidentiality"), "no simulation involved")
        let inblob = try #require(double.writes(to: "inblob").first)
        #expect(inblob.count == 128)
        #expect(inblob.suffix(64) == imageMeasurement, "the launcher bound the image it measured")
        #expect(double.entries.isEmpty, "the launcher removed its entry")

        // Not a guest: no report directory.
        let noTSM = try await coordinator.veil(arguments, environment: ["VEIL_TSM_ROOT": scratch.path + "/missing"])
        #expect(noTSM.status != 0 && noTSM.stderr.contains("is not an SEV-SNP guest"), "\(noTSM.stderr)")
        let unknown = try await coordinator.veil(["run", "oci:\(layout):veil", "--tee", "sgx", "--state-dir", scratch.path + "/state"])
        #expect(unknown.status != 0 && unknown.stderr.contains("'sgx' is none of them"), "\(unknown.stderr)")
    }

    /// The PID of a process whose initial environment holds every one of `entries`.
    static func process(environmentContains entries: [String]) -> Int32? {
        for name in (try? FileManager.default.contentsOfDirectory(atPath: "/proc")) ?? [] {
            guard let pid = Int32(name), let data = FileManager.default.contents(atPath: "/proc/\(name)/environ") else { continue }
            let variables = Set(data.split(separator: 0).map { String(decoding: $0, as: UTF8.self) })
            if entries.allSatisfy(variables.contains) { return pid }
        }
        return nil
    }
}
