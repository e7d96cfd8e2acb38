import Foundation
import Testing
import VeilAttestation
import VeilCore
import VeilManifest

let measurementHex = String(repeating: "ab", count: 32)

let validManifest = """
    {
      "Packages": { "redis": { "Kind": "simulated", "Measurement": "sha256:\(measurementHex)" },
                    "signed": { "Kind": "simulated", "SignerID": "0102", "ProductID": 7, "SecurityVersion": 3 } },
      "Services": { "cache": { "Package": "redis", "MaxActivations": 2,
                    "Parameters": { "Files": { "/tls/cert.pem": "{{ pem .Secrets.cacheCert.Cert }}",
                                               "/tls/key.pem": "{{ pem .Veil.Service.Private }}" },
                                    "Env": { "PASS": "{{ hex .Secrets.pass }}" },
                                    "Argv": ["redis-server", "--x", "{{ base64 .Secrets.key }}"] } } },
      "Secrets": { "cacheCert": { "Type": "cert-ecdsa", "Size": 384, "Cert": { "Subject": { "CommonName": "cache" }, "DNSNames": ["cache"], "IPAddresses": ["127.0.0.1", "::1"] } },
                   "rsa": { "Type": "cert-rsa", "Size": 3072, "Cert": { "Subject": { "CommonName": "r" } } },
                   "ed": { "Type": "cert-ed25519", "Cert": { "Subject": { "CommonName": "e" } } },
                   "pass": { "Type": "plain", "Size": 16 },
                   "key": { "Type": "symmetric-key", "Size": 128 },
                   "token": { "Type": "plain", "UserDefined": true } },
      "Config": { "AllowSimulation": true }
    }
    """

@Suite struct ManifestParsingTests {
    @Test func parsesAValidManifest() throws {
        let manifest = try Manifest.parse(Array(validManifest.utf8))
        #expect(manifest.packages["redis"]?.enclave?.measurement == Hex.decode(measurementHex))
        #expect(manifest.packages["signed"]?.enclave?.productID == 7)
        #expect(manifest.services["cache"]?.maxActivations == 2)
        #expect(manifest.services["cache"]?.parameters.argv?.count == 3)
        #expect(manifest.secrets["cacheCert"]?.size == 384)
        #expect(manifest.secrets["ed"]?.size == 256)
        #expect(manifest.secrets["token"]?.userDefined == true)
        #expect(manifest.secrets["cacheCert"]?.certificate?.ipAddresses == ["127.0.0.1", "::1"])
        #expect(manifest.config.allowSimulation)
        #expect(manifest.raw == Array(validManifest.utf8))
    }

    @Test func reportsEveryProblemWithItsPath() throws {
        let bad = """
            {
              "Packages": { "p": { "Kind": "simulated", "Measurement": "abcd", "Colour": "red" },
                            "q": { "Kind": "sgx-ish", "Measurement": "\(measurementHex)" } },
              "Services": { "s": { "Package": "missing",
                                   "Parameters": { "Files": { "relative/path": "{{ raw .Secrets.nope }}",
                                                              "/a/../b": "x" },
                                                   "Env": { "A": "{{ pem .Secrets.pass }}", "B": "{{ raw .Secrets.cert }}" },
                                                   "Argv": [] } },
                            "t": { "Package": "p", "MaxActivations": -1,
                                   "Parameters": { "Env": { "C": "{{ shout .Secrets.pass }}", "D": "{{ raw .Secrets.pass" } } } },
              "Secrets": { "pass": { "Type": "plain", "Size": 16 },
                           "cert": { "Type": "cert-rsa", "Size": 1024, "Cert": { "Subject": { "CommonName": "c" }, "IPAddresses": ["300.1.1.1"] } },
                           "key": { "Type": "symmetric-key", "Size": 100 },
                           "weird": { "Type": "magic" } },
              "Extra": 1
            }
            """
        let error = try #require(throws: ManifestValidationError.self) { try Manifest.parse(Array(bad.utf8)) }
        let found = Set(error.problems.map(\.path))
        let expected: Set<String> = [
            "$.Extra",
            "$.Packages.p.Colour",
            "$.Packages.p.Measurement",
            "$.Packages.q.Kind",
            "$.Services.s.Package",
            "$.Services.s.Parameters.Files[\"relative/path\"]",
            "$.Services.s.Parameters.Files[\"/a/../b\"]",
            "$.Services.s.Parameters.Env.A",
            "$.Services.s.Parameters.Argv",
            "$.Services.t.MaxActivations",
            "$.Services.t.Parameters.Env.C",
            "$.Services.t.Parameters.Env.D",
            "$.Secrets.cert.Size",
            "$.Secrets.cert.Cert.IPAddresses[0]",
            "$.Secrets.key.Size",
            "$.Secrets.weird.Type",
        ]
        #expect(expected.isSubset(of: found), "missing: \(expected.subtracting(found))")
        let messages = error.problems.map(\.description).joined(separator: "\n")
        #expect(messages.contains("unknown package 'missing'"))
        #expect(messages.contains("unknown secret 'nope'"))
        #expect(messages.contains("cert-rsa size 1024 is not supported"))
        #expect(messages.contains("filter 'pem' does not apply"))
        #expect(messages.contains("unknown filter 'shout'"))
        #expect(messages.contains("unterminated"))
        // "$.Secrets.cert" is invalid (bad size), so the reference to it in Env.B is not reported twice.
        #expect(!found.contains("$.Services.s.Parameters.Env.B"))
        // Simulated packages without AllowSimulation are refused, saying how to opt in.
        #expect(messages.contains("AllowSimulation"))
    }

