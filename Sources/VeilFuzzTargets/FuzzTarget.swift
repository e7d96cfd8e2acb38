import Crypto
import Foundation
import VeilAPI
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilImage
import VeilImageFormat
import VeilJOSE
import VeilManifest
import VeilWorkloadAPI

/// Every parser that takes bytes from outside, as a libFuzzer target.
///
/// A target feeds one input to the parser and, where it parses, to what consumes the result
/// next (verification against real collateral, reading every tar member, opening a protected
/// file). Thrown errors are the expected outcome for almost every input; only a crash, a
/// sanitizer report, a hang or a leak is a finding. Each finding becomes an input under
/// `Tests/Fuzz/regressions/TARGET/`, replayed by the test suite.
public enum FuzzTarget: String, CaseIterable, Sendable {
    /// The variable that selects the target of the libFuzzer binary (veil-fuzz built with VEIL_FUZZ).
    public static let environmentVariable = VeilEnvironment.fuzzTarget

    /// SGX and TDX quotes (v3, v4, v5), verified against real Intel collateral.
    case dcapQuote = "dcap-quote"
    /// The collateral bundle (PCS JSON as Veil caches it), prepared for verification.
    case dcapCollateral = "dcap-collateral"
    /// SNP attestation reports, verified against a real VCEK chain.
    case snpReport = "snp-report"
    /// The SNP extended-report certificate table (GUID table from the host).
    case snpCertificateTable = "snp-certificate-table"
    /// The strict JSON parser (manifests, image configs, collateral).
    case json
    /// Manifests: JSON, schema, templates, cross references.
    case manifest
    /// Tar layers: headers (ustar, GNU, PAX), every member's contents.
    case tar
    /// Gzip layers through both inflate engines (zlib, igzip).
    case gzip
    /// OCI image config, index and manifest JSON.
    case ociJSON = "oci-json"
    /// Protected files: header, MAC, chunks.
    case protectedFile = "protected-file"
    /// Coordinator API request bodies; an activation's evidence goes on to the verifier.
    case apiRequest = "api-request"
    /// The state a replica reads back from disk or etcd: the envelope, the recovery data
    /// beside it, and (inside an authentic envelope) the state, its CA and manifest.
    case stateEnvelope = "state-envelope"
    /// Recovery data read back from a store, and rebuilding a key from shares under it.
    case recoveryData = "recovery-data"
    /// etcd JSON gateway answers: range, transaction, watch lines, replica registry.
    case etcdReply = "etcd-reply"
    /// The activation's certificate signing request (PEM or DER), then issuing from it.
    case activationCSR = "activation-csr"
    /// What KBS clients send: attester evidence (SNP serde, DCAP shapes, Azure SNP vTPM, verified
    /// against its real chain), `tee-pubkey` JWKs, bearer tokens, and the JCS of any JSON.
    case kbs
    /// ocicrypt layer annotations from a registry: JWEs (opened with the fixture's RSA and P-256
    /// keys), public and private options, CoCo key packets, and decryption under what they name.
    case ocicrypt
    /// What a local program sends the agent's SPIFFE Workload API: the gRPC request framing,
    /// every request message, and JWT-SVIDs (and JWT bundles) to validate.
    case workloadAPI = "workload-api"

    /// Loads the fixtures and runs every seed once, so one-time allocations (fixtures, Swift
    /// runtime metadata caches) happen before libFuzzer starts counting leaks per input.
    public func warmUp() {
        _ = Fixtures.shared
        for seed in (try? SeedCorpus.seeds(for: self)) ?? [] { run(seed) }
        run([])
    }

