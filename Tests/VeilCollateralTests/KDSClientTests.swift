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

/// The KDS client against a local server that answers like AMD KDS with go-sev-guest's real
/// Milan VCEK and chain, and only for the exact hwID and TCB the report names.
@Suite struct KDSClientTests {
    static let directory = URL(fileURLWithPath: PCSClientTests.vectors).deletingLastPathComponent().appendingPathComponent("go-sev-guest").path

    @Test func fetchesTheVCEKForTheReportsChipAndTCBAndCachesIt() async throws {
        let reportBytes = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.directory)/snp_report_milan.bin")))
        let report = try SNPReport(reportBytes)
        let vcek = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.directory)/vcek_milan.der")))
        let chain = Array(try Data(contentsOf: URL(fileURLWithPath: "\(Self.directory)/ask_ark_milan.pem")))
        let tcb = SNPReport.TCBVersion(raw: report.reportedTCB)
        let expectedPath = "/vcek/v1/Milan/\(Hex.encode(report.chipID))"
        let expectedQuery = ["blSPL": "\(tcb.bootloader)", "teeSPL": "\(tcb.tee)", "snpSPL": "\(tcb.snp)", "ucodeSPL": "\(tcb.microcode)"]
        let hits = PCSClientTests.Hits()
        let router = Router()
        router.get("/vcek/v1/Milan/cert_chain") { _, _ in
            hits.add("chain")
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: chain)))
        }
        router.get("/vcek/v1/Milan/:hwid") { request, _ in
            hits.add("vcek")
            let query = Dictionary(uniqueKeysWithValues: request.uri.queryParameters.map { (String($0.key), String($0.value)) })
            guard request.uri.path == expectedPath, query == expectedQuery else { return Response(status: .notFound) }
            return Response(status: .ok, body: .init(byteBuffer: ByteBuffer(bytes: vcek)))
        }
        let cache = FileManager.default.temporaryDirectory.appendingPathComponent("veil-kds-\(UUID().uuidString.prefix(8))").path
        defer { try? FileManager.default.removeItem(atPath: cache) }
        let (ports, continuation) = AsyncStream<Int>.makeStream()
        let app = Application(router: router, configuration: .init(address: .hostname("127.0.0.1", port: 0)), onServerRunning: { continuation.yield($0.localAddress?.port ?? 0) })
        let base = Mutex<String>("")
        try await withThrowingTaskGroup(of: Void.self) { group in
            group.addTask { try await app.runService(gracefulShutdownSignals: []) }
            var iterator = ports.makeAsyncIterator()
            let port = await iterator.next() ?? 0
            base.withLock { $0 = "http://127.0.0.1:\(port)" }
            let http = HTTPClient(eventLoopGroupProvider: .singleton)
            let client = KDSClient(baseURL: base.withLock { $0 }, cacheDirectory: cache)
            let fetched = try await client.certificates(for: report, product: .milan, http: http)
            #expect(fetched.vcek == vcek)
            _ = try SNPVerifier(product: .milan, policy: .init(minimumTCB: .any, allowDebug: true)).verify(report: reportBytes, vcek: fetched.vcek, chainPEM: fetched.chain)
            _ = try await client.certificates(for: report, product: .milan, http: http)
            #expect(hits.all == ["vcek": 1, "chain": 1], "the second fetch comes from the cache")
            // Another chip's ID gets nothing.
            var other = report
            other.chipID[0] ^= 1
            await #expect(throws: PCSClient.FetchError.self) { try await KDSClient(baseURL: base.withLock { $0 }).certificates(for: other, product: .milan, http: http) }
            try await http.shutdown()
            group.cancelAll()
        }
    }
}
