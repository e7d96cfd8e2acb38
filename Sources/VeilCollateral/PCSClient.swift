import AsyncHTTPClient
import Crypto
import Foundation
import NIOCore
import NIOHTTP1
import VeilAttestation
import VeilCore

/// Fetches DCAP collateral from Intel PCS (API v4) or a PCCS with the same API, with an
/// on-disk cache that serves each document until its own `nextUpdate`.
///
/// Endpoints (`BASE` is e.g. `https://api.trustedservices.intel.com`):
/// - `BASE/sgx/certification/v4/pckcrl?ca=processor|platform&encoding=der`, issuer chain in
///   `SGX-PCK-CRL-Issuer-Chain`;
/// - `BASE/{sgx|tdx}/certification/v4/tcb?fmspc=HEX`, issuer chain in `TCB-Info-Issuer-Chain`
///   (or the older `SGX-TCB-Info-Issuer-Chain`);
/// - `BASE/{sgx|tdx}/certification/v4/qe/identity`, issuer chain in `SGX-Enclave-Identity-Issuer-Chain`;
/// - the root CA CRL at ``rootCACRLURL`` (DER or hex).
public struct PCSClient: Sendable {
    public static let intelPCS = "https://api.trustedservices.intel.com"
    public static let intelRootCACRL = "https://certificates.trustedservices.intel.com/IntelSGXRootCA.der"

    public var baseURL: String
    public var rootCACRLURL: String
    public var cacheDirectory: String?
    /// Deadline per request (AsyncHTTPClient retries refused connections until it).
    public var timeout: TimeAmount = .seconds(30)

    public enum FetchError: Error, CustomStringConvertible {
        case http(url: String, status: Int)
        case transport(url: String, reason: String)
        case malformed(url: String, reason: String)
        case notAPCKCertificate(String)
        /// The evidence does not say what to fetch for it.
        case cannotFetch(String)

        public var description: String {
            switch self {
            case .http(let url, let status): return "\(url): HTTP \(status)"
            case .transport(let url, let reason):
                // A PCCS usually has a certificate of its own CA: say how to trust it.
                let hint = reason.contains("CERTIFICATE_VERIFY_FAILED") ? " (the server's certificate is not trusted: for a PCCS with its own CA pass --collateral-ca FILE)" : ""
                return "\(url): \(reason)\(hint)"
            case .malformed(let url, let reason): return "\(url): \(reason)"
            case .notAPCKCertificate(let why): return "cannot tell which collateral the quote needs: \(why)"
            case .cannotFetch(let why): return why
            }
        }
    }

    /// - Parameters:
    ///   - baseURL: Intel PCS or a PCCS (`https://HOST[:PORT]`, no trailing slash).
    ///   - rootCACRLURL: default: Intel's distribution point for Intel PCS, `BASE/sgx/certification/v4/rootcacrl` for a PCCS.
    ///   - cacheDirectory: where fetched documents are kept; `nil` disables the cache.
    public init(baseURL: String = PCSClient.intelPCS, rootCACRLURL: String? = nil, cacheDirectory: String? = nil) {
        let base = baseURL.hasSuffix("/") ? String(baseURL.dropLast()) : baseURL
        self.baseURL = base
        self.rootCACRLURL = rootCACRLURL ?? (base == Self.intelPCS ? Self.intelRootCACRL : "\(base)/sgx/certification/v4/rootcacrl")
        self.cacheDirectory = cacheDirectory
    }