    @Test func rejectsNonJSONAndWrongTypes() {
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array("{not json".utf8)) }
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array("[]".utf8)) }
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(#"{"Packages": [], "Services": 3}"#.utf8)) }
        #expect(throws: ManifestValidationError.self) { try Manifest.parse([UInt8](repeating: 0x20, count: Manifest.maximumSize + 1)) }
    }

    /// A key given twice is refused: decoders disagree on which value wins, so the manifest a
    /// reviewer reads and the one the coordinator enforces could differ.
    @Test func duplicateKeysAreRefusedWithTheirPath() throws {
        let text = #"{"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurementHex)", "Debug": false, "Debug": true}}, "Services": {}, "Config": {"AllowSimulation": true}}"#
        let error = try #require(throws: ManifestValidationError.self) { try Manifest.parse(Array(text.utf8)) }
        #expect(error.problems.count == 1)
        #expect(error.problems[0].path == "$.Packages.p")
        #expect(error.problems[0].message.contains("duplicate key 'Debug'"))
        let top = #"{"Packages": {}, "Services": {}, "Services": {"x": {}}}"#
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(top.utf8)) }
    }

    @Test func strictJSONParserAcceptsRFC8259AndRefusesTheRest() throws {
        #expect(try JSONValue.parse(Array(#" {"a": [1, -2.5e3, true, false, null, "x\u00e9\ud83d\ude00\n"]} "#.utf8))
                == .object(["a": .array([.number(1), .number(-2500), .bool(true), .bool(false), .null, .string("xé😀\n")])]))
        for bad in [#"{"a": 1,}"#, #"[01]"#, #"{"a" 1}"#, "[\"\u{01}\"]", #"["\ud800"]"#, #"[1] 2"#, #"[.5]"#, #"[1e]"#, #"{'a': 1}"#, #"[NaN]"#] {
            #expect(throws: JSONParseError.self, "\(bad)") { try JSONValue.parse(Array(bad.utf8)) }
        }
        #expect(throws: JSONParseError.self) { try JSONValue.parse([0x22, 0xFF, 0x22]) }
        let deep = String(repeating: "[", count: 65) + String(repeating: "]", count: 65)
        #expect(throws: JSONParseError.self) { try JSONValue.parse(Array(deep.utf8)) }
        let fine = String(repeating: "[", count: 64) + String(repeating: "]", count: 64)
        _ = try JSONValue.parse(Array(fine.utf8))
    }

    @Test func serviceAndSecretNamesAreValidated() throws {
        for name in ["localhost", "127.0.0.1", "::1", "Cache", "web_1", "-web", "a..b", "x.localhost", String(repeating: "a", count: 64)] {
            let text = #"{"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurementHex)"}}, "Services": {"\#(name)": {"Package": "p"}}, "Config": {"AllowSimulation": true}}"#
            let error = try #require(throws: ManifestValidationError.self, "\(name)") { try Manifest.parse(Array(text.utf8)) }
            #expect(error.problems.contains { $0.path == "$.Services.\(name)" }, "\(name): \(error)")
        }
        for name in ["web", "cache-1", "db.internal", "a1"] {
            let text = #"{"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurementHex)"}}, "Services": {"\#(name)": {"Package": "p"}}, "Config": {"AllowSimulation": true}}"#
            _ = try Manifest.parse(Array(text.utf8))
        }
        let secretName = #"{"Packages": {}, "Services": {}, "Secrets": {"a.b": {"Type": "plain", "Size": 8}}}"#
        #expect(throws: ManifestValidationError.self) { try Manifest.parse(Array(secretName.utf8)) }
        let dnsName = #"{"Packages": {}, "Services": {}, "Secrets": {"c": {"Type": "cert-ecdsa", "Cert": {"Subject": {"CommonName": "c"}, "DNSNames": ["ok.example", "*.wild.example", "bad name"]}}}}"#
        let error = try #require(throws: ManifestValidationError.self) { try Manifest.parse(Array(dnsName.utf8)) }
        #expect(error.problems.map(\.path) == ["$.Secrets.c.Cert.DNSNames[2]"])
    }

    @Test func packageWithoutIdentityIsRejected() throws {
        let text = #"{"Packages": {"any": {"Kind": "simulated"}}, "Services": {}, "Config": {"AllowSimulation": true}}"#
        let error = try #require(throws: ManifestValidationError.self) { try Manifest.parse(Array(text.utf8)) }
        #expect(error.problems.contains { $0.path == "$.Packages.any" && $0.message.contains("any software would match") })
    }
}