    /// Runs one input. Never throws: errors are the parsers' normal answer to bad bytes.
    public func run(_ data: [UInt8]) {
        switch self {
        case .dcapQuote: Self.dcapQuote(data)
        case .dcapCollateral: Self.dcapCollateral(data)
        case .snpReport: Self.snpReport(data)
        case .snpCertificateTable: _ = try? SNPEvidence.parseCertificateTable(data)
        case .json: _ = try? JSONValue.parse(data)
        case .manifest: _ = try? Manifest.parse(data)
        case .tar: Self.tar(data)
        case .gzip: Self.gzip(data)
        case .ociJSON: Self.ociJSON(data)
        case .protectedFile: Self.protectedFile(data)
        case .apiRequest: Self.apiRequest(data)
        case .stateEnvelope:
            StoredStateReader.read(data, vault: Fixtures.vault)
            StoredStateReader.read(StoredStateReader.envelope(aroundState: data, key: Fixtures.stateKey), vault: Fixtures.vault)
        case .recoveryData: Self.recoveryData(data)
        case .etcdReply: Self.etcdReply(data)
        case .activationCSR: Self.activationCSR(data)
        case .kbs: Self.kbs(data)
        case .ocicrypt: Self.ocicrypt(data)
        case .workloadAPI: Self.workloadAPI(data)
        }
    }

    // MARK: - Targets

    private static func workloadAPI(_ data: [UInt8]) {
        let message = GRPCFraming.requestMessage(data) ?? data
        _ = try? X509SVIDRequest(serializedBytes: message)
        _ = try? JWTSVIDRequest(serializedBytes: message)
        _ = try? ValidateJWTSVIDRequest(serializedBytes: message)
        let text = String(decoding: data, as: UTF8.self)
        _ = try? JWTSVIDCheck.verify(text, audience: "db", bundle: Fixtures.jwtBundle, now: Fixtures.issueTime)
        _ = try? JWTSVIDCheck.verify(Fixtures.jwtSVID, audience: "db", bundle: data, now: Fixtures.issueTime)
    }

    private static func dcapQuote(_ data: [UInt8]) {
        guard let quote = try? DCAPQuote(data), let fixtures = Fixtures.shared else { return }
        let prepared = quote.header.tee == .tdx ? fixtures.tdxCollateral : fixtures.sgxCollateral
        _ = try? DCAPVerifier().verify(data, prepared: prepared.collateral, at: prepared.time)
    }

    private static func dcapCollateral(_ data: [UInt8]) {
        guard let collateral = try? DCAPCollateral.parseJSON(data), let fixtures = Fixtures.shared else { return }
        _ = try? DCAPVerifier().verify(quote: fixtures.sgxQuote, collateral: collateral, at: fixtures.sgxCollateral.time)
    }

    private static func snpReport(_ data: [UInt8]) {
        guard let report = try? SNPReport(data), let fixtures = Fixtures.shared else { return }
        _ = try? SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true)).verify(report: report, bytes: data, vcek: fixtures.milanVCEK)
    }

    private static func tar(_ data: [UInt8]) {
        let reader = TarReader(BytesStream(data))
        var entries = 0
        while entries < 10_000, let entry = try? reader.next() {
            entries += 1
            if entry.kind == .file { try? reader.readContent { _ in } }
        }
    }

    private static func gzip(_ data: [UInt8]) {
        for engine in [GunzipStream.Engine.zlib, .isal] {
            guard let stream = try? GunzipStream(BytesStream(data), bufferSize: 4096, engine: engine) else { continue }
            var buffer = [UInt8](repeating: 0, count: 4096)
            // Inflation is bounded so a tiny bomb does not turn into a timeout report.
            var total = 0
            while total < 8 << 20, let n = try? buffer.withUnsafeMutableBytes({ try stream.read(into: $0) }), n > 0 { total += n }
        }
    }

    private static func ociJSON(_ data: [UInt8]) {
        _ = try? ImageConfig(parsing: data)
        _ = try? decode(ImageIndex.self, from: data, what: "fuzz")
        _ = try? decode(ImageManifest.self, from: data, what: "fuzz")
        _ = try? decode(ImageRunConfig.self, from: data, what: "fuzz")
    }

    private static func protectedFile(_ data: [UInt8]) {
        _ = try? ProtectedFile.open(data, path: Fixtures.protectedPath, secret: Fixtures.protectedKey)
    }

    private static func apiRequest(_ data: [UInt8]) {
        let decoder = JSONDecoder()
        let bytes = Data(data)
        _ = try? decoder.decode(API.ManifestSetRequest.self, from: bytes)
        _ = try? decoder.decode(API.SecretSetRequest.self, from: bytes)
        _ = try? decoder.decode(API.RecoverySubmission.self, from: bytes)
        _ = try? decoder.decode(API.StateKeyRequest.self, from: bytes)
        if let activation = try? decoder.decode(API.ActivationRequest.self, from: bytes) {
            _ = try? Verifier(policy: .init(allowSimulation: true, simulationKey: Fixtures.simulationKey.publicKey, allowSNP: true)).verify(activation.evidence)
        }
    }
}

