import Crypto
import Foundation
import Logging
import Testing
import VeilAttestation
@testable import VeilCoordinator
import VeilLauncher
import VeilManifest
import VeilCore

/// SGX/TDX packages in the manifest, matched against claims from the real shared quotes.
@Suite struct HardwarePackageTests {
    static let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/testdata/attestation/dcap-qvl").path
    static let sgxTime = Date(timeIntervalSince1970: 1_750_334_171)
    static let tdxTime = Date(timeIntervalSince1970: 1_750_331_763)

    static func claims(_ name: String, at time: Date) throws -> Claims {
        let quote = Array(try Data(contentsOf: URL(fileURLWithPath: "\(vectors)/\(name)")))
        let collateral = try DCAPCollateral.parseJSON(Array(try Data(contentsOf: URL(fileURLWithPath: "\(vectors)/\(name)_collateral.json"))))
        return try DCAPVerifier().verify(quote: quote, collateral: collateral, at: time).claims
    }

    func manifest(_ packages: String, config: String = "{}") throws -> Manifest {
        try Manifest.parse(Array(#"{"Packages": \#(packages), "Services": {}, "Config": \#(config)}"#.utf8))
    }

    @Test func sgxPackageMatchesTheRealQuote() async throws {
        let claims = try Self.claims("sgx_quote", at: Self.sgxTime)
        let byUniqueID = try manifest(#"{"p": {"Kind": "sgx", "UniqueID": "\#(Hex.encode(claims.measurement))"}}"#)
        #expect(byUniqueID.packages["p"]!.mismatch(claims) == nil)
        let bySigner = try manifest(#"{"p": {"Kind": "sgx", "SignerID": "\#(Hex.encode(claims.signer))", "ProductID": 0, "SecurityVersion": 0}}"#)
        #expect(bySigner.packages["p"]!.mismatch(claims) == nil)
        let newerSVN = try manifest(#"{"p": {"Kind": "sgx", "SignerID": "\#(Hex.encode(claims.signer))", "ProductID": 0, "SecurityVersion": 1}}"#)
        #expect(newerSVN.packages["p"]!.mismatch(claims)?.contains("below the package's minimum") == true)
        let other = try manifest(#"{"p": {"Kind": "sgx", "UniqueID": "\#(String(repeating: "00", count: 32))"}}"#)
        #expect(other.packages["p"]!.mismatch(claims)?.contains("measurement") == true)
        let tdx = try manifest(#"{"p": {"Kind": "tdx", "MRTD": "\#(String(repeating: "00", count: 48))"}}"#)
        #expect(tdx.packages["p"]!.mismatch(claims)?.contains("TEE kind") == true)
    }

    @Test func tdxPackageMatchesTheRealQuote() async throws {
        let claims = try Self.claims("tdx_quote", at: Self.tdxTime)
        let registers = try #require(claims.tdx)
        let exact = try manifest(
            #"{"p": {"Kind": "tdx", "MRTD": "\#(Hex.encode(claims.measurement))", "RTMR0": "\#(Hex.encode(registers.rtmrs[0]))", "MRConfigID": "\#(Hex.encode(registers.mrConfigID))"}}"#)
        #expect(exact.packages["p"]!.mismatch(claims) == nil)
        var wrong = registers.rtmrs[1]
        wrong[0] ^= 1
        let wrongRTMR = try manifest(#"{"p": {"Kind": "tdx", "MRTD": "\#(Hex.encode(claims.measurement))", "RTMR1": "\#(Hex.encode(wrong))"}}"#)
        #expect(wrongRTMR.packages["p"]!.mismatch(claims)?.contains("RTMR1") == true)
        // Claims that carry fewer registers than the package names never skip the comparison.
        var short = claims
        short.tdx?.rtmrs = Array(registers.rtmrs.prefix(2))
        let wantsRTMR3 = try manifest(#"{"p": {"Kind": "tdx", "MRTD": "\#(Hex.encode(claims.measurement))", "RTMR3": "\#(Hex.encode(registers.rtmrs[3]))"}}"#)
        #expect(wantsRTMR3.packages["p"]!.mismatch(claims) == nil)
        #expect(wantsRTMR3.packages["p"]!.mismatch(short)?.contains("no RTMR3") == true)
    }

    @Test func snpPackageVMPLIsRequiredWhenNamed() async throws {
        let report = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.vectors)/../go-sev-guest/snp_report_milan.bin")))
        let vcek = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.vectors)/../go-sev-guest/vcek_milan.der")))
        let chain = try String(contentsOfFile: "\(Self.vectors)/../go-sev-guest/ask_ark_milan.pem", encoding: .utf8)
        let claims = try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true))
            .verify(report: report, vcek: vcek, chainPEM: chain, at: try Date("2022-09-24T01:00:00Z", strategy: .iso8601)).1
        let measurement = Hex.encode(claims.measurement)
        let vmpl0 = try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)", "Debug": true, "VMPL": 0}}"#)
        #expect(vmpl0.packages["p"]!.mismatch(claims) == nil)
        let vmpl2 = try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)", "Debug": true, "VMPL": 2}}"#)
        #expect(vmpl2.packages["p"]!.mismatch(claims)?.contains("VMPL 0, the package requires VMPL 2") == true)
        #expect(throws: ManifestValidationError.self) { try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)", "VMPL": 4}}"#) }
    }

    @Test func tcbStatusMustBeAccepted() async throws {
        let claims = try Self.claims("sgx_quote", at: Self.sgxTime)
        #expect(claims.tcb?.status == .configurationAndSWHardeningNeeded)
        #expect(try manifest("{}").config.accepts(claims) == false, "default accepts UpToDate only")
        #expect(try manifest("{}", config: #"{"AcceptedTCBStatuses": ["UpToDate", "ConfigurationAndSWHardeningNeeded"]}"#).config.accepts(claims))
        #expect(try manifest("{}", config: #"{"AcceptedTCBStatuses": ["UpToDate"]}"#).config.accepts(try Self.claims("tdx_quote", at: Self.tdxTime)))
    }

    /// dcap-qvl's real SGX quote verifies to ConfigurationAndSWHardeningNeeded with
    /// INTEL-SA-00289 and INTEL-SA-00615: a package accepts it only with that status and, when it
    /// lists advisories, both of them; the Config default stays for other packages.
    @Test func aPackagesOwnTCBAcceptanceDecidesForTheRealQuote() async throws {
        let claims = try Self.claims("sgx_quote", at: Self.sgxTime)
        #expect(claims.tcb?.advisoryIDs == ["INTEL-SA-00289", "INTEL-SA-00615"])
        let unique = Hex.encode(claims.measurement)
        func refusal(_ fields: String, config: String = "{}") throws -> TCBRefusal? {
            let manifest = try manifest(#"{"p": {"Kind": "sgx", "UniqueID": "\#(unique)"\#(fields)}, "q": {"Kind": "sgx", "UniqueID": "\#(unique)"}}"#, config: config)
            #expect(manifest.tcbRefusal(of: claims, package: "q") != nil, "the package without fields of its own keeps the default")
            return manifest.tcbRefusal(of: claims, package: "p")
        }
        #expect(try refusal("") == .status(.configurationAndSWHardeningNeeded, accepted: [.upToDate]))
        let status = #", "AcceptedTCBStatuses": ["UpToDate", "ConfigurationAndSWHardeningNeeded"]"#
        #expect(try refusal(status) == nil)
        #expect(try refusal(status + #", "AcceptedAdvisories": ["INTEL-SA-00289", "INTEL-SA-00615"]"#) == nil)
        #expect(try refusal(status + #", "AcceptedAdvisories": ["INTEL-SA-00615"]"#) == .advisories(["INTEL-SA-00289"], status: .configurationAndSWHardeningNeeded))
        #expect(try refusal(status + #", "AcceptedAdvisories": []"#) == .advisories(["INTEL-SA-00289", "INTEL-SA-00615"], status: .configurationAndSWHardeningNeeded))
        #expect(try refusal(status, config: #"{"AcceptedAdvisories": ["INTEL-SA-00289"]}"#) == .advisories(["INTEL-SA-00615"], status: .configurationAndSWHardeningNeeded),
                "Config's advisories apply to a package that states only statuses")
        let defaults = try manifest(#"{"q": {"Kind": "sgx", "UniqueID": "\#(unique)"}}"#, config: #"{"AcceptedTCBStatuses": ["ConfigurationAndSWHardeningNeeded"]}"#)
        #expect(defaults.tcbRefusal(of: claims, package: "q") == nil, "Config's statuses for a package without its own")
    }

    @Test func malformedTCBAcceptanceIsListedWithItsPath() async throws {
        let text = #"""
            {"Packages": {"a": {"Kind": "sgx", "UniqueID": "\#(String(repeating: "11", count: 32))", "AcceptedTCBStatuses": ["Revoked"], "AcceptedAdvisories": ["SA-1", 5]},
                          "b": {"Kind": "tdx", "MRTD": "\#(String(repeating: "11", count: 48))", "AcceptedTCBStatuses": []},
                          "c": {"Kind": "snp", "Measurement": "\#(String(repeating: "11", count: 48))", "MinimumTCB": "any", "AcceptedTCBStatuses": ["UpToDate"]}},
             "Services": {}, "Config": {"AcceptedAdvisories": ["intel-sa-00615"]}}
            """#
        let error = try #require(throws: ManifestValidationError.self) { try Manifest.parse(Array(text.utf8)) }
        let paths = Set(error.problems.map(\.path))
        for path in ["$.Packages.a.AcceptedTCBStatuses[0]", "$.Packages.a.AcceptedAdvisories[0]", "$.Packages.a.AcceptedAdvisories[1]",
                     "$.Packages.b.AcceptedTCBStatuses", "$.Packages.c.AcceptedTCBStatuses", "$.Config.AcceptedAdvisories[0]"] {
            #expect(paths.contains(path), "\(path) in \(paths.sorted())")
        }
    }

    @Test func invalidHardwarePackagesAreListed() async throws {
        let text = #"""
            {"Packages": {"a": {"Kind": "sgx", "UniqueID": "abcd", "MRTD": "00"},
                          "b": {"Kind": "tdx", "RTMR0": "00"},
                          "c": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "00", "UniqueID": "00"}},
             "Services": {}, "Config": {"AcceptedTCBStatuses": ["Revoked", "Fine"]}}
            """#
        let error = try #require(throws: ManifestValidationError.self) { try Manifest.parse(Array(text.utf8)) }
        let paths = Set(error.problems.map(\.path))
        for expected in ["$.Packages.a.UniqueID", "$.Packages.a.MRTD", "$.Packages.b.MRTD", "$.Packages.b.RTMR0", "$.Packages.c.Measurement", "$.Packages.c.UniqueID",
                         "$.Config.AcceptedTCBStatuses[0]", "$.Config.AcceptedTCBStatuses[1]"] {
            #expect(paths.contains(expected), "missing \(expected) in \(paths)")
        }
    }

    @Test func coordinatorRunsDCAPVerificationOnActivations() async throws {
        let fixture = try Fixture()
        let claims = try Self.claims("sgx_quote", at: Self.sgxTime)
        let source = try FileDCAPCollateralSource(path: "\(Self.vectors)/sgx_quote_collateral.json")
        let dcap = DCAPEvidenceVerifier(source: source, clock: { Self.sgxTime })
        let coordinator = try await Coordinator.open(
            store: FileStateStore(directory: fixture.directory), vault: StateVault(directory: fixture.directory, sealingKey: fixture.sealingKey),
            evidenceProvider: SimulatedEvidenceProvider(key: fixture.platformKey, measurement: fixture.measurement),
            verification: .init(simulationKey: fixture.platformKey.publicKey, dcap: dcap), logger: Logger(label: "test"))
        try await coordinator.setManifest(Array(#"""
            {"Packages": {"enclave": {"Kind": "sgx", "UniqueID": "\#(Hex.encode(claims.measurement))"}},
             "Services": {"app": {"Package": "enclave"}},
             "Config": {"AcceptedTCBStatuses": ["UpToDate", "ConfigurationAndSWHardeningNeeded"]}}
            """#.utf8))
        let quote = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.vectors)/sgx_quote")))
        // The genuine quote verifies, but its report data binds no key of ours: a replayed quote.
        var (request, _) = try fixture.request(coordinator, service: "app")
        request.evidence = Evidence(format: DCAPEvidence.format, data: quote)
        await #expect(throws: CoordinatorError.evidenceRejected(.reportDataMismatch)) { try await coordinator.activate(request) }
        // A tampered quote is refused by the DCAP verifier itself.
        (request, _) = try fixture.request(coordinator, service: "app")
        var tampered = quote
        tampered[440] ^= 1
        request.evidence = Evidence(format: DCAPEvidence.format, data: tampered)
        await #expect(throws: CoordinatorError.evidenceRejected(.dcap(.quoteSignatureInvalid))) { try await coordinator.activate(request) }

        // Without a collateral source, hardware evidence is refused with the reason.
        let plain = try await fixture.coordinator()
        (request, _) = try fixture.request(plain, service: "app")
        request.evidence = Evidence(format: DCAPEvidence.format, data: quote)
        await #expect(throws: CoordinatorError.evidenceRejected(.noCollateral)) { try await plain.activate(request) }
    }

    static let snpDirectory = URL(fileURLWithPath: vectors).deletingLastPathComponent().appendingPathComponent("go-sev-guest").path

    static func snpClaims() throws -> Claims {
        let report = Array(try Data(contentsOf: URL(fileURLWithPath: "\(snpDirectory)/snp_report_milan.bin")))
        let vcek = Array(try Data(contentsOf: URL(fileURLWithPath: "\(snpDirectory)/vcek_milan.der")))
        let chain = try String(contentsOfFile: "\(snpDirectory)/ask_ark_milan.pem", encoding: .utf8)
        return try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true)).verify(report: report, vcek: vcek, chainPEM: chain).1
    }

    /// A replica with this replica's own SNP identity still needs a policy without a migration
    /// agent (and a valid one): the state key must not leave with an exported guest.
    @Test func anSNPPeerWithTheOwnIdentityMeetsThePeerPolicy() throws {
        var claims = try Self.snpClaims()
        claims.debug = false
        claims.snp?.policy &= ~(1 << 19)
        let policy = ReplicaPolicy(ownIdentity: TEEIdentity(claims), verification: VerificationPolicy(allowSNP: true))
        try policy.accept(claims, manifest: nil)
        var migratable = claims
        migratable.snp?.policy |= 1 << 18
        let error = try #require(throws: CoordinatorError.self) { try policy.accept(migratable, manifest: nil) }
        #expect("\(error)".contains("migration agent; a coordinator replica does not"), "\(error)")
        var invalid = claims
        invalid.snp?.policy &= ~(1 << 17)
        #expect(throws: CoordinatorError.self) { try policy.accept(invalid, manifest: nil) }
        // A coordinator package may allow what the own-identity rule does not.
        let allowing = try manifest(
            #"{"c": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(Hex.encode(claims.measurement))", "AllowMigrationAgent": true}}"#,
            config: #"{"CoordinatorPackages": ["c"]}"#)
        try policy.accept(migratable, manifest: allowing)
    }

    @Test func snpPackageMatchesTheRealMilanReport() async throws {
        let claims = try Self.snpClaims()
        let measurement = Hex.encode(claims.measurement)
        let allowDebug = try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)", "Debug": true}}"#)
        #expect(allowDebug.packages["p"]!.mismatch(claims) == nil)
        let noDebug = try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)"}}"#)
        #expect(noDebug.packages["p"]!.mismatch(claims)?.contains("debug") == true)
        let hostData = try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)", "Debug": true, "HostData": "\#(String(repeating: "11", count: 32))"}}"#)
        #expect(hostData.packages["p"]!.mismatch(claims)?.contains("HOST_DATA") == true)
        let tcb = try #require(claims.snp?.tcb)
        let above = try manifest(#"{"p": {"Kind": "snp", "Measurement": "\#(measurement)", "Debug": true, "MinimumTCB": {"Bootloader": \#(tcb.bootloader), "TEE": \#(tcb.tee), "SNP": \#(Int(tcb.snp) + 1), "Microcode": \#(tcb.microcode)}}}"#)
        #expect(above.packages["p"]!.mismatch(claims)?.contains("below the package's minimum") == true)
        let equal = try manifest(#"{"p": {"Kind": "snp", "Measurement": "\#(measurement)", "Debug": true, "MinimumTCB": {"Bootloader": \#(tcb.bootloader), "TEE": \#(tcb.tee), "SNP": \#(tcb.snp), "Microcode": \#(tcb.microcode)}}}"#)
        #expect(equal.packages["p"]!.mismatch(claims) == nil)
    }

    @Test func coordinatorRunsSNPVerificationOnActivations() async throws {
        let fixture = try Fixture()
        let claims = try Self.snpClaims()
        let coordinator = try await fixture.coordinator()
        try await coordinator.setManifest(Array(#"""
            {"Packages": {"guest": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(Hex.encode(claims.measurement))", "Debug": true}},
             "Services": {"app": {"Package": "guest"}}}
            """#.utf8))
        let report = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.snpDirectory)/snp_report_milan.bin")))
        let vcek = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.snpDirectory)/vcek_milan.der")))
        let chain = try String(contentsOfFile: "\(Self.snpDirectory)/ask_ark_milan.pem", encoding: .utf8)
        let body = try JSONSerialization.data(withJSONObject: [
            "report": Data(report).base64EncodedString(), "vcek": Data(vcek).base64EncodedString(), "chain": chain,
        ])
        var (request, _) = try fixture.request(coordinator, service: "app")
        request.evidence = Evidence(format: SNPEvidence.format, data: Array(body))
        // Genuine report, but it binds 01 02 03 04 05, not this CSR key and nonce.
        await #expect(throws: CoordinatorError.evidenceRejected(.reportDataMismatch)) { try await coordinator.activate(request) }
        var tampered = report
        tampered[0x90] ^= 1
        let tamperedBody = try JSONSerialization.data(withJSONObject: [
            "report": Data(tampered).base64EncodedString(), "vcek": Data(vcek).base64EncodedString(), "chain": chain,
        ])
        (request, _) = try fixture.request(coordinator, service: "app")
        request.evidence = Evidence(format: SNPEvidence.format, data: Array(tamperedBody))
        await #expect(throws: CoordinatorError.evidenceRejected(.snp(.signatureInvalid(.vcek)))) { try await coordinator.activate(request) }
    }

    /// A KBS service whose package pins an image is selected only by evidence whose runtime
    /// data names that image (`veil run` in a confidential VM): the report data's tail, a part
    /// of the runtime-data hash, never counts, and CoCo's attesters, naming none, do not match.
    @Test func aKBSServicePinningAnImageIsSelectedOnlyByRuntimeDataNamingIt() throws {
        var claims = try Self.snpClaims()
        let image = Array(SHA256.hash(data: Array("the encrypted image".utf8)))
        let withKBS = try Manifest.parse(Array(#"""
            {"Packages": {"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(Hex.encode(claims.measurement))", "Debug": true,
                                "ImageMeasurement": "\#(Hex.encode(image))"}},
             "Services": {"cache": {"Package": "p", "KBS": {"Resources": {}}}}}
            """#.utf8))
        claims.reportData = Array(claims.reportData.prefix(32)) + image
        claims.imageBinding = .runtimeData(nil)
        #expect(throws: KBSError.self) { try Coordinator.kbsService(for: claims, in: withKBS) }
        claims.imageBinding = .runtimeData(image)
        #expect(try Coordinator.kbsService(for: claims, in: withKBS).0 == "cache")
    }

    @Test func confidentialVMPackagesPinTheContainerImageTheLauncherBound() throws {
        var claims = try Self.snpClaims()
        let measurement = Hex.encode(claims.measurement)
        let image = Array(SHA256.hash(data: Array("the converted image".utf8)))
        let pinned = try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)", "Debug": true, "ImageMeasurement": "sha256:\#(Hex.encode(image))"}}"#)
        // The real report binds no image (its report data's second half is zero).
        #expect(claims.imageMeasurement == nil)
        #expect(pinned.packages["p"]!.mismatch(claims)?.contains("binds no container image measurement") == true)
        let keyBinding = Array(claims.reportData.prefix(32))
        claims.reportData = keyBinding + image
        #expect(claims.imageMeasurement == image)
        #expect(pinned.packages["p"]!.mismatch(claims) == nil)
        var other = image
        other[31] ^= 1
        claims.reportData = keyBinding + other
        #expect(pinned.packages["p"]!.mismatch(claims)?.contains("is not the package's") == true)
        // The VM measurement is still checked beside the image.
        let otherVM = try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(String(repeating: "00", count: 48))", "Debug": true, "ImageMeasurement": "\#(Hex.encode(other))"}}"#)
        #expect(otherVM.packages["p"]!.mismatch(claims)?.contains("measurement") == true)
        // A package without ImageMeasurement pins the VM only.
        #expect(try manifest(#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)", "Debug": true}}"#).packages["p"]!.mismatch(claims) == nil)
        // A key-broker client's report data is its runtime-data hash: its tail is no image
        // measurement; only the one named in the runtime data counts.
        claims.imageBinding = .runtimeData(nil)
        #expect(claims.imageMeasurement == nil)
        #expect(pinned.packages["p"]!.mismatch(claims)?.contains("binds no container image measurement") == true)
        claims.imageBinding = .runtimeData(image)
        #expect(claims.imageMeasurement == image)
        #expect(pinned.packages["p"]!.mismatch(claims) == nil)
        claims.imageBinding = .reportData
        // In SGX claims the same bytes are no image measurement: only a VM's launcher binds one.
        var sgx = try Self.claims("sgx_quote", at: Self.sgxTime)
        sgx.reportData = Array(sgx.reportData.prefix(32)) + image
        #expect(sgx.imageMeasurement == nil)

        let refused: [(String, String)] = [
            (#"{"p": {"Kind": "sgx", "UniqueID": "\#(Hex.encode(image))", "ImageMeasurement": "\#(Hex.encode(image))"}}"#, "$.Packages.p.ImageMeasurement"),
            (#"{"p": {"Kind": "snp", "MinimumTCB": "any", "Measurement": "\#(measurement)", "ImageMeasurement": "\#(String(repeating: "00", count: 32))"}}"#, "$.Packages.p.ImageMeasurement"),
            (#"{"p": {"Kind": "tdx", "MRTD": "\#(measurement)", "ImageMeasurement": "abcd"}}"#, "$.Packages.p.ImageMeasurement"),
        ]
        for (packages, path) in refused {
            let error = try #require(throws: ManifestValidationError.self) { try manifest(packages) }
            #expect(error.problems.map(\.path).contains(path), "\(packages): \(error.problems)")
        }
        #expect(try manifest(#"{"p": {"Kind": "tdx", "MRTD": "\#(measurement)", "ImageMeasurement": "\#(Hex.encode(image))"}}"#).packages["p"]!.imageMeasurement == image)
    }

    @Test func onlyConfidentialVMEvidenceMayBindAnImage() throws {
        let key = SimulationPlatformKey(privateKey: P256.Signing.PrivateKey())
        let verifier = Verifier(policy: .init(allowSimulation: true, simulationKey: key.publicKey))
        let provider = SimulatedEvidenceProvider(key: key, measurement: Array(SHA256.hash(data: [1])))
        let (subject, nonce) = (Array("spki".utf8), Array("nonce".utf8))
        let image = Array(SHA256.hash(data: [2]))
        _ = try verifier.verify(try provider.evidence(reportData: ReportData.binding(subject, nonce: nonce)), binding: subject, nonce: nonce)
        #expect(throws: AttestationError.reportDataMismatch) {
            try verifier.verify(try provider.evidence(reportData: ReportData.binding(subject, nonce: nonce, imageMeasurement: image)), binding: subject, nonce: nonce)
        }
        #expect(throws: AttestationError.reportDataMismatch) {
            try verifier.verify(try provider.evidence(reportData: ReportData.binding(subject, nonce: Array("other".utf8))), binding: subject, nonce: nonce)
        }
    }
}