@Suite struct PackageMatchingTests {
    let package = Package.simulated(EnclaveIdentity(measurement: [1, 2], signerID: [9], productID: 4, securityVersion: 5, allowDebug: false))

    func claims(measurement: [UInt8] = [1, 2], signer: [UInt8] = [9], product: UInt16 = 4, svn: UInt16 = 5, debug: Bool = false) -> Claims {
        Claims(tee: .simulated, measurement: measurement, signer: signer, productID: product, securityVersion: svn,
               reportData: [UInt8](repeating: 0, count: 64), debug: debug, simulated: true)
    }

    @Test func matchesAndExplainsEachMismatch() {
        #expect(package.mismatch(claims()) == nil)
        #expect(package.mismatch(claims(svn: 9)) == nil)
        #expect(package.mismatch(claims(measurement: [1, 3]))?.contains("measurement") == true)
        #expect(package.mismatch(claims(signer: [8]))?.contains("signer") == true)
        #expect(package.mismatch(claims(product: 5))?.contains("product id") == true)
        #expect(package.mismatch(claims(svn: 4))?.contains("below the package's minimum") == true)
        #expect(package.mismatch(claims(debug: true))?.contains("debug") == true)
        var sgxClaims = claims()
        sgxClaims.tee = .sgx
        #expect(package.mismatch(sgxClaims)?.contains("TEE kind") == true)
    }

    /// The typed value names the broken rule with both sides; the first rule broken wins.
    @Test func eachRuleThrowsItsOwnCase() {
        #expect(throws: PackageMismatch.measurement(reported: [1, 3], required: [1, 2])) { try package.check(claims(measurement: [1, 3])) }
        #expect(throws: PackageMismatch.signer(reported: [8], required: [9])) { try package.check(claims(signer: [8])) }
        #expect(throws: PackageMismatch.productID(reported: 5, required: 4)) { try package.check(claims(product: 5)) }
        #expect(throws: PackageMismatch.securityVersion(reported: 4, minimum: 5)) { try package.check(claims(svn: 4)) }
        #expect(throws: PackageMismatch.debug) { try package.check(claims(debug: true)) }
        #expect(throws: PackageMismatch.measurement(reported: [7], required: [1, 2])) { try package.check(claims(measurement: [7], debug: true)) }
        var sgx = claims()
        sgx.tee = .sgx
        #expect(throws: PackageMismatch.teeKind(reported: .sgx, required: .simulated)) { try package.check(sgx) }
        // Only confidential VMs' packages can pin an image (the type has no such field for enclaves).
        var td = TDIdentity(mrtd: [1, 2])
        td.imageMeasurement = [5]
        var tdClaims = claims()
        tdClaims.tee = .tdx
        #expect(throws: PackageMismatch.imageMeasurementMissing(required: [5])) { try Package.tdx(td).check(tdClaims) }
        #expect(throws: Never.self) { try package.check(claims()) }
    }
}

@Suite struct TemplateTests {
    @Test func rendersEveryFilter() throws {
        let template = try Template("a={{ raw .Secrets.p }} h={{hex .Secrets.p}} b={{ base64 .Secrets.p }} c={{ pem .Veil.RootCA.Cert }}")
        let rendered = try template.render { reference in
            switch reference {
            case .secret("p", nil): return .bytes(Array("hi".utf8))
            case .rootCACert: return .der([1, 2, 3], pemLabel: "CERTIFICATE")
            default: throw RenderError.unknownSecret("\(reference)")
            }
        }
        let text = String(decoding: try rendered.assemble(servicePrivateKeyDER: []), as: UTF8.self)
        #expect(text == "a=hi h=6869 b=aGk= c=-----BEGIN CERTIFICATE-----\nAQID\n-----END CERTIFICATE-----\n")
    }