extension FuzzTarget {
    private static func recoveryData(_ data: [UInt8]) {
        guard let recovery = try? RecoveryData.parse(data) else { return }
        // Shares as a submitter would send them, taken from the data's own bytes.
        _ = recovery.stateKey(from: recovery.shares.compactMap { Hex.decode($0.commitment) })
    }

    private static func etcdReply(_ data: [UInt8]) {
        _ = try? EtcdReplies.storedState(range: data, key: "/veil/state")
        _ = try? EtcdReplies.committedRevision(txn: data)
        _ = try? EtcdReplies.peers(range: data, start: "/veil/replicas/")
        for line in data.split(separator: UInt8(ascii: "\n")) { _ = EtcdReplies.watchLine(line) }
    }

    private static func kbs(_ data: [UInt8]) {
        _ = try? JWT.verified(String(decoding: data, as: UTF8.self), key: Fixtures.simulationKey.publicKey)
        guard let value = try? JSONValue.parse(data) else { return }
        _ = try? JCS.encode(value)
        _ = try? JWEPublicKey(jwk: value)
        if let kind = CoCoEvidence.kind(of: value) { _ = try? CoCoEvidence.evidence(value, kind: kind) }
        if let chain = Fixtures.shared?.milanChain { _ = try? AzureVTPMEvidence.verify(value, chain: chain, at: Fixtures.issueTime) }
    }

    private static func ocicrypt(_ data: [UInt8]) {
        let keys = Fixtures.shared?.ocicryptKeys ?? []
        _ = try? JWEDecryption.decrypt(json: data, with: keys)
        _ = try? OCICrypt.LayerKey(privateOptions: data)
        _ = try? CoCoKeyPacket(json: data).unwrap(kek: [UInt8](repeating: 0x4b, count: 32))
        guard let annotations = (try? JSONValue.parse(data))?.objectValue?.compactMapValues(\.stringValue) else { return }
        // What `veil run` reads from a layer descriptor: the resources CoCo packets name, the key.
        let descriptor = Descriptor(mediaType: MediaType.layerGzip + OCICrypt.encryptedMediaTypeSuffix, digest: BlobDigest(sha256: [UInt8](repeating: 0, count: 32)),
                                    size: 0, annotations: annotations)
        _ = try? LayerKeyring.packetResources(of: [descriptor])
        _ = try? LayerKeyring(privateKeys: keys, keyEncryptionKeys: ["default/key/1": [UInt8](repeating: 0x4b, count: 32)]).key(for: descriptor)
        guard let key = try? OCICrypt.layerKey(annotations: annotations, keys: keys) else { return }
        _ = try? OCICrypt.decrypt(layer: Array(data.prefix(256)), annotations: annotations, key: key)
    }

    private static func activationCSR(_ data: [UInt8]) {
        guard let csr = try? CertificateAuthority.parseCSR(data), let authority = Fixtures.authority else { return }
        _ = try? authority.issueServiceLeaf(publicKey: csr.publicKey, service: "app", validFor: 3600, now: Fixtures.issueTime)
    }
}

/// Real attestation material the targets verify against (from `../shared/testdata`, or the
/// directory in `VEIL_TESTDATA`), loaded once.
struct Fixtures: Sendable {
    struct Prepared: Sendable {
        let collateral: DCAPVerifier.PreparedCollateral
        let time: Date
    }

