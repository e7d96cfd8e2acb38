import AsyncHTTPClient
import Foundation
import HTTPTypes
import Hummingbird
import NIOCore
import Synchronization
import Testing
import VeilAttestation
@testable import VeilCollateral
import VeilCore

/// The PCS client against a local server that answers like Intel PCS v4 with the shared
/// vectors' collateral (the real Intel documents, re-served; nothing is made up).
@Suite struct PCSClientTests {
    static let vectors = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
        .deletingLastPathComponent().deletingLastPathComponent().appendingPathComponent("shared/testdata/attestation/dcap-qvl").path

    static func load(_ name: String) throws -> (quote: [UInt8], collateral: [String: String]) {
        let quote = Array(try Data(contentsOf: URL(fileURLWithPath: "\(vectors)/\(name)")))
        let collateral = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: "\(vectors)/\(name)_collateral.json"))) as! [String: String]
        return (quote, collateral)
    }

    /// Serves PCS v4 paths for the SGX and TDX vectors; counts requests per path.
    final class Hits: Sendable {
        private let counts = Mutex<[String: Int]>([:])
        func add(_ path: String) { counts.withLock { $0[path, default: 0] += 1 } }
        var all: [String: Int] { counts.withLock { $0 } }
    }

    /// Runs `body` with the server's base URL, its hit counter and an HTTP client that is shut
    /// down before the server, so no keep-alive connection delays the server's shutdown.
    static func withPCS(_ body: @Sendable (String, Hits, HTTPClient) async throws -> Void) async throws {
        let sgx = try load("sgx_quote").collateral
        let tdx = try load("tdx_quote").collateral
        let hits = Hits()
        let router = Router()
        @Sendable func encoded(_ pem: String) -> String { pem.addingPercentEncoding(withAllowedCharacters: .alphanumerics) ?? "" }
        @Sendable func respond(_ path: String, body: [UInt8], chain: (String, String)?) -> Response {
            hits.add(path)
            var headers: HTTPFields = [:]
            if let chain { headers[HTTPField.Name(chain.0)!] = encoded(chain.1) }
            return Response(status: .ok, headers: headers, body: .init(byteBuffer: ByteBuffer(bytes: body)))
        }
        // The SGX vector's PCK comes from the Processor CA, the TDX vector's from the Platform CA.
        router.get("/sgx/certification/v4/pckcrl") { request, _ in
            let collateral: [String: String]
            switch request.uri.queryParameters.get("ca") {
            case "processor": collateral = sgx
            case "platform": collateral = tdx
            default: return Response(status: .notFound)
            }
            return respond("pckcrl", body: Hex.decode(collateral["pck_crl"]!)!, chain: ("SGX-PCK-CRL-Issuer-Chain", collateral["pck_crl_issuer_chain"]!))
        }
        for (tee, collateral) in [("sgx", sgx), ("tdx", tdx)] {
            router.get("/\(tee)/certification/v4/tcb") { _, _ in
                respond("\(tee)/tcb", body: Array(#"{"tcbInfo":\#(collateral["tcb_info"]!),"signature":"\#(collateral["tcb_info_signature"]!)"}"#.utf8),
                        chain: ("TCB-Info-Issuer-Chain", collateral["tcb_info_issuer_chain"]!))
            }
            router.get("/\(tee)/certification/v4/qe/identity") { _, _ in
                respond("\(tee)/qe", body: Array(#"{"enclaveIdentity":\#(collateral["qe_identity"]!),"signature":"\#(collateral["qe_identity_signature"]!)"}"#.utf8),
                        chain: ("SGX-Enclave-Identity-Issuer-Chain", collateral["qe_identity_issuer_chain"]!))
            }
        }
        router.get("/sgx/certification/v4/rootcacrl") { _, _ in respond("rootcacrl", body: Array(sgx["root_ca_crl"]!.utf8), chain: nil) }

        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(
            router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)),
            onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) })
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            let port = await iterator.next() ?? 0
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            do {
                try await body("http://127.0.0.1:\(port)", hits, http)
            } catch {
                try await http.shutdown()
                group.cancelAll()
                throw error
            }
            try await http.shutdown()
            group.cancelAll()
        }
    }

    @Test func fetchesCollateralThatVerifiesAndMatchesTheFiles() async throws {
        try await Self.withPCS { base, _, http in
            for (name, unix) in [("sgx_quote", 1_750_334_171), ("tdx_quote", 1_750_331_763)] {
                let vector = try Self.load(name)
                let quote = try DCAPQuote(vector.quote)
                let time = Date(timeIntervalSince1970: TimeInterval(unix))
                let fetched = try await PCSClient(baseURL: base).collateral(for: quote, at: time, http: http)
                let file = try DCAPCollateral.parseJSON(Array(try JSONSerialization.data(withJSONObject: vector.collateral)))
                #expect(fetched.tcbInfo == file.tcbInfo, "the signed TCB info bytes are kept exactly")
                #expect(fetched.qeIdentity == file.qeIdentity)
                #expect(fetched.pckCRL == file.pckCRL && fetched.rootCACRL == file.rootCACRL)
                let result = try DCAPVerifier().verify(quote: vector.quote, collateral: fetched, at: time)
                #expect(result.verdict.status == (name == "sgx_quote" ? .configurationAndSWHardeningNeeded : .upToDate))
            }
        }
    }

    @Test func cacheServesUntilNextUpdateThenRefetches() async throws {
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("veil-pcs-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let vector = try Self.load("sgx_quote")
        let quote = try DCAPQuote(vector.quote)
        let time = Date(timeIntervalSince1970: 1_750_334_171)
        let server = Mutex<String>("")
        try await Self.withPCS { base, hits, http in
            server.withLock { $0 = base }
            let client = PCSClient(baseURL: base, cacheDirectory: cache)
            _ = try await client.collateral(for: quote, at: time, http: http)
            _ = try await client.collateral(for: quote, at: time.addingTimeInterval(3600), http: http)
            #expect(hits.all == ["pckcrl": 1, "sgx/tcb": 1, "sgx/qe": 1, "rootcacrl": 1])
            // After the TCB info's nextUpdate (30 days later) it is fetched again.
            _ = try await client.collateral(for: quote, at: time.addingTimeInterval(31 * 86400), http: http)
            #expect(hits.all["sgx/tcb"] == 2)
        }
        // With the server gone, documents still inside their window come from the cache.
        let base = server.withLock { $0 }
        let offline = try await PCSClient(baseURL: base, cacheDirectory: cache).collateral(for: quote, at: time.addingTimeInterval(7200))
        #expect(!offline.tcbInfo.isEmpty)
    }

    @Test func errorsNameTheURL() async throws {
        let quote = try DCAPQuote(try Self.load("sgx_quote").quote)
        var client = PCSClient(baseURL: "http://127.0.0.1:9")
        client.timeout = .seconds(1)
        let unreachable = client
        do {
            _ = try await unreachable.collateral(for: quote)
            Issue.record("an unreachable PCS must fail")
        } catch let error as PCSClient.FetchError {
            #expect("\(error)".contains("127.0.0.1:9/sgx/certification/v4/pckcrl"))
        }
        try await Self.withPCS { base, _, http in
            let error = await #expect(throws: PCSClient.FetchError.self) {
                _ = try await PCSClient(baseURL: base + "/nope").collateral(for: quote, http: http)
            }
            #expect("\(error!)".contains("/nope/sgx/certification/v4/pckcrl"))
        }
    }

    @Test func rawValueKeepsTheExactSignedBytes() {
        let json = Array(#"{"a": [1, {"x": "}"}], "tcbInfo" : {"k":"v \" }","n":[1,2]} ,"signature":"ab"}"#.utf8)
        #expect(PCSClient.rawValue(of: "tcbInfo", in: json).map { String(decoding: $0, as: UTF8.self) } == #"{"k":"v \" }","n":[1,2]}"#)
        #expect(PCSClient.stringValue(of: "signature", in: json) == "ab")
        #expect(PCSClient.rawValue(of: "missing", in: json) == nil)
        #expect(PCSClient.rawValue(of: "a", in: Array("not json".utf8)) == nil)
    }

    /// The signed member is read by the strict parser: a repeated key (one copy verified, the
    /// other used by a lax reader), trailing content or broken JSON elsewhere yields nothing.
    @Test func signedMembersComeOnlyFromStrictJSON() {
        for bad in [
            #"{"tcbInfo": {"a": 1}, "tcbInfo": {"a": 2}, "signature": "ab"}"#,
            #"{"tcbInfo": {"a": 1}, "signature": "ab"} trailing"#,
            #"{"tcbInfo": {"a": 1}, "signature": "ab", "x": [1,]}"#,
            #"{"tcbInfo": {"a": 1, "a": 2}, "signature": "ab"}"#,
            #"["tcbInfo"]"#,
        ] {
            #expect(PCSClient.rawValue(of: "tcbInfo", in: Array(bad.utf8)) == nil, "\(bad)")
        }
        // Nested members named like a top-level key are not it.
        #expect(PCSClient.rawValue(of: "k", in: Array(#"{"tcbInfo": {"k": 1}}"#.utf8)) == nil)
    }
}