    @Test func pkcs12NeedsAKeyOrCertificateAndASecretPassword() throws {
        let store = try Template("{{ pkcs12 .Veil.Service.Private .Secrets.pass }}")
        #expect(store.keyStores.count == 1)
        #expect(store.keyStores[0].reference == .servicePrivateKey && store.keyStores[0].password == "pass")
        #expect(try Template("{{ pkcs12 .Veil.RootCA.Cert .Secrets.pass }}").keyStores.count == 1)
        let refusals: [(String, String)] = [
            ("{{ pkcs12 .Veil.Service.Private }}", "takes what to store and its password"),
            ("{{ pkcs12 .Secrets.pass .Secrets.pass }}", "not .Secrets.pass"),
            ("{{ pkcs12 .Secrets.cert.Public .Secrets.pass }}", "not .Secrets.cert.Public"),
            ("{{ pkcs12 .Veil.Service.Private .Veil.RootCA.Cert }}", "password of 'pkcs12' is a secret"),
            ("{{ pkcs12 .Veil.Service.Private .Secrets.cert.Private }}", "password of 'pkcs12' is a secret"),
        ]
        for (source, message) in refusals {
            let error = try #require(throws: TemplateSyntaxError.self) { try Template(source) }
            #expect(error.message.contains(message), "\(source): \(error.message)")
        }
        let manifest = """
            {
              "Packages": { "p": { "Kind": "simulated", "Measurement": "\(String(repeating: "ab", count: 32))" } },
              "Services": { "s": { "Package": "p", "Parameters": { "Files": {
                  "/a": "{{ pkcs12 .Secrets.missing.Private .Secrets.pass }}",
                  "/b": "{{ pkcs12 .Secrets.pass2.Private .Secrets.pass }}",
                  "/c": "{{ pkcs12 .Veil.Service.Private .Secrets.nope }}",
                  "/d": "{{ pkcs12 .Veil.Service.Private .Secrets.cert }}",
                  "/e": "{{ pkcs12 .Secrets.cert.Private .Secrets.pass }}{{ pkcs12 .Secrets.cert.Cert .Secrets.pass }}" },
                "Env": { "STORE": "{{ pkcs12 .Veil.RootCA.Cert .Secrets.pass }}" } } } },
              "Secrets": { "pass": { "Type": "plain", "Size": 16 }, "pass2": { "Type": "plain", "Size": 16 },
                           "cert": { "Type": "cert-ecdsa", "Cert": { "Subject": { "CommonName": "c" } } } },
              "Config": { "AllowSimulation": true }
            }
            """
        let error = try #require(throws: ManifestValidationError.self) { try Manifest.parse(Array(manifest.utf8)) }
        let problems = Dictionary(grouping: error.problems, by: \.path).mapValues { $0.map(\.message).joined(separator: "; ") }
        #expect(problems.keys.sorted() == ["$.Services.s.Parameters.Files[\"/a\"]", "$.Services.s.Parameters.Files[\"/b\"]",
                                          "$.Services.s.Parameters.Files[\"/c\"]", "$.Services.s.Parameters.Files[\"/d\"]",
                                          "$.Services.s.Parameters.Env.STORE"].sorted())
        #expect(problems["$.Services.s.Parameters.Files[\"/a\"]"]?.contains("unknown secret 'missing'") == true)
        #expect(problems["$.Services.s.Parameters.Files[\"/b\"]"]?.contains("stores certificate secrets") == true)
        #expect(problems["$.Services.s.Parameters.Files[\"/c\"]"]?.contains("unknown secret 'nope'") == true)
        #expect(problems["$.Services.s.Parameters.Files[\"/d\"]"]?.contains("is a certificate") == true)
        #expect(problems["$.Services.s.Parameters.Env.STORE"]?.contains("use it in Files") == true)
    }

    @Test func aServiceKeyStoreIsLeftToTheLauncherWithItsChainAndPassword() throws {
        let template = try Template("{{ pkcs12 .Veil.Service.Private .Secrets.pass }}")
        let rendered = try template.render { reference in
            switch reference {
            case .secret("pass", nil): return .bytes([0xab, 0x01])
            case .serviceCert: return .der([0x30, 0x01, 0x01], pemLabel: "CERTIFICATE")
            case .intermediateCACert: return .der([0x30, 0x01, 0x02], pemLabel: "CERTIFICATE")
            default: throw RenderError.unknownSecret("\(reference)")
            }
        }
        #expect(rendered.pieces == [.serviceKeyStore(chain: [[0x30, 0x01, 0x01], [0x30, 0x01, 0x02]], password: Array("ab01".utf8))])
        let wire = try JSONDecoder().decode(RenderedValue.self, from: try JSONEncoder().encode(rendered))
        #expect(wire == rendered)
        let malformed = #"[{"serviceKeyStore": {"chain": [], "password": "YWIwMQ=="}}]"#
        #expect(throws: DecodingError.self) { try JSONDecoder().decode(RenderedValue.self, from: Data(malformed.utf8)) }
    }

    @Test func servicePrivateKeyIsLeftToTheLauncher() throws {
        let template = try Template("key:{{ pem .Veil.Service.Private }}:end")
        let rendered = try template.render { _ in Issue.record("nothing to resolve"); return .bytes([]) }
        #expect(rendered.pieces == [.bytes(Array("key:".utf8)), .servicePrivateKey(.pem), .bytes(Array(":end".utf8))])
        let wire = try JSONDecoder().decode(RenderedValue.self, from: try JSONEncoder().encode(rendered))
        #expect(wire == rendered)
        let text = String(decoding: try wire.assemble(servicePrivateKeyDER: [0xff]), as: UTF8.self)
        #expect(text == "key:-----BEGIN PRIVATE KEY-----\n/w==\n-----END PRIVATE KEY-----\n:end")
    }

    @Test func rejectsBadSyntax() {
        for bad in ["{{ raw }}", "{{ raw .Secrets. }}", "{{ raw .Veil.Nope }}", "{{ raw Secrets.x }}", "{{ raw .Secrets.x.Key }}", "{{", "{{ a b c }}"] {
            #expect(throws: TemplateSyntaxError.self, "\(bad)") { try Template(bad) }
        }
    }

    @Test func pemDoesNotApplyToOpaqueBytes() throws {
        let template = try Template("{{ pem .Secrets.p }}")
        #expect(throws: RenderError.self) { try template.render { _ in .bytes([1]) } }
    }
}