    /// Collateral for `quote`: FMSPC and PCK CA type come from the quote's PCK certificate.
    public func collateral(for quote: DCAPQuote, at time: Date = Date(), http: HTTPClient = .shared) async throws -> DCAPCollateral {
        let platform: DCAPPlatform
        do {
            platform = try DCAPPlatform(of: quote)
        } catch {
            throw FetchError.notAPCKCertificate("\(error)")
        }
        let (fmspc, ca, tee) = (platform.fmspc, platform.ca, platform.tee)
        let crl = try await fetch("\(baseURL)/sgx/certification/v4/pckcrl?ca=\(ca)&encoding=der", chainHeaders: ["SGX-PCK-CRL-Issuer-Chain"], at: time, http: http) {
            DCAPCollateral.nextUpdate(ofCRL: Self.derOrHex($0))
        }
        let tcb = try await fetch("\(baseURL)/\(tee)/certification/v4/tcb?fmspc=\(fmspc)", chainHeaders: ["TCB-Info-Issuer-Chain", "SGX-TCB-Info-Issuer-Chain"], at: time, http: http) {
            Self.rawValue(of: "tcbInfo", in: $0).flatMap(DCAPCollateral.nextUpdate(ofSignedJSON:))
        }
        let qe = try await fetch("\(baseURL)/\(tee)/certification/v4/qe/identity", chainHeaders: ["SGX-Enclave-Identity-Issuer-Chain"], at: time, http: http) {
            Self.rawValue(of: "enclaveIdentity", in: $0).flatMap(DCAPCollateral.nextUpdate(ofSignedJSON:))
        }
        let root = try await fetch(rootCACRLURL, chainHeaders: [], at: time, http: http) { DCAPCollateral.nextUpdate(ofCRL: Self.derOrHex($0)) }

        func signed(_ document: Document, key: String) throws -> ([UInt8], [UInt8]) {
            guard let body = Self.rawValue(of: key, in: document.body), let signatureText = Self.stringValue(of: "signature", in: document.body),
                let signature = Hex.decode(signatureText)
            else { throw FetchError.malformed(url: document.url, reason: "not a {\"\(key)\": …, \"signature\": HEX} document") }
            return (body, signature)
        }
        let (tcbInfo, tcbSignature) = try signed(tcb, key: "tcbInfo")
        let (qeIdentity, qeSignature) = try signed(qe, key: "enclaveIdentity")
        return DCAPCollateral(
            tcbInfo: tcbInfo, tcbInfoSignature: tcbSignature, tcbInfoIssuerChain: tcb.issuerChain, qeIdentity: qeIdentity,
            qeIdentitySignature: qeSignature, qeIdentityIssuerChain: qe.issuerChain, rootCACRL: Self.derOrHex(root.body),
            pckCRL: Self.derOrHex(crl.body), pckCRLIssuerChain: crl.issuerChain)
    }

    /// A fetched (or cached) document.
    struct Document: Codable {
        var url: String
        var body: [UInt8]
        var issuerChain: [UInt8]
        var nextUpdate: Date?
    }

    func fetch(
        _ url: String, chainHeaders: [String], at time: Date, http: HTTPClient, nextUpdate: ([UInt8]) -> Date?
    ) async throws -> Document {
        let cachePath = cacheDirectory.map { "\($0)/\(Hex.encode(SHA256.hash(data: Array(url.utf8)))).json" }
        if let cachePath, let data = FileManager.default.contents(atPath: cachePath),
            let cached = try? JSONDecoder().decode(Document.self, from: data), cached.url == url,
            let until = cached.nextUpdate, time < until
        {
            return cached
        }
        let response: HTTPClientResponse
        let body: ByteBuffer
        do {
            response = try await http.execute(HTTPClientRequest(url: url), timeout: timeout)
            body = try await response.body.collect(upTo: 8 << 20)
        } catch {
            throw FetchError.transport(url: url, reason: "\(error)")
        }
        guard response.status == .ok else { throw FetchError.http(url: url, status: Int(response.status.code)) }
        var chain: [UInt8] = []
        if !chainHeaders.isEmpty {
            guard let header = chainHeaders.lazy.compactMap({ response.headers.first(name: $0) }).first,
                let decoded = header.removingPercentEncoding
            else { throw FetchError.malformed(url: url, reason: "missing issuer chain header \(chainHeaders[0])") }
            chain = Array(decoded.utf8)
        }
        let bytes = Array(body.readableBytesView)
        let document = Document(url: url, body: bytes, issuerChain: chain, nextUpdate: nextUpdate(bytes))
        if let cachePath, let directory = cacheDirectory {
            try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
            if let encoded = try? JSONEncoder().encode(document) { try? AtomicFile.write(Array(encoded), to: cachePath, mode: 0o644) }
        }
        return document
    }

    static func derOrHex(_ bytes: [UInt8]) -> [UInt8] {
        if bytes.first == 0x30 { return bytes }
        return Hex.decode(String(decoding: bytes, as: UTF8.self).trimmingCharacters(in: .whitespacesAndNewlines)) ?? bytes
    }

    /// The exact bytes of the JSON value of top-level `key` in `json` (what Intel signed),
    /// through the strict parser: nil unless `json` is one valid JSON object without
    /// repeated keys (two `tcbInfo` members could otherwise verify one and use the other).
    static func rawValue(of key: String, in json: [UInt8]) -> [UInt8]? {
        guard let range = (try? JSONValue.topLevelMemberRanges(json))?[key] else { return nil }
        return Array(json[range])
    }

    static func stringValue(of key: String, in json: [UInt8]) -> String? {
        guard let raw = rawValue(of: key, in: json) else { return nil }
        return (try? JSONValue.parse(raw))?.stringValue
    }
}

/// A PCS/PCCS as a cache's source (the coordinator's `--collateral`), over `http`.
public struct PCSCollateralFetcher: DCAPCollateralFetcher {
    public let client: PCSClient
    public let http: HTTPClient
    public var origin: String { client.baseURL }

    public init(client: PCSClient, http: HTTPClient = .shared) {
        self.client = client
        self.http = http
    }

    public func collateral(for quote: DCAPQuote) async throws -> DCAPCollateral {
        try await client.collateral(for: quote, http: http)
    }
}
