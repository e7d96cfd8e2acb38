import Crypto
import Foundation
import VeilAPI
import VeilAttestation
import VeilCoordinator
import VeilCore
import VeilImage
import VeilManifest
import VeilWorkloadAPI
import VeilImageFormat
import VeilJOSE
import X509

/// Seed inputs per target: the real attestation vectors of `../shared/testdata`, and small
/// valid instances of every other format made with Veil's own writers, so the fuzzer starts
/// from inputs that reach deep into each parser.
public enum SeedCorpus {
    /// Writes `directory/TARGET/seed-N` for every target; returns how many each got.
    public static func write(to directory: String) throws -> [(FuzzTarget, Int)] {
        try FuzzTarget.allCases.map { target in
            let folder = "\(directory)/\(target.rawValue)"
            try FileManager.default.createDirectory(atPath: folder, withIntermediateDirectories: true)
            let seeds = try seeds(for: target)
            for (index, seed) in seeds.enumerated() {
                try Data(seed).write(to: URL(fileURLWithPath: "\(folder)/seed-\(index)"))
            }
            return (target, seeds.count)
        }
    }

    /// Every regular file named by `paths` (directories: their files, sorted).
    public static func files(_ paths: some Sequence<String>) throws -> [String] {
        var result: [String] = []
        for path in paths {
            var isDirectory: ObjCBool = false
            guard FileManager.default.fileExists(atPath: path, isDirectory: &isDirectory) else { continue }
            if isDirectory.boolValue {
                result += try FileManager.default.contentsOfDirectory(atPath: path).sorted().map { "\(path)/\($0)" }
            } else {
                result.append(path)
            }
        }
        return result
    }

    public static func seeds(for target: FuzzTarget) throws -> [[UInt8]] {
        switch target {
        case .dcapQuote:
            return try testdata([
                "dcap-qvl/sgx_quote", "dcap-qvl/tdx_quote", "dcap-qvl/tdx_quote_outdated", "go-tdx-guest/cos113_quote.dat",
                "go-tdx-guest/v5_sample_quote.dat", "go-tdx-guest/spr_e4_quote.dat", "trustee/tdx_quote_4.dat", "trustee/occlum_quote.dat",
                "dcap-rs/sgx_v3_quote.dat",
            ])
        case .dcapCollateral:
            return try testdata(["dcap-qvl/sgx_quote_collateral.json", "dcap-qvl/tdx_quote_collateral.json", "trustee/occlum_collateral.json",
                                 "dcap-rs/sgx_v3_collateral.json"])
        case .snpReport:
            return try testdata(["virtee-sev/report_milan.bin", "veraison/genoa_report.bin", "trustee/snp_vcek_report.bin",
                                 "trustee/snp_vlek_report.bin"])
        case .snpCertificateTable:
            return [certificateTable(try testdata(["virtee-sev/vcek_milan.der", "go-sev-guest/ask_ark_milan.pem"]))]
        case .json:
            return [Array(minimalManifest.utf8)] + (try testdata(["dcap-qvl/tdx_quote_collateral.json"])) + [ociConfig, runConfig]
        case .manifest:
            return [Array(minimalManifest.utf8), Array(meshManifest.utf8)]
        case .tar:
            return [try tarArchive()]
        case .gzip:
            return [try gzip(try tarArchive()), try gzip(Array(String(repeating: "veil ", count: 2000).utf8))]
        case .ociJSON:
            return [ociConfig, runConfig, ociIndex]
        case .protectedFile:
            // Small chunks: several of them, in inputs small enough to mutate quickly.
            return try [Array("ward,cost\na,10\n".utf8), [UInt8](repeating: 7, count: 3_000)].map {
                try ProtectedFile.seal($0, path: Fixtures.protectedPath, secret: Fixtures.protectedKey, version: 3, chunkSize: 1_024)
            }
        case .apiRequest:
            let provider = SimulatedEvidenceProvider(key: Fixtures.simulationKey, measurement: Array(SHA256.hash(data: Array("app".utf8))))
            let activation = API.ActivationRequest(
                service: "app", nonce: String(repeating: "ab", count: 32), csr: "-----BEGIN CERTIFICATE REQUEST-----\nMA==\n-----END CERTIFICATE REQUEST-----\n",
                evidence: try provider.evidence(reportData: [UInt8](repeating: 1, count: 64)),
                protectedFiles: [API.ProtectedFileHeader(path: "/srv/a", header: [0, 0, 0])])
            let encoder = JSONEncoder()
            return [
                Array(try encoder.encode(activation)),
                Array(try encoder.encode(API.ManifestSetRequest(manifest: Base64Bytes(minimalManifest.utf8), secrets: ["k": [0, 1, 2]]))),
                Array(try encoder.encode(API.SecretSetRequest(value: Base64Bytes("secret".utf8)))),
            ]
        case .stateEnvelope:
            let state = try StoredStateReader.sampleState(manifest: Array(minimalManifest.utf8))
            return [state, StoredStateReader.envelope(aroundState: state, key: Fixtures.stateKey, recovery: recoveryData)]
        case .recoveryData:
            return [recoveryData]
        case .etcdReply:
            return etcdReplies
        case .kbs:
            return try kbsSeeds()
        case .ocicrypt:
            return try ocicryptSeeds()
        case .workloadAPI:
            var request = JWTSVIDRequest()
            request.audience = ["db", "cache"]
            var validate = ValidateJWTSVIDRequest()
            validate.audience = "db"
            validate.svid = Fixtures.jwtSVID
            let body: [UInt8] = try request.serializedBytes()
            let validation: [UInt8] = try validate.serializedBytes()
            return [[0, 0, 0, 0, UInt8(body.count)] + body, validation, Array(Fixtures.jwtSVID.utf8), Fixtures.jwtBundle]
        case .activationCSR:
            let key = P256.Signing.PrivateKey()
            let csr = try CertificateSigningRequest(
                version: .v1, subject: try DistinguishedName { CommonName("app") }, privateKey: .init(key), attributes: .init(),
                signatureAlgorithm: .ecdsaWithSHA256)
            let pem = try csr.serializeAsPEM()
            return [Array(pem.pemString.utf8), pem.derBytes]
        }
    }