    let sgxCollateral: Prepared
    let tdxCollateral: Prepared
    let sgxQuote: [UInt8]
    let milanVCEK: SNPVerifier.VerifiedVCEK
    /// AMD's Milan ASK and ARK (PEM), for Azure's Milan vTPM evidence.
    let milanChain: String
    /// The skopeo fixture's RSA and P-256 private keys (ocicrypt layer keys).
    let ocicryptKeys: [JWEPrivateKey]

    static let protectedPath = "/srv/data/records.csv"
    static let protectedKey = SymmetricKey(data: [UInt8](repeating: 0x5a, count: 32))
    static let simulationKey = SimulationPlatformKey(privateKey: P256.Signing.PrivateKey())
    static let stateKey = SymmetricKey(data: [UInt8](repeating: 0x17, count: 32))
    /// A vault holding `stateKey` in memory (no sealing key: nothing is written to disk).
    static let vault: StateVault = {
        let vault = StateVault(directory: "/nonexistent/veil-fuzz", sealingKey: nil)
        try? vault.adopt(stateKey: stateKey)
        return vault
    }()
    static let authority = try? CertificateAuthority.generate(now: issueTime)
    static let issueTime = Date(timeIntervalSince1970: 1_790_000_000)
    /// The Workload API target's JWT bundle (one P-256 key, `kid` "k1") and an SVID it signed.
    static let jwtBundle: [UInt8] = {
        let raw = Array(simulationKey.publicKey.rawRepresentation)
        return (try? CanonicalJSON.encode(JSONValue.object(["keys": .array([.object([
            "kty": .string("EC"), "crv": .string("P-256"), "kid": .string("k1"),
            "x": .string(Base64URL.encode(raw.prefix(32))), "y": .string(Base64URL.encode(raw.suffix(32))),
        ])])]))) ?? []
    }()
    static let jwtSVID: String = (try? JWT.sign(
        claims: ["sub": .string("spiffe://fuzz.veil/service/app"), "aud": .array([.string("db")]), "exp": .number(issueTime.timeIntervalSince1970 + 300)],
        extraHeader: ["kid": .string("k1")], with: simulationKey.privateKey)) ?? ""

    static let shared: Fixtures? = {
        do {
            return try Fixtures(root: testdataRoot())
        } catch {
            FileHandle.standardError.write(Data("veil-fuzz: fixtures unavailable (\(error)); verification steps are skipped\n".utf8))
            return nil
        }
    }()

    /// `VEIL_TESTDATA`, else `../shared/testdata/attestation` from the working directory.
    static func testdataRoot() -> String {
        ProcessInfo.processInfo.environment[VeilEnvironment.testdata] ?? FileManager.default.currentDirectoryPath + "/../shared/testdata/attestation"
    }

    init(root: String) throws {
        func bytes(_ name: String) throws -> [UInt8] { Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/\(name)"))) }
        func prepared(_ collateral: String, at unix: TimeInterval) throws -> Prepared {
            let time = Date(timeIntervalSince1970: unix)
            return Prepared(collateral: try DCAPVerifier().prepare(try DCAPCollateral.parseJSON(try bytes(collateral)), at: time), time: time)
        }
        // Times from dcap-qvl/EXPECTED.json, at which the collateral is valid.
        sgxCollateral = try prepared("dcap-qvl/sgx_quote_collateral.json", at: 1_750_334_171)
        tdxCollateral = try prepared("dcap-qvl/tdx_quote_collateral.json", at: 1_750_331_763)
        sgxQuote = try bytes("dcap-qvl/sgx_quote")
        let chain = String(decoding: try bytes("virtee-sev/chain_milan.pem"), as: UTF8.self)
        milanVCEK = try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true)).verifyChain(
            vcek: try bytes("virtee-sev/vcek_milan.der"), chainPEM: chain, at: Date(timeIntervalSince1970: 1_704_067_200))
        milanChain = chain
        ocicryptKeys = try ["rsa2048-priv.pem", "ecp256-priv.pem"].map {
            try JWEPrivateKey(pem: String(decoding: try bytes("../ocicrypt/skopeo-jwe/keys/\($0)"), as: UTF8.self))
        }
    }
}