/// `veil manifest validate` calls out confidential-VM packages whose pins do not reach the
/// guest's software.
@Suite struct CoverageTests {
    @Test func aTDPackagePinningMRTDAloneIsCalledOut() throws {
        let mrtd = String(repeating: "11", count: 48)
        let manifest = try Manifest.parse(Array(#"""
            {"Packages": {"firmware-only": {"Kind": "tdx", "MRTD": "\#(mrtd)"},
                          "kernel": {"Kind": "tdx", "MRTD": "\#(mrtd)", "RTMR1": "\#(mrtd)", "RTMR2": "\#(mrtd)"},
                          "config": {"Kind": "tdx", "MRTD": "\#(mrtd)", "MRConfigID": "\#(mrtd)"},
                          "enclave": {"Kind": "sgx", "UniqueID": "\#(String(repeating: "22", count: 32))"}},
             "Services": {"a": {"Package": "firmware-only"}}}
            """#.utf8))
        #expect(manifest.coverageWarnings.count == 1)
        #expect(manifest.coverageWarnings.first?.contains("'firmware-only'") == true)
    }
}

/// The manifests README.md and docs/manifest.md show (each JSON block after a
/// `<!-- manifest: validated by … -->` marker) are valid as written.
@Suite struct DocumentedManifestTests {
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent()

    static func documentedManifests(in file: String) throws -> [String] {
        let text = try String(contentsOf: root.appendingPathComponent(file), encoding: .utf8)
        return text.components(separatedBy: "<!-- manifest: validated by ManifestTests.documentedManifestsAreValid -->").dropFirst().compactMap { part in
            guard let start = part.range(of: "```json\n"), let end = part.range(of: "\n```", range: start.upperBound..<part.endIndex) else { return nil }
            return String(part[start.upperBound..<end.lowerBound])
        }
    }

    @Test(arguments: ["README.md", "docs/manifest.md"])
    func documentedManifestsAreValid(_ file: String) throws {
        let manifests = try Self.documentedManifests(in: file)
        #expect(manifests.count == 1, "one marked manifest in \(file)")
        for text in manifests {
            let manifest = try Manifest.parse(Array(text.utf8))
            #expect(!manifest.packages.isEmpty && !manifest.services.isEmpty)
        }
    }
}
