import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import VeilAttestation
import VeilCore

/// Fetches AMD SEV-SNP certificates from the AMD Key Distribution Service (KDS), with an
/// on-disk cache (a VCEK for a given chip and TCB never changes; neither does a product's chain).
///
/// - VCEK: `BASE/vcek/v1/{product}/{hwID hex}?blSPL=…&teeSPL=…&snpSPL=…&ucodeSPL=…` (DER);
/// - chain: `BASE/vcek/v1/{product}/cert_chain` (PEM, ASK then ARK).
public struct KDSClient: Sendable {
    public static let amdKDS = "https://kdsintf.amd.com"

    public var baseURL: String
    public var cacheDirectory: String?
    public var timeout: TimeAmount = .seconds(30)

    public init(baseURL: String = KDSClient.amdKDS, cacheDirectory: String? = nil) {
        self.baseURL = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.cacheDirectory = cacheDirectory
    }

    /// The VCEK (DER) and cert_chain (PEM) for `report` on `product`.
    public func certificates(for report: SNPReport, product: AMDProduct, http: HTTPClient = .shared) async throws -> (vcek: [UInt8], chain: String) {
        guard !report.maskChipID else { throw PCSClient.FetchError.cannotFetch("the SNP report masks its chip ID, so its VCEK cannot be fetched from AMD KDS; configure the host to supply certificates") }
        let tcb = SNPReport.TCBVersion(raw: report.reportedTCB, turin: product == .turin)
        // Turin VCEKs are indexed by the first 8 bytes of the chip ID.
        let hwID = Hex.encode(product == .turin ? Array(report.chipID.prefix(8)) : report.chipID)
        var query = "blSPL=\(tcb.bootloader)&teeSPL=\(tcb.tee)&snpSPL=\(tcb.snp)&ucodeSPL=\(tcb.microcode)"
        if let fmc = tcb.fmc { query = "fmcSPL=\(fmc)&" + query }
        let vcek = try await fetch("\(baseURL)/vcek/v1/\(product.rawValue)/\(hwID)?\(query)", http: http)
        let chain = try await fetch("\(baseURL)/vcek/v1/\(product.rawValue)/cert_chain", http: http)
        return (vcek, String(decoding: chain, as: UTF8.self))
    }

    /// AMD's CRL for `product` (DER, issued by the ARK). Not cached: revocations must be seen.
    public func crl(for product: AMDProduct, http: HTTPClient = .shared) async throws -> [UInt8] {
        try await fetch("\(baseURL)/vcek/v1/\(product.rawValue)/crl", http: http, cache: false)
    }

    func fetch(_ url: String, http: HTTPClient, cache: Bool = true) async throws -> [UInt8] {
        let cachePath = cache ? cacheDirectory.map { "\($0)/\(Hex.encode(SHA256.hash(data: Array(url.utf8))))" } : nil
        if let cachePath, let data = FileManager.default.contents(atPath: cachePath) { return Array(data) }
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await http.execute(HTTPClientRequest(url: url), timeout: timeout)
            body = try await response.body.collect(upTo: 1 << 20)
        } catch {
            throw PCSClient.FetchError.transport(url: url, reason: "\(error)")
        }
        guard response.status == .ok else { throw PCSClient.FetchError.http(url: url, status: Int(response.status.code)) }
        let bytes = Array(body.readableBytesView)
        if let cachePath, let directory = cacheDirectory {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            try? AtomicFile.write(bytes, to: cachePath, mode: 0o644)
        }
        return bytes
    }
}

extension KDSClient: SNPEndorsementSource {
    /// The VCEK and chain for a report that came without them; the product is the one the
    /// report's CPUID names (version 3+ reports).
    public func endorsement(for report: SNPReport) async throws -> (vcek: [UInt8], chain: String) {
        guard report.signingKey == 0 else {
            throw PCSClient.FetchError.cannotFetch("the SNP report is signed by a VLEK, which AMD KDS does not serve by chip ID; the host must supply it (auxblob)")
        }
        guard let product = report.product else {
            throw PCSClient.FetchError.cannotFetch(
                "the SNP report (version \(report.version)) names no product, so its VCEK cannot be fetched from AMD KDS; configure the host to supply certificates")
        }
        return try await certificates(for: report, product: product)
    }

    /// The product's `cert_chain` alone (VLEK-signed reports too: the chain is per product).
    public func chain(for report: SNPReport) async throws -> String {
        guard let product = report.product else {
            throw PCSClient.FetchError.cannotFetch("the SNP report (version \(report.version)) names no product, so its ASK/ARK chain cannot be fetched from AMD KDS")
        }
        return String(decoding: try await fetch("\(baseURL)/vcek/v1/\(product.rawValue)/cert_chain", http: .shared), as: UTF8.self)
    }
}