    /// Trustee's SNP and Azure evidence, a `tee-pubkey` JWK, a token, a TDX shape.
    private static func kbsSeeds() throws -> [[UInt8]] {
        let key = P256.Signing.PrivateKey().publicKey.rawRepresentation
        let jwk = #"{"kty":"EC","crv":"P-256","alg":"ECDH-ES+A256KW","x":"\#(Base64URL.encode(key.prefix(32)))","y":"\#(Base64URL.encode(key.suffix(32)))"}"#
        let token = try JWT.sign(claims: ["tee": .string("snp"), "exp": .number(1)], extraHeader: ["x5c": .array([])], with: Fixtures.simulationKey.privateKey)
        return try testdata(["../kbs/evidence/snp/evidence.json", "../kbs/evidence/az-snp-vtpm/evidence-v1.json", "../kbs/evidence/az-snp-vtpm/evidence-v2.json"])
            + [Array(jwk.utf8), Array(token.utf8), Array(#"{"quote":"AAAA","cc_eventlog":null}"#.utf8)]
    }

    /// skopeo's layer annotations (RSA, P-256, two recipients) as objects and their decoded
    /// JWEs and public options, and CoCo's sample packet.
    private static func ocicryptSeeds() throws -> [[UInt8]] {
        let root = Fixtures.testdataRoot() + "/../ocicrypt"
        var seeds = try testdata(["../ocicrypt/coco-annotation-packet/sample_kbc_annotation.json"])
        for layout in ["enc-rsa", "enc-ec", "enc-multi"] {
            let index = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/skopeo-jwe/\(layout)/index.json"))))
            guard let digest = index["manifests"]?.arrayValue?.first?["digest"]?.stringValue else { continue }
            let manifest = try JSONValue.parse(Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/skopeo-jwe/\(layout)/blobs/sha256/\(digest.dropFirst(7))"))))
            guard let annotations = manifest["layers"]?.arrayValue?.first?["annotations"] else { continue }
            seeds.append(try CanonicalJSON.encode(annotations))
            for name in [OCICrypt.jweAnnotation, OCICrypt.publicOptionsAnnotation] {
                if let text = annotations[name]?.stringValue, let decoded = Data(base64Encoded: text) { seeds.append(Array(decoded)) }
            }
        }
        return seeds
    }

    private static func testdata(_ names: [String]) throws -> [[UInt8]] {
        let root = Fixtures.testdataRoot()
        return try names.map { Array(try Data(contentsOf: URL(fileURLWithPath: "\(root)/\($0)"))) }
    }

    /// An SNP extended-report certificate table (GUID, offset, length; zero entry last) with
    /// the VCEK and the ASK/ARK PEM.
    private static func certificateTable(_ parts: [[UInt8]]) -> [UInt8] {
        let guids = ["63da758de6644564adc5f4b93be8accd", "4ab7b379bbac4fe4a02f05aef327c782"]
        var offset = 24 * (parts.count + 1)
        var table: [UInt8] = []
        for (guid, part) in zip(guids, parts) {
            table += Hex.decode(guid)!
            table += withUnsafeBytes(of: UInt32(offset).littleEndian, Array.init) + withUnsafeBytes(of: UInt32(part.count).littleEndian, Array.init)
            offset += part.count
        }
        table += [UInt8](repeating: 0, count: 24)
        return table + parts.joined()
    }

    private static func tarArchive() throws -> [UInt8] {
        var out: [UInt8] = []
        let writer = TarWriter { out += $0 }
        try writer.writeFile(TarEntry(path: "etc/", kind: .directory, mode: 0o755), contents: [])
        try writer.writeFile(TarEntry(path: "etc/app.conf", kind: .file, mode: 0o644, size: 6), contents: Array("port=1".utf8))
        let long = String(repeating: "deep/", count: 30) + "file"
        try writer.writeFile(TarEntry(path: long, kind: .file, mode: 0o600, size: 2), contents: Array("hi".utf8))
        try writer.writeFile(TarEntry(path: "etc/link", kind: .symlink, mode: 0o777, linkTarget: "app.conf"), contents: [])
        try writer.writeFile(TarEntry(path: "etc/hard", kind: .hardlink, mode: 0o644, linkTarget: "etc/app.conf"), contents: [])
        try writer.finish()
        return out
    }

    private static func gzip(_ bytes: [UInt8]) throws -> [UInt8] {
        var out: [UInt8] = []
        let writer = try GzipWriter { out += $0 }
        try bytes.withUnsafeBytes { try writer.write($0) }
        try writer.finish()
        return out
    }

    static let minimalManifest = """
        {"Packages": {"app": {"Kind": "simulated", "Measurement": "\(String(repeating: "ab", count: 32))"}},
         "Services": {"app": {"Package": "app", "MaxActivations": 2, "ProtectedFilesKey": "k",
           "Parameters": {"Files": {"/run/a.pem": "{{ pem .Veil.Service.Cert }}", "/run/k.p12": "{{ pkcs12 .Veil.Service.Private .Secrets.p }}"},
                          "Env": {"P": "{{ hex .Secrets.p }}"}, "Argv": ["app", "{{ base64 .Secrets.k }}"]}}},
         "Secrets": {"p": {"Type": "plain", "Size": 16}, "k": {"Type": "symmetric-key", "Size": 256, "UserDefined": true},
                     "c": {"Type": "cert-ecdsa", "Cert": {"Subject": {"CommonName": "app"}, "DNSNames": ["app.example"]}}},
         "Users": {"alice": {"Certificate": "\(DCAPVerifier.intelSGXRootCAPEM.replacingOccurrences(of: "\n", with: "\\n"))", "Roles": ["r"]}},
         "Roles": {"r": {"ResourceType": "Secrets", "ResourceNames": ["k"], "Actions": ["WriteSecret"]}},
         "Config": {"AllowSimulation": true}}
        """

    static let meshManifest = """
        {"Packages": {"a": {"Kind": "simulated", "Measurement": "\(String(repeating: "cd", count: 32))"}},
         "Services": {"web": {"Package": "a", "Mesh": {"Ingress": [{"Listen": "0.0.0.0:8443", "Forward": "127.0.0.1:80", "Clients": ["api"]}]}},
                      "api": {"Package": "a", "Mesh": {"Egress": [{"Listen": "127.0.0.1:9000", "Service": "web", "Address": "web:8443"}]}}},
         "Config": {"AllowSimulation": true}}
        """

    /// Two of three shares needed; the target reads the commitments as submitted shares, so
    /// the seed reaches the key rebuild.
    static let recoveryData: [UInt8] = {
        let shares = ["a", "b", "c"].enumerated().map { index, name in
            """
            {"name": "\(name)", "keyFingerprint": "\(String(repeating: "0\(index)", count: 32))", "kind": "hpke-p256-sha256-aes256gcm",
             "encapsulatedKey": "QUJD", "ciphertext": "REVG", "commitment": "\(String(repeating: "0\(index + 1)", count: 32))"}
            """
        }
        return Array("""
            {"format": 1, "threshold": 2, "shares": [\(shares.joined(separator: ","))], "recoverers": ["\(String(repeating: "ef", count: 32))"]}
            """.utf8)
    }()

    /// etcd gateway answers as etcd 3.4 writes them (range with a value, committed and failed
    /// transactions, watch lines, the replica registry).
    static let etcdReplies: [[UInt8]] = {
        let value = Data("VEILSTATE3\n".utf8).base64EncodedString()
        let key = Data("/veil/state".utf8).base64EncodedString()
        let replica = Data("/veil/replicas/r1".utf8).base64EncodedString()
        let peer = Data(#"{"peer":"10.0.0.2:7443"}"#.utf8).base64EncodedString()
        return [
            #"{"header":{"cluster_id":"1","member_id":"2","revision":"7","raft_term":"2"},"kvs":[{"key":"\#(key)","create_revision":"2","mod_revision":"7","version":"3","value":"\#(value)"}],"count":"1"}"#,
            #"{"header":{"revision":"8"},"succeeded":true,"responses":[{"response_put":{"header":{"revision":"8"}}}]}"#,
            #"{"header":{"revision":"8"}}"#,
            #"{"result":{"header":{"revision":"9"},"created":true}}"# + "\n"
                + #"{"result":{"header":{"revision":"10"},"events":[{"kv":{"key":"\#(key)","mod_revision":"10","value":"\#(value)"}}]}}"# + "\n",
            #"{"header":{"revision":"11"},"kvs":[{"key":"\#(replica)","mod_revision":"11","value":"\#(peer)"}],"count":"1"}"#,
        ].map { Array($0.utf8) }
    }()

    static let ociConfig = Array("""
        {"architecture": "amd64", "os": "linux", "config": {"Entrypoint": ["/bin/app"], "Cmd": ["--port", "1"], "Env": ["PATH=/bin"],
         "WorkingDir": "/srv", "User": "1000:1000", "Labels": {"a": "b"}},
         "rootfs": {"type": "layers", "diff_ids": ["sha256:\(String(repeating: "0", count: 64))"]}}
        """.utf8)

    static let ociIndex = Array("""
        {"schemaVersion": 2, "manifests": [{"mediaType": "application/vnd.oci.image.manifest.v1+json",
         "digest": "sha256:\(String(repeating: "1", count: 64))", "size": 500, "annotations": {"org.opencontainers.image.ref.name": "v1"}}]}
        """.utf8)

    static let runConfig = Array("""
        {"service": "app", "command": ["/bin/app"], "env": ["A=1"], "workingDir": "/", "user": "app",
         "protectedFiles": [{"path": "/srv/m", "stored": "/veil/protected/srv/m.vpf", "plaintext": "/run/veil/protected/srv/m", "mode": 420}]}
        """.utf8)
}
