import Testing
import VeilManifest

/// `Services.X.Mesh`: what a valid mesh looks like and every way one is refused, by path.
@Suite struct MeshManifestTests {
    func manifest(cache: String, web: String = "") -> [UInt8] {
        let webMesh = web.isEmpty ? "" : #", "Mesh": \#(web)"#
        return Array(#"""
            {"Packages": {"p": {"Kind": "simulated", "Measurement": "\#(measurementHex)"}},
             "Services": {"cache": {"Package": "p", "Mesh": \#(cache)}, "web": {"Package": "p"\#(webMesh)}},
             "Config": {"AllowSimulation": true}}
            """#.utf8)
    }

    func problems(cache: String, web: String = "") throws -> [String: String] {
        let error = try #require(throws: ManifestValidationError.self) { try Manifest.parse(manifest(cache: cache, web: web)) }
        return Dictionary(error.problems.map { ($0.path, $0.message) }, uniquingKeysWith: { $0 + "; " + $1 })
    }

    @Test func parsesIngressAndEgress() throws {
        let parsed = try Manifest.parse(manifest(
            cache: #"{"Ingress": [{"Listen": "0.0.0.0:11211", "Forward": "127.0.0.1:21211", "Clients": ["web"]}]}"#,
            web: #"{"Egress": [{"Listen": "[::1]:7000", "Service": "cache", "Address": "cache.internal:11211"}]}"#))
        #expect(parsed.services["cache"]?.mesh == MeshPolicy(ingress: [.init(listen: "0.0.0.0:11211", forward: "127.0.0.1:21211", clients: ["web"])]))
        #expect(parsed.services["web"]?.mesh == MeshPolicy(egress: [.init(listen: "[::1]:7000", service: "cache", address: "cache.internal:11211")]))
        #expect(parsed.services["web"]?.mesh?.ingress.isEmpty == true)
    }

    @Test func plaintextEndsMustBeOnLoopback() throws {
        let found = try problems(
            cache: #"{"Ingress": [{"Listen": "0.0.0.0:11211", "Forward": "10.0.0.5:21211", "Clients": ["web"]}]}"#,
            web: #"{"Egress": [{"Listen": "0.0.0.0:7000", "Service": "cache", "Address": "127.0.0.1:11211"}]}"#)
        #expect(found["$.Services.cache.Mesh.Ingress[0].Forward"]?.contains("must be on loopback") == true, "\(found)")
        #expect(found["$.Services.web.Mesh.Egress[0].Listen"]?.contains("must be on loopback") == true, "\(found)")
        #expect(found.count == 2, "\(found)")
    }

    @Test func clientsAndTargetsMustBeServicesOfTheManifest() throws {
        let found = try problems(
            cache: #"{"Ingress": [{"Listen": "127.0.0.1:1", "Forward": "127.0.0.1:2", "Clients": ["web", "ghost"]}]}"#,
            web: #"{"Egress": [{"Listen": "127.0.0.1:3", "Service": "phantom", "Address": "127.0.0.1:1"}]}"#)
        #expect(found["$.Services.cache.Mesh.Ingress[0].Clients[1]"] == "unknown service 'ghost'", "\(found)")
        #expect(found["$.Services.web.Mesh.Egress[0].Service"] == "unknown service 'phantom'", "\(found)")
    }

    @Test func anIngressNeedsClientsAndAnEgressAService() throws {
        let found = try problems(
            cache: #"{"Ingress": [{"Listen": "127.0.0.1:1", "Forward": "127.0.0.1:2", "Clients": []}, {"Listen": "127.0.0.1:4", "Forward": "127.0.0.1:2"}]}"#,
            web: #"{"Egress": [{"Listen": "127.0.0.1:3", "Address": "127.0.0.1:1"}]}"#)
        #expect(found["$.Services.cache.Mesh.Ingress[0].Clients"]?.hasPrefix("required") == true, "\(found)")
        #expect(found["$.Services.cache.Mesh.Ingress[1].Clients"]?.hasPrefix("required") == true, "\(found)")
        #expect(found["$.Services.web.Mesh.Egress[0].Service"]?.hasPrefix("required") == true, "\(found)")
    }

    @Test func malformedAddressesAndDuplicateListenersAreRefused() throws {
        let found = try problems(
            cache: #"{"Ingress": [{"Listen": "127.0.0.1:70000", "Forward": "localhost", "Clients": ["web"]}, {"Listen": "::1:80", "Forward": "127.0.0.1:2", "Clients": ["web"]}, {"Listen": "127.0.0.1:5", "Forward": "127.0.0.1:2", "Clients": ["web"]}], "Egress": [{"Listen": "127.0.0.1:5", "Service": "web", "Address": "[::1:9"}]}"#)
        #expect(found["$.Services.cache.Mesh.Ingress[0].Listen"]?.contains("is not HOST:PORT") == true, "\(found)")
        #expect(found["$.Services.cache.Mesh.Ingress[0].Forward"]?.contains("is not HOST:PORT") == true, "\(found)")
        #expect(found["$.Services.cache.Mesh.Ingress[1].Listen"]?.contains("IPv6 in brackets") == true, "\(found)")
        #expect(found["$.Services.cache.Mesh.Egress[0].Listen"]?.contains("already the listener of $.Services.cache.Mesh.Ingress[2].Listen") == true, "\(found)")
        #expect(found["$.Services.cache.Mesh.Egress[0].Address"]?.contains("is not HOST:PORT") == true, "\(found)")
    }

    @Test func unknownFieldsAndWrongTypesAreRefused() throws {
        let found = try problems(cache: #"{"Ingress": {"Listen": "127.0.0.1:1"}, "Sidecar": true}"#)
        #expect(found["$.Services.cache.Mesh.Ingress"]?.contains("must be an array") == true, "\(found)")
        #expect(found["$.Services.cache.Mesh.Sidecar"] != nil, "\(found)")
    }

    @Test func hostPortParsing() {
        #expect(HostPort.parse("127.0.0.1:80")! == ("127.0.0.1", 80))
        #expect(HostPort.parse("[::1]:443")! == ("::1", 443))
        #expect(HostPort.parse("cache.internal:11211")! == ("cache.internal", 11211))
        for bad in ["", ":80", "127.0.0.1", "127.0.0.1:0", "127.0.0.1:65536", "::1:80", "[::1:80", "[1.2.3.4]:80", "host:port"] {
            #expect(HostPort.parse(bad) == nil, "\(bad)")
        }
        #expect(HostPort.isLoopback("127.8.9.10"))
        #expect(HostPort.isLoopback("::1"))
        #expect(HostPort.isLoopback("localhost"))
        #expect(!HostPort.isLoopback("0.0.0.0"))
        #expect(!HostPort.isLoopback("::"))
        #expect(!HostPort.isLoopback("localhost.example"))
    }
}
