import ArgumentParser
import AsyncHTTPClient
import Foundation
import VeilAttestation
import VeilCollateral
import VeilCore
import VeilLauncherCommands

struct VerifyCommand: AsyncParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "verify",
        abstract: "Verify an Intel SGX/TDX DCAP quote or an AMD SEV-SNP report and print its claims.",
        discussion: helpText("""
            Exit status 0 only when the quote verifies: PCK chain to the Intel SGX Root CA, CRLs,
            TCB info and QE identity signatures and validity at --at, QE report, quote signature,
            QE identity, TCB level. A non-UpToDate status still verifies; judge it by policy.
            Debug evidence of any TEE is refused unless --allow-debug.
            """))

    @Argument(help: ArgumentHelp("Quote or SNP report file (binary).", valueName: "quote")) var quote: String
    @Option(help: ArgumentHelp(
        "DCAP collateral: JSON file, a directory holding QUOTE_collateral.json or collateral.json, or an Intel PCS / PCCS base URL (https://…).",
        valueName: "file|dir|url"))
    var collateral: String?
    @Option(help: ArgumentHelp("SNP: the VCEK certificate (DER) that signed the report.", valueName: "file")) var vcek: String?
    @Option(help: ArgumentHelp("SNP: AMD cert_chain PEM (ASK then ARK).", valueName: "file")) var chain: String?
    @Option(help: ArgumentHelp(
        "SNP: AMD product (Milan, Genoa, Turin). Default: the report's CPUID (version 3+), else the VCEK's product name.",
        valueName: "product"))
    var product: String?
    @Option(help: ArgumentHelp("SNP: AMD's CRL for the product (DER, KDS /vcek/v1/PRODUCT/crl); fetched from --kds when the certificates are.", valueName: "file"))
    var crl: String?
    @Option(help: ArgumentHelp("SNP: the VMPL the report must come from (0-3), or any.", valueName: "n|any")) var vmpl = "0"
    @Option(help: ArgumentHelp("SNP: minimum reported TCB as BOOTLOADER:TEE:SNP:MICROCODE, plus :FMC on Turin (default: any, said in the output).", valueName: "spls"))
    var minimumTCB: String?
    @Flag(help: "Accept debug evidence (SGX debug enclave, TDX debug TD, SNP guest policy allowing debug): no confidentiality.")
    var allowDebug = false
    @Option(help: ArgumentHelp(
        "CA certificate(s) (PEM) trusted for an https --collateral or --kds server besides the system's roots: a PCCS with a certificate of its own CA. Documents are still verified against Intel's and AMD's roots.",
        valueName: "file"))
    var collateralCa: String?
    @Option(help: ArgumentHelp("SNP: AMD KDS base URL used when --vcek/--chain are not given.", valueName: "url"))
    var kds = KDSClient.amdKDS
    @Option(help: ArgumentHelp("Cache for documents fetched from a PCS/PCCS (default ~/.cache/veil/pcs).", valueName: "dir"))
    var cacheDir: String?
    @Option(help: ArgumentHelp("Verification time, RFC 3339 (default: now).", valueName: "time")) var at: String?
    @Option(name: .shortAndLong, help: "Output format: text or json.") var output: OutputFormat = .text

    func run() async throws {
        guard let quoteBytes = FileManager.default.contents(atPath: quote) else { throw CommandError("cannot read quote \(quote)") }
        let time: Date
        if let at {
            guard let parsed = try? Date(at, strategy: .iso8601) else { throw ValidationError("--at '\(at)' is not an RFC 3339 time") }
            time = parsed
        } else {
            time = Date()
        }
        if vcek != nil || chain != nil || quoteBytes.count == SNPReport.size {
            try await verifySNP(Array(quoteBytes), at: time)
            return
        }
        guard let source = self.collateral else { throw ValidationError("--collateral is required for DCAP quotes") }
        let collateral: DCAPCollateral
        if source.hasPrefix("https://") || source.hasPrefix("http://") {
            let cache = cacheDir ?? ((ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.cache/veil/pcs")
            let quote: DCAPQuote
            do {
                quote = try DCAPQuote(Array(quoteBytes))
            } catch {
                throw DCAPError.malformedQuote(error)
            }
            collateral = try await withCollateralHTTP { http in
                try await PCSClient(baseURL: source, cacheDirectory: cache).collateral(for: quote, at: time, http: http)
            }
        } else {
            collateral = try loadCollateral(source)
        }
        let result = try DCAPVerifier().verify(quote: Array(quoteBytes), collateral: collateral, at: time)
        try result.claims.requireProduction(allowDebug: allowDebug)
        let fields = Self.fields(result)
        switch output {
        case .json:
            struct Output: Encodable {
                var verified = true
                var tee: String
                var status: String
                var advisoryIDs: [String]
                var platformStatus: String
                var qeStatus: String
                var debug: Bool
                var fields: [String: String]
            }
            try printJSON(Output(
                tee: result.claims.tee.rawValue, status: result.verdict.status.rawValue, advisoryIDs: result.verdict.advisoryIDs,
                platformStatus: result.platformVerdict.status.rawValue, qeStatus: result.qeVerdict.status.rawValue,
                debug: result.claims.debug, fields: Dictionary(uniqueKeysWithValues: fields)))
        case .text:
            print("quote verified: \(result.claims.tee.rawValue) (v\(result.quote.header.version))")
            print("tcb status: \(result.verdict.status.rawValue)" + (result.verdict.advisoryIDs.isEmpty ? "" : " [\(result.verdict.advisoryIDs.joined(separator: ", "))]"))
            print("  platform: \(result.platformVerdict.status.rawValue), QE: \(result.qeVerdict.status.rawValue)")
            if result.claims.debug { print("warning: DEBUG \(result.claims.tee == .sgx ? "enclave" : "TD"): no confidentiality") }
            for (name, value) in fields { print("\(name): \(value)") }
        }
    }

    /// The HTTP client for collateral servers: the shared one (system roots), or one that also
    /// trusts --collateral-ca, shut down afterwards. Trusting it only opens the connection: what
    /// it serves is verified against Intel's and AMD's roots like any collateral.
    private func withCollateralHTTP<T>(_ body: (HTTPClient) async throws -> T) async throws -> T {
        guard let collateralCa else { return try await body(CollateralHTTP.systemRoots) }
        let client: HTTPClient
        do {
            client = try CollateralHTTP.client(trusting: collateralCa)
        } catch {
            throw CommandError(error.description)
        }
        do {
            let result = try await body(client)
            try await client.shutdown()
            return result
        } catch {
            try? await client.shutdown()
            throw error
        }
    }

    private func verifySNP(_ bytes: [UInt8], at time: Date) async throws {
        let report: SNPReport
        do {
            report = try SNPReport(bytes)
        } catch {
            throw SNPError.malformedReport(error)
        }
        let requested = try self.product.map { name in
            guard let product = AMDProduct.allCases.first(where: { $0.rawValue.lowercased() == name.lowercased() }) else {
                throw ValidationError("--product must be Milan, Genoa or Turin")
            }
            return product
        }
        if let requested, let reported = report.product, requested != reported {
            throw CommandError("--product \(requested.rawValue) contradicts the report, whose CPUID is a \(reported.rawValue) chip")
        }
        let policy = try snpRequirements()
        let (product, vcekBytes, chainText, crlBytes) = try await snpEndorsement(for: report, product: requested ?? report.product)
        let requiredVMPL = policy.vmpl
        let verifier = SNPVerifier(product: product, policy: policy)
        let endorsement = try verifier.verifyChain(vcek: vcekBytes, chainPEM: chainText, crl: crlBytes, at: time)
        let (_, claims) = try verifier.verify(report: report, bytes: bytes, vcek: endorsement, at: time)
        try claims.requireProduction(allowDebug: allowDebug)
        let reported = SNPReport.TCBVersion(raw: report.reportedTCB, turin: product == .turin)
        let fields: [(String, String)] = [
            ("measurement", Hex.encode(report.measurement)), ("report_data", Hex.encode(report.reportData)),
            ("host_data", Hex.encode(report.hostData)), ("id_key_digest", Hex.encode(report.idKeyDigest)),
            ("author_key_digest", Hex.encode(report.authorKeyDigest)), ("policy", String(format: "0x%llx", report.policy.raw)),
            ("debug_allowed", "\(report.policy.debugAllowed)"), ("migration_agent_allowed", "\(report.policy.migrationAgentAllowed)"),
            ("vmpl", "\(report.vmpl)"), ("guest_svn", "\(report.guestSVN)"),
            ("reported_tcb", "\(reported)"), ("chip_id", Hex.encode(report.chipID)), ("signed_by", endorsement.key.rawValue),
        ]
        // What was not checked is said, not silently accepted.
        var notes: [String] = []
        if policy.minimumTCB == .any { notes.append("no --minimum-tcb: any firmware TCB was accepted (reported: \(reported))") }
        if !endorsement.revocationChecked { notes.append("AMD CRL not checked: pass --crl FILE (or let --kds fetch the certificates)") }
        if requiredVMPL == nil { notes.append("--vmpl any: a report from any VMPL was accepted (this one: VMPL \(report.vmpl))") }
        switch output {
        case .json:
            struct Output: Encodable {
                var verified = true; var tee = "snp"; var product: String; var debug: Bool; var revocationChecked: Bool
                var notes: [String]; var fields: [String: String]
            }
            try printJSON(Output(product: product.rawValue, debug: claims.debug, revocationChecked: endorsement.revocationChecked,
                                 notes: notes, fields: Dictionary(uniqueKeysWithValues: fields)))
        case .text:
            print("report verified: snp (v\(report.version), \(product.rawValue), \(endorsement.key.rawValue))")
            if claims.debug { print("warning: the guest policy allows debugging: no confidentiality") }
            for note in notes { print("note: \(note)") }
            for (name, value) in fields { print("\(name): \(value)") }
        }
    }

    /// The VCEK/VLEK, its chain and a CRL: from files, else fetched from AMD KDS (the CRL too).
    private func snpEndorsement(
        for report: SNPReport, product known: AMDProduct?
    ) async throws -> (product: AMDProduct, vcek: [UInt8], chain: String, crl: [UInt8]?) {
        var crlBytes = try crl.map { path -> [UInt8] in
            guard let data = FileManager.default.contents(atPath: path) else { throw CommandError("cannot read --crl \(path)") }
            return Array(data)
        }
        var product = known
        let vcekBytes: [UInt8]
        let chainText: String
        if let vcek, let chain {
            guard let data = FileManager.default.contents(atPath: vcek), let text = try? String(contentsOfFile: chain, encoding: .utf8) else {
                throw CommandError("cannot read \(vcek) or \(chain)")
            }
            (vcekBytes, chainText) = (Array(data), text)
            product = product ?? SNPEvidence.product(ofCertificate: vcekBytes)
        } else {
            guard let known = product else {
                throw ValidationError("a version \(report.version) report names no product: pass --product to fetch its certificates")
            }
            let kdsClient = KDSClient(baseURL: kds, cacheDirectory: (ProcessInfo.processInfo.environment["HOME"] ?? "/root") + "/.cache/veil/kds")
            let given = crlBytes
            (vcekBytes, chainText, crlBytes) = try await withCollateralHTTP { http in
                let (vcek, chain) = try await kdsClient.certificates(for: report, product: known, http: http)
                if let given { return (vcek, chain, given) }
                return (vcek, chain, try await kdsClient.crl(for: known, http: http))
            }
        }
        guard let product else {
            throw ValidationError("neither the report (version \(report.version)) nor the VCEK names the product: pass --product Milan|Genoa|Turin")
        }
        return (product, vcekBytes, chainText, crlBytes)
    }

    /// `--vmpl` and `--minimum-tcb` as the one SNP policy; debug is decided after, by `--allow-debug`.
    private func snpRequirements() throws -> SNPRequirements {
        var requirements = SNPRequirements(minimumTCB: .any, vmpl: nil, allowDebug: true)
        if vmpl != "any" {
            guard let level = UInt32(vmpl), level <= 3 else { throw ValidationError("--vmpl must be 0-3 or any, not '\(vmpl)'") }
            requirements.vmpl = level
        }
        if let minimumTCB {
            guard let version = SNPReport.TCBVersion(components: minimumTCB) else {
                throw ValidationError("--minimum-tcb must be BOOTLOADER:TEE:SNP:MICROCODE (plus :FMC on Turin), numbers 0-255")
            }
            requirements.minimumTCB = .atLeast(version)
        }
        return requirements
    }

    private func loadCollateral(_ collateral: String) throws -> DCAPCollateral {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: collateral, isDirectory: &isDirectory) else {
            throw CommandError("collateral \(collateral) does not exist")
        }
        var path = collateral
        if isDirectory.boolValue {
            let candidates = ["\(collateral)/\((quote as NSString).lastPathComponent)_collateral.json", "\(collateral)/collateral.json"]
            guard let found = candidates.first(where: { FileManager.default.fileExists(atPath: $0) }) else {
                throw CommandError("no collateral in \(collateral): expected \(candidates.joined(separator: " or "))")
            }
            path = found
        }
        guard let data = FileManager.default.contents(atPath: path) else { throw CommandError("cannot read \(path)") }
        return try DCAPCollateral.parseJSON(Array(data))
    }

    static func fields(_ result: DCAPResult) -> [(String, String)] {
        switch result.quote.body {
        case .sgx(let report):
            return [
                ("mrenclave", Hex.encode(report.mrEnclave)), ("mrsigner", Hex.encode(report.mrSigner)),
                ("isvprodid", "\(report.isvProdID)"), ("isvsvn", "\(report.isvSVN)"), ("cpusvn", Hex.encode(report.cpuSVN)),
                ("miscselect", String(format: "%08x", report.miscSelect)), ("attributes", Hex.encode(report.attributes)),
                ("debug", "\(report.debug)"), ("reportdata", Hex.encode(report.reportData)),
            ]
        case .td(let report):
            var fields = [
                ("mrtd", Hex.encode(report.mrTD)), ("tee_tcb_svn", Hex.encode(report.teeTCBSVN)), ("mrseam", Hex.encode(report.mrSeam)),
                ("mrsignerseam", Hex.encode(report.mrSignerSeam)), ("seam_attributes", Hex.encode(report.seamAttributes)),
                ("td_attributes", Hex.encode(report.tdAttributes)), ("xfam", Hex.encode(report.xfam)),
                ("mrconfigid", Hex.encode(report.mrConfigID)), ("mrowner", Hex.encode(report.mrOwner)),
                ("mrownerconfig", Hex.encode(report.mrOwnerConfig)),
            ]
            fields += report.rtmrs.enumerated().map { ("rtmr\($0)", Hex.encode($1)) }
            fields += [("debug", "\(report.debug)"), ("reportdata", Hex.encode(report.reportData))]
            if let svn2 = report.teeTCBSVN2 { fields.append(("tee_tcb_svn2", Hex.encode(svn2))) }
            if let service = report.mrServiceTD { fields.append(("mrservicetd", Hex.encode(service))) }
            return fields
        }
    }
}
